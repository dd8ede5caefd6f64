//! Platform roles come only from platform credentials (catalogue item 57), over real
//! sockets: every credential source the admin listener accepts (API keys made by the
//! CLI, JWTs made by PyJWT for a tenant's issuer, the platform's issuer and a shared
//! issuer) x every role x the own tenant's, another tenant's and the platform's
//! endpoints. Client certificates are refused on the admin listener at config load.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::cli::palisade;
use crate::support::{Config, Harness, Route, send, start_with};

const LUA_MODULE: &str = "function on_request(req, ctx)\n  return req\nend\n";

/// The base config with a registry, secrets, API keys and three HS256 issuers: one of
/// tenant `acme`, one of the platform, one shared; one route.
fn config(up: std::net::SocketAddr) -> Config {
    let issuer = |name: &str, whose: &str, kid: &str| {
        format!(
            "\n[[auth.jwt]]\nname = \"{name}\"\n{whose}[[auth.jwt.key]]\nkid = \"{kid}\"\nalgorithm = \"HS256\"\nsecret_file = \"{kid}.key\"\n"
        )
    };
    Config::new(up)
        .section("registry", "dir = \"registry\"")
        .section("secrets", "master_key = \"master.key\"")
        .section(
            "auth",
            &format!(
                "api_keys = \"apikeys.json\"\n{}{}{}",
                issuer("acme-idp", "tenant = \"acme\"\n", "acme"),
                issuer("platform-idp", "platform = true\n", "platform"),
                issuer("shared-idp", "", "shared"),
            ),
        )
        .route(Route::new("r"))
}

/// HS256 tokens signed by PyJWT: `(kid, claims)` each, with the key file `<kid>.key`.
fn pyjwt(dir: &Path, tokens: &[(&str, Value)]) -> Vec<String> {
    let script = r#"
import json, sys, time, jwt
out = []
for kid, claims in json.load(sys.stdin):
    secret = open(kid + ".key", "rb").read()
    claims["exp"] = int(time.time()) + 600
    out.append(jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid}))
print(json.dumps(out))
"#;
    let mut child = Command::new(crate::auth::python_with_pyjwt())
        .current_dir(dir)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(
        &tokens
            .iter()
            .map(|(k, c)| json!([k, c]))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a principal may do: read and manage its own tenant (acme), the other tenant
/// (globex), and the platform's endpoint (verify the whole ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct May {
    own_read: bool,
    own_manage: bool,
    other_read: bool,
    other_manage: bool,
    platform: bool,
}

const NOTHING: May = May {
    own_read: false,
    own_manage: false,
    other_read: false,
    other_manage: false,
    platform: false,
};
const TENANT_ADMIN: May = May {
    own_read: true,
    own_manage: true,
    ..NOTHING
};
const TENANT_AUDITOR: May = May {
    own_read: true,
    ..NOTHING
};
const PLATFORM_AUDITOR: May = May {
    own_read: true,
    other_read: true,
    platform: true,
    ..NOTHING
};
const PLATFORM_ADMIN: May = May {
    own_read: true,
    own_manage: true,
    other_read: true,
    other_manage: true,
    platform: true,
};

static VERSION: AtomicUsize = AtomicUsize::new(0);

/// What `header` (a credential) may actually do, tried on every endpoint.
async fn probe(h: &Harness, header: (&str, &str)) -> May {
    let admin = h.running.admin_addr().unwrap();
    let headers = [header];
    let status = |method: &'static str, path: String, body: &'static str| async move {
        send(
            admin,
            method,
            &path,
            &headers,
            Bytes::from_static(body.as_bytes()),
        )
        .await
        .status
    };
    let allowed = |s: u16, what: &str| match s {
        200 | 201 => true,
        403 => false,
        other => panic!("{what}: unexpected {other} for {header:?}"),
    };
    let mut may = NOTHING;
    for (tenant, read, manage) in [
        ("acme", &mut may.own_read, &mut may.own_manage),
        ("globex", &mut may.other_read, &mut may.other_manage),
    ] {
        let modules = allowed(
            status("GET", format!("/v1/tenants/{tenant}/modules"), "").await,
            "list modules",
        );
        let secrets = allowed(
            status("GET", format!("/v1/tenants/{tenant}/secrets"), "").await,
            "list secrets",
        );
        assert_eq!(
            modules, secrets,
            "{header:?} reads {tenant}'s modules and secrets alike"
        );
        *read = modules;
        let v = VERSION.fetch_add(1, Ordering::SeqCst);
        let upload = allowed(
            status(
                "PUT",
                format!("/v1/tenants/{tenant}/modules/tag/1.0.{v}"),
                LUA_MODULE,
            )
            .await,
            "upload a module",
        );
        let secret = allowed(
            status("PUT", format!("/v1/tenants/{tenant}/secrets/s{v}"), "value").await,
            "put a secret",
        );
        assert_eq!(
            upload, secret,
            "{header:?} manages {tenant}'s modules and secrets alike"
        );
        *manage = upload;
    }
    may.platform = allowed(status("GET", "/v1/audit/verify".into(), "").await, "verify");
    may
}

