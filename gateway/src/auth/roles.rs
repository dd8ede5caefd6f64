//! Roles on the admin side: who may manage modules and keys and read the audit ledger.
//!
//! A principal is either the **platform's** (its credential names no tenant and is a
//! platform credential: an API key without a tenant, a token of an issuer with
//! `platform = true`) or a **tenant's** (its credential names a tenant: the key's
//! tenant, the issuer's `tenant`, the token's tenant claim, the certificate's CA).
//!
//! | role | platform principal | principal of tenant T |
//! | --- | --- | --- |
//! | `admin` | everything, for every tenant | never granted (dropped) |
//! | `tenant-admin` | nothing (it has no tenant) | manage and read T's modules and secrets; read T's audit blocks |
//! | `auditor` | read and verify the whole audit ledger; read every tenant's modules; list (not read) every tenant's secrets | read T's modules, list T's secrets, read T's audit blocks; not the whole ledger |
//! | `revealer` | reveal every tenant's encrypted fields | reveal T's encrypted fields |
//! | `service` | nothing on the admin API | nothing on the admin API (a data-plane caller) |
//!
//! Revealing is `revealer`'s alone: `admin` and `tenant-admin` do not imply it, so who
//! can read encrypted personal data back is a list of its own.
//!
//! [`crate::auth::Caller::principal`] applies the left column only to platform
//! credentials; any other credential without a tenant holds no role.

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
    /// Reveals encrypted fields (and nothing else).
    Revealer,
    /// A service principal: calls routes, nothing else.
    Service,
}

impl Role {
    /// `admin`, `tenant-admin`, `auditor`, `revealer` or `service`.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "tenant-admin" => Role::TenantAdmin,
            "auditor" => Role::Auditor,
            "revealer" => Role::Revealer,
            "service" => Role::Service,
            _ => return None,
        })
    }

    /// Whether a tenant's credential may hold this role (all but `admin`).
    pub fn is_tenant_role(self) -> bool {
        !matches!(self, Role::Admin)
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
    /// Decrypt a tenant's encrypted field.
    Reveal(&'a str),
}

/// An authenticated caller of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Who (never a credential).
    pub subject: String,
    /// The tenant its credential belongs to; `None` for the platform's principals.
    pub tenant: Option<String>,
    /// Its admin roles (already limited to what its credential may grant).
    pub roles: Vec<Role>,
}

impl Principal {
    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn owns(&self, tenant: &str) -> bool {
        self.has(Role::TenantAdmin) && self.tenant.as_deref() == Some(tenant)
    }

    /// Whether this principal may do `action`. `admin` and the platform-wide reach of
    /// `auditor` need a principal without a tenant; an `auditor` of a tenant reads only
    /// that tenant.
    pub fn may(&self, action: Action<'_>) -> bool {
        let platform = self.tenant.is_none();
        if let Action::Reveal(t) = action {
            return self.has(Role::Revealer) && (platform || self.tenant.as_deref() == Some(t));
        }
        if platform && self.has(Role::Admin) {
            return true;
        }
        let reads = |t: &str| {
            self.owns(t)
                || (self.has(Role::Auditor) && (platform || self.tenant.as_deref() == Some(t)))
        };
        match action {
            Action::ManageModules(t) | Action::ManageSecrets(t) => self.owns(t),
            Action::ReadSecrets(t) | Action::ReadModules(t) | Action::ReadAudit(Some(t)) => {
                reads(t)
            }
            Action::ReadAudit(None) | Action::VerifyAudit => platform && self.has(Role::Auditor),
            Action::Reveal(_) => unreachable!("answered above"),
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

    #[test]
    fn only_revealers_reveal() {
        let revealer = p(None, &[Role::Revealer]);
        let acme_revealer = p(Some("acme"), &[Role::Revealer]);
        for nobody in [
            p(None, &[Role::Admin, Role::Auditor]),
            p(
                Some("acme"),
                &[Role::TenantAdmin, Role::Auditor, Role::Service],
            ),
        ] {
            assert!(!nobody.may(Action::Reveal("acme")), "{nobody:?}");
        }
        assert!(revealer.may(Action::Reveal("globex")));
        assert!(acme_revealer.may(Action::Reveal("acme")));
        assert!(!acme_revealer.may(Action::Reveal("globex")));
        // Revealing grants nothing else.
        assert!(!revealer.may(Action::ReadSecrets("acme")));
        assert!(!acme_revealer.may(Action::ReadModules("acme")));
    }

    #[test]
    fn a_tenant_principal_never_acts_for_the_platform() {
        // However it was built, a principal with a tenant is held to that tenant.
        let acme = p(Some("acme"), &[Role::Admin, Role::Auditor]);
        assert!(!acme.may(Action::ManageModules("globex")));
        assert!(
            !acme.may(Action::ManageModules("acme")),
            "admin is not tenant-admin"
        );
        assert!(!acme.may(Action::ManageSecrets("acme")));
        assert!(!acme.may(Action::VerifyAudit));
        assert!(!acme.may(Action::ReadAudit(None)));
        assert!(acme.may(Action::ReadModules("acme")));
        assert!(acme.may(Action::ReadSecrets("acme")));
        assert!(acme.may(Action::ReadAudit(Some("acme"))));
        assert!(!acme.may(Action::ReadModules("globex")));
        assert!(!acme.may(Action::ReadSecrets("globex")));
        assert!(!acme.may(Action::ReadAudit(Some("globex"))));
    }
}
