//! Authentication, tenant binding and roles over real sockets (catalogue items 23-30):
//! tokens made by PyJWT (an independent implementation), RFC 7515 example tokens, API
//! keys made by the `palisade apikey` CLI, an RFC 7662 introspection server on
//! loopback, and client certificates generated with rcgen.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::cli::{apikey, run};
use crate::support::{Config, Harness, Reply, Route, send, start_with};

/// A Lua request policy that shows what identity policies see; if it ran on a refused
/// request, the block would name it.
const SHOW_IDENTITY: &str = r#"
function on_request(req, ctx)
  local id = ctx.identity
  req.headers["x-seen-subject"] = id and id.subject or "none"
  req.headers["x-seen-tid"] = id and id.claims.tid and tostring(id.claims.tid) or "none"
  return req
end
"#;

/// A listener that counts connections: a token's `jku`/`x5u` must never reach it.
pub(crate) async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    tokio::spawn(async move {
        while let Ok((_tcp, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, n)
}

/// A Python 3 with PyJWT and cryptography (Debian: python3-jwt, python3-cryptography).
pub(crate) fn python_with_pyjwt() -> &'static str {
    let find = || {
        ["python3", "/usr/bin/python3"].into_iter().find(|py| {
            std::process::Command::new(py)
                .args(["-c", "import jwt, cryptography"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    };
    palisade_test_artifacts::debian_packages(
        &["python3", "python3-jwt", "python3-cryptography"],
        || find().is_some(),
    );
    find().expect("these tests need PyJWT: apt-get install python3-jwt python3-cryptography")
}

/// Runs `jwt_tokens.py`: keys into `dir/keys`, tokens back by case name.
fn pyjwt_tokens(dir: &Path, jku: &str) -> HashMap<String, String> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let out = std::process::Command::new(python_with_pyjwt())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/all/jwt_tokens.py"
        ))
        .arg(&keys)
        .arg(jku)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const JWT_ISSUER: &str = r#"
[[auth.jwt]]
name = "idp"
issuer = "https://idp.test"
audience = ["orders"]
jwks = "keys/jwks.json"
[[auth.jwt.key]]
kid = "hs256"
algorithm = "HS256"
secret_file = "keys/hs256.key"
[[auth.jwt.key]]
kid = "hs384"
algorithm = "HS384"
secret_file = "keys/hs384.key"
[[auth.jwt.key]]
kid = "hs512"
algorithm = "HS512"
secret_file = "keys/hs512.key"
[[auth.jwt.key]]
kid = "rs256"
algorithm = "RS256"
pem = "keys/rsa.pub.pem"
[[auth.jwt.key]]
kid = "es256"
algorithm = "ES256"
pem = "keys/ec256.pub.pem"
[[auth.jwt.key]]
kid = "es384"
algorithm = "ES384"
pem = "keys/ec384.pub.pem"
[[auth.jwt.key]]
kid = "eddsa"
algorithm = "EdDSA"
pem = "keys/ed.pub.pem"
"#;

/// The base config with `[auth]`: a 30 s leeway, API keys in `apikeys.json`, then `auth`
/// (issuers, introspection endpoints).
fn with_auth(upstream: SocketAddr, auth: &str) -> Config {
    Config::new(upstream).section(
        "auth",
        &format!("leeway_s = 30\napi_keys = \"apikeys.json\"\n{auth}"),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn call(h: &Harness, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(h.addr(), "GET", path, headers, Bytes::new()).await
}

/// Every byte of the ledger database and its WAL.
fn ledger_bytes(h: &Harness) -> Vec<u8> {
    let mut all = std::fs::read(h.ledger_path()).unwrap();
    if let Ok(wal) = std::fs::read(h.ledger_path().with_extension("db-wal")) {
        all.extend(wal);
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items23_to_27_pyjwt_tokens_are_accepted_or_refused_exactly_as_expected() {
    let (jku_addr, jku_hits) = counting_listener().await;
    let mut tokens = HashMap::new();
    let h = start_with(|up, dir| {
        tokens = pyjwt_tokens(dir, &format!("http://{jku_addr}/jwks.json"));
        std::fs::write(dir.join("show.lua"), SHOW_IDENTITY).unwrap();
        with_auth(up, JWT_ISSUER)
            .route(
                Route::new("orders")
                    .path("/orders")
                    .request("show.lua")
                    .auth(r#"schemes = ["jwt"], scopes = ["orders:read"]"#),
            )
            .route(
                Route::new("orders-forwarded")
                    .path("/forwarded")
                    .auth(r#"schemes = ["jwt"], forward_bearer = true"#),
            )
    })
    .await;

    // Every algorithm, by config key and by JWKS, and a token inside the leeway.
    for case in [
        "ok_hs256",
        "ok_hs384",
        "ok_hs512",
        "ok_rs256",
        "ok_es256",
        "ok_es384",
        "ok_eddsa",
        "ok_ps256_jwks",
        "ok_es256_jwks",
        "ok_es256_jwks_short_x",
        "ok_within_leeway",
    ] {
        let r = call(&h, "/orders", &[("authorization", &bearer(&tokens[case]))]).await;
        assert_eq!(r.status, 200, "{case}: {}", r.text());
        let seen = &r.json()["headers"];
        assert_eq!(seen["x-palisade-identity"], "user-1", "{case}");
        assert_eq!(
            seen["x-seen-subject"], "user-1",
            "{case}: the policy sees the caller"
        );
        assert_eq!(seen["x-seen-tid"], "acme", "{case}: and its claims");
        assert!(
            seen.get("authorization").is_none(),
            "{case}: the gateway's credential stays with the gateway"
        );
        // Forwarded as sent only where the route says so.
        let r = call(
            &h,
            "/forwarded",
            &[("authorization", &bearer(&tokens[case]))],
        )
        .await;
        assert_eq!(r.status, 200, "{case}: {}", r.text());
        assert_eq!(
            r.json()["headers"]["authorization"],
            bearer(&tokens[case]).as_str()
        );
        let block = h.block_for(&r);
        assert_eq!(block["identity"], "user-1");
    }
    let allowed_hits = h.upstream.hits();

    let refused = [
        ("alg_none", "token_malformed"),
        ("alg_nOnE", "token_malformed"),
        ("empty_signature", "token_bad_signature"),
        ("key_confusion", "token_wrong_algorithm"),
        ("kid_traversal", "token_unknown_kid"),
        ("kid_sql", "token_unknown_kid"),
        ("kid_unknown", "token_unknown_kid"),
        ("embedded_jwk", "token_bad_signature"),
        ("jku", "token_bad_signature"),
        ("x5u", "token_bad_signature"),
        ("exp_string", "token_bad_claim"),
        ("nbf_string", "token_bad_claim"),
        ("exp_missing", "token_missing_claim"),
        ("expired", "token_expired"),
        ("nbf_future", "token_not_yet_valid"),
        ("wrong_aud", "token_wrong_audience"),
        ("wrong_iss", "token_wrong_issuer"),
        ("tampered", "token_bad_signature"),
        ("wrong_key", "token_bad_signature"),
    ];
    for (case, cause) in refused {
        let r = call(&h, "/orders", &[("authorization", &bearer(&tokens[case]))]).await;
        assert_eq!(r.status, 401, "{case}: {}", r.text());
        let challenge = r.header("www-authenticate").expect("a challenge");
        assert!(
            challenge.starts_with("Bearer realm=\"palisade\"")
                && challenge.contains("invalid_token"),
            "{case}: {challenge}"
        );
        assert_eq!(r.json()["error"], "unauthenticated");
        let block = h.block_for(&r);
        assert_eq!(block["cause"], cause, "{case}");
        assert_eq!(block["decision"], "denied");
        assert_eq!(block["identity"], Value::Null);
        assert_eq!(
            block["modules"],
            serde_json::json!([]),
            "{case}: no policy ran"
        );
    }
    // No credential at all: a challenge without an error code.
    let r = call(&h, "/orders", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"palisade\"")
    );
    assert_eq!(h.block_for(&r)["cause"], "credentials_missing");
    // Two Authorization headers are ambiguous.
    let ok = bearer(&tokens["ok_rs256"]);
    let r = call(
        &h,
        "/orders",
        &[("authorization", &ok), ("authorization", &ok)],
    )
    .await;
    assert_eq!(r.status, 401);

    // Valid but not allowed: 403 with RFC 6750 insufficient_scope / tenant_mismatch.
    let r = call(
        &h,
        "/orders",
        &[("authorization", &bearer(&tokens["globex_tenant"]))],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(h.block_for(&r)["cause"], "tenant_mismatch");
    assert_eq!(h.block_for(&r)["identity"], "user-g");
    let r = call(
        &h,
        "/orders",
        &[("authorization", &bearer(&tokens["no_tenant"]))],
    )
    .await;
    assert_eq!(r.status, 403);

    assert_eq!(
        h.upstream.hits(),
        allowed_hits,
        "no refused request reached the upstream"
    );
    assert_eq!(
        jku_hits.load(Ordering::SeqCst),
        0,
        "item 26: no outbound fetch"
    );

    // Item 44 for credentials: no token appears in the ledger, WAL, metrics or log.
    let ledger = ledger_bytes(&h);
    let metrics = h.metrics().await;
    let log = crate::support::log_text();
    for (case, token) in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        if signature.len() > 8 {
            assert!(
                !contains(&ledger, signature),
                "{case}'s signature is in the ledger"
            );
            assert!(
                !metrics.contains(signature),
                "{case}'s signature is in the metrics"
            );
            assert!(!log.contains(signature), "{case}'s signature is in the log");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_required_per_route_with_an_rfc6750_challenge() {
    let mut tokens = HashMap::new();
    let h = start_with(|up, dir| {
        tokens = pyjwt_tokens(dir, "http://127.0.0.1:9/");
        with_auth(up, JWT_ISSUER)
            .route(
                Route::new("write")
                    .path("/write")
                    .auth(r#"schemes = ["jwt"], scopes = ["orders:read", "orders:write"]"#),
            )
            .route(
                Route::new("admins")
                    .path("/admins")
                    .auth(r#"schemes = ["jwt"], roles = ["ops"]"#),
            )
    })
    .await;
    let r = call(
        &h,
        "/write",
        &[("authorization", &bearer(&tokens["ok_rs256"]))],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        &h,
        "/write",
        &[("authorization", &bearer(&tokens["ok_read_only_scope"]))],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(
            "Bearer realm=\"palisade\", error=\"insufficient_scope\", scope=\"orders:read orders:write\""
        )
    );
    assert_eq!(h.block_for(&r)["cause"], "insufficient_scope");
    let r = call(
        &h,
        "/admins",
        &[("authorization", &bearer(&tokens["ok_rs256"]))],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(h.block_for(&r)["cause"], "missing_role");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7515_example_tokens_verify_and_are_held_to_their_claims() {
    // RFC 7515 appendix A.1: HS256 with the JWK `k` below; its `exp` is in 2011.
    const A1_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const A1: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // Appendix A.5: the same claims, unsecured (`alg: none`).
    const A5: &str = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";
    let h = start_with(|up, dir| {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(A1_KEY)
            .unwrap();
        std::fs::write(dir.join("a1.key"), key).unwrap();
        with_auth(
            up,
            "[[auth.jwt]]\nname = \"rfc\"\nissuer = \"joe\"\ntenant = \"acme\"\n[[auth.jwt.key]]\nalgorithm = \"HS256\"\nsecret_file = \"a1.key\"\n",
        )
        .route(Route::new("joe").auth(r#"schemes = ["jwt"]"#))
    })
    .await;
    // The signature checks out (no kid: the issuer's only key), then `exp` refuses it.
    let r = call(&h, "/", &[("authorization", &bearer(A1))]).await;
    assert_eq!(r.status, 401);
    assert_eq!(h.block_for(&r)["cause"], "token_expired");
    // One signature character changed (not the last, whose low bits are padding).
    let mut tampered = A1.to_string();
    let at = A1.len() - 10;
    let swap = if &A1[at..=at] == "A" { "B" } else { "A" };
    tampered.replace_range(at..=at, swap);
    let r = call(&h, "/", &[("authorization", &bearer(&tampered))]).await;
    assert_eq!(h.block_for(&r)["cause"], "token_bad_signature");
    let r = call(&h, "/", &[("authorization", &bearer(A5))]).await;
    assert_eq!(r.status, 401);
    assert_eq!(h.block_for(&r)["cause"], "token_malformed");
    assert_eq!(h.upstream.hits(), 0);
}

/// A gateway with routes `/acme` (API keys with scope `read`) and `/globex` (globex's,
/// with a policy that would answer 418 if it ran), and two acme keys made by the CLI:
/// (with scope `read`, without a scope). The gateway has seen both.
async fn keyed() -> anyhow::Result<(Harness, String, String)> {
    let h = start_with(|up, dir| {
        std::fs::write(dir.join("deny.lua"), "function on_request(req, ctx) return palisade.deny(418, 'ran') end").unwrap();
        with_auth(
            up,
            "[[auth.jwt]]\nname = \"unused\"\n[[auth.jwt.key]]\nalgorithm = \"HS256\"\nsecret_file = \"palisade.toml\"\n",
        )
        .route(
            Route::new("acme-api")
                .path("/acme")
                .auth(r#"schemes = ["api_key"], scopes = ["read"]"#),
        )
        .route(
            Route::new("globex-api")
                .tenant("globex")
                .path("/globex")
                .request("deny.lua")
                .auth(r#"schemes = ["api_key", "jwt"]"#),
        )
    })
    .await;
    let config = h.config_path();
    let (code, acme_key, err) =
        apikey(&config, "create", &["--tenant", "acme", "--scopes", "read"]);
    assert_eq!(code, 0, "{err}");
    assert!(acme_key.starts_with("pal_"), "{acme_key}");
    let (code, no_scope_key, _) = apikey(&config, "create", &["--tenant", "acme"]);
    assert_eq!(code, 0);
    // The gateway notices the new file within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Ok((h, acme_key, no_scope_key))
}

/// The key's id: what identifies it in the identity header and the CLI's listing.
fn key_id(key: &str) -> &str {
    &key[4..20]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apikey_cli_refuses_an_unknown_tenant_and_a_tenant_key_without_one()
-> anyhow::Result<()> {
    let (h, _, _) = keyed().await?;
    let config = h.config_path();
    let (code, _, err) = apikey(&config, "create", &["--tenant", "initech"]);
    assert_eq!(code, 2, "an unknown tenant is refused: {err}");
    let (code, _, _) = apikey(&config, "create", &[]);
    assert_eq!(code, 2, "a tenant key needs its tenant");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_file_holds_hashes_never_the_key_and_is_private() -> anyhow::Result<()> {
    let (h, acme_key, _) = keyed().await?;
    let stored = std::fs::read_to_string(h.dir.path().join("apikeys.json"))?;
    assert!(!stored.contains(&acme_key) && !stored.contains(&acme_key[21..]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.dir.path().join("apikeys.json"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key file is private");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_is_accepted_in_either_header_and_held_to_its_scopes() -> anyhow::Result<()> {
    let (h, acme_key, no_scope_key) = keyed().await?;
    let r = call(&h, "/acme/x", &[("x-api-key", &acme_key)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["headers"]["x-palisade-identity"],
        format!("apikey:{}", key_id(&acme_key))
    );
    let r = call(
        &h,
        "/acme/x",
        &[("authorization", &format!("ApiKey {acme_key}"))],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(&h, "/acme/x", &[("x-api-key", &no_scope_key)]).await;
    assert_eq!(r.status, 403);
    assert_eq!(h.block_for(&r)["cause"], "insufficient_scope");
    let ledger = ledger_bytes(&h);
    assert!(!contains(&ledger, &acme_key[21..]), "no key in the ledger");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item28_a_key_binds_its_tenant_whatever_tenant_headers_say() -> anyhow::Result<()> {
    let (h, acme_key, _) = keyed().await?;
    // Tenant A's key on tenant B's route; spoofed tenant headers change nothing.
    let r = call(
        &h,
        "/globex/x",
        &[
            ("x-api-key", &acme_key),
            ("x-palisade-tenant", "globex"),
            ("x-tenant", "globex"),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let block = h.block_for(&r);
    assert_eq!(block["cause"], "tenant_mismatch");
    assert_eq!(
        block["modules"],
        serde_json::json!([]),
        "refused before any transform"
    );
    let r = call(
        &h,
        "/acme/x",
        &[("x-api-key", &acme_key), ("x-palisade-tenant", "globex")],
    )
    .await;
    assert_eq!(r.json()["headers"]["x-palisade-tenant"], "acme");
    let ledger = ledger_bytes(&h);
    assert!(!contains(&ledger, &acme_key[21..]), "no key in the ledger");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item29_unknown_malformed_and_altered_keys_are_refused() -> anyhow::Result<()> {
    let (h, acme_key, _) = keyed().await?;
    let mut altered = acme_key.clone();
    let last = altered.pop().unwrap_or_default();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for (key, cause) in [
        (altered.as_str(), "api_key_unknown"),
        (
            "pal_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "api_key_unknown",
        ),
        ("not-a-key", "api_key_malformed"),
    ] {
        let r = call(&h, "/acme/x", &[("x-api-key", key)]).await;
        assert_eq!(r.status, 401, "{key}");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("ApiKey realm=\"palisade\"")
        );
        assert_eq!(h.block_for(&r)["cause"], cause);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_with_the_cli_is_refused_without_a_reload() -> anyhow::Result<()> {
    let (h, acme_key, _) = keyed().await?;
    let config = h.config_path();
    let id = key_id(&acme_key);
    let r = call(&h, "/acme/x", &[("x-api-key", &acme_key)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (code, _, err) = apikey(&config, "revoke", &[id]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = apikey(&config, "revoke", &["ffffffffffffffff"]);
    assert_eq!(code, 1);
    let (_, listing, _) = apikey(&config, "list", &[]);
    assert!(listing.contains(&format!("{id}  revoked")), "{listing}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = call(&h, "/acme/x", &[("x-api-key", &acme_key)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(h.block_for(&r)["cause"], "api_key_revoked");
    let ledger = ledger_bytes(&h);
    assert!(!contains(&ledger, &acme_key[21..]), "no key in the ledger");
    Ok(())
}

/// An RFC 7662 endpoint: `Basic gw:s3cret` required; `opaque-acme` is active for acme.
async fn introspection_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        use base64::Engine as _;
                        let basic = format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode("gw:s3cret")
                        );
                        let authorized = req
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v == basic.as_str());
                        let form = req.into_body().collect().await.unwrap().to_bytes();
                        let token = form_urlencoded::parse(&form)
                            .find(|(k, _)| k == "token")
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default();
                        let exp = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs()
                            + 300;
                        let body = match (authorized, token.as_str()) {
                            (false, _) => {
                                return Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .status(401)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                );
                            }
                            (true, "opaque-acme") => {
                                serde_json::json!({"active": true, "sub": "svc-7", "tid": "acme", "scope": "read", "exp": exp})
                            }
                            (true, _) => serde_json::json!({"active": false}),
                        };
                        Ok(hyper::Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_opaque_tokens_are_introspected_and_cached() {
    let (idp, idp_hits) = introspection_server().await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let h = start_with(|up, dir| {
        std::fs::write(dir.join("client.secret"), "s3cret\n").unwrap();
        with_auth(
            up,
            &format!(
                r#"
[[auth.introspection]]
name = "idp"
url = "http://{idp}/introspect"
client_id = "gw"
client_secret_file = "client.secret"

[[auth.introspection]]
name = "down"
url = "http://{dead}/introspect"
timeout_ms = 500
"#
            ),
        )
        .route(
            Route::new("opaque")
                .path("/opaque")
                .auth(r#"schemes = ["oauth2"], scopes = ["read"], issuers = ["idp"]"#),
        )
        .route(
            Route::new("down")
                .path("/down")
                .auth(r#"schemes = ["oauth2"], issuers = ["down"]"#),
        )
    })
    .await;
    let r = call(&h, "/opaque", &[("authorization", "Bearer opaque-acme")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-palisade-identity"], "svc-7");
    let r = call(&h, "/opaque", &[("authorization", "Bearer opaque-acme")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(idp_hits.load(Ordering::SeqCst), 1, "the answer was cached");
    let r = call(&h, "/opaque", &[("authorization", "Bearer opaque-unknown")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(h.block_for(&r)["cause"], "token_inactive");
    let r = call(&h, "/down", &[("authorization", "Bearer opaque-acme")]).await;
    assert_eq!(
        r.status, 503,
        "an endpoint that cannot answer is not the caller's fault"
    );
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert_eq!(h.block_for(&r)["cause"], "auth_unavailable");
    assert!(!contains(&ledger_bytes(&h), "opaque-acme"));
}

/// A CA for `tenant` and a client certificate it issues with `san`.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} client CA"));
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pki {
        ca_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

fn client_cert(pki: &Pki, san: &str, expired: bool) -> (Vec<u8>, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(san.try_into().unwrap())];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    (cert.der().to_vec(), key)
}

/// One HTTPS request over a fresh TLS connection, with an optional client certificate.
async fn tls_call(
    addr: SocketAddr,
    roots: &rustls::RootCertStore,
    client: Option<&(Vec<u8>, KeyPair)>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone());
    let cfg = match client {
        None => builder.with_no_client_auth(),
        Some((der, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // With TLS 1.3 the server judges the certificate after the client's handshake
    // ends, so a refusal shows up here.
    let res = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = res.into_parts();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.map_err(|e| e.to_string())?.to_bytes(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item30_mtls_per_tenant_cas_identities_and_binding_to_the_token() {
    let server = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let acme = ca("acme");
    let globex = ca("globex");
    let stranger = ca("stranger");
    let acme_svc = client_cert(&acme, "spiffe://acme.test/ns/prod/sa/orders", false);
    let acme_expired = client_cert(&acme, "spiffe://acme.test/old", true);
    let globex_svc = client_cert(&globex, "spiffe://globex.test/billing", false);
    let unknown = client_cert(&stranger, "spiffe://acme.test/fake", false);
    let mut tokens = HashMap::new();
    let h = start_with(|up, dir| {
        tokens = pyjwt_tokens(dir, "http://127.0.0.1:9/");
        std::fs::write(dir.join("cert.pem"), server.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), server.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("acme-ca.pem"), &acme.ca_pem).unwrap();
        std::fs::write(dir.join("globex-ca.pem"), &globex.ca_pem).unwrap();
        with_auth(up, JWT_ISSUER)
            .server(r#"tls = { cert = "cert.pem", key = "key.pem" }"#)
            .tenant("acme", r#"client_ca = "acme-ca.pem""#)
            .tenant("globex", r#"client_ca = "globex-ca.pem""#)
            .route(
                Route::new("mtls")
                    .path("/mtls")
                    .auth(r#"schemes = ["mtls"]"#),
            )
            .route(
                Route::new("bound")
                    .path("/bound")
                    .auth(r#"schemes = ["jwt"], bind_certificate = true"#),
            )
            .route(Route::new("open").path("/open"))
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.cert.der().clone()).unwrap();
    let addr = h.addr();

    let r = tls_call(addr, &roots, Some(&acme_svc), "/mtls", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["headers"]["x-palisade-identity"],
        "spiffe://acme.test/ns/prod/sa/orders"
    );
    // No certificate: routes that do not need one still work; mtls routes say 401.
    let r = tls_call(addr, &roots, None, "/open", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let r = tls_call(addr, &roots, None, "/mtls", &[]).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("ClientCertificate realm=\"palisade\"")
    );
    // Another tenant's certificate: valid, not allowed here.
    let r = tls_call(addr, &roots, Some(&globex_svc), "/mtls", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(h.block_for(&r)["cause"], "tenant_mismatch");
    assert_eq!(h.block_for(&r)["identity"], "spiffe://globex.test/billing");

    // Unknown CA and expired certificates fail the handshake, and are audited.
    let before = h.blocks().len();
    for (name, cert) in [("unknown CA", &unknown), ("expired", &acme_expired)] {
        let r = tls_call(addr, &roots, Some(cert), "/open", &[]).await;
        assert!(r.is_err(), "{name}: {:?}", r.map(|r| r.status));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rejected: Vec<_> = h.blocks()[before..]
        .iter()
        .filter(|b| b["cause"] == "client_certificate_rejected")
        .cloned()
        .collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");

    // bind_certificate: the token's tenant and the certificate's must agree.
    let token = bearer(&tokens["ok_rs256"]);
    let r = tls_call(
        addr,
        &roots,
        Some(&acme_svc),
        "/bound",
        &[("authorization", &token)],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-palisade-identity"], "user-1");
    let r = tls_call(
        addr,
        &roots,
        Some(&globex_svc),
        "/bound",
        &[("authorization", &token)],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(h.block_for(&r)["cause"], "certificate_tenant_mismatch");
    let r = tls_call(addr, &roots, None, "/bound", &[("authorization", &token)])
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(h.block_for(&r)["cause"], "client_certificate_missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_roles_and_audit() {
    let h = start_with(|up, _| with_auth(up, "")).await;
    let config = h.config_path();
    let key = |args: &[&str]| {
        let (code, key, err) = apikey(&config, "create", args);
        assert_eq!(code, 0, "{err}");
        key
    };
    let auditor = key(&["--roles", "auditor", "--name", "audit-bot"]);
    let admin = key(&["--roles", "admin"]);
    let tenant_admin = key(&["--tenant", "acme", "--roles", "tenant-admin"]);
    let service = key(&["--tenant", "acme", "--roles", "service"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let admin_addr = h.running.admin_addr().unwrap();
    let get = |path: &'static str, k: Option<String>| async move {
        let headers: Vec<(&str, &str)> = match &k {
            Some(k) => vec![("x-api-key", k.as_str())],
            None => vec![],
        };
        send(admin_addr, "GET", path, &headers, Bytes::new()).await
    };

    let r = get("/v1/whoami", Some(tenant_admin.clone())).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tenant"], "acme");
    assert_eq!(r.json()["roles"], serde_json::json!(["tenant-admin"]));
    for k in [&auditor, &admin] {
        let r = get("/v1/audit/verify", Some(k.clone())).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["intact"], true);
    }
    for k in [&tenant_admin, &service] {
        let r = get("/v1/audit/verify", Some(k.clone())).await;
        assert_eq!(r.status, 403);
    }
    let r = get("/v1/audit/verify", None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().contains("ApiKey"));
    assert_eq!(
        get("/healthz", None).await.status,
        200,
        "health needs no credential"
    );

    let admin_blocks: Vec<Value> = h
        .blocks()
        .into_iter()
        .filter(|b| b["kind"] == "admin")
        .collect();
    assert_eq!(admin_blocks.len(), 6, "{admin_blocks:?}");
    let denied = admin_blocks
        .iter()
        .filter(|b| b["decision"] == "denied")
        .count();
    assert_eq!(denied, 3);
    let ledger = ledger_bytes(&h);
    for k in [&auditor, &admin, &tenant_admin, &service] {
        assert!(!contains(&ledger, &k[21..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_on_reload() {
    let mut old = HashMap::new();
    let h = start_with(|up, dir| {
        old = pyjwt_tokens(dir, "http://127.0.0.1:9/");
        with_auth(up, JWT_ISSUER).route(Route::new("r").auth(r#"schemes = ["jwt"]"#))
    })
    .await;
    for case in ["ok_rs256", "ok_ps256_jwks"] {
        let r = call(&h, "/", &[("authorization", &bearer(&old[case]))]).await;
        assert_eq!(r.status, 200, "{case}");
    }
    // New keys under the same kids (PEM files and the JWKS), then a reload.
    let new = pyjwt_tokens(h.dir.path(), "http://127.0.0.1:9/");
    h.running.reload().unwrap();
    for case in ["ok_rs256", "ok_ps256_jwks"] {
        let r = call(&h, "/", &[("authorization", &bearer(&new[case]))]).await;
        assert_eq!(r.status, 200, "{case} with the new key");
        let r = call(&h, "/", &[("authorization", &bearer(&old[case]))]).await;
        assert_eq!(r.status, 401, "{case} with the retired key");
        assert_eq!(h.block_for(&r)["cause"], "token_bad_signature");
    }
}

#[test]
fn auth_config_mistakes_are_reported_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.key"), "too short").unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        r#"[server]
listen = "127.0.0.1:0"

[auth]

[[auth.jwt]]
name = "idp"
[[auth.jwt.key]]
algorithm = "HS256"
secret_file = "short.key"

[[auth.jwt]]
name = "idp2"
[[auth.jwt.key]]
algorithm = "RS256"
secret_file = "short.key"

[[tenant]]
name = "acme"

[[upstream]]
name = "up"
url = "http://127.0.0.1:1"

[[route]]
name = "r"
tenant = "acme"
upstream = "up"
auth = { schemes = ["api_key", "mtls", "oauth2"], issuers = ["nope"] }
"#,
    )
    .unwrap();
    let out = run(
        None,
        &[],
        &["check-config", &config.display().to_string()],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for expected in [
        "auth \"idp\": key (no kid): a HS256 secret must be at least 32 bytes",
        "auth \"idp2\": key (no kid): RS256 needs `pem`",
        "route \"r\": auth scheme `api_key` needs [auth] api_keys",
        "route \"r\": auth scheme `mtls` needs [server.tls] and the tenant's client_ca",
        "route \"r\": auth scheme `oauth2` needs an [[auth.introspection]] endpoint",
        "route \"r\": auth.issuers: \"nope\" is not",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}
