//! A fleet of gateways sharing limits through a real Redis (`[fleet]`): two gateways
//! admit one tenant's limit once, not twice; Redis stopped mid-run puts them in degraded
//! mode (each with its share, logged and counted, no request failing because of it);
//! Redis back, shared counting resumes. Redis asks for an ACL user's password, which
//! one gateway reads from its secret store and the other from a file.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::support::cli::palisade;
use crate::support::{Config, Harness, Route, log_text, send, start_with};

const PASSWORD: &str = "fleet-redis-pw-5b1d";

/// A `redis-server` on a loopback port of its own, with only the `palisade` ACL user.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// TLS only, with this certificate and key (PEM).
    tls: Option<(String, String)>,
}

impl Redis {
    fn start() -> Self {
        Self::start_with(None)
    }

    fn start_with(tls: Option<(String, String)>) -> Self {
        let installed = palisade_test_artifacts::debian_packages(&["redis-server"], || {
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok()
        });
        assert!(
            installed,
            "these tests need redis-server: apt-get install redis-server"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            tls,
        };
        redis.up();
        redis
    }

    fn up(&mut self) {
        let user_pw = format!(">{PASSWORD}");
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some((cert, key)) => {
                let d = self.dir.path();
                std::fs::write(d.join("cert.pem"), cert).unwrap();
                std::fs::write(d.join("key.pem"), key).unwrap();
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .args(["--tls-auth-clients", "no", "--tls-cert-file"])
                    .arg(d.join("cert.pem"))
                    .arg("--tls-key-file")
                    .arg(d.join("key.pem"))
                    .arg("--tls-ca-cert-file")
                    .arg(d.join("cert.pem"))
            }
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(["--user", "default", "off"])
            // The ACL docs/operations.md recommends: its keys and the commands it uses.
            .args(["--user", "palisade", "on", &user_pw, "~palisade:*"])
            .args(["+@scripting", "+ping", "+get", "+set", "+time"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `key` exists (what a gateway's background send writes).
    fn wait_for_key(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = Command::new("redis-cli")
                .args([
                    "-p",
                    &self.port.to_string(),
                    "--user",
                    "palisade",
                    "--pass",
                    PASSWORD,
                ])
                .args(["--no-auth-warning", "GET", key])
                .output()
                .expect("redis-cli");
            // A number (the bucket's arrival time) once written; empty before.
            if String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "{key} never written");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// A gateway in a fleet of two, with tenant `acme` limited to a burst of 10 at 1/s and
/// tenant `burner` to 2,000 fuel/s (less than one request
/// of `/burn` burns); `password` is where the Redis password comes from.
async fn gateway(port: u16, password: &'static str) -> Harness {
    gateway_at(
        &format!("redis://127.0.0.1:{port}/0"),
        password,
        None,
        PROMPT,
    )
    .await
}

/// Health checks every 100 ms, and a generous timeout: a loaded test machine must not
/// look like a Redis outage (a killed server is noticed at once, by its closed
/// connection).
const PROMPT: &str = "probe_ms = 100\ntimeout_ms = 2000";

/// [`gateway`] with Redis at `url`, trusting the CA certificate `ca` (PEM) if given,
/// with `timing` (`probe_ms`, `timeout_ms`).
async fn gateway_at(
    url: &str,
    password: &'static str,
    ca: Option<String>,
    timing: &'static str,
) -> Harness {
    let url = url.to_string();
    start_with(move |up: SocketAddr, dir: &Path| {
        let mut redis = format!("url = \"{url}\"\nusername = \"palisade\"\n{timing}\n{password}\n");
        if let Some(ca) = ca {
            std::fs::write(dir.join("redis-ca.pem"), ca).unwrap();
            redis.push_str("ca = \"redis-ca.pem\"\n");
        }
        let config = Config::new(up)
            .section("fleet", "size = 2")
            .section("fleet.redis", &redis)
            .section("secrets", "master_key = \"master.key\"")
            .tenant("ops", "")
            .tenant("acme", "rate_limit = { per_s = 1, burst = 10 }")
            .tenant("burner", "fuel_per_s = 2000")
            .route(Route::new("acme").path("/acme"))
            .route(
                Route::new("burner")
                    .tenant("burner")
                    .path("/burn")
                    .request_with("@MISBEHAVE", r#"fuel = 100000, fail = "open""#),
            );
        // The secret store must hold the password before the gateway starts.
        std::fs::write(dir.join("palisade.toml"), config.to_string()).unwrap();
        std::fs::write(dir.join("redis.pw"), format!("{PASSWORD}\n")).unwrap();
        let (code, _, err) = palisade(dir, &["keygen", "--master", "--out", "master.key"], None);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = palisade(
            dir,
            &["secret", "put", "--tenant", "ops", "redis"],
            Some(&format!("{PASSWORD}\n")),
        );
        assert_eq!(code, 0, "{err}");
        config
    })
    .await
}

const FROM_STORE: &str = "password = { tenant = \"ops\", secret = \"redis\" }";
const FROM_FILE: &str = "password_file = \"redis.pw\"";

/// The value of an unlabelled metric line, or of the first line starting with `name`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

async fn wait_for_redis_up(h: &Harness, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = h.metrics().await;
        if metric(&m, "palisade_fleet_redis_up") == f64::from(u8::from(up)) {
            return;
        }
        assert!(Instant::now() < deadline, "fleet_redis_up never {up}:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `n` requests one after the other: how many were admitted, and every status
/// and error code.
async fn burst(h: &Harness, path: &str, n: usize) -> (usize, Vec<(u16, String)>) {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        let error = if r.status == 200 {
            String::new()
        } else {
            r.json()["error"].as_str().unwrap_or_default().to_string()
        };
        out.push((r.status, error));
    }
    (out.iter().filter(|(s, _)| *s == 200).count(), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_limit_degrade_without_redis_and_recover() {
    let mut redis = Redis::start();
    let a = gateway(redis.port, FROM_STORE).await;
    let b = gateway(redis.port, FROM_FILE).await;
    wait_for_redis_up(&a, true).await;
    wait_for_redis_up(&b, true).await;

    // Shared: A spends the whole fleet's burst of 10 (not its half), and B finds the
    // bucket empty (but for one refill per second the test took).
    let started = Instant::now();
    let (on_a, statuses_a) = burst(&a, "/acme", 12).await;
    let (on_b, statuses_b) = burst(&b, "/acme", 5).await;
    let refills = started.elapsed().as_secs() as usize + 1;
    assert!(on_a >= 10, "A admitted {on_a}: {statuses_a:?}");
    assert!(
        on_a + on_b <= 10 + refills,
        "the fleet admitted {on_a} + {on_b}: {statuses_a:?} {statuses_b:?}"
    );
    for (s, e) in statuses_a
        .iter()
        .chain(&statuses_b)
        .filter(|(s, _)| *s != 200)
    {
        assert_eq!((*s, e.as_str()), (429, "tenant_rate_limited"));
    }

    // A fuel budget is the fleet's too: A's one expensive request puts the tenant in
    // debt, and B refuses the tenant's next one.
    let r = send(a.addr(), "GET", "/burn", &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    redis.wait_for_key("palisade:{t:burner}:fuel");
    let r = send(b.addr(), "GET", "/burn", &[], Bytes::new()).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"], "tenant_cpu_budget");

    // Redis gone: each gateway decides alone with half of the limit; nothing fails.
    redis.down();
    // Both notice, the idle one too (a health check every probe_ms).
    wait_for_redis_up(&a, false).await;
    wait_for_redis_up(&b, false).await;
    let started = Instant::now();
    let (alone, statuses) = burst(&a, "/acme", 12).await;
    let refills = started.elapsed().as_secs() as usize + 1;
    assert!(
        statuses.iter().all(|(s, _)| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        (5..=5 + refills).contains(&alone),
        "alone: {alone}: {statuses:?}"
    );
    let m = a.metrics().await;
    assert!(
        metric(
            &m,
            "palisade_fleet_local_decisions_total{limit=\"tenant_rate_limited\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "palisade_fleet_redis_errors_total") >= 1.0,
        "{m}"
    );
    let m = b.metrics().await;
    assert!(
        metric(&m, "palisade_fleet_redis_errors_total") >= 1.0,
        "{m}"
    );
    assert!(log_text().contains("fleet: Redis unreachable"));

    // Redis back (empty): both reconnect by themselves and the bucket is shared again.
    redis.up();
    wait_for_redis_up(&a, true).await;
    wait_for_redis_up(&b, true).await;
    assert!(log_text().contains("fleet: Redis reachable again"));
    let started = Instant::now();
    let (on_b, statuses_b) = burst(&b, "/acme", 12).await;
    let (on_a, statuses_a) = burst(&a, "/acme", 5).await;
    let refills = started.elapsed().as_secs() as usize + 1;
    assert!(on_b >= 10, "B admitted {on_b}: {statuses_b:?}");
    assert!(on_a + on_b <= 10 + refills, "{statuses_a:?} {statuses_b:?}");
    // The password never reaches the log.
    assert!(!log_text().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_is_verified_against_the_configured_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let redis = Redis::start_with(Some((cert.cert.pem(), cert.signing_key.serialize_pem())));
    let url = format!("rediss://localhost:{}/0", redis.port);
    let trusted = gateway_at(&url, FROM_FILE, Some(cert.cert.pem()), PROMPT).await;
    wait_for_redis_up(&trusted, true).await;
    let (admitted, statuses) = burst(&trusted, "/acme", 12).await;
    assert!(admitted >= 10, "{statuses:?}");
    // The system's roots do not know this server: never connected, limits per gateway,
    // and requests are still served.
    let stranger = gateway_at(&url, FROM_FILE, None, PROMPT).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(
        &stranger.metrics().await,
        "palisade_fleet_redis_errors_total",
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the untrusted server was never refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_redis_up(&stranger, false).await;
    let started = Instant::now();
    let (admitted, statuses) = burst(&stranger, "/acme", 12).await;
    let refills = started.elapsed().as_secs() as usize + 1;
    assert!((5..=5 + refills).contains(&admitted), "{statuses:?}");
    let m = stranger.metrics().await;
    assert!(
        metric(&m, "palisade_fleet_redis_errors_total") >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_hangs_mid_request_never_fails_a_request() {
    let redis = Redis::start();
    // No health check within the test: only requests can notice.
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let h = gateway_at(&url, FROM_FILE, None, "probe_ms = 60000\ntimeout_ms = 300").await;
    wait_for_redis_up(&h, true).await;
    let pid = redis.child.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The first request waits out the timeout, then is decided locally; the next ones
    // do not wait at all (the connection is dropped).
    let (admitted, statuses) = burst(&h, "/acme", 4).await;
    assert_eq!(admitted, 4, "{statuses:?}");
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let m = h.metrics().await;
    assert!(
        metric(&m, "palisade_fleet_redis_errors_total{kind=\"timeout\"}") >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "palisade_fleet_local_decisions_total{limit=\"tenant_rate_limited\"}"
        ) >= 4.0,
        "{m}"
    );
    assert!(metric(&m, "palisade_fleet_redis_up") == 0.0, "{m}");
}

#[tokio::test]
async fn a_bad_fleet_section_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new("127.0.0.1:1".parse().unwrap())
        .section("fleet", "size = 0")
        .section(
            "fleet.redis",
            "url = \"redis://:hunter2@127.0.0.1:6379\"\npassword_file = \"x\"\nca = \"ca.pem\"",
        );
    std::fs::write(dir.path().join("palisade.toml"), config.to_string()).unwrap();
    let (code, out, err) = palisade(dir.path(), &["check-config", "--offline"], None);
    assert_eq!(code, 2, "{out}{err}");
    let text = format!("{out}{err}");
    for expected in [
        "palisade.toml:12:1: [fleet]: must be at least 1",
        "[fleet.redis]: holds a password",
        "[fleet.redis]: needs a rediss:// URL",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
}
