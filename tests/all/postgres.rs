//! The shared ledger on a real PostgreSQL server: append-only guards for the writer
//! role and the owner (catalogue 40), one chain from concurrent writers (43), and the
//! gateway and `palisade verify` against it.
//!
//! The server is started by the tests themselves: `initdb` + `postgres` from Debian's
//! `postgresql` package (installed with apt-get when missing and running as root, unless
//! `PALISADE_NO_APT` is set), in a temp dir, on a free loopback port.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_ledger::verify::verify;
use palisade_ledger::{Error, Ledger, Options, Record, Target, open_store, postgres_init};

use crate::support::cli::palisade_here;
use crate::support::{Config, Route};

struct Server {
    port: u16,
}

fn bin_dir() -> PathBuf {
    let find = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    palisade_test_artifacts::debian_packages(&["postgresql"], || find().is_some());
    find().expect("PostgreSQL is needed for these tests: apt-get install postgresql")
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("palisade-pg").tempdir().unwrap().keep();
        let root = Command::new("id").arg("-u").output().unwrap().stdout.starts_with(b"0\n");
        // initdb refuses to run as root: run the server as the package's own user.
        let as_user = |cmd: &mut Command| -> Command {
            if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(cmd.get_program()).args(cmd.get_args());
                c
            } else {
                let mut c = Command::new(cmd.get_program());
                c.args(cmd.get_args());
                c
            }
        };
        if root {
            assert!(Command::new("chown").args(["-R", "postgres"]).arg(&dir).status().unwrap().success());
        }
        let data = dir.join("data");
        let out = as_user(Command::new(bin.join("initdb")).args(["-A", "trust", "-U", "palisade_admin", "-D"]).arg(&data))
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The server stops when this test process ends, and its data dir (~100 MB) goes
        // with it.
        let script = format!(
            "{} -D {} -k {} -h 127.0.0.1 -p {port} -c fsync=off & pg=$!; while [ -d /proc/{} ]; do sleep 1; done; kill $pg; wait $pg; rm -rf {}",
            bin.join("postgres").display(),
            data.display(),
            dir.display(),
            std::process::id(),
            dir.display()
        );
        // The watcher outlives this process on purpose: it is what stops the server.
        #[allow(clippy::zombie_processes)]
        as_user(Command::new("sh").args(["-c", &script]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if postgres::Client::connect(&admin_url("postgres", port), postgres::NoTls).is_ok() {
                return Server { port };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not start");
    })
}

fn admin_url(db: &str, port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=palisade_admin dbname={db}")
}

