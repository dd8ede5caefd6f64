//! Roles on the admin side: who may manage modules and keys and read the audit ledger.
//!
//! | role | may |
//! | --- | --- |
//! | `admin` | everything, for every tenant |
//! | `tenant-admin` | manage and read its own tenant's modules and secrets; read its own tenant's audit blocks |
//! | `auditor` | read and verify the whole audit ledger; read (not change) every tenant's modules; list (not read) secrets |
//! | `service` | nothing on the admin API: a data-plane caller (routes may require it) |
//!
//! A principal without a tenant cannot act as `tenant-admin`.

use serde::Serialize;

/// An admin-side role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The platform team.
    Admin,
    /// A tenant's own administrator.
    TenantAdmin,
    /// Reads the audit ledger.
    Auditor,
    /// A service principal: calls routes, nothing else.
    Service,
}

impl Role {
    /// `admin`, `tenant-admin`, `auditor` or `service`.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "tenant-admin" => Role::TenantAdmin,
            "auditor" => Role::Auditor,
            "service" => Role::Service,
            _ => return None,
        })
    }
}

/// Something done on the admin API, with the tenant it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Upload, activate, roll back or delete a tenant's modules.
    ManageModules(&'a str),
    /// List or inspect a tenant's modules.
    ReadModules(&'a str),
    /// Read a tenant's audit blocks (`None`: every tenant's).
    ReadAudit(Option<&'a str>),
    /// Verify the whole chain.
    VerifyAudit,
    /// Store or rotate a tenant's secrets.
    ManageSecrets(&'a str),
    /// List a tenant's secrets (ids and versions, never values).
    ReadSecrets(&'a str),
}

/// An authenticated caller of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Who (never a credential).
    pub subject: String,
    /// The tenant its credential belongs to, if any.
    pub tenant: Option<String>,
    /// Its admin roles.
    pub roles: Vec<Role>,
}

impl Principal {
    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn owns(&self, tenant: &str) -> bool {
        self.has(Role::TenantAdmin) && self.tenant.as_deref() == Some(tenant)
    }

    /// Whether this principal may do `action`.
    pub fn may(&self, action: Action<'_>) -> bool {
        if self.has(Role::Admin) {
            return true;
        }
        match action {
            Action::ManageModules(t) | Action::ManageSecrets(t) => self.owns(t),
            Action::ReadSecrets(t) => self.owns(t) || self.has(Role::Auditor),
            Action::ReadModules(t) => self.owns(t) || self.has(Role::Auditor),
            Action::ReadAudit(Some(t)) => self.owns(t) || self.has(Role::Auditor),
            Action::ReadAudit(None) | Action::VerifyAudit => self.has(Role::Auditor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(tenant: Option<&str>, roles: &[Role]) -> Principal {
        Principal {
            subject: "s".into(),
            tenant: tenant.map(str::to_string),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn role_matrix() {
        let admin = p(None, &[Role::Admin]);
        let acme_admin = p(Some("acme"), &[Role::TenantAdmin]);
        let floating = p(None, &[Role::TenantAdmin]);
        let auditor = p(None, &[Role::Auditor]);
        let service = p(Some("acme"), &[Role::Service]);
        for a in [
            Action::ManageModules("acme"),
            Action::ReadModules("globex"),
            Action::ReadAudit(None),
            Action::VerifyAudit,
        ] {
            assert!(admin.may(a));
            assert!(!service.may(a), "{a:?}");
            assert!(!floating.may(a), "{a:?}");
        }
        assert!(acme_admin.may(Action::ManageModules("acme")));
        assert!(!acme_admin.may(Action::ManageModules("globex")));
        assert!(acme_admin.may(Action::ReadAudit(Some("acme"))));
        assert!(!acme_admin.may(Action::ReadAudit(Some("globex"))));
        assert!(!acme_admin.may(Action::ReadAudit(None)));
        assert!(!acme_admin.may(Action::VerifyAudit));
        assert!(auditor.may(Action::VerifyAudit));
        assert!(auditor.may(Action::ReadAudit(Some("globex"))));
        assert!(auditor.may(Action::ReadModules("globex")));
        assert!(!auditor.may(Action::ManageModules("globex")));
        assert!(acme_admin.may(Action::ManageSecrets("acme")));
        assert!(!acme_admin.may(Action::ManageSecrets("globex")));
        assert!(!auditor.may(Action::ManageSecrets("acme")));
        assert!(auditor.may(Action::ReadSecrets("acme")));
        assert!(!service.may(Action::ReadSecrets("acme")));
    }
}
