//! Operating a gateway (issue 24): `check-config` reports every problem at once, at its
//! line, without side effects; references to secrets that do not exist are refused by
//! `check-config`, at start and on reload; secrets can be deleted, not while named.

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use crate::support::cli::palisade;
use crate::support::{send, start_with};

/// A config naming a registry and a secret store in `audit.db` (neither exists yet).
fn three_mistakes() -> String {
    r#"[server]
listen = "127.0.0.1:0"

[audit]
sqlite = "audit.db"

[registry]
dir = "registry"

[secrets]
master_key = "master.key"

[[tenant]]
name = "acme"

[[upstream]]
name = "up"
url = "http://127.0.0.1:1"

[[route]]
name = "a"
tenant = "acme"
upstream = "up"
path = "/a"
colour = "blue"

[[route]]
name = "b"
tenant = "nobody"
upstream = "up"
path = "/b"

[[route]]
name = "c"
tenant = "acme"
upstream = "up"
path = "/c"
request = [{ module = "registry:shaper@1" }]

[[route.redact]]
path = "$.ok"

[[route.redact]]
path = "$[[["
"#
    .to_string()
}

#[test]
fn check_config_reports_three_mistakes_at_once_each_at_its_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("palisade.toml"), three_mistakes())?;
    let (code, _, err) = palisade(dir.path(), &["check-config", "--offline"], None);
    ensure!(code == 2, "exit {code}: {err}");
    for line in [
        "palisade.toml:25:1: unknown field `colour`",
        "palisade.toml:29:1: route \"b\": tenant \"nobody\" is not defined",
        "palisade.toml:43:1: route \"c\": redaction rule 2: invalid JSONPath",
        "palisade.toml: 3 problem(s) (1 tenants, 1 upstreams, 2 routes, offline)",
    ] {
        ensure!(
            err.lines().any(|l| l.starts_with(line)),
            "no line starting {line:?} in:\n{err}"
        );
    }
    Ok(())
}

#[test]
fn check_config_creates_nothing_and_says_what_it_could_not_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(d.join("palisade.toml"), three_mistakes())?;
    let (code, _, err) = palisade(d, &["check-config", "--config", "palisade.toml"], None);
    ensure!(code == 2, "exit {code}: {err}");
    // Online, the registry and the store are opened to read only: they do not exist.
    ensure!(
        err.contains("palisade.toml:7:2: [registry]") && err.contains("(or check with --offline)"),
        "{err}"
    );
    ensure!(err.contains("palisade.toml:10:2: [secrets]"), "{err}");
    let left: Vec<String> = std::fs::read_dir(d)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    ensure!(left == ["palisade.toml"], "check-config created {left:?}");
    Ok(())
}

#[test]
fn check_config_json_lists_every_problem_with_line_and_column() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("palisade.toml"), three_mistakes())?;
    let (code, out, _) = palisade(
        dir.path(),
        &["check-config", "--offline", "--format", "json"],
        None,
    );
    ensure!(code == 2);
    let report: Value = serde_json::from_str(&out).context("stdout is one JSON document")?;
    ensure!(report["ok"] == false && report["offline"] == true && report["routes"] == 2);
    let places: Vec<(u64, u64)> = report["problems"]
        .as_array()
        .context("problems")?
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap_or(0),
                p["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    ensure!(places == [(25, 1), (29, 1), (43, 1)], "{report:#}");
    ensure!(
        report["problems"][1]["entry"] == "route \"b\"",
        "{report:#}"
    );
    Ok(())
}

/// A directory with a master key, a secret store holding acme's `present`, and a config
/// whose route `r` sends the secret `secret` upstream.
fn store_with_one_secret(secret: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (code, _, err) = palisade(d, &["keygen", "--master", "--out", "master.key"], None);
    ensure!(code == 0, "{err}");
    std::fs::write(d.join("palisade.toml"), secret_route("127.0.0.1:1", secret))?;
    let (code, _, err) = palisade(
        d,
        &["secret", "put", "--tenant", "acme", "present"],
        Some("value-1"),
    );
    ensure!(code == 0, "{err}");
    Ok(dir)
}

fn secret_route(upstream: &str, secret: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"

[audit]
sqlite = "audit.db"

[secrets]
master_key = "master.key"

[[tenant]]
name = "acme"

[[upstream]]
name = "up"
url = "http://{upstream}"

[[route]]
name = "r"
tenant = "acme"
upstream = "up"
upstream_auth = {{ bearer = "{secret}" }}
"#
    )
}