/// A fresh database with the ledger schema and a writer role: (owner URL, writer URL).
pub(crate) fn database() -> (String, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let s = server();
    let name = format!(
        "ledger_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin =
        postgres::Client::connect(&admin_url("postgres", s.port), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE {name}_gw LOGIN"))
        .unwrap();
    let owner = admin_url(&name, s.port);
    postgres_init(&owner, &format!("{name}_gw")).unwrap();
    let writer = format!(
        "host=127.0.0.1 port={} user={name}_gw dbname={name}",
        s.port
    );
    (owner, writer)
}

fn record(i: usize) -> Record {
    Record {
        correlation_id: format!("pg-{i}"),
        decision: "allowed".into(),
        status: 200,
        ..Record::default()
    }
}

#[test]
fn item40_postgres_refuses_update_delete_truncate_and_trigger_tricks() {
    let (owner, writer) = database();
    let target = Target::Postgres(writer.clone());
    let ledger = Ledger::open(target.clone(), Options::default()).unwrap();
    ledger.append_blocking(record(1)).unwrap();
    ledger.close();

    let mut gw = open_store(&target, true).unwrap();
    for sql in [
        "UPDATE palisade_ledger SET record = '{}' WHERE seq = 1",
        "DELETE FROM palisade_ledger WHERE seq = 1",
        "TRUNCATE palisade_ledger",
        "DROP TRIGGER palisade_ledger_no_change ON palisade_ledger",
        "ALTER TABLE palisade_ledger DISABLE TRIGGER ALL",
        "DROP TABLE palisade_ledger",
    ] {
        assert!(
            gw.execute_unchecked(sql).is_err(),
            "writer role: {sql} was allowed"
        );
    }
    // A refused row's DETAIL ("Failing row contains (...)") quotes its values: the
    // error's message, which is what logs show, leaves it out; the cause stays.
    let e = gw
        .execute_unchecked(
            "INSERT INTO palisade_ledger (seq, record, prev, hash) \
             VALUES (99, '{\"path\":\"/users/jane.roe@example.com\"}', 'p', NULL)",
        )
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("jane.roe"),
        "the server quoted the row: {e:?}"
    );
    let shown = e.to_string();
    assert!(
        shown.contains("23502") && shown.contains("\"hash\""),
        "{shown}"
    );
    assert!(!shown.contains("jane.roe"), "{shown}");
    // Even the owner, even with replication-role tricks, hits the ENABLE ALWAYS triggers.
    let mut own = postgres::Client::connect(&owner, postgres::NoTls).unwrap();
    for sql in [
        "UPDATE palisade_ledger SET record = '{}' WHERE seq = 1",
        "DELETE FROM palisade_ledger",
        "TRUNCATE palisade_ledger",
        "SET session_replication_role = replica; UPDATE palisade_ledger SET record = '{}' WHERE seq = 1",
    ] {
        let e = own.batch_execute(sql).unwrap_err();
        assert!(
            format!("{e:?}").contains("append-only"),
            "owner: {sql}: {e:?}"
        );
        let _ = own.batch_execute("RESET session_replication_role");
    }
    assert!(verify(&target, None, None).unwrap().is_intact());

    // The gateway refuses to append as a role that could undo the guards.
    match open_store(&Target::Postgres(owner), true) {
        Err(Error::PrivilegedRole(role)) => assert_eq!(role, "palisade_admin"),
        other => panic!("expected PrivilegedRole, got {:?}", other.err()),
    }
}

#[test]
fn item43_concurrent_gateways_make_one_chain_without_fork_or_gap() {
    let (_, writer) = database();
    let target = Target::Postgres(writer);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let target = target.clone();
            std::thread::spawn(move || {
                let ledger = Ledger::open(target, Options::default()).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    let ledger = std::sync::Arc::new(ledger);
                    for i in 0..150 {
                        let l = ledger.clone();
                        tasks.spawn(async move { l.append(record(t * 1000 + i)).await });
                    }
                    while let Some(r) = tasks.join_next().await {
                        r.unwrap().unwrap();
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = verify(&target, None, None).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.blocks, 601);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_audits_to_postgres_and_verify_reads_it() -> anyhow::Result<()> {
    let (_, writer) = tokio::task::spawn_blocking(database).await?;
    let up = crate::support::upstream().await;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    Config::new(up.addr)
        .section("audit", &format!("postgres = \"{writer}\""))
        .route(Route::new("r").path("/"))
        .write(&path)?;
    let running = palisade_gateway::Gateway::from_file(&path)?.start().await?;
    for _ in 0..5 {
        assert_eq!(
            crate::support::get(running.proxy_addr(), "/q?token=abc")
                .await
                .status,
            200
        );
    }
    running.shutdown().await;
    let (code, stdout, stderr) = palisade_here(&["verify", "--postgres", &writer]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("6 blocks · chain intact"), "{stdout}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_the_registry_in_postgres() -> anyhow::Result<()> {
    let (_, writer) = tokio::task::spawn_blocking(database).await?;
    let up = crate::support::upstream().await;
    let shared = tempfile::tempdir()?;
    let registry_dir = shared.path().join("registry");
    let keys = shared.path().join("apikeys.json");
    let tagged = Route::new("tagged").path("/tagged").request("registry:tag");
    let config = Config::new(up.addr)
        .section("audit", &format!("postgres = \"{writer}\""))
        .section(
            "registry",
            &format!("dir = {:?}", registry_dir.display().to_string()),
        )
        .section(
            "auth",
            &format!("api_keys = {:?}", keys.display().to_string()),
        );
    let mut gateways = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("palisade.toml");
        config.write(&path)?;
        let running = palisade_gateway::Gateway::from_file(&path)?.start().await?;
        gateways.push(running);
        dirs.push((dir, path));
    }
    let new = palisade_gateway::auth::apikey::generate(
        Some("acme".into()),
        None,
        vec![],
        vec!["tenant-admin".into()],
        None,
    );
    let entry = new.entry.clone();
    palisade_gateway::auth::apikey::update(&keys, |f| {
        f.keys.push(entry);
        Ok(())
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let admin = gateways[0].admin_addr().unwrap();
    let put = |version: &'static str, tag: &'static str| {
        let key = new.key.clone();
        async move {
            let body = format!(
                "function on_request(req, ctx)\n  req.headers[\"x-module\"] = \"{tag}\"\n  return req\nend\n"
            );
            let r = crate::support::send(
                admin,
                "PUT",
                &format!("/v1/tenants/acme/modules/tag/{version}"),
                &[("x-api-key", key.as_str())],
                body,
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text());
            let r = crate::support::send(
                admin,
                "POST",
                &format!("/v1/tenants/acme/modules/tag/{version}/activate"),
                &[("x-api-key", key.as_str())],
                bytes::Bytes::new(),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    put("1", "v1").await;
    for (g, (_, path)) in gateways.iter().zip(&dirs) {
        config.clone().route(tagged.clone()).write(path)?;
        g.reload().unwrap_or_else(|e| panic!("{e}"));
    }
    let tag_of = |addr| async move {
        let r = crate::support::get(addr, "/tagged").await;
        r.json()["headers"]["x-module"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(tag_of(gateways[1].proxy_addr()).await, "v1");
    // Activated through the first gateway; the second follows within seconds.
    put("2", "v2").await;
    assert_eq!(tag_of(gateways[0].proxy_addr()).await, "v2");
    let mut seen = String::new();
    for _ in 0..50 {
        seen = tag_of(gateways[1].proxy_addr()).await;
        if seen == "v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "v2");
    for g in gateways {
        g.shutdown().await;
    }
    // The metadata is in PostgreSQL.
    let rows = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&writer, postgres::NoTls).unwrap();
        c.query(
            "SELECT version FROM palisade_registry_versions WHERE tenant = 'acme' ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
    })
    .await?;
    assert_eq!(rows, ["1", "2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_live_in_postgres_when_the_ledger_does() -> anyhow::Result<()> {
    let (_, writer) = tokio::task::spawn_blocking(database).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    let master = dir.path().join("master.key");
    palisade_gateway::secrets::FileMasterKey::generate(&master)?;
    Config::new("127.0.0.1:1".parse()?)
        .section("audit", &format!("postgres = \"{writer}\""))
        .section(
            "secrets",
            &format!("master_key = {:?}", master.display().to_string()),
        )
        .write(&path)?;
    let w = writer.clone();
    tokio::task::spawn_blocking(move || {
        let file = palisade_gateway::config::load(&path).unwrap();
        let store = palisade_gateway::secrets::SecretStore::from_file(&file)
            .unwrap()
            .unwrap();
        assert_eq!(store.put("acme", "token", b"pg-s3cr3t").unwrap(), 1);
        assert_eq!(store.put("acme", "token", b"pg-s3cr3t-2").unwrap(), 2);
        assert_eq!(store.get("acme", "token").unwrap().expose(), b"pg-s3cr3t-2");
        assert_eq!(store.rotate("acme").unwrap(), 2);
        let list = store.list("acme").unwrap();
        assert_eq!((list[0].version, list[0].key_version), (2, 1));
        // Only ciphertext in the database.
        let mut c = postgres::Client::connect(&w, postgres::NoTls).unwrap();
        let sealed: Vec<String> = c
            .query("SELECT sealed FROM palisade_secrets", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(sealed.len(), 2);
        assert!(sealed.iter().all(|s| !s.contains("pg-s3cr3t")));
    })
    .await?;
    Ok(())
}

/// Turns TLS on on the shared server with a certificate for `db.test` issued by a fresh
/// CA; returns the CA's PEM file. Clients that do not ask for TLS are not affected.
fn tls_on(dir: &std::path::Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    static CA: OnceLock<PathBuf> = OnceLock::new();
    CA.get_or_init(|| {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "ledger test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["db.test".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let keep = dir.to_path_buf();
        let (cert, key, ca_pem) = (
            keep.join("server.crt"),
            keep.join("server.key"),
            keep.join("ca.pem"),
        );
        std::fs::write(&cert, leaf.pem()).unwrap();
        std::fs::write(&key, server_key.serialize_pem()).unwrap();
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        // The server runs as `postgres` when the tests run as root: it must read them.
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&keep)
            .status();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&keep, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut admin =
            postgres::Client::connect(&admin_url("postgres", server().port), postgres::NoTls)
                .unwrap();
        // ALTER SYSTEM runs outside a transaction: one statement at a time.
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            "ALTER SYSTEM SET ssl = on".to_string(),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            admin.batch_execute(&sql).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        ca_pem
    })
    .clone()
}

#[test]
fn tls_to_postgresql_is_verified_and_a_failure_says_what_failed() {
    let dir = tempfile::Builder::new()
        .prefix("palisade-pg-tls")
        .tempdir()
        .unwrap()
        .keep();
    let ca = tls_on(&dir);
    let s = server();
    let name = format!("ledger_tls_{}", std::process::id());
    let mut admin =
        postgres::Client::connect(&admin_url("postgres", s.port), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE {name}_gw LOGIN"))
        .unwrap();
    let init = |url: &str, ca: Option<&std::path::Path>| {
        let envs: Vec<(&str, &std::ffi::OsStr)> = ca
            .map(|c| ("PGSSLROOTCERT", c.as_os_str()))
            .into_iter()
            .collect();
        crate::support::cli::palisade_env(
            &dir,
            &envs,
            &[
                "ledger",
                "init",
                "--postgres",
                url,
                "--writer",
                &format!("{name}_gw"),
            ],
            None,
        )
    };
    let by_name = format!(
        "host=db.test hostaddr=127.0.0.1 port={} user=palisade_admin dbname={name} sslmode=require",
        s.port
    );
    let by_address = format!(
        "host=127.0.0.1 port={} user=palisade_admin dbname={name} sslmode=require",
        s.port
    );
    // Not a CA this machine trusts.
    let (code, _, err) = init(&by_name, None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("TLS certificate: not signed by a trusted CA"),
        "{err}"
    );
    // The CA, but the address is not the name on the certificate.
    let (code, _, err) = init(&by_address, Some(&ca));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("TLS certificate: it does not name the host"),
        "{err}"
    );
    // The CA and the name: the ledger is set up over TLS, and a writer appends over it.
    let (code, out, err) = init(&by_name, Some(&ca));
    assert_eq!(code, 0, "{out}{err}");
    // sslmode=require never falls back to the clear: the writer reads it over TLS too.
    let writer = by_name.replace("palisade_admin", &format!("{name}_gw"));
    let (code, out, err) = crate::support::cli::palisade_env(
        &dir,
        &[("PGSSLROOTCERT", ca.as_os_str())],
        &["verify", "--postgres", &writer],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("chain intact"), "{out}");
    // Without the CA, the same refusal as before: nothing is read in the clear.
    let (code, _, err) =
        crate::support::cli::palisade_env(&dir, &[], &["verify", "--postgres", &writer], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("TLS certificate: not signed by a trusted CA"),
        "{err}"
    );
}

#[test]
fn ledger_init_refuses_a_writer_that_could_undo_the_guards() {
    let s = server();
    let name = format!("ledger_su_{}", std::process::id());
    let mut admin =
        postgres::Client::connect(&admin_url("postgres", s.port), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE {name}_su LOGIN SUPERUSER"))
        .unwrap();
    let owner = admin_url(&name, s.port);
    let (code, _, err) = palisade_here(&[
        "ledger",
        "init",
        "--postgres",
        &owner,
        "--writer",
        &format!("{name}_su"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("`{name}_su`")) && err.contains("superuser"),
        "{err}"
    );
    let (code, _, err) = palisade_here(&[
        "ledger",
        "init",
        "--postgres",
        &owner,
        "--writer",
        "nobody_here",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    // Nothing was created.
    let mut db = postgres::Client::connect(&owner, postgres::NoTls).unwrap();
    let tables: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'palisade_%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}
