//! Authentication and authorization: who is calling, for which tenant, with which
//! scopes and roles.
//!
//! Credentials a request may carry, each a [`Scheme`]:
//! - `Authorization: Bearer <JWT>`, verified against the `[[auth.jwt]]` issuers
//!   ([`jwt`]): the algorithm is pinned per key, never read from the token;
//! - `Authorization: Bearer <opaque token>`, checked by an RFC 7662 introspection
//!   endpoint ([`introspect`]) with a short cache;
//! - `x-api-key: <key>` (or `Authorization: ApiKey <key>`), looked up by id and compared
//!   in constant time against a stored SHA-256 ([`apikey`]);
//! - a TLS client certificate issued by a tenant's `client_ca` ([`mtls`]).
//!
//! A route's `auth.schemes` lists what it accepts; the first scheme in that list whose
//! credential the request carries decides (a bad credential is never skipped in favour
//! of another). Then [`Authenticator::authorize`] binds the caller to the route: its
//! tenant must be the route's (403 `tenant_mismatch`), it must hold every required scope
//! (403 `insufficient_scope`) and one of the required roles (403 `missing_role`).
//! Missing or invalid credentials are 401 with `WWW-Authenticate`. No credential ever
//! reaches a log, an error body or the audit ledger: only the subject does.
//!
//! [`Principal`] and [`Role`] are the admin side's view of the same callers.

pub mod apikey;
mod config;
pub mod introspect;
pub mod jwt;
pub mod mtls;
mod roles;
mod verified;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use palisade_runtime::Identity;

pub use self::config::{Config, Introspection, JwtIssuer, JwtKey, RouteAuth, Scheme};
pub use self::mtls::ClientCertificate;
pub use self::roles::{Action, Principal, Role};
use crate::config::{Problem, Tenant};
use crate::error::Error;
use toml::Spanned;

/// A caller whose credential checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// How it authenticated.
    pub scheme: Scheme,
    /// Who it is: a JWT `sub`, `apikey:<id>`, a certificate's SAN. Never a credential.
    pub subject: String,
    /// The tenant the credential belongs to, when it names one.
    pub tenant: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Roles, as the credential states them (routes check them as they are; the admin
    /// API only through [`Caller::principal`]).
    pub roles: Vec<String>,
    /// The credential is a platform credential: an API key without a tenant, or a token
    /// of an issuer or introspection endpoint configured with `platform = true`. Client
    /// certificates never are.
    pub platform: bool,
    /// Verified claims (JWT claims, introspection members, key or certificate facts).
    pub claims: Vec<(String, serde_json::Value)>,
}

impl Caller {
    /// The identity policies see.
    pub fn identity(&self) -> Identity {
        Identity {
            subject: self.subject.clone(),
            scopes: self.scopes.clone(),
            claims: self.claims.clone(),
        }
    }

    /// The admin side's view of this caller: a credential of a tenant holds at most
    /// that tenant's roles (`tenant-admin`, `auditor` of the tenant, `service`), never
    /// `admin`; platform roles come only from a platform credential that names no
    /// tenant; a credential with neither a tenant nor the platform's trust holds no role.
    pub fn principal(&self) -> Principal {
        let roles = self.roles.iter().filter_map(|r| Role::parse(r));
        let roles = match (&self.tenant, self.platform) {
            (Some(_), _) => roles.filter(|r| r.is_tenant_role()).collect(),
            (None, true) => roles.collect(),
            (None, false) => Vec::new(),
        };
        Principal {
            subject: self.subject.clone(),
            tenant: self.tenant.clone(),
            roles,
        }
    }
}

/// Why a credential was refused: a stable cause for the audit ledger and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) &'static str);

