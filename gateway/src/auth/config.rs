//! What `[auth]`, `[[auth.jwt]]`, `[[auth.introspection]]`, `[server] admin_auth` and a
//! route's `auth` may say: the config this module's [`super::Authenticator`] is built from.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::de::{millis, rebase};

/// `[auth]`: where credentials are checked against.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API key file `palisade apikey` manages (hashes only). By default none.
    pub api_keys: Option<PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`, seconds. By default 30.
    pub leeway_s: Option<u64>,
    /// JWT issuers.
    #[serde(default)]
    pub jwt: Vec<Spanned<JwtIssuer>>,
    /// OAuth2 token introspection endpoints (RFC 7662).
    #[serde(default)]
    pub introspection: Vec<Spanned<Introspection>>,
}

impl Config {
    /// Makes the key, JWKS, CA and secret file paths relative to `base` (the config
    /// file's directory).
    pub fn rebase(&mut self, base: &std::path::Path) {
        if let Some(p) = &mut self.api_keys {
            *p = rebase(base, p);
        }
        for jwt in &mut self.jwt {
            let jwt = jwt.get_mut();
            if let Some(p) = &mut jwt.jwks {
                *p = rebase(base, p);
            }
            for k in &mut jwt.keys {
                for p in [&mut k.pem, &mut k.secret_file].into_iter().flatten() {
                    *p = rebase(base, p);
                }
            }
        }
        for i in &mut self.introspection {
            let i = i.get_mut();
            for p in [&mut i.ca, &mut i.client_secret_file].into_iter().flatten() {
                *p = rebase(base, p);
            }
        }
    }
}

/// `[[auth.jwt]]`: an issuer and the keys its tokens are signed with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuer {
    /// The issuer's name (for `route.auth.issuers`).
    pub name: String,
    /// The `iss` its tokens must carry. By default `iss` is not checked.
    pub issuer: Option<String>,
    /// Accepted `aud` values; when set a token must carry one. When empty, a token with
    /// any `aud` is refused.
    #[serde(default)]
    pub audience: Vec<String>,
    /// A JWKS file (RFC 7517); every key needs `kid` and `alg` (or `algorithm` below).
    pub jwks: Option<PathBuf>,
    /// The algorithm of JWKS keys that do not name one.
    pub algorithm: Option<String>,
    /// Keys given one by one.
    #[serde(default, rename = "key")]
    pub keys: Vec<JwtKey>,
    /// Every token of this issuer belongs to this tenant (instead of a claim).
    pub tenant: Option<String>,
    /// The platform's own issuer: its tokens that name no tenant may carry platform
    /// roles (`admin`, a platform-wide `auditor`) on the admin API. Tokens of any other
    /// issuer, and this issuer's tokens that name a tenant, get at most that tenant's
    /// roles in that tenant. Not allowed with `tenant`. By default `false`.
    #[serde(default)]
    pub platform: bool,
    /// The claim naming the caller's tenant. By default `tid`.
    #[serde(default = "d::tenant_claim")]
    pub tenant_claim: String,
    /// The claim with the granted scopes (a space-separated string or an array). By
    /// default `scope`.
    #[serde(default = "d::scope_claim")]
    pub scope_claim: String,
    /// The claim with the caller's roles (an array or a space-separated string). By
    /// default `roles`.
    #[serde(default = "d::roles_claim")]
    pub roles_claim: String,
    /// Overrides `[auth] leeway_s` for this issuer.
    pub leeway_s: Option<u64>,
}

/// `[[auth.jwt.key]]`: one verification key, pinned to one algorithm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// The `kid` tokens name it by. May be left out when the issuer has one key.
    pub kid: Option<String>,
    /// `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`,
    /// `ES256`, `ES384` or `EdDSA`.
    pub algorithm: String,
    /// A PEM public key (RSA, EC, Ed25519).
    pub pem: Option<PathBuf>,
    /// A file holding an HMAC secret (at least the hash size: 32, 48 or 64 bytes; one
    /// trailing newline is ignored).
    pub secret_file: Option<PathBuf>,
}

/// `[[auth.introspection]]`: an RFC 7662 endpoint for opaque bearer tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    /// The endpoint's name.
    pub name: String,
    /// `http://` or `https://` URL of the introspection endpoint.
    pub url: String,
    /// Client id for HTTP Basic authentication to the endpoint.
    pub client_id: Option<String>,
    /// File holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Extra PEM CA certificates trusted for an `https://` endpoint (besides the
    /// system's).
    pub ca: Option<PathBuf>,
    /// How long an answer is reused (never past the token's `exp`); `cache_ms`. By
    /// default 30 s.
    #[serde(
        rename = "cache_ms",
        default = "d::introspection_cache",
        deserialize_with = "millis"
    )]
    pub cache: Duration,
    /// Time allowed for the endpoint to answer; `timeout_ms`. By default 2 s.
    #[serde(
        rename = "timeout_ms",
        default = "d::introspection_timeout",
        deserialize_with = "millis"
    )]
    pub timeout: Duration,
    /// Every token of this endpoint belongs to this tenant (instead of a claim).
    pub tenant: Option<String>,
    /// The platform's own endpoint: as [`JwtIssuer::platform`]. By default `false`.
    #[serde(default)]
    pub platform: bool,
    /// The member naming the caller's tenant. By default `tid`.
    #[serde(default = "d::tenant_claim")]
    pub tenant_claim: String,
    /// The member with the granted scopes. By default `scope`.
    #[serde(default = "d::scope_claim")]
    pub scope_claim: String,
    /// The member with the caller's roles. By default `roles`.
    #[serde(default = "d::roles_claim")]
    pub roles_claim: String,
}

/// An authentication scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// `Authorization: Bearer <JWT>`, verified against `[[auth.jwt]]`.
    Jwt,
    /// `Authorization: Bearer <token>`, checked by `[[auth.introspection]]`.
    Oauth2,
    /// `x-api-key: <key>` or `Authorization: ApiKey <key>`.
    ApiKey,
    /// A TLS client certificate issued by a tenant's `client_ca`.
    Mtls,
}

impl Scheme {
    /// The name in config and audit causes.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Jwt => "jwt",
            Scheme::Oauth2 => "oauth2",
            Scheme::ApiKey => "api_key",
            Scheme::Mtls => "mtls",
        }
    }
}

/// `[route.auth]`: who may call a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuth {
    /// Accepted schemes, any of them; the first one in this list the request carries
    /// decides.
    pub schemes: Vec<Scheme>,
    /// Scopes the caller must have, all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles the caller must have, any of them.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Only these `[[auth.jwt]]`/`[[auth.introspection]]` names. By default any.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Also require a client certificate of the same tenant as the token or key.
    #[serde(default)]
    pub bind_certificate: bool,
    /// Forward the caller's `Authorization: Bearer` JWT to the upstream. By default
    /// `false`: the gateway's credentials (tokens, API keys) stay with the gateway.
    #[serde(default)]
    pub forward_bearer: bool,
}

mod d {
    use std::time::Duration;

    pub(super) fn tenant_claim() -> String {
        "tid".into()
    }
    pub(super) fn scope_claim() -> String {
        "scope".into()
    }
    pub(super) fn roles_claim() -> String {
        "roles".into()
    }
    pub(super) fn introspection_cache() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn introspection_timeout() -> Duration {
        Duration::from_secs(2)
    }
}