async fn whoami(h: &Harness, header: (&str, &str)) -> Value {
    let r = send(
        h.running.admin_addr().unwrap(),
        "GET",
        "/v1/whoami",
        &[header],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item57_platform_roles_come_only_from_platform_credentials() {
    let h = start_with(|up, dir| {
        for kid in ["acme", "platform", "shared"] {
            std::fs::write(
                dir.join(format!("{kid}.key")),
                format!("{kid}-secret-of-at-least-32-bytes!!"),
            )
            .unwrap();
        }
        let (code, _, err) = palisade(dir, &["keygen", "--master", "--out", "master.key"], None);
        assert_eq!(code, 0, "{err}");
        config(up)
    })
    .await;
    let dir = h.dir.path();

    // API keys from the CLI. A tenant's key cannot be given `admin`.
    let key = |args: &[&str]| {
        let mut all = vec!["apikey", "create", "--config", "palisade.toml"];
        all.extend_from_slice(args);
        let (code, key, err) = palisade(dir, &all, None);
        let key = key.trim().to_string();
        assert_eq!(code, 0, "{err}");
        key
    };
    let (code, _, err) = palisade(
        dir,
        &[
            "apikey",
            "create",
            "--config",
            "palisade.toml",
            "--tenant",
            "acme",
            "--roles",
            "admin",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("platform role"), "{err}");
    let mut keys = vec![
        (key(&["--roles", "admin"]), PLATFORM_ADMIN),
        (key(&["--roles", "auditor"]), PLATFORM_AUDITOR),
        (
            key(&["--tenant", "acme", "--roles", "tenant-admin"]),
            TENANT_ADMIN,
        ),
        (
            key(&["--tenant", "acme", "--roles", "auditor"]),
            TENANT_AUDITOR,
        ),
        (key(&["--tenant", "acme", "--roles", "service"]), NOTHING),
    ];
    // A key file written before the CLI refused it: a tenant key with `admin`.
    let forged = key(&["--tenant", "acme", "--roles", "auditor", "--name", "forged"]);
    let path = dir.join("apikeys.json");
    let mut file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for k in file["keys"].as_array_mut().unwrap() {
        if k["name"] == "forged" {
            k["roles"] = json!(["admin", "auditor"]);
        }
    }
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    keys.push((forged, TENANT_AUDITOR));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for (k, expected) in &keys {
        assert_eq!(
            probe(&h, ("x-api-key", k)).await,
            *expected,
            "key {}",
            &k[..20]
        );
    }

    // JWTs: a tenant's issuer, the platform's issuer, an issuer shared by tenants.
    let roles = |r: &[&str]| json!(r);
    let cases: Vec<(&str, Value, May)> = vec![
        (
            "acme",
            json!({"sub": "a1", "roles": roles(&["admin"])}),
            NOTHING,
        ),
        (
            "acme",
            json!({"sub": "a2", "roles": roles(&["admin", "auditor"])}),
            TENANT_AUDITOR,
        ),
        (
            "acme",
            json!({"sub": "a3", "roles": roles(&["tenant-admin"])}),
            TENANT_ADMIN,
        ),
        (
            "acme",
            json!({"sub": "a4", "roles": roles(&["auditor"])}),
            TENANT_AUDITOR,
        ),
        (
            "acme",
            json!({"sub": "a5", "roles": roles(&["service"])}),
            NOTHING,
        ),
        // Claiming another tenant does not move a tenant issuer's token.
        (
            "acme",
            json!({"sub": "a6", "tid": "globex", "roles": roles(&["tenant-admin"])}),
            TENANT_ADMIN,
        ),
        (
            "platform",
            json!({"sub": "p1", "roles": roles(&["admin"])}),
            PLATFORM_ADMIN,
        ),
        (
            "platform",
            json!({"sub": "p2", "roles": roles(&["auditor"])}),
            PLATFORM_AUDITOR,
        ),
        (
            "platform",
            json!({"sub": "p3", "roles": roles(&["service"])}),
            NOTHING,
        ),
        // The platform's issuer speaking for a tenant: that tenant's roles only.
        (
            "platform",
            json!({"sub": "p4", "tid": "acme", "roles": roles(&["admin", "tenant-admin"])}),
            TENANT_ADMIN,
        ),
        (
            "shared",
            json!({"sub": "s1", "tid": "acme", "roles": roles(&["admin"])}),
            NOTHING,
        ),
        (
            "shared",
            json!({"sub": "s2", "tid": "acme", "roles": roles(&["tenant-admin"])}),
            TENANT_ADMIN,
        ),
        (
            "shared",
            json!({"sub": "s3", "tid": "acme", "roles": roles(&["auditor"])}),
            TENANT_AUDITOR,
        ),
        // No tenant, not the platform's issuer: no role at all.
        (
            "shared",
            json!({"sub": "s4", "roles": roles(&["admin", "auditor"])}),
            NOTHING,
        ),
    ];
    let tokens = pyjwt(
        dir,
        &cases
            .iter()
            .map(|(k, c, _)| (*k, c.clone()))
            .collect::<Vec<_>>(),
    );
    for ((kid, claims, expected), token) in cases.iter().zip(&tokens) {
        let bearer = format!("Bearer {token}");
        let got = probe(&h, ("authorization", &bearer)).await;
        assert_eq!(got, *expected, "{kid} {claims}");
    }
    // What the admin API says about a tenant's token carrying `admin`.
    let me = whoami(&h, ("authorization", &format!("Bearer {}", tokens[0]))).await;
    assert_eq!(me["tenant"], "acme");
    assert_eq!(me["roles"], json!([]));

    // Nothing reached globex from acme's credentials: only the platform admins'
    // uploads (one key, one token) are there.
    let platform_admin = &keys[0].0;
    let r = send(
        h.running.admin_addr().unwrap(),
        "GET",
        "/v1/tenants/globex/modules",
        &[("x-api-key", platform_admin)],
        Bytes::new(),
    )
    .await;
    let uploaded_by: Vec<String> = r.json()["modules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| {
            m["versions"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![m.clone()])
        })
        .filter_map(|v| v["uploaded_by"].as_str().map(String::from))
        .collect();
    assert!(!uploaded_by.is_empty(), "{}", r.text());
    assert!(
        uploaded_by
            .iter()
            .all(|s| s == "p1" || s.starts_with("apikey:")),
        "{uploaded_by:?}"
    );
    // Every refusal was audited with the caller's subject.
    let denied = h
        .blocks()
        .iter()
        .filter(|b| b["decision"] == "denied" && b["cause"] == "missing_role")
        .count();
    assert!(denied > 50, "{denied}");
}

#[test]
fn item57_a_platform_issuer_cannot_also_be_a_tenants_and_certificates_never_reach_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("k.key"),
        "k-secret-of-at-least-32-bytes!!!!!",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("palisade.toml"),
        r#"[server]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
admin_auth = ["mtls"]

[[auth.jwt]]
name = "idp"
tenant = "acme"
platform = true
[[auth.jwt.key]]
algorithm = "HS256"
secret_file = "k.key"

[[auth.introspection]]
name = "oauth"
url = "http://127.0.0.1:9/introspect"
tenant = "acme"
platform = true

[[tenant]]
name = "acme"
"#,
    )
    .unwrap();
    let (code, _, err) = palisade(dir.path(), &["check-config", "palisade.toml"], None);
    assert_eq!(code, 2, "{err}");
    for expected in [
        "auth \"idp\": `platform = true` and `tenant` exclude each other",
        "auth \"oauth\": `platform = true` and `tenant` exclude each other",
        "`mtls` is not available on the admin listener",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}
