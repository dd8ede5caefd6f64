//! OAuth2 token introspection (RFC 7662) for opaque bearer tokens.
//!
//! The gateway POSTs `token=<token>&token_type_hint=access_token` with HTTP Basic client
//! credentials and accepts the token when the answer says `"active": true` (and any
//! `exp` is in the future). Answers are cached by the token's SHA-256 for `cache_ms`,
//! never past the token's `exp`; inactive answers are cached too, so a flood of bad
//! tokens costs the endpoint one call each per period. An endpoint that cannot answer
//! in `timeout_ms` makes the request 503 `auth_unavailable`, not 401.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Caller, Refused, string_list};
use super::{Introspection, Scheme};

/// The system's root certificates plus those in `ca` (PEM), for outbound TLS.
pub(crate) fn trust_roots(ca: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        let path = ca;
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("ca {}: {e}", path.display()))?;
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("ca {}: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// Cached answers at most; past that, expired ones are dropped, then all.
const MAX_CACHED: usize = 10_000;
/// Largest introspection answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Why introspection did not accept a token.
pub(crate) enum Failure {
    /// The token is not active (401).
    Refused(Refused),
    /// The endpoint could not answer (503).
    Unavailable,
}

type Answer = Result<Caller, Refused>;

/// One introspection endpoint and its cache.
pub(crate) struct Introspector {
    cfg: Introspection,
    url: http::Uri,
    authorization: Option<String>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    cache: Mutex<HashMap<[u8; 32], (Instant, Answer)>>,
}

impl Introspector {
    pub(crate) fn new(cfg: &Introspection) -> Result<Self, String> {
        let shown = crate::config::de::shown_url(&cfg.url);
        let url: http::Uri = cfg.url.parse().map_err(|e| format!("url `{shown}`: {e}"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(format!("url `{shown}` must be http:// or https://"));
        }
        let authorization = match (&cfg.client_id, &cfg.client_secret_file) {
            (None, None) => None,
            (Some(id), Some(secret)) => {
                let path = secret.clone();
                let secret = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                // RFC 6749 2.3.1: both parts form-urlencoded before Basic encoding.
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(id), enc(secret.trim_end_matches(['\r', '\n'])));
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            _ => return Err("set both `client_id` and `client_secret_file`, or neither".into()),
        };
        let roots = trust_roots(cfg.ca.as_deref())?;
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Introspector {
            cfg: cfg.clone(),
            url,
            authorization,
            client: Client::builder(TokioExecutor::new()).build(connector),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) async fn check(&self, token: &str) -> Result<Caller, Failure> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some((until, answer)) = self.cache.lock().expect("cache lock").get(&digest)
            && *until > now
        {
            return answer.clone().map_err(Failure::Refused);
        }
        let members = self.ask(token).await?;
        let (answer, ttl) = self.judge(members);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (until, _)| *until > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(digest, (now + ttl, answer.clone()));
        answer.map_err(Failure::Refused)
    }

    async fn ask(&self, token: &str) -> Result<Map<String, Value>, Failure> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut req = http::Request::post(self.url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        if let Some(a) = &self.authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| Failure::Unavailable)?;
        let exchange = async {
            let res = self.client.request(req).await.ok()?;
            if !res.status().is_success() {
                return None;
            }
            let bytes = Limited::new(res.into_body(), MAX_ANSWER)
                .collect()
                .await
                .ok()?
                .to_bytes();
            serde_json::from_slice::<Map<String, Value>>(&bytes).ok()
        };
        match tokio::time::timeout(self.cfg.timeout, exchange).await {
            Ok(Some(members)) => Ok(members),
            _ => {
                tracing::warn!(endpoint = %self.cfg.name, "token introspection unavailable");
                Err(Failure::Unavailable)
            }
        }
    }

    /// The caller (or refusal) an answer means, and how long it may be reused.
    fn judge(&self, members: Map<String, Value>) -> (Answer, Duration) {
        let cache = self.cfg.cache;
        if members.get("active") != Some(&Value::Bool(true)) {
            return (Err(Refused("token_inactive")), cache);
        }
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let ttl = match members.get("exp") {
            None => cache,
            Some(exp) => match exp.as_u64() {
                Some(exp) if exp > now_s => cache.min(Duration::from_secs(exp - now_s)),
                Some(_) => return (Err(Refused("token_expired")), cache),
                None => return (Err(Refused("token_bad_claim")), cache),
            },
        };
        let tenant = self.cfg.tenant.clone().or_else(|| {
            members
                .get(&self.cfg.tenant_claim)
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let subject = ["sub", "client_id", "username"]
            .iter()
            .find_map(|k| members.get(*k).and_then(Value::as_str))
            .map_or_else(|| format!("oauth2:{}", self.cfg.name), str::to_string);
        let caller = Caller {
            scheme: Scheme::Oauth2,
            subject,
            tenant,
            scopes: string_list(members.get(&self.cfg.scope_claim)),
            roles: string_list(members.get(&self.cfg.roles_claim)),
            platform: self.cfg.platform,
            claims: members.into_iter().collect(),
        };
        (Ok(caller), ttl)
    }
}