/// Every credential source of one configuration; rebuilt on reload (JWKS files, API
/// keys and client CAs are re-read).
pub struct Authenticator {
    jwt: jwt::Issuers,
    introspection: HashMap<String, introspect::Introspector>,
    api_keys: Option<apikey::KeyStore>,
    tenant_cas: mtls::TenantCas,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads every key, key file and JWKS `config` names, and the `tenants`' client CAs.
    ///
    /// # Errors
    ///
    /// Every file that cannot be read or key that cannot be used.
    pub fn build(config: &Config, tenants: &[Spanned<Tenant>]) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let leeway = config.leeway_s.unwrap_or(30);
        let jwt = jwt::Issuers::load(&config.jwt, leeway, &mut problems);
        let mut introspection = HashMap::new();
        for i in &config.introspection {
            match introspect::Introspector::new(i.get_ref()) {
                Ok(x) => {
                    introspection.insert(i.get_ref().name.clone(), x);
                }
                Err(message) => problems.push(problem(i, "", &i.get_ref().name, message)),
            }
        }
        let api_keys = match &config.api_keys {
            None => None,
            Some(p) => match apikey::KeyStore::open(p) {
                Ok(k) if !p.exists() => {
                    tracing::warn!(
                        file = %p.display(),
                        "[auth] api_keys does not exist: no API key is accepted until `palisade apikey create` writes it"
                    );
                    Some(k)
                }
                Ok(k) => Some(k),
                Err(e) => {
                    problems.push(Problem::key("auth.api_keys", format!("api_keys: {e}")));
                    None
                }
            },
        };
        let tenant_cas = mtls::TenantCas::load(tenants, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Authenticator {
            jwt,
            introspection,
            api_keys,
            tenant_cas,
        })
    }

    /// The TLS-level verifier for client certificates: any tenant's CA, certificates
    /// optional (routes decide).
    pub(crate) fn client_verifier(
        &self,
    ) -> Option<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
        self.tenant_cas.union()
    }

    /// Finds the caller among the credentials the request carries, trying `schemes` in
    /// order, and checks it against the route's requirements.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthenticated`] (401) when no accepted credential is present or the
    /// one present is invalid; [`Error::Forbidden`] (403) when it is valid but not
    /// allowed here; [`Error::AuthUnavailable`] (503) when an introspection endpoint
    /// cannot answer.
    pub async fn authorize(
        &self,
        rule: &RouteAuth,
        tenant: &str,
        headers: &HeaderMap,
        cert: Option<&ClientCertificate>,
    ) -> Result<Caller, Error> {
        let caller = self
            .authenticate(&rule.schemes, &rule.issuers, headers, cert)
            .await?;
        // Tenant binding: before any policy runs.
        if caller.tenant.as_deref() != Some(tenant) {
            return Err(Error::Forbidden {
                cause: "tenant_mismatch",
                subject: caller.subject,
                challenge: None,
            });
        }
        if rule.bind_certificate && caller.scheme != Scheme::Mtls {
            let cert_tenant = match cert {
                None => {
                    return Err(Error::Unauthenticated {
                        cause: "client_certificate_missing",
                        challenge: challenges(&[Scheme::Mtls], None),
                    });
                }
                Some(c) => self.tenant_cas.identify(c).map(|(t, _)| t),
            };
            if cert_tenant.as_deref() != Some(tenant) {
                return Err(Error::Forbidden {
                    cause: "certificate_tenant_mismatch",
                    subject: caller.subject,
                    challenge: None,
                });
            }
        }
        if rule.scopes.iter().any(|s| !caller.scopes.contains(s)) {
            let wanted = rule.scopes.join(" ");
            return Err(Error::Forbidden {
                cause: "insufficient_scope",
                subject: caller.subject,
                challenge: Some(format!(
                    "Bearer realm=\"palisade\", error=\"insufficient_scope\", scope=\"{wanted}\""
                )),
            });
        }
        if !rule.roles.is_empty() && !rule.roles.iter().any(|r| caller.roles.contains(r)) {
            return Err(Error::Forbidden {
                cause: "missing_role",
                subject: caller.subject,
                challenge: None,
            });
        }
        Ok(caller)
    }

    /// Finds the caller among the credentials the request carries, trying `schemes` in
    /// order; `issuers` (when not empty) limits which JWT issuers and introspection
    /// endpoints count. No tenant, scope or role check.
    ///
    /// # Errors
    ///
    /// As [`Authenticator::authorize`], 401 and 503 only.
    pub async fn authenticate(
        &self,
        schemes: &[Scheme],
        issuers: &[String],
        headers: &HeaderMap,
        cert: Option<&ClientCertificate>,
    ) -> Result<Caller, Error> {
        let presented = match Presented::from_headers(headers) {
            Ok(p) => p,
            Err(Refused(cause)) => {
                return Err(Error::Unauthenticated {
                    cause,
                    challenge: challenges(schemes, Some("invalid_request")),
                });
            }
        };
        let invalid = |cause: &'static str| Error::Unauthenticated {
            cause,
            challenge: challenges(schemes, Some("invalid_token")),
        };
        for scheme in schemes {
            match scheme {
                Scheme::Jwt => {
                    if let Some(token) = presented.bearer.filter(|t| jwt::looks_like_jwt(t)) {
                        return self
                            .jwt
                            .verify(token, issuers)
                            .map_err(|Refused(c)| invalid(c));
                    }
                }
                Scheme::Oauth2 => {
                    let jwt_handles = schemes.contains(&Scheme::Jwt);
                    if let Some(token) = presented
                        .bearer
                        .filter(|t| !(jwt_handles && jwt::looks_like_jwt(t)))
                    {
                        return self.introspect(token, issuers).await.map_err(|e| match e {
                            introspect::Failure::Refused(Refused(c)) => invalid(c),
                            introspect::Failure::Unavailable => Error::AuthUnavailable,
                        });
                    }
                }
                Scheme::ApiKey => {
                    if let Some(key) = presented.api_key {
                        let Some(store) = &self.api_keys else {
                            return Err(invalid("api_key_unknown"));
                        };
                        return store.verify(key).map_err(|Refused(c)| invalid(c));
                    }
                }
                Scheme::Mtls => {
                    if let Some(cert) = cert {
                        return match self.tenant_cas.identify(cert) {
                            Some((tenant, subject)) => Ok(Caller {
                                scheme: Scheme::Mtls,
                                claims: vec![
                                    ("san".into(), subject.clone().into()),
                                    ("tenant".into(), tenant.clone().into()),
                                ],
                                subject,
                                tenant: Some(tenant),
                                scopes: Vec::new(),
                                roles: Vec::new(),
                                platform: false,
                            }),
                            None => Err(invalid("client_certificate_unknown")),
                        };
                    }
                }
            }
        }
        Err(Error::Unauthenticated {
            cause: "credentials_missing",
            challenge: challenges(schemes, None),
        })
    }

    async fn introspect(
        &self,
        token: &str,
        issuers: &[String],
    ) -> Result<Caller, introspect::Failure> {
        let mut endpoints = self
            .introspection
            .iter()
            .filter(|(name, _)| issuers.is_empty() || issuers.contains(name));
        match endpoints.next() {
            Some((_, endpoint)) => endpoint.check(token).await,
            None => Err(introspect::Failure::Refused(Refused(
                "token_unknown_issuer",
            ))),
        }
    }
}

