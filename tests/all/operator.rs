//! Operating a gateway (issue 24): `check-config` reports every problem at once, at its
//! line, without side effects; references to secrets that do not exist are refused by
//! `check-config`, at start and on reload; secrets can be deleted, not while named.

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use crate::support::cli::palisade;
use crate::support::config::{Config, Route};
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

/// Puts a master key and a store holding acme's `present` into a gateway's `dir`.
fn seed_store(dir: &std::path::Path) {
    let made = store_with_one_secret("present").expect("a store");
    for name in ["master.key", "audit.db"] {
        std::fs::copy(made.path().join(name), dir.join(name)).expect("copied");
    }
}

fn secret_route(upstream: &str, secret: &str) -> String {
    secret_route_with(upstream, secret, "master_key = \"master.key\"")
}

/// [`secret_route`] with `secrets` as the `[secrets]` section's body.
fn secret_route_with(upstream: &str, secret: &str, secrets: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"

[audit]
sqlite = "audit.db"

[secrets]
{secrets}

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
        seed_store(dir);
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
        seed_store(dir);
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

/// Requests to `/auth-digest` on `addr` until `stop`: how many were sent, and the answers
/// of those that failed.
fn traffic(
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Vec<String>)> {
    tokio::spawn(async move {
        let (mut sent, mut failed) = (0u32, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = send(addr, "GET", "/auth-digest", &[], "").await;
            sent += 1;
            if r.status != 200 {
                failed.push(r.text());
            }
        }
        (sent, failed)
    })
}

/// `palisade keygen --master --out NAME` in `dir`: the key's fingerprint.
fn master_key(dir: &std::path::Path, name: &str) -> Result<String> {
    let (code, out, err) = palisade(dir, &["keygen", "--master", "--out", name], None);
    ensure!(code == 0, "{err}");
    Ok(out.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_rotation_fails_no_request() -> Result<()> {
    let h = start_with(|up, dir| {
        seed_store(dir);
        // No cache: every request unwraps its data key with the keys held right then.
        secret_route_with(
            &up.to_string(),
            "present",
            "master_key = \"master.key\"\ncache_ms = 0",
        )
    })
    .await;
    let (d, up, addr) = (
        h.dir.path().to_path_buf(),
        h.upstream.addr.to_string(),
        h.addr(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = traffic(addr, stop.clone());
    let new = master_key(&d, "master-2.key")?;
    // 1. Every gateway holds the new key as current and the old one as previous.
    std::fs::write(
        h.config_path(),
        secret_route_with(
            &up,
            "present",
            "master_key = \"master-2.key\"\nprevious_master_keys = [\"master.key\"]\ncache_ms = 0",
        ),
    )?;
    let reloaded = h.running.reload()?;
    ensure!(reloaded.needs_restart.is_empty(), "{reloaded:?}");
    // 2. Every data key is re-wrapped under the new key; the old one is retired.
    let (code, _, err) = palisade(&d, &["secret", "rotate-master"], None);
    ensure!(code == 0, "{err}");
    ensure!(err.contains(&format!("under master key {new}")), "{err}");
    // 3. The old key leaves the config.
    std::fs::write(
        h.config_path(),
        secret_route_with(
            &up,
            "present",
            "master_key = \"master-2.key\"\ncache_ms = 0",
        ),
    )?;
    h.running.reload()?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = traffic.await?;
    ensure!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        failed.first()
    );
    ensure!(sent >= 10, "only {sent} requests during the rotation");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_master_key_is_never_current_again() -> Result<()> {
    let h = start_with(|up, dir| {
        seed_store(dir);
        secret_route(&up.to_string(), "present")
    })
    .await;
    let d = h.dir.path();
    let up = h.upstream.addr.to_string();
    master_key(d, "master-2.key")?;
    let (code, _, err) = palisade(
        d,
        &["secret", "rotate-master", "--new-master", "master-2.key"],
        None,
    );
    ensure!(code == 0, "{err}");
    let retired = err
        .split("retired: ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .context("the retired key is named")?
        .to_string();
    ensure!(retired.starts_with("file:"), "{err}");
    // The config still names the retired key: the CLI and a reload refuse it, by name.
    let (code, _, err) = palisade(d, &["secret", "list", "--tenant", "acme"], None);
    ensure!(
        code == 2 && err.contains(&format!("master key {retired} was retired")),
        "{err}"
    );
    let refused = h
        .running
        .reload()
        .err()
        .context("a reload onto a retired key")?;
    ensure!(refused.to_string().contains("was retired"), "{refused}");
    // Pointed at the new key, rotating back to the retired one is refused.
    std::fs::write(
        h.config_path(),
        secret_route_with(&up, "present", "master_key = \"master-2.key\""),
    )?;
    h.running.reload()?;
    let (code, _, err) = palisade(
        d,
        &["secret", "rotate-master", "--new-master", "master.key"],
        None,
    );
    ensure!(
        code == 2 && err.contains(&format!("master key {retired} was retired")),
        "{err}"
    );
    let r = send(h.addr(), "GET", "/auth-digest", &[], "").await;
    ensure!(r.status == 200, "{}", r.text());
    Ok(())
}

#[test]
fn a_data_key_under_a_key_not_held_is_named_by_fingerprint() -> Result<()> {
    let dir = store_with_one_secret("present")?;
    let d = dir.path();
    let old = palisade(
        d,
        &["secret", "verify", "--tenant", "acme", "present"],
        None,
    );
    ensure!(old.0 == 0, "{}", old.2);
    let new = master_key(d, "master-2.key")?;
    // The config moved to the new key before `rotate-master`, without the old one.
    let text =
        std::fs::read_to_string(d.join("palisade.toml"))?.replace("master.key", "master-2.key");
    std::fs::write(d.join("palisade.toml"), text)?;
    let (code, _, err) = palisade(
        d,
        &["secret", "verify", "--tenant", "acme", "present"],
        None,
    );
    ensure!(code == 2, "{err}");
    ensure!(
        err.contains("is wrapped under master key file:")
            && err.contains(&format!("which is not held here (held: {new})"))
            && err.contains("previous_master_keys"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_names_the_changes_that_need_a_restart() -> Result<()> {
    let h = crate::support::start(
        "",
        "[[route]]\nname = \"r\"\ntenant = \"acme\"\nupstream = \"up\"\n",
    )
    .await;
    let text = std::fs::read_to_string(h.config_path())?;
    let changed = text
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"")
        .replace("sqlite = \"audit.db\"", "sqlite = \"elsewhere.db\"")
        + "\n[[route]]\nname = \"added\"\ntenant = \"acme\"\nupstream = \"up\"\npath = \"/added\"\n";
    ensure!(changed != text);
    std::fs::write(h.config_path(), changed)?;
    let reloaded = h.running.reload()?;
    ensure!(
        reloaded.needs_restart == ["server.listen", "audit.sqlite"],
        "{reloaded:?}"
    );
    // What reloads did apply; the listener is the one it started with.
    let r = send(h.addr(), "GET", "/added/x", &[], "").await;
    ensure!(r.status == 200, "{}", r.text());
    Ok(())
}

#[test]
fn a_quiet_ledgers_tail_is_signed_within_the_interval() -> Result<()> {
    use palisade_ledger::{Ledger, Options, Record, Target, checkpoint};
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("checkpoint.key");
    checkpoint::generate_key(&key)?;
    let signer = checkpoint::Signer::new(
        checkpoint::load_signing_key(&key)?,
        dir.path().join("checkpoints.jsonl"),
        std::time::Duration::from_millis(300),
    );
    let ledger = Ledger::open(
        Target::Sqlite(dir.path().join("audit.db")),
        Options {
            checkpoints: Some(signer),
            ..Options::default()
        },
    )?;
    // The first block is signed as it commits; the second comes within the interval.
    ledger.append_blocking(Record::default())?;
    let last = ledger
        .append_blocking(Record::default())?
        .context("a sequence number")?;
    // Then nothing arrives: the timer signs the tail.
    std::thread::sleep(std::time::Duration::from_millis(900));
    let signed = checkpoint::read_checkpoints(&dir.path().join("checkpoints.jsonl"))?;
    ensure!(
        signed.last().map(|c| c.seq) == Some(last),
        "head {last}, checkpoints {:?}",
        signed.iter().map(|c| c.seq).collect::<Vec<_>>()
    );
    ledger.close();
    Ok(())
}

/// `palisade keygen --out NAME` in `dir` (an Ed25519 pair: NAME and NAME.pub).
fn signing_key(dir: &std::path::Path, name: &str) -> Result<()> {
    let (code, _, err) = palisade(dir, &["keygen", "--out", name], None);
    ensure!(code == 0, "{err}");
    Ok(())
}

#[test]
fn key_files_say_what_they_are() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    signing_key(d, "signer.key")?;
    master_key(d, "master.key")?;
    let label = |name: &str| -> Result<String> {
        Ok(std::fs::read_to_string(d.join(name))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    };
    ensure!(label("signer.key")? == "-----BEGIN PRIVATE KEY-----");
    ensure!(label("signer.key.pub")? == "-----BEGIN PUBLIC KEY-----");
    ensure!(label("master.key")? == "-----BEGIN PALISADE MASTER KEY-----");
    Ok(())
}

#[test]
fn signing_a_module_with_a_public_key_is_a_usage_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    signing_key(d, "signer.key")?;
    std::fs::copy(palisade_test_artifacts::INJECT_HEADERS, d.join("m.wasm"))?;
    let (code, _, err) = palisade(
        d,
        &["module", "sign", "--key", "signer.key.pub", "m.wasm"],
        None,
    );
    ensure!(code == 2, "exit {code}: {err}");
    ensure!(
        err.contains("signer.key.pub: this is an Ed25519 public key (PEM PUBLIC KEY); expected an Ed25519 private key"),
        "{err}"
    );
    ensure!(!d.join("m.wasm.sig").exists(), "a signature was written");
    Ok(())
}

#[test]
fn pushing_with_a_stale_signature_is_a_usage_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    signing_key(d, "signer.key")?;
    std::fs::copy(palisade_test_artifacts::INJECT_HEADERS, d.join("m.wasm"))?;
    let (code, _, err) = palisade(
        d,
        &["module", "sign", "--key", "signer.key", "m.wasm"],
        None,
    );
    ensure!(code == 0, "{err}");
    // The module is rebuilt after signing: its `.sig` is for the old bytes.
    std::fs::copy(palisade_test_artifacts::REDACT_PII, d.join("m.wasm"))?;
    let (code, _, err) = palisade(
        d,
        &[
            "module",
            "push",
            "--name",
            "m",
            "--version",
            "1",
            "m.wasm",
            "--tenant",
            "acme",
            "--admin",
            "http://127.0.0.1:1",
        ],
        None,
    );
    ensure!(code == 2, "exit {code}: {err}");
    ensure!(
        err.contains("it is stale; run `palisade module sign` again"),
        "{err}"
    );
    Ok(())
}

/// `palisade verify` of the ledger in `dir` against its checkpoints, with `key`.
fn verify_checkpoints(dir: &std::path::Path, key: &str) -> (i32, String, String) {
    palisade(
        dir,
        &[
            "verify",
            "--db",
            "audit.db",
            "--checkpoint",
            "checkpoints.jsonl",
            "--checkpoint-key",
            key,
        ],
        None,
    )
}

/// A ledger in `dir` with two blocks and a checkpoint signed by `checkpoint.key`.
fn checkpointed_ledger(dir: &std::path::Path) -> Result<()> {
    use palisade_ledger::{Ledger, Options, Record, Target, checkpoint};
    let key = dir.join("checkpoint.key");
    if !key.exists() {
        checkpoint::generate_key(&key)?;
    }
    let ledger = Ledger::open(
        Target::Sqlite(dir.join("audit.db")),
        Options {
            checkpoints: Some(checkpoint::Signer::new(
                checkpoint::load_signing_key(&key)?,
                dir.join("checkpoints.jsonl"),
                std::time::Duration::from_secs(3600),
            )),
            ..Options::default()
        },
    )?;
    ledger.append_blocking(Record::default())?;
    ledger.close();
    Ok(())
}

#[test]
fn verifying_with_the_private_key_is_a_usage_error_not_a_tamper_alarm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    checkpointed_ledger(d)?;
    let verify = |key: &str| verify_checkpoints(d, key);
    let (code, out, err) = verify("checkpoint.key.pub");
    ensure!(code == 0, "{out}{err}");
    let (code, out, err) = verify("checkpoint.key");
    ensure!(code == 2, "exit {code}: {out}{err}");
    ensure!(
        !out.contains("BROKEN") && !err.contains("BROKEN"),
        "{out}{err}"
    );
    ensure!(
        err.contains("checkpoint.key: this is an Ed25519 private key (PEM PRIVATE KEY); expected an Ed25519 public key"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_private_key_of_an_earlier_release_is_told_from_its_public_key() -> Result<()> {
    // Earlier releases wrote both halves as 64 hex digits.
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let seed = [7u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    std::fs::write(d.join("checkpoint.key"), format!("{}\n", hex::encode(seed)))?;
    std::fs::write(
        d.join("checkpoint.key.pub"),
        format!("{}\n", hex::encode(public.to_bytes())),
    )?;
    checkpointed_ledger(d)?;
    let verify = |key: &str| verify_checkpoints(d, key);
    let (code, out, err) = verify("checkpoint.key.pub");
    ensure!(code == 0, "{out}{err}");
    let (code, out, err) = verify("checkpoint.key");
    ensure!(
        code == 2 && err.contains("expected an Ed25519 public key"),
        "exit {code}: {out}{err}"
    );
    Ok(())
}

#[test]
fn a_signing_key_as_the_master_key_is_refused_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    signing_key(d, "signer.key")?;
    std::fs::write(
        d.join("palisade.toml"),
        secret_route_with("127.0.0.1:1", "x", "master_key = \"signer.key\""),
    )?;
    let (code, _, err) = palisade(d, &["secret", "list", "--tenant", "acme"], None);
    ensure!(code == 2, "exit {code}: {err}");
    ensure!(
        err.contains(
            "this is an Ed25519 private key (PEM PRIVATE KEY); expected a secret-store master key"
        ),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_refusal_says_why_and_the_ledger_finds_it_by_correlation_id() -> Result<()> {
    let h = crate::support::start_with(|up, _| {
        Config::new(up)
            .section("auth", "api_keys = \"apikeys.json\"")
            .section("registry", "dir = \"registry\"")
    })
    .await;
    let d = h.dir.path();
    let (code, key, err) = palisade(
        d,
        &["apikey", "create", "--tenant", "acme", "--roles", "service"],
        None,
    );
    ensure!(code == 0, "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let admin = format!("http://{}", h.running.admin_addr().context("admin")?);
    let (code, _, err) = crate::support::cli::palisade_env(
        d,
        &[("PALISADE_API_KEY", key.trim().as_ref())],
        &["module", "list", "--admin", &admin, "--tenant", "acme"],
        None,
    );
    ensure!(code == 1, "exit {code}: {err}");
    ensure!(
        err.contains("403 Forbidden forbidden: missing_role; correlation id "),
        "{err}"
    );
    let cid = err
        .split("correlation id ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .context("the correlation id")?;
    let (code, out, err) = palisade(d, &["audit", "show", cid], None);
    ensure!(code == 0, "{err}");
    let block: Value = serde_json::from_str(out.lines().next().context("a block")?)?;
    ensure!(block["record"]["cause"] == "missing_role", "{block}");
    ensure!(block["record"]["status"] == 403, "{block}");
    let (code, _, _) = palisade(d, &["audit", "show", "no-such-id"], None);
    ensure!(code == 1);
    Ok(())
}

#[test]
fn apikey_create_refuses_unknown_roles_and_expiries_that_are_not_positive() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let text = format!(
        "{}\n[auth]\napi_keys = \"apikeys.json\"\n",
        secret_route("127.0.0.1:1", "x")
    )
    .replace(
        "upstream_auth = { bearer = \"x\" }",
        "auth = { schemes = [\"api_key\"], roles = [\"billing\"] }",
    )
    .replace("[secrets]\nmaster_key = \"master.key\"\n", "");
    std::fs::write(d.join("palisade.toml"), text)?;
    let create = |extra: &[&str]| {
        let mut args = vec!["apikey", "create", "--tenant", "acme"];
        args.extend_from_slice(extra);
        palisade(d, &args, None)
    };
    let (code, _, err) = create(&["--roles", "tenant-admn"]);
    ensure!(
        code == 2 && err.contains("role \"tenant-admn\" is neither a built-in role"),
        "{err}"
    );
    let (code, _, err) = create(&["--roles", "service", "--expires-in-days", "0"]);
    ensure!(
        code == 2 && err.contains("--expires-in-days must be at least 1"),
        "{err}"
    );
    let (code, _, err) = create(&["--roles", "service", "--expires-in-days", "-3"]);
    ensure!(code == 2, "{err}");
    // A role a route requires is one.
    let (code, _, err) = create(&["--roles", "billing"]);
    ensure!(code == 0, "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_the_api_key_file_is_missing() -> Result<()> {
    let _h = crate::support::start_with(|up, _| {
        Config::new(up).section("auth", "api_keys = \"not-yet-created.json\"")
    })
    .await;
    let log = crate::support::log_text();
    ensure!(
        log.lines()
            .any(|l| l.contains("[auth] api_keys does not exist")
                && l.contains("not-yet-created.json")
                && l.contains("WARN")),
        "no warning in the log"
    );
    Ok(())
}

/// A gateway with a registry (in `registry_dir`, metadata in `db`), api keys, and a route
/// `/tagged` running the active version of acme's module `tag`.
fn registry_config(
    up: std::net::SocketAddr,
    db: &str,
    registry_dir: &str,
    instance: &str,
    tagged_route: bool,
) -> Config {
    let config = Config::new(up)
        .section(
            "audit",
            &format!("sqlite = \"{db}\"\ninstance = \"{instance}\""),
        )
        .section("auth", "api_keys = \"apikeys.json\"")
        .section("registry", &format!("dir = \"{registry_dir}\""));
    if !tagged_route {
        return config;
    }
    config.route(Route::new("tagged").path("/tagged").request("registry:tag"))
}

/// A Lua policy that tags requests with `tag`.
fn tagger(tag: &str) -> String {
    format!(
        "function on_request(req, ctx)\n  req.headers[\"x-module\"] = \"{tag}\"\n  return req\nend\n"
    )
}

/// Admin calls with a tenant-admin key of acme.
struct Admin {
    addr: std::net::SocketAddr,
    key: String,
}

impl Admin {
    async fn new(h: &crate::support::Harness) -> Result<Self> {
        let (code, key, err) = palisade(
            h.dir.path(),
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
        Ok(Admin {
            addr: h.running.admin_addr().context("admin")?,
            key: key.trim().to_string(),
        })
    }

    async fn call(&self, method: &str, path: &str, body: String) -> crate::support::Reply {
        let path = match path {
            "" => "/v1/tenants/acme/modules".to_string(),
            p => format!("/v1/tenants/acme/modules/{p}"),
        };
        send(
            self.addr,
            method,
            &path,
            &[("x-api-key", self.key.as_str())],
            body,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rollback_goes_one_step_further_back_in_the_recorded_history() -> Result<()> {
    let h = start_with(|up, _| {
        // A route naming `tag` needs an active version to be built: none yet.
        registry_config(up, "audit.db", "registry", "gw-a", false)
    })
    .await;
    let admin = Admin::new(&h).await?;
    for v in ["1", "2", "3"] {
        let r = admin.call("PUT", &format!("tag/{v}"), tagger(v)).await;
        ensure!(r.status == 201, "{}", r.text());
    }
    for v in ["1", "2", "3"] {
        let r = admin
            .call("POST", &format!("tag/{v}/activate"), String::new())
            .await;
        ensure!(r.status == 200, "{}", r.text());
    }
    for want in ["2", "1"] {
        let r = admin.call("POST", "tag/rollback", String::new()).await;
        ensure!(
            r.status == 200 && r.json()["version"] == want,
            "{}",
            r.text()
        );
    }
    let r = admin.call("POST", "tag/rollback", String::new()).await;
    ensure!(
        r.status == 409 && r.json()["error"] == "no_previous_version",
        "{}",
        r.text()
    );
    let r = admin.call("GET", "tag", String::new()).await;
    ensure!(r.status == 200, "{}", r.text());
    let steps: Vec<(String, String)> = r.json()["history"]
        .as_array()
        .context("history")?
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").into(),
                e["version"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("rollback", "1"),
        ("rollback", "2"),
        ("activate", "3"),
        ("activate", "2"),
        ("activate", "1"),
    ]
    .iter()
    .map(|(a, v)| (a.to_string(), v.to_string()))
    .collect();
    ensure!(steps == want, "{steps:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_is_logged_by_every_gateway_and_blocks_name_their_gateway() -> Result<()> {
    let a = start_with(|up, _| registry_config(up, "audit.db", "registry", "gw-a", false)).await;
    let shared = a.dir.path().to_path_buf();
    let admin = Admin::new(&a).await?;
    let r = admin.call("PUT", "tag/7", tagger("7")).await;
    ensure!(r.status == 201, "{}", r.text());
    let r = admin.call("POST", "tag/7/activate", String::new()).await;
    ensure!(r.status == 200, "{}", r.text());
    // A second gateway on the same database and registry, routes naming the module.
    let b = start_with(|up, _| {
        registry_config(
            up,
            &shared.join("audit.db").display().to_string(),
            &shared.join("registry").display().to_string(),
            "gw-b",
            true,
        )
    })
    .await;
    let r = admin.call("PUT", "tag/8", tagger("8")).await;
    ensure!(r.status == 201, "{}", r.text());
    let r = admin.call("POST", "tag/8/activate", String::new()).await;
    ensure!(r.status == 200, "{}", r.text());
    // B follows within its poll (2 s): it serves version 8 and says so.
    let mut served = String::new();
    for _ in 0..50 {
        let r = send(b.addr(), "GET", "/tagged", &[], "").await;
        served = r.json()["headers"]["x-module"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if served == "8" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(served == "8", "gateway B serves {served:?}");
    let applied = crate::support::log_text()
        .lines()
        .filter(|l| {
            l.contains("module version in service")
                && l.contains("\"version\":\"8\"")
                && l.contains("\"previous\":\"7\"")
        })
        .count();
    ensure!(
        applied == 2,
        "{applied} gateways logged the activation of 8"
    );
    // Each block names the gateway that wrote it.
    let blocks = crate::support::blocks(&shared.join("audit.db"));
    let by = |g: &str| blocks.iter().filter(|b| b["gateway"] == g).count();
    ensure!(by("gw-a") > 0 && by("gw-b") > 0, "{blocks:?}");
    ensure!(
        blocks
            .iter()
            .filter(|b| b["kind"] != "genesis")
            .all(|b| b["gateway"].is_string()),
        "a block without its gateway"
    );
    Ok(())
}

#[test]
fn the_quickstart_outside_the_repository_says_what_to_pass() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, _, err) = palisade(
        dir.path(),
        &[
            "quickstart",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--dir",
            "q",
        ],
        None,
    );
    ensure!(code == 1, "exit {code}: {err}");
    ensure!(err.contains("elsewhere pass --policies DIR"), "{err}");
    Ok(())
}

#[test]
fn the_quickstart_outside_the_repository_prints_a_verify_line_that_runs() -> Result<()> {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir()?;
    let workspace = std::path::Path::new(palisade_test_artifacts::WORKSPACE);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .current_dir(dir.path())
        .args([
            "quickstart",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--dir",
            "q",
            "--policies",
        ])
        .arg(workspace.join("target/policies"))
        .arg("--lua")
        .arg(workspace.join("policies/lua"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut verify_line = None;
    for line in std::io::BufReader::new(child.stdout.take().context("stdout")?).lines() {
        let line = line?;
        if line.starts_with("palisade verify") {
            verify_line = Some(line.clone());
        }
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait()?;
    let line = verify_line.context("no `palisade verify` line")?;
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    ensure!(args[..2] == ["verify", "--config"], "{line}");
    let (code, out, err) = palisade(dir.path(), &args, None);
    ensure!(code == 0 && out.contains("chain intact"), "{out}{err}");
    Ok(())
}

#[test]
fn verify_reads_the_ledger_and_checkpoints_the_config_names_and_speaks_json() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    checkpointed_ledger(d)?;
    std::fs::write(
        d.join("palisade.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[audit]\nsqlite = \"audit.db\"\ncheckpoint = \"checkpoints.jsonl\"\n",
    )?;
    let (code, out, err) = palisade(d, &["verify", "--format", "json"], None);
    ensure!(code == 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out)?;
    ensure!(
        report["intact"] == true && report["blocks"] == 2 && report["checkpoints"] == 1,
        "{report}"
    );
    // Without a config, a ledger must be named.
    std::fs::remove_file(d.join("palisade.toml"))?;
    let (code, _, err) = palisade(d, &["verify"], None);
    ensure!(
        code == 2 && err.contains("name the ledger with --config, --db or --postgres"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_routes_are_listed_with_the_module_versions_that_run() -> Result<()> {
    let h = start_with(|up, _| {
        registry_config(up, "audit.db", "registry", "gw-a", false).route(
            Route::new("plain")
                .path("/plain")
                .request("@INJECT_HEADERS"),
        )
    })
    .await;
    let admin = Admin::new(&h).await?;
    for v in ["1", "2"] {
        let r = admin.call("PUT", &format!("tag/{v}"), tagger(v)).await;
        ensure!(r.status == 201, "{}", r.text());
    }
    let r = admin.call("POST", "tag/1/activate", String::new()).await;
    ensure!(r.status == 200, "{}", r.text());
    let config = registry_config(h.upstream.addr, "audit.db", "registry", "gw-a", true).route(
        Route::new("plain")
            .path("/plain")
            .request("@INJECT_HEADERS"),
    );
    config.write(&h.config_path())?;
    h.running.reload()?;
    let url = format!("http://{}", h.running.admin_addr().context("admin")?);
    let cli = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--admin", &url]);
        crate::support::cli::palisade_env(
            h.dir.path(),
            &[("PALISADE_API_KEY", admin.key.as_ref())],
            &all,
            None,
        )
    };
    let (code, out, err) = cli(&["route", "list", "--tenant", "acme"]);
    ensure!(code == 0, "{err}");
    ensure!(
        out.contains("tagged  /tagged -> up  request=[tag@1]"),
        "{out}"
    );
    ensure!(
        out.contains("plain  /plain -> up  request=[inject-headers.wasm]"),
        "{out}"
    );
    let (code, out, err) = cli(&["route", "list", "--tenant", "acme", "--format", "json"]);
    ensure!(code == 0, "{err}");
    let routes: Value = serde_json::from_str(&out)?;
    ensure!(
        routes["routes"][0]["request"][0]["version"] == "1",
        "{routes}"
    );
    // A tenant's key sees its own tenant only; another tenant's routes are refused.
    let (code, out, err) = cli(&["tenant", "list"]);
    ensure!(code == 0 && out == "acme  routes=2\n", "{out}{err}");
    let (code, _, err) = cli(&["route", "list", "--tenant", "globex"]);
    ensure!(code == 1 && err.contains("403"), "{err}");
    // A dry run says what would change and changes nothing.
    let (code, out, err) = cli(&[
        "module",
        "activate",
        "tag",
        "2",
        "--tenant",
        "acme",
        "--dry-run",
    ]);
    ensure!(code == 0, "{err}");
    let plan: Value = serde_json::from_str(&out)?;
    ensure!(
        plan["active"] == "1" && plan["would_activate"] == "2",
        "{plan}"
    );
    let (code, out, err) = cli(&["module", "rollback", "tag", "--tenant", "acme", "--dry-run"]);
    ensure!(
        code == 1 && err.contains("no_previous_version"),
        "{out}{err}"
    );
    let r = send(h.addr(), "GET", "/tagged", &[], "").await;
    ensure!(r.json()["headers"]["x-module"] == "1", "{}", r.text());
    let (code, out, _) = cli(&[
        "module", "history", "tag", "--tenant", "acme", "--format", "json",
    ]);
    ensure!(code == 0, "{out}");
    let history: Value = serde_json::from_str(&out)?;
    ensure!(
        history["history"].as_array().map(Vec::len) == Some(1),
        "{history}"
    );
    Ok(())
}

#[test]
fn listings_speak_json_without_secrets() -> Result<()> {
    let dir = store_with_one_secret("present")?;
    let d = dir.path();
    let (code, out, err) = palisade(
        d,
        &["secret", "list", "--tenant", "acme", "--format", "json"],
        None,
    );
    ensure!(code == 0, "{err}");
    let list: Value = serde_json::from_str(&out)?;
    ensure!(
        list["secrets"][0]["id"] == "present" && !out.contains("value-1"),
        "{out}"
    );
    let (code, _, err) = palisade(
        d,
        &[
            "apikey",
            "create",
            "--file",
            "keys.json",
            "--tenant",
            "acme",
            "--roles",
            "service",
        ],
        None,
    );
    ensure!(code == 0, "{err}");
    let (code, out, err) = palisade(
        d,
        &["apikey", "list", "--file", "keys.json", "--format", "json"],
        None,
    );
    ensure!(code == 0, "{err}");
    let keys: Value = serde_json::from_str(&out)?;
    let key = &keys["keys"][0];
    ensure!(key["state"] == "active" && key["tenant"] == "acme", "{out}");
    let fields: Vec<&String> = key.as_object().context("an object")?.keys().collect();
    ensure!(
        fields
            == [
                "expires_ms",
                "id",
                "name",
                "roles",
                "scopes",
                "state",
                "tenant"
            ],
        "{fields:?}"
    );
    Ok(())
}

#[test]
fn a_master_rotation_dry_run_changes_nothing() -> Result<()> {
    let dir = store_with_one_secret("present")?;
    let d = dir.path();
    let new = master_key(d, "master-2.key")?;
    let (code, _, err) = palisade(
        d,
        &[
            "secret",
            "rotate-master",
            "--new-master",
            "master-2.key",
            "--dry-run",
        ],
        None,
    );
    ensure!(code == 0, "{err}");
    ensure!(
        err.contains(&format!(
            "1 data key(s) would be re-wrapped under master key {new}"
        )),
        "{err}"
    );
    // The old key is not retired and still opens the store.
    let (code, _, err) = palisade(
        d,
        &["secret", "verify", "--tenant", "acme", "present"],
        None,
    );
    ensure!(code == 0, "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_no_op_activation_leaves_the_active_version_alone() -> Result<()> {
    let h = start_with(|up, _| registry_config(up, "audit.db", "registry", "gw-a", false)).await;
    let admin = Admin::new(&h).await?;
    for v in ["1", "2"] {
        let r = admin.call("PUT", &format!("tag/{v}"), tagger(v)).await;
        ensure!(r.status == 201, "{}", r.text());
        let r = admin
            .call("POST", &format!("tag/{v}/activate"), String::new())
            .await;
        ensure!(r.status == 200, "{}", r.text());
    }
    // The routes can no longer be built (the API key file is damaged; the keys already
    // read stay in service), so any change is refused and reverted.
    std::fs::write(h.dir.path().join("apikeys.json"), "not a key file")?;
    let r = admin.call("POST", "tag/2/activate", String::new()).await;
    ensure!(
        r.status == 422 && r.json()["error"] == "routes_rejected",
        "{}",
        r.text()
    );
    // Re-activating the active version changed nothing, so nothing was reverted.
    let r = admin.call("GET", "", String::new()).await;
    let modules = r.json();
    let active: Vec<&str> = modules["modules"]
        .as_array()
        .context("modules")?
        .iter()
        .filter(|m| m["active"] == true)
        .filter_map(|m| m["version"].as_str())
        .collect();
    ensure!(active == ["2"], "{active:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_the_api_does_not_understand_is_refused_not_done() -> Result<()> {
    let h = start_with(|up, _| registry_config(up, "audit.db", "registry", "gw-a", false)).await;
    let admin = Admin::new(&h).await?;
    let r = admin.call("PUT", "tag/1", tagger("1")).await;
    ensure!(r.status == 201, "{}", r.text());
    for query in ["?dry_run", "?dry_run=yes", "?dry_run=True"] {
        let r = admin
            .call("POST", &format!("tag/1/activate{query}"), String::new())
            .await;
        ensure!(
            r.status == 400 && r.json()["error"] == "bad_dry_run",
            "{query}: {}",
            r.text()
        );
    }
    let r = admin
        .call("POST", "tag/1/activate?dry_run=1", String::new())
        .await;
    ensure!(
        r.status == 200 && r.json()["dry_run"] == true,
        "{}",
        r.text()
    );
    let r = admin.call("GET", "tag", String::new()).await;
    ensure!(
        r.json()["history"].as_array().map(Vec::len) == Some(0),
        "{}",
        r.text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_missing_secret_does_not_hold_back_an_activation() -> Result<()> {
    let h = start_with(|up, dir| {
        seed_store(dir);
        let config = registry_config(up, "audit.db", "registry", "gw-a", false)
            .append("secrets", "master_key = \"master.key\"")
            .route(
                Route::new("globex-out")
                    .tenant("globex")
                    .path("/g")
                    .keys(r#"upstream_auth = { bearer = "gx" }"#),
            );
        // globex's secret is there when the gateway starts.
        config.write(&dir.join("palisade.toml")).expect("written");
        let (code, _, err) = palisade(
            dir,
            &["secret", "put", "--tenant", "globex", "gx"],
            Some("v"),
        );
        assert_eq!(code, 0, "{err}");
        config
    })
    .await;
    let d = h.dir.path();
    // globex's secret goes while its route names it.
    let (code, _, err) = palisade(
        d,
        &["secret", "delete", "--tenant", "globex", "gx", "--force"],
        None,
    );
    ensure!(code == 0, "{err}");
    let admin = Admin::new(&h).await?;
    let r = admin.call("PUT", "tag/1", tagger("1")).await;
    ensure!(r.status == 201, "{}", r.text());
    let r = admin.call("POST", "tag/1/activate", String::new()).await;
    ensure!(r.status == 200, "{}", r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_would_drop_a_key_still_wrapping_data_keys_is_refused() -> Result<()> {
    let h = start_with(|up, dir| {
        seed_store(dir);
        secret_route(&up.to_string(), "present")
    })
    .await;
    let up = h.upstream.addr.to_string();
    let old = palisade(h.dir.path(), &["secret", "list", "--tenant", "acme"], None);
    ensure!(old.0 == 0);
    master_key(h.dir.path(), "master-2.key")?;
    // The new key current and the old one dropped before `rotate-master`.
    std::fs::write(
        h.config_path(),
        secret_route_with(&up, "present", "master_key = \"master-2.key\""),
    )?;
    let refused = h
        .running
        .reload()
        .err()
        .context("the reload must be refused")?;
    ensure!(
        refused.to_string().contains("which is not held here"),
        "{refused}"
    );
    let r = send(h.addr(), "GET", "/auth-digest", &[], "").await;
    ensure!(r.status == 200, "{}", r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_rotate_the_master_key_without_a_failed_request() -> Result<()> {
    // One data key per secret version: a version stored mid-rotation makes a new one.
    let secrets = |keys: &str, dir: &std::path::Path| {
        format!(
            "{keys}\ncache_ms = 0\nmax_uses_per_key = 1",
            keys = keys.replace("@", &format!("{}/", dir.display()))
        )
    };
    let a = start_with(|up, dir| {
        seed_store(dir);
        secret_route_with(
            &up.to_string(),
            "present",
            &secrets("master_key = \"@master.key\"", dir),
        )
    })
    .await;
    let shared = a.dir.path().to_path_buf();
    let b = start_with(|up, _| {
        secret_route_with(
            &up.to_string(),
            "present",
            &secrets("master_key = \"@master.key\"", &shared),
        )
        .replace(
            "sqlite = \"audit.db\"",
            &format!("sqlite = \"{}\"", shared.join("audit.db").display()),
        )
    })
    .await;
    let config = |h: &crate::support::Harness, keys: &str| -> Result<()> {
        let text = secret_route_with(
            &h.upstream.addr.to_string(),
            "present",
            &secrets(keys, &shared),
        );
        let text = if h.dir.path() == shared {
            text
        } else {
            text.replace(
                "sqlite = \"audit.db\"",
                &format!("sqlite = \"{}\"", shared.join("audit.db").display()),
            )
        };
        std::fs::write(h.config_path(), text)?;
        h.running.reload()?;
        Ok(())
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ta, tb) = (
        traffic(a.addr(), stop.clone()),
        traffic(b.addr(), stop.clone()),
    );
    master_key(&shared, "master-2.key")?;
    let put = |value: &str| {
        palisade(
            &shared,
            &["secret", "put", "--tenant", "acme", "present"],
            Some(value),
        )
    };
    // 2. Everyone holds the new key, as a previous one.
    for h in [&a, &b] {
        config(
            h,
            "master_key = \"@master.key\"\nprevious_master_keys = [\"@master-2.key\"]",
        )?;
    }
    // 3. A makes it current; a secret stored now gets a data key under it, which B,
    //    still on the old current key, reads already.
    config(
        &a,
        "master_key = \"@master-2.key\"\nprevious_master_keys = [\"@master.key\"]",
    )?;
    let (code, _, err) = put("value-2");
    ensure!(code == 0, "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    config(
        &b,
        "master_key = \"@master-2.key\"\nprevious_master_keys = [\"@master.key\"]",
    )?;
    // 4. Re-wrap and retire, once.
    let (code, _, err) = palisade(&shared, &["secret", "rotate-master"], None);
    ensure!(code == 0, "{err}");
    // 5. The old key leaves every config.
    for h in [&a, &b] {
        config(h, "master_key = \"@master-2.key\"")?;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (name, t) in [("A", ta), ("B", tb)] {
        let (sent, failed) = t.await?;
        ensure!(
            failed.is_empty(),
            "{name}: {} of {sent} failed: {:?}",
            failed.len(),
            failed.first()
        );
        ensure!(sent >= 10, "{name}: only {sent} requests");
    }
    Ok(())
}
