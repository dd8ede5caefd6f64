//! Secrets: the CLI (values from stdin), envelope properties against the real store
//! (items 46-48), rotation of data keys and of the master key, and upstream credentials
//! end to end: the upstream gets the credential, the client, ledger and metrics do not.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use palisade_gateway::secrets::{SecretError, SecretStore};
use sha2::Digest as _;

use crate::support::cli::{palisade, palisade_env};
use crate::support::{Config, Route, send, start_with};

/// The base config with a secret store sealed by `master.key`.
fn config(up: std::net::SocketAddr) -> Config {
    Config::new(up).section("secrets", "master_key = \"master.key\"")
}

fn store(dir: &Path) -> SecretStore {
    let file = palisade_gateway::config::load(&dir.join("palisade.toml")).unwrap();
    SecretStore::from_file(&file).unwrap().unwrap()
}

fn setup(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = palisade(
        dir.path(),
        &["keygen", "--master", "--out", "master.key"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
    std::fs::write(
        dir.path().join("palisade.toml"),
        config("127.0.0.1:1".parse().unwrap())
            .append("secrets", extra)
            .to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn items46_48_secrets_are_bound_to_their_place_and_survive_rotation() {
    let dir = setup("max_uses_per_key = 3");
    let d = dir.path();
    let (code, out, err) = palisade(
        d,
        &["secret", "put", "--tenant", "acme", "db-password"],
        Some("hunter2-very-secret\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("hunter2") && !err.contains("hunter2"));
    let (code, _, _) = palisade(d, &["secret", "put", "--tenant", "initech", "x"], Some("v"));
    assert_eq!(code, 1, "unknown tenant");
    let (code, out, _) = palisade(d, &["secret", "list", "--tenant", "acme"], None);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "db-password  version=1 key_version=1");

    let s = store(d);
    assert_eq!(
        s.get("acme", "db-password").unwrap().expose(),
        b"hunter2-very-secret"
    );
    assert_eq!(
        format!("{:?}", s.get("acme", "db-password").unwrap()),
        "SecretValue([redacted; 19 bytes])"
    );
    assert!(!format!("{s:?}").contains("hunter2"));

    // Item 46: the ciphertext moved to another tenant, id, version or key version.
    let (version, key_version, sealed) = s.sealed("acme", "db-password").unwrap();
    assert_eq!(
        s.open_sealed("acme", "db-password", version, key_version, &sealed)
            .unwrap()
            .expose(),
        b"hunter2-very-secret"
    );
    s.put("globex", "db-password", b"other").unwrap();
    assert_eq!(
        s.open_sealed("globex", "db-password", version, key_version, &sealed),
        Err(SecretError::Decrypt)
    );
    assert_eq!(
        s.open_sealed("acme", "api-token", version, key_version, &sealed),
        Err(SecretError::Decrypt)
    );
    assert_eq!(
        s.open_sealed("acme", "db-password", version + 1, key_version, &sealed),
        Err(SecretError::Decrypt)
    );
    assert_eq!(
        s.open_sealed("acme", "db-password", version, 99, &sealed),
        Err(SecretError::UnknownKeyVersion(99))
    );
    // A truncated tag.
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sealed)
        .unwrap();
    let short = base64::engine::general_purpose::STANDARD.encode(&raw[..raw.len() - 4]);
    assert_eq!(
        s.open_sealed("acme", "db-password", version, key_version, &short),
        Err(SecretError::Decrypt)
    );

    // Item 45's bound: after 3 seals the data key is replaced before a 4th.
    for i in 0..3 {
        s.put("acme", &format!("n{i}"), b"x").unwrap();
    }
    let list = s.list("acme").unwrap();
    assert_eq!(
        list.iter().find(|x| x.id == "n2").unwrap().key_version,
        2,
        "{list:?}"
    );
    // Data key rotation: later writes use the new key, older secrets still open.
    let (code, _, err) = palisade(d, &["secret", "rotate", "--tenant", "acme"], None);
    assert_eq!(code, 0, "{err}");
    let s = store(d);
    s.put("acme", "after", b"new").unwrap();
    assert_eq!(
        s.list("acme")
            .unwrap()
            .iter()
            .find(|x| x.id == "after")
            .unwrap()
            .key_version,
        3
    );
    assert_eq!(
        s.get("acme", "db-password").unwrap().expose(),
        b"hunter2-very-secret"
    );

    // Item 48: master key rotation re-wraps the data keys; every secret still opens
    // under the new master, and the old master no longer opens them.
    assert_eq!(
        palisade(d, &["keygen", "--master", "--out", "master2.key"], None).0,
        0
    );
    let (code, _, err) = palisade(
        d,
        &["secret", "rotate-master", "--new-master", "master2.key"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = palisade(
        d,
        &["secret", "rotate-master", "--new-master", "master2.key"],
        None,
    );
    assert_eq!(code, 2, "the old master no longer unwraps: {err}");
    let text = std::fs::read_to_string(d.join("palisade.toml"))
        .unwrap()
        .replace("master.key", "master2.key");
    std::fs::write(d.join("palisade.toml"), text).unwrap();
    let s = store(d);
    assert_eq!(
        s.get("acme", "db-password").unwrap().expose(),
        b"hunter2-very-secret"
    );
    assert_eq!(s.get("acme", "after").unwrap().expose(), b"new");
    assert_eq!(s.get("globex", "db-password").unwrap().expose(), b"other");

    // Item 47: no plaintext at rest.
    let db = std::fs::read(d.join("audit.db")).unwrap();
    let wal = std::fs::read(d.join("audit.db-wal")).unwrap_or_default();
    for hay in [&db, &wal] {
        assert!(!hay.windows(7).any(|w| w == b"hunter2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_credentials_reach_the_upstream_only() {
    let h = start_with(|up, dir| {
        assert_eq!(
            palisade(dir, &["keygen", "--master", "--out", "master.key"], None).0,
            0
        );
        let text = config(up)
            .append("secrets", "cache_ms = 0")
            .route(
                Route::new("bearer")
                    .path("/auth-digest")
                    .keys(r#"upstream_auth = { bearer = "orders-token" }"#),
            )
            .route(Route::new("header").path("/h").keys(
                "strip_prefix = true\nupstream_auth = { header = \"x-api-key\", header_secret = \"orders-key\" }",
            ))
            .route(Route::new("basic").path("/b").keys(
                "strip_prefix = true\nupstream_auth = { basic_user = \"svc\", basic_password = \"orders-password\" }",
            ));
        text.write(&dir.join("palisade.toml")).unwrap();
        for (id, value) in [
            ("orders-token", "tok-s3cr3t-abc"),
            ("orders-key", "key-s3cr3t-def"),
            ("orders-password", "pw-s3cr3t-ghi"),
        ] {
            let (code, _, err) =
                palisade(dir, &["secret", "put", "--tenant", "acme", id], Some(value));
            assert_eq!(code, 0, "{err}");
        }
        text
    })
    .await;
    let sha = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
    // The caller's own Authorization is replaced, never forwarded.
    let r = send(
        h.addr(),
        "GET",
        "/auth-digest",
        &[("authorization", "Bearer caller-token")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["authorization"], sha("Bearer tok-s3cr3t-abc"));
    let r = send(h.addr(), "GET", "/h/auth-digest", &[], Bytes::new()).await;
    assert_eq!(r.json()["x-api-key"], sha("key-s3cr3t-def"));
    let r = send(h.addr(), "GET", "/b/auth-digest", &[], Bytes::new()).await;
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("svc:pw-s3cr3t-ghi")
    );
    assert_eq!(r.json()["authorization"], sha(&basic));
    // A secret deleted while a route names it (`--force`): 503, nothing sent upstream.
    let (code, _, err) = palisade(
        h.dir.path(),
        &[
            "secret",
            "delete",
            "--tenant",
            "acme",
            "orders-key",
            "--force",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let hits = h.upstream.hits();
    let r = send(h.addr(), "GET", "/h/auth-digest", &[], Bytes::new()).await;
    assert_eq!(r.status, 503);
    assert_eq!(h.block_for(&r)["cause"], "upstream_credentials_unavailable");
    assert_eq!(h.upstream.hits(), hits);
    // A rotated secret is picked up (cache_ms = 0 here).
    let (code, _, _) = palisade(
        h.dir.path(),
        &["secret", "put", "--tenant", "acme", "orders-token"],
        Some("tok-rotated"),
    );
    assert_eq!(code, 0);
    let r = send(h.addr(), "GET", "/auth-digest", &[], Bytes::new()).await;
    assert_eq!(r.json()["authorization"], sha("Bearer tok-rotated"));

    // Nothing of the values in the ledger, its WAL, the metrics or the replies.
    let mut at_rest = std::fs::read(h.ledger_path()).unwrap();
    at_rest.extend(std::fs::read(h.ledger_path().with_extension("db-wal")).unwrap_or_default());
    let metrics = h.metrics().await;
    let log = crate::support::log_text();
    for secret in ["s3cr3t", "tok-rotated"] {
        assert!(
            !at_rest
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{secret} at rest"
        );
        assert!(!metrics.contains(secret));
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!r.text().contains(secret));
    }
}

/// A SoftHSM2 token in `dir` (Debian's softhsm2): its config file, for SOFTHSM2_CONF.
fn softhsm(dir: &Path) -> std::path::PathBuf {
    let installed = palisade_test_artifacts::debian_packages(&["softhsm2"], || {
        Path::new("/usr/lib/softhsm/libsofthsm2.so").is_file()
            && Command::new("softhsm2-util")
                .arg("--version")
                .output()
                .is_ok()
    });
    assert!(
        installed,
        "this test needs SoftHSM2: apt-get install softhsm2"
    );
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "palisade",
            "--so-pin",
            "5678",
            "--pin",
            "1234",
        ])
        .output()
        .expect("softhsm2-util (apt-get install softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("pin"), "1234\n").unwrap();
    conf
}

#[test]
fn the_master_key_can_live_in_an_hsm_through_pkcs11() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = softhsm(d);
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    Config::new(up.local_addr().unwrap())
        .section(
            "secrets",
            r#"pkcs11 = { module = "/usr/lib/softhsm/libsofthsm2.so", token = "palisade", pin_file = "pin" }"#,
        )
        .write(&d.join("palisade.toml"))
        .unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        palisade_env(d, &[("SOFTHSM2_CONF", conf.as_os_str())], args, stdin)
    };
    let (code, out, err) = run(&["secret", "hsm-keygen"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "pkcs11:palisade/palisade-master");
    let (code, _, err) = run(&["secret", "hsm-keygen"], None);
    assert_eq!(code, 2, "the key exists: {err}");
    let (code, _, err) = run(
        &["secret", "put", "--tenant", "acme", "token"],
        Some("hsm-wrapped-value"),
    );
    assert_eq!(code, 0, "{err}");
    // The data key is wrapped by the token; the stored row names it.
    let conn = rusqlite::Connection::open(d.join("audit.db")).unwrap();
    let master: String = conn
        .query_row(
            "SELECT master_id FROM palisade_secret_keys WHERE tenant = 'acme'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(master, "pkcs11:palisade/palisade-master");
    // Reading it back goes through the token (a gateway process would do the same).
    let (code, out, err) = run(&["secret", "list", "--tenant", "acme"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("token  version=1 key_version=1"));
    let (code, out, err) = run(&["secret", "verify", "--tenant", "acme", "token"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "token: decrypts (version 1, key version 1, 17 bytes)"
    );
    assert!(!out.contains("hsm-wrapped-value"));
    // Without the token the store cannot open: a wrong PIN is refused.
    std::fs::write(d.join("pin"), "0000\n").unwrap();
    let (code, _, err) = run(&["secret", "list", "--tenant", "acme"], None);
    assert_eq!(code, 2);
    assert!(err.contains("login"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_admin_api_takes_values_in_and_never_out() {
    let h = start_with(|up, dir| {
        assert_eq!(
            palisade(dir, &["keygen", "--master", "--out", "master.key"], None).0,
            0
        );
        config(up).section("auth", "api_keys = \"apikeys.json\"")
    })
    .await;
    let key = |args: &[&str]| {
        let mut all = vec!["apikey", "create", "--config", "palisade.toml"];
        all.extend_from_slice(args);
        let (code, out, err) = palisade(h.dir.path(), &all, None);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let acme = key(&["--tenant", "acme", "--roles", "tenant-admin"]);
    let globex = key(&["--tenant", "globex", "--roles", "tenant-admin"]);
    let auditor = key(&["--roles", "auditor"]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let admin = h.running.admin_addr().unwrap();
    let call = |method: &'static str, path: &'static str, k: String, body: &'static str| async move {
        send(admin, method, path, &[("x-api-key", k.as_str())], body).await
    };
    let r = call(
        "PUT",
        "/v1/tenants/acme/secrets/orders-token",
        acme.clone(),
        "api-s3cr3t-value",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["version"], 1);
    for (k, method, path) in [
        (
            globex.clone(),
            "PUT",
            "/v1/tenants/acme/secrets/orders-token",
        ),
        (globex.clone(), "GET", "/v1/tenants/acme/secrets"),
        (
            auditor.clone(),
            "PUT",
            "/v1/tenants/acme/secrets/orders-token",
        ),
        (auditor.clone(), "POST", "/v1/tenants/acme/secrets/rotate"),
    ] {
        let r = call(method, path, k, "x").await;
        assert_eq!(r.status, 403, "{method} {path}");
    }
    for k in [acme.clone(), auditor.clone()] {
        let r = call("GET", "/v1/tenants/acme/secrets", k, "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["secrets"][0]["id"], "orders-token");
        assert!(!r.text().contains("s3cr3t"));
    }
    let r = call("POST", "/v1/tenants/acme/secrets/rotate", acme.clone(), "").await;
    assert_eq!(r.json()["key_version"], 2);
    let r = call("PUT", "/v1/tenants/acme/secrets/..", acme.clone(), "x").await;
    assert_eq!(r.status, 400);
    let store = h.running.pipeline().secrets().unwrap().clone();
    let v = tokio::task::spawn_blocking(move || store.get("acme", "orders-token"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.expose(), b"api-s3cr3t-value");
    let mut at_rest = std::fs::read(h.ledger_path()).unwrap();
    at_rest.extend(std::fs::read(h.ledger_path().with_extension("db-wal")).unwrap_or_default());
    assert!(!at_rest.windows(6).any(|w| w == b"s3cr3t"));
    let blocks: Vec<_> = h
        .blocks()
        .into_iter()
        .filter(|b| b["path"].as_str().is_some_and(|p| p.contains("/secrets")))
        .collect();
    assert_eq!(blocks.len(), 9, "every call is a block");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_sees_only_the_secrets_its_route_grants_it() {
    let h = start_with(|up, dir| {
        assert_eq!(
            palisade(dir, &["keygen", "--master", "--out", "master.key"], None).0,
            0
        );
        std::fs::write(
            dir.join("peek.lua"),
            r#"
function on_request(req, ctx)
  local key = ctx.config["secret.signing-key"]
  local other = ctx.config["secret.db-password"]
  req.headers[ctx.config.name .. "-key-len"] = key and tostring(#key) or "none"
  req.headers[ctx.config.name .. "-other"] = other and "seen" or "none"
  return req
end
"#,
        )
        .unwrap();
        let text = config(up).route(
            Route::new("signed")
                .request_with(
                    "peek.lua",
                    r#"config = { name = "x-granted" }, secrets = ["signing-key"]"#,
                )
                .request_with("peek.lua", r#"config = { name = "x-plain" }"#),
        );
        text.write(&dir.join("palisade.toml")).unwrap();
        for (id, value) in [
            ("signing-key", "k-0123456789"),
            ("db-password", "pw-never-granted"),
        ] {
            assert_eq!(
                palisade(dir, &["secret", "put", "--tenant", "acme", id], Some(value)).0,
                0
            );
        }
        text
    })
    .await;
    let r = send(h.addr(), "GET", "/x", &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &r.json()["headers"];
    assert_eq!(
        seen["x-granted-key-len"], "12",
        "the granted policy reads its secret"
    );
    assert_eq!(seen["x-granted-other"], "none", "and no other");
    assert_eq!(
        seen["x-plain-key-len"], "none",
        "a policy without the grant sees nothing"
    );
    let policies = format!("{:?}", h.running.pipeline());
    assert!(!policies.contains("k-0123456789"));
    // A context carrying a granted secret prints its keys, not its values.
    let ctx = palisade_runtime::Context {
        config: vec![("secret.signing-key".into(), "k-0123456789".into())],
        ..Default::default()
    };
    let shown = format!("{ctx:?}");
    assert!(
        shown.contains("secret.signing-key") && !shown.contains("k-0123456789"),
        "{shown}"
    );
}

/// An HTTPS upstream on loopback that requires a client certificate from `client_ca`
/// and answers with the SHA-256 of the certificate it got.
async fn mtls_upstream(
    server: &rcgen::CertifiedKey<rcgen::KeyPair>,
    client_ca: &rcgen::Certificate,
) -> std::net::SocketAddr {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.signing_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let seen = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| hex::encode(sha2::Sha256::digest(c.as_ref())))
                    .unwrap_or_default();
                let service = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| {
                        let body = serde_json::json!({ "client_cert_sha256": seen }).to_string();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(Bytes::from(body)),
                            ))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mtls_presents_a_client_certificate_from_the_secret_store() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let server = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::URI(
        "spiffe://palisade/gateway".try_into().unwrap(),
    )];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let upstream = mtls_upstream(&server, &ca_cert).await;

    let h = start_with(|up, dir| {
        assert_eq!(
            palisade(dir, &["keygen", "--master", "--out", "master.key"], None).0,
            0
        );
        std::fs::write(dir.join("upstream-ca.pem"), server.cert.pem()).unwrap();
        let url = format!("https://localhost:{}", upstream.port());
        let ca = "ca = \"upstream-ca.pem\"";
        let text = config(up)
            .upstream(
                "secure",
                &url,
                &format!(
                    "{ca}\nclient_cert = {{ tenant = \"acme\", cert = \"gw-cert\", key = \"gw-key\" }}"
                ),
            )
            .upstream("secure-no-cert", &url, ca)
            .route(Route::new("secure").upstream("secure").path("/secure"))
            .route(
                Route::new("anonymous")
                    .upstream("secure-no-cert")
                    .path("/anonymous"),
            );
        text.write(&dir.join("palisade.toml")).unwrap();
        assert_eq!(
            palisade(
                dir,
                &["secret", "put", "--tenant", "acme", "gw-cert"],
                Some(&leaf_cert.pem())
            )
            .0,
            0
        );
        assert_eq!(
            palisade(
                dir,
                &["secret", "put", "--tenant", "acme", "gw-key"],
                Some(&leaf_key.serialize_pem())
            )
            .0,
            0
        );
        text
    })
    .await;
    let r = send(h.addr(), "GET", "/secure", &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["client_cert_sha256"],
        hex::encode(sha2::Sha256::digest(leaf_cert.der()))
    );
    // Without the certificate the upstream refuses the handshake: 502.
    let r = send(h.addr(), "GET", "/anonymous", &[], Bytes::new()).await;
    assert_eq!(r.status, 502);
    let pem = leaf_key.serialize_pem();
    let body = pem.lines().nth(1).unwrap();
    let mut at_rest = std::fs::read(h.ledger_path()).unwrap();
    at_rest.extend(std::fs::read(h.ledger_path().with_extension("db-wal")).unwrap_or_default());
    assert!(
        !at_rest.windows(body.len()).any(|w| w == body.as_bytes()),
        "no key at rest"
    );
}