/// The credentials a request carries, borrowed from its headers.
struct Presented<'a> {
    bearer: Option<&'a str>,
    api_key: Option<&'a str>,
}

impl<'a> Presented<'a> {
    fn from_headers(headers: &'a HeaderMap) -> Result<Self, Refused> {
        let mut authorization = headers.get_all(http::header::AUTHORIZATION).iter();
        let auth = authorization.next();
        if authorization.next().is_some() {
            return Err(Refused("authorization_ambiguous"));
        }
        let mut bearer = None;
        let mut api_key = None;
        if let Some(v) = auth {
            let v = v.to_str().map_err(|_| Refused("authorization_malformed"))?;
            let (kind, value) = v
                .split_once(' ')
                .ok_or(Refused("authorization_malformed"))?;
            let value = value.trim();
            if kind.eq_ignore_ascii_case("bearer") {
                bearer = Some(value);
            } else if kind.eq_ignore_ascii_case("apikey") {
                api_key = Some(value);
            } else {
                return Err(Refused("authorization_scheme_unsupported"));
            }
        }
        let mut keys = headers.get_all("x-api-key").iter();
        if let Some(k) = keys.next() {
            if keys.next().is_some() || api_key.is_some() {
                return Err(Refused("api_key_ambiguous"));
            }
            api_key = Some(k.to_str().map_err(|_| Refused("api_key_malformed"))?.trim());
        }
        Ok(Presented { bearer, api_key })
    }
}

/// `WWW-Authenticate` challenges for `schemes` (RFC 6750 for bearer tokens).
fn challenges(schemes: &[Scheme], error: Option<&str>) -> String {
    let mut out: Vec<String> = Vec::new();
    let error = error.map_or_else(String::new, |e| format!(", error=\"{e}\""));
    if schemes
        .iter()
        .any(|s| matches!(s, Scheme::Jwt | Scheme::Oauth2))
    {
        out.push(format!("Bearer realm=\"palisade\"{error}"));
    }
    if schemes.contains(&Scheme::ApiKey) {
        out.push("ApiKey realm=\"palisade\"".into());
    }
    if schemes.contains(&Scheme::Mtls) {
        out.push("ClientCertificate realm=\"palisade\"".into());
    }
    out.join(", ")
}

fn problem<T>(at: &Spanned<T>, field: &str, name: &str, message: String) -> Problem {
    Problem::at(at, field, format!("auth {name:?}"), message)
}

/// Roles and scopes come as an array of strings or one space-separated string.
pub(crate) fn string_list(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scheme: Scheme, tenant: Option<&str>, platform: bool) -> Caller {
        Caller {
            scheme,
            subject: "s".into(),
            tenant: tenant.map(str::to_string),
            scopes: Vec::new(),
            roles: ["admin", "tenant-admin", "auditor", "service", "ops"]
                .map(String::from)
                .to_vec(),
            platform,
            claims: Vec::new(),
        }
    }

    #[test]
    fn platform_roles_come_only_from_platform_credentials_without_a_tenant() {
        let all = vec![Role::Admin, Role::TenantAdmin, Role::Auditor, Role::Service];
        let tenant_roles = vec![Role::TenantAdmin, Role::Auditor, Role::Service];
        for scheme in [Scheme::Jwt, Scheme::Oauth2, Scheme::ApiKey, Scheme::Mtls] {
            // A tenant's credential, whether or not its issuer is the platform's.
            for platform in [false, true] {
                let p = caller(scheme, Some("acme"), platform).principal();
                assert_eq!(p.roles, tenant_roles, "{scheme:?} platform={platform}");
                assert!(!p.may(Action::ManageModules("globex")));
                assert!(!p.may(Action::VerifyAudit));
            }
            // No tenant and not the platform's: nothing.
            let p = caller(scheme, None, false).principal();
            assert!(p.roles.is_empty(), "{scheme:?}");
        }
        let p = caller(Scheme::Jwt, None, true).principal();
        assert_eq!(p.roles, all);
        assert!(p.may(Action::ManageModules("globex")));
        // Routes still see the roles the credential states.
        assert!(
            caller(Scheme::Jwt, Some("acme"), false)
                .roles
                .contains(&"admin".to_string())
        );
    }
}
