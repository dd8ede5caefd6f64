//! Secrets a request carries beyond the gateway: the route's upstream credential
//! (never seen by policies) and the secrets a route grants its policies. Both are
//! decrypted per request from the [`SecretStore`], off the async threads.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use crate::config::UpstreamAuth;
use crate::error::Error;
use crate::secrets::{SecretStore, SecretValue};

/// How a route authenticates to its upstream (`[route.upstream_auth]`, lowered at load):
/// one of three forms, each naming the tenant's secret that holds the credential.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "UpstreamAuth")]
pub enum Credential {
    /// `Authorization: Bearer <secret>`.
    Bearer {
        /// The secret's id.
        secret: String,
    },
    /// `Authorization: Basic base64(user:<secret>)`.
    Basic {
        /// The user (not a secret).
        user: String,
        /// The secret's id (the password).
        secret: String,
    },
    /// `<name>: <secret>`.
    Header {
        /// The header.
        name: HeaderName,
        /// The secret's id.
        secret: String,
    },
}

impl TryFrom<UpstreamAuth> for Credential {
    type Error = String;

    fn try_from(auth: UpstreamAuth) -> Result<Self, String> {
        Credential::from_config(&auth)
    }
}

impl Credential {
    /// The id of the secret that holds the credential.
    pub(crate) fn secret(&self) -> &str {
        match self {
            Credential::Bearer { secret }
            | Credential::Basic { secret, .. }
            | Credential::Header { secret, .. } => secret,
        }
    }

    /// The credential `[route.upstream_auth]` describes.
    ///
    /// # Errors
    ///
    /// The problem, for `check-config`: not exactly one of the three forms, or a header
    /// name that is not one.
    pub(crate) fn from_config(auth: &UpstreamAuth) -> Result<Self, String> {
        match auth {
            UpstreamAuth {
                bearer: Some(secret),
                basic_user: None,
                basic_password: None,
                header: None,
                header_secret: None,
            } => Ok(Credential::Bearer {
                secret: secret.clone(),
            }),
            UpstreamAuth {
                bearer: None,
                basic_user: Some(user),
                basic_password: Some(secret),
                header: None,
                header_secret: None,
            } => Ok(Credential::Basic {
                user: user.clone(),
                secret: secret.clone(),
            }),
            UpstreamAuth {
                bearer: None,
                basic_user: None,
                basic_password: None,
                header: Some(name),
                header_secret: Some(secret),
            } => Ok(Credential::Header {
                name: HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("upstream_auth: `{name}` is not a header name"))?,
                secret: secret.clone(),
            }),
            _ => Err(
                "upstream_auth: set exactly one of `bearer`, `basic_user` + \
                 `basic_password`, `header` + `header_secret`"
                    .into(),
            ),
        }
    }

    /// The header this credential adds upstream for `tenant`, marked sensitive.
    ///
    /// # Errors
    ///
    /// [`Error::UpstreamCredentials`] (503) when the store is missing or cannot give the
    /// secret; the reason is logged without the value.
    pub(crate) async fn header(
        &self,
        store: Option<&Arc<SecretStore>>,
        tenant: &str,
    ) -> Result<(HeaderName, HeaderValue), Error> {
        let store = store.cloned().ok_or(Error::UpstreamCredentials)?;
        let (credential, tenant) = (self.clone(), tenant.to_string());
        tokio::task::spawn_blocking(move || {
            let (name, secret) = match &credential {
                Credential::Bearer { secret } | Credential::Basic { secret, .. } => {
                    (http::header::AUTHORIZATION, secret)
                }
                Credential::Header { name, secret } => (name.clone(), secret),
            };
            let v = store.get(&tenant, secret).map_err(|e| {
                tracing::warn!(%tenant, %secret, error = %e, "upstream credential unavailable");
                Error::UpstreamCredentials
            })?;
            let value = match &credential {
                Credential::Bearer { .. } => {
                    let mut s = Zeroizing::new(b"Bearer ".to_vec());
                    s.extend_from_slice(v.expose());
                    HeaderValue::from_bytes(&s)
                }
                Credential::Basic { user, .. } => {
                    let mut pair = Zeroizing::new(format!("{user}:").into_bytes());
                    pair.extend_from_slice(v.expose());
                    let encoded = Zeroizing::new(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(&*pair)
                    ));
                    HeaderValue::from_str(&encoded)
                }
                Credential::Header { .. } => HeaderValue::from_bytes(v.expose()),
            };
            let mut value = value.map_err(|_| Error::UpstreamCredentials)?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .await
        .map_err(|_| Error::UpstreamCredentials)?
    }
}

/// The secrets `ids` of `tenant`, decrypted, for the policies a route grants them to.
///
/// # Errors
///
/// [`Error::UpstreamCredentials`] (503) when the store is missing or cannot give one.
pub(crate) async fn granted(
    store: Option<&Arc<SecretStore>>,
    tenant: &str,
    ids: &[String],
) -> Result<HashMap<String, SecretValue>, Error> {
    let store = store.cloned().ok_or(Error::UpstreamCredentials)?;
    let (tenant, ids) = (tenant.to_string(), ids.to_vec());
    tokio::task::spawn_blocking(move || {
        ids.into_iter()
            .map(|id| match store.get(&tenant, &id) {
                Ok(v) => Ok((id, v)),
                Err(e) => {
                    tracing::warn!(%tenant, secret = %id, error = %e, "granted secret unavailable");
                    Err(Error::UpstreamCredentials)
                }
            })
            .collect()
    })
    .await
    .map_err(|_| Error::UpstreamCredentials)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(f: impl FnOnce(&mut UpstreamAuth)) -> UpstreamAuth {
        let mut a = UpstreamAuth::default();
        f(&mut a);
        a
    }

    #[test]
    fn upstream_auth_is_exactly_one_of_three_forms() {
        assert_eq!(
            Credential::from_config(&auth(|a| a.bearer = Some("tok".into()))),
            Ok(Credential::Bearer {
                secret: "tok".into()
            })
        );
        assert_eq!(
            Credential::from_config(&auth(|a| {
                a.basic_user = Some("svc".into());
                a.basic_password = Some("pw".into());
            })),
            Ok(Credential::Basic {
                user: "svc".into(),
                secret: "pw".into()
            })
        );
        assert_eq!(
            Credential::from_config(&auth(|a| {
                a.header = Some("x-api-key".into());
                a.header_secret = Some("key".into());
            })),
            Ok(Credential::Header {
                name: HeaderName::from_static("x-api-key"),
                secret: "key".into()
            })
        );
        let exactly_one = "upstream_auth: set exactly one of `bearer`, `basic_user` + \
                           `basic_password`, `header` + `header_secret`";
        for (bad, message) in [
            (auth(|_| {}), exactly_one),
            (auth(|a| a.basic_user = Some("svc".into())), exactly_one),
            (
                auth(|a| {
                    a.bearer = Some("tok".into());
                    a.header = Some("x-api-key".into());
                    a.header_secret = Some("key".into());
                }),
                exactly_one,
            ),
            (
                auth(|a| {
                    a.header = Some("bad header".into());
                    a.header_secret = Some("key".into());
                }),
                "upstream_auth: `bad header` is not a header name",
            ),
        ] {
            assert_eq!(
                Credential::from_config(&bad),
                Err(message.into()),
                "{bad:?}"
            );
        }
    }
}