#[test]
fn check_config_names_a_secret_that_does_not_exist() -> Result<()> {
    let dir = store_with_one_secret("absent")?;
    let (code, _, err) = palisade(dir.path(), &["check-config"], None);
    ensure!(code == 2, "{err}");
    ensure!(
        err.contains(
            "palisade.toml:22:1: route \"r\": secret \"absent\" of tenant \"acme\" does not exist"
        ),
        "{err}"
    );
    // Offline the database is not read: the reference cannot be checked, and is not.
    let (code, out, err) = palisade(dir.path(), &["check-config", "--offline"], None);
    ensure!(code == 0, "{err}");
    ensure!(
        out.contains("ok (1 tenants, 1 upstreams, 1 routes, offline)"),
        "{out}"
    );
    Ok(())
}

#[test]
fn a_gateway_does_not_start_with_a_secret_that_does_not_exist() -> Result<()> {
    let dir = store_with_one_secret("absent")?;
    let e = palisade_gateway::Gateway::from_file(&dir.path().join("palisade.toml"))
        .err()
        .context("the gateway must refuse the config")?;
    ensure!(
        e.to_string()
            .contains("secret \"absent\" of tenant \"acme\" does not exist"),
        "{e}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_naming_a_secret_that_does_not_exist_is_refused() -> Result<()> {
    let h = start_with(|up, dir| {
        let made = store_with_one_secret("present").expect("a store");
        for name in ["master.key", "audit.db"] {
            std::fs::copy(made.path().join(name), dir.join(name)).expect("copied");
        }
        secret_route(&up.to_string(), "present")
    })
    .await;
    let config = h.config_path();
    std::fs::write(
        &config,
        secret_route(&h.upstream.addr.to_string(), "absent"),
    )?;
    let refused = h
        .running
        .reload()
        .err()
        .context("the reload must be refused")?;
    ensure!(
        refused.to_string().contains("secret \"absent\""),
        "{refused}"
    );
    // The routes in service stay, with the secret they had.
    let r = send(h.addr(), "GET", "/auth-digest", &[], "").await;
    ensure!(r.status == 200, "{}", r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_a_route_names_is_not_deleted_an_unused_one_is() -> Result<()> {
    let h = start_with(|up, dir| {
        let made = store_with_one_secret("present").expect("a store");
        for name in ["master.key", "audit.db"] {
            std::fs::copy(made.path().join(name), dir.join(name)).expect("copied");
        }
        secret_route(&up.to_string(), "present") + "\n[auth]\napi_keys = \"apikeys.json\"\n"
    })
    .await;
    let d = h.dir.path();
    let (code, _, err) = palisade(
        d,
        &["secret", "put", "--tenant", "acme", "spare"],
        Some("v"),
    );
    ensure!(code == 0, "{err}");
    // The CLI reads the config: the secret is named by route "r".
    let (code, _, err) = palisade(
        d,
        &["secret", "delete", "--tenant", "acme", "present"],
        None,
    );
    ensure!(code == 1, "exit {code}: {err}");
    ensure!(err.contains("is named by route \"r\""), "{err}");
    // The admin API asks the routes in service.
    let (code, key, err) = palisade(
        d,
        &[
            "apikey",
            "create",
            "--tenant",
            "acme",
            "--roles",
            "tenant-admin",
        ],
        None,
    );
    ensure!(code == 0, "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let admin = h.running.admin_addr().context("admin listener")?;
    let auth = [("x-api-key", key.trim())];
    let r = send(
        admin,
        "DELETE",
        "/v1/tenants/acme/secrets/present",
        &auth,
        "",
    )
    .await;
    ensure!(r.status == 409, "{}", r.text());
    ensure!(r.json()["error"] == "secret_in_use", "{}", r.text());
    ensure!(r.json()["detail"] == "named by route \"r\"", "{}", r.text());
    let r = send(admin, "DELETE", "/v1/tenants/acme/secrets/spare", &auth, "").await;
    ensure!(r.status == 200, "{}", r.text());
    ensure!(r.json()["versions_deleted"] == 1, "{}", r.text());
    let r = send(admin, "DELETE", "/v1/tenants/acme/secrets/spare", &auth, "").await;
    ensure!(r.status == 404, "{}", r.text());
    let (code, out, _) = palisade(d, &["secret", "list", "--tenant", "acme"], None);
    ensure!(
        code == 0 && !out.contains("spare") && out.contains("present"),
        "{out}"
    );
    Ok(())
}
