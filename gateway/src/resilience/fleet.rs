//! Fleet-wide limits on Redis (`[fleet]`; `docs/operations.md`).
//!
//! Tenant and route rate limits and tenant CPU (fuel) budgets are counted in Redis, so N
//! gateways naming one Redis and one `key_prefix` admit a tenant's limit once, not N
//! times. Each decision that needs Redis is one Lua script run, atomic on the server and
//! timed by the server's clock (gateways' clocks need not agree):
//!
//! - rate limits are GCRA (the same token bucket as the per-process limiter): the key
//!   holds the theoretical arrival time; a call takes up to `want` tokens at once;
//! - fuel budgets are the same arithmetic with a cost per unit of fuel: charges push the
//!   arrival time out, and a tenant is refused while it is more than one second ahead.
//!
//! The common case costs no round trip: a rate limit takes a lease of several tokens per
//! call and spends it locally for at most `lease_ms` (tokens left over expire unused: a
//! fleet may admit less than its limit, never more); fuel charges are added up locally
//! and sent with the next check once they pass a share of the budget or `lease_ms`
//! passed.
//!
//! Keys are `PREFIX:{t:TENANT}:rate`, `PREFIX:{r:ROUTE}:rate`, `PREFIX:{t:TENANT}:fuel`:
//! one key per script, each in its own hash slot (a Redis Cluster-compatible layout). The
//! client talks to one server: a standalone primary, or a cluster proxy; a `MOVED`,
//! `READONLY` (after a failover) or `LOADING` answer counts as Redis being unreachable and
//! the connection is made again.
//!
//! When Redis is unreachable (a refused connection, an I/O error, no answer within
//! `timeout_ms`) the gateway decides alone with each limit divided by `size`, logs one
//! warning, sets `palisade_fleet_redis_up` to 0 and counts local decisions; a
//! background task reconnects every `probe_ms` and shared counting resumes by itself. No
//! request fails because Redis did.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, Script};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::de::millis;
use crate::metrics::Metrics;

/// `[fleet]`: the gateways that share limits, and the Redis they share them in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How many gateways share the limits. While Redis is unreachable each gateway
    /// admits `1/size` of every shared limit on its own. By default 1.
    #[serde(default = "d::size")]
    pub size: u32,
    /// Most tokens one round trip takes for local spending (`lease`); the lease is also
    /// at most a quarter of a gateway's share of the bucket. By default 16.
    #[serde(default = "d::lease")]
    pub lease: u32,
    /// How long leased tokens and a fetched fuel balance stay good (`lease_ms`). By
    /// default 200 ms.
    #[serde(
        rename = "lease_ms",
        default = "d::lease_ttl",
        deserialize_with = "millis"
    )]
    pub lease_ttl: Duration,
    /// The Redis server.
    pub redis: Redis,
}

/// `[fleet.redis]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `redis://HOST:PORT/DB`, or `rediss://` for TLS. No password in the URL: it comes
    /// from `password` or `password_file`.
    pub url: String,
    /// The ACL user. By default Redis' `default` user.
    pub username: Option<String>,
    /// The password, from the secret store: `{ tenant = "ops", secret = "redis" }`.
    pub password: Option<SecretRef>,
    /// The password, from a file (its first line).
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates for `rediss://` (by default the system's roots).
    pub ca: Option<PathBuf>,
    /// How long one call may take before Redis counts as unreachable (`timeout_ms`). By
    /// default 50 ms.
    #[serde(
        rename = "timeout_ms",
        default = "d::timeout",
        deserialize_with = "millis"
    )]
    pub timeout: Duration,
    /// How often an unreachable Redis is tried again (`probe_ms`). By default 1 s.
    #[serde(rename = "probe_ms", default = "d::probe", deserialize_with = "millis")]
    pub probe: Duration,
    /// What every key starts with; gateways share limits when they share it. By default
    /// `palisade`.
    #[serde(default = "d::prefix")]
    pub key_prefix: String,
}

/// A secret in the secret store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The tenant (namespace) that holds it.
    pub tenant: String,
    /// Its id.
    pub secret: String,
}

impl Config {
    pub(crate) fn rebase(&mut self, base: &Path) {
        for p in [&mut self.redis.password_file, &mut self.redis.ca]
            .into_iter()
            .flatten()
        {
            *p = base.join(&*p);
        }
    }

    /// What is wrong with it, as `(key, message)`.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=1024).contains(&self.size) {
            out.push((
                "fleet.size",
                "must be at least 1 (and at most 1,024)".into(),
            ));
        }
        if !(1..=10_000).contains(&self.lease) {
            out.push(("fleet.lease", "must be 1-10,000".into()));
        }
        if self.lease_ttl.is_zero() || self.lease_ttl > Duration::from_secs(10) {
            out.push(("fleet.lease_ms", "must be 1-10,000".into()));
        }
        let r = &self.redis;
        match r.url.as_str().into_connection_info() {
            Err(_) => out.push(("fleet.redis.url", "not a redis:// or rediss:// URL".into())),
            Ok(info) if info.redis_settings().password().is_some() => out.push((
                "fleet.redis.url",
                "holds a password: put it in the secret store (`password`) or a file \
                 (`password_file`)"
                    .into(),
            )),
            Ok(_) => {}
        }
        if !(r.url.starts_with("redis://") || r.url.starts_with("rediss://")) {
            out.push((
                "fleet.redis.url",
                "must start with redis:// or rediss://".into(),
            ));
        }
        if r.ca.is_some() && !r.url.starts_with("rediss://") {
            out.push(("fleet.redis.ca", "needs a rediss:// URL".into()));
        }
        if r.password.is_some() && r.password_file.is_some() {
            out.push((
                "fleet.redis.password",
                "`password` and `password_file` exclude each other".into(),
            ));
        }
        if r.url.contains('#') {
            out.push((
                "fleet.redis.url",
                "no fragment (`#insecure` would turn certificate checks off)".into(),
            ));
        }
        if r.timeout.is_zero() || r.timeout > Duration::from_secs(10) {
            out.push(("fleet.redis.timeout_ms", "must be 1-10,000".into()));
        }
        if r.probe < Duration::from_millis(10) || r.probe > Duration::from_secs(60) {
            out.push(("fleet.redis.probe_ms", "must be 10-60,000".into()));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || "_.-:".contains(c);
        if r.key_prefix.is_empty() || r.key_prefix.len() > 64 || !r.key_prefix.chars().all(ok) {
            out.push((
                "fleet.redis.key_prefix",
                "must be 1-64 of [A-Za-z0-9_.:-]".into(),
            ));
        }
        out
    }
}

/// The fleet `file` names, if any, with its Redis password read from the secret store
/// or its file.
///
/// # Errors
///
/// The password or CA that cannot be read, as issues of `file`.
pub(crate) fn from_file(
    file: &crate::config::File,
    secrets: Option<&crate::secrets::SecretStore>,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<Fleet>>, Vec<crate::config::Issue>> {
    use crate::config::Problem;
    let Some(cfg) = &file.fleet else {
        return Ok(None);
    };
    let fail = |key: &str, message: String| file.issues(vec![Problem::key(key, message)]);
    let password = match (&cfg.redis.password, &cfg.redis.password_file) {
        (Some(r), _) => {
            let store = secrets.ok_or_else(|| {
                fail(
                    "fleet.redis.password",
                    "names a secret but there is no [secrets] section".into(),
                )
            })?;
            let value = store.get(&r.tenant, &r.secret).map_err(|e| {
                fail(
                    "fleet.redis.password",
                    format!("secret {:?} of {:?}: {e}", r.secret, r.tenant),
                )
            })?;
            let text = std::str::from_utf8(value.expose())
                .map_err(|_| fail("fleet.redis.password", "the secret is not UTF-8".into()))?;
            Some(zeroize::Zeroizing::new(
                text.trim_end_matches(['\r', '\n']).to_string(),
            ))
        }
        (None, Some(path)) => {
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                fail(
                    "fleet.redis.password_file",
                    format!("{}: {e}", path.display()),
                )
            })?);
            Some(zeroize::Zeroizing::new(
                text.lines().next().unwrap_or_default().to_string(),
            ))
        }
        (None, None) => None,
    };
    Fleet::new(
        cfg,
        password.as_deref().map(String::as_str),
        metrics.clone(),
    )
    .map(Some)
    .map_err(|e| fail("fleet.redis", e))
}

/// GCRA over `want` tokens: KEYS[1] the arrival time (µs, Redis' clock); ARGV the
/// emission interval (µs per token), the burst, the tokens wanted. Returns {granted,
/// µs until one is there}.
const RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((now + burst * interval - tat) / interval)
if room < want then want = room end
if want <= 0 then
  return {0, math.ceil(tat + interval - burst * interval - now)}
end
tat = math.ceil(tat + want * interval)
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {want, 0}
";

/// A fuel budget: KEYS[1] the arrival time (µs); ARGV µs per unit of fuel, fuel to
/// charge. Returns µs until the balance is positive again (0: it is).
const FUEL: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local add = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if add > 0 then
  tat = math.ceil(tat + add * interval)
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local ahead = tat - now - 1000000
if ahead < 0 then return 0 end
return math.ceil(ahead) + 1000
";

/// The shared Redis of a fleet: a multiplexed connection, reconnected by a background
/// task, and whether limits are shared right now.
pub(crate) struct Fleet {
    client: Client,
    /// The connection in use, with its generation (a failure of an older one does not
    /// drop it).
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    /// Whether the unreachable state was announced (a warning, the gauge at 0).
    down: AtomicBool,
    /// Whether a refused script was announced (once until one succeeds again).
    refusing: AtomicBool,
    supervised: AtomicBool,
    wake: Arc<Notify>,
    pub(crate) size: u32,
    lease: u32,
    pub(crate) lease_ttl: Duration,
    timeout: Duration,
    probe: Duration,
    prefix: String,
    rate: Script,
    fuel: Script,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// A fleet from `cfg` (checked) with the Redis password, if any. Connects in the
    /// background once a Tokio runtime runs it.
    ///
    /// # Errors
    ///
    /// Why the Redis client cannot be made (a CA file that cannot be read).
    pub(crate) fn new(
        cfg: &Config,
        password: Option<&str>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, String> {
        let r = &cfg.redis;
        let mut info = r
            .url
            .as_str()
            .into_connection_info()
            .map_err(|_| "fleet.redis.url: not a redis:// URL".to_string())?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &r.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
        let client = match &r.ca {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("fleet.redis.ca: {}: {e}", ca.display()))?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                Client::build_with_tls(info, certs)
            }
            None => Client::open(info),
        }
        .map_err(|e| format!("fleet.redis: {}", e.category()))?;
        metrics.fleet_redis_up(false);
        let fleet = Arc::new(Fleet {
            client,
            conn: Mutex::new(None),
            generation: AtomicU64::new(0),
            down: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            supervised: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            size: cfg.size.max(1),
            lease: cfg.lease.max(1),
            lease_ttl: cfg.lease_ttl,
            timeout: r.timeout,
            probe: r.probe,
            prefix: r.key_prefix.clone(),
            rate: Script::new(RATE),
            fuel: Script::new(FUEL),
            metrics,
        });
        fleet.supervise();
        Ok(fleet)
    }

    /// Starts the connecting task, once, if a Tokio runtime is there to run it.
    fn supervise(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.supervised.swap(true, Ordering::AcqRel) {
            runtime.spawn(supervise(Arc::downgrade(self), self.wake.clone()));
        }
    }

    /// The key of a tenant's (`t`) or route's (`r`) `what` (`rate`, `fuel`).
    pub(crate) fn key(&self, scope: char, name: &str, what: &str) -> String {
        format!("{}:{{{scope}:{name}}}:{what}", self.prefix)
    }

    /// Tokens a rate limit of `burst` takes per round trip.
    pub(crate) fn want(&self, burst: u32) -> u32 {
        (burst / (4 * self.size)).clamp(1, self.lease)
    }

    /// Takes up to `want` tokens: `(granted, wait)`, or `None` when Redis could not say
    /// (decide locally).
    pub(crate) async fn take(
        self: &Arc<Self>,
        key: &str,
        interval_us: f64,
        burst: u32,
        want: u32,
    ) -> Option<(u32, Duration)> {
        let mut call = self.rate.key(key);
        call.arg(interval_us).arg(burst).arg(want);
        let (granted, wait): (i64, i64) = self.run(&call).await?;
        Some((
            u32::try_from(granted).unwrap_or(0),
            Duration::from_micros(wait.max(0) as u64),
        ))
    }

    /// Charges `fuel` and reads how long until the balance is positive, or `None`.
    pub(crate) async fn fuel(
        self: &Arc<Self>,
        key: &str,
        interval_us: f64,
        fuel: u64,
    ) -> Option<Duration> {
        let mut call = self.fuel.key(key);
        call.arg(interval_us).arg(fuel);
        let wait: i64 = self.run(&call).await?;
        Some(Duration::from_micros(wait.max(0) as u64))
    }

    async fn run<T: redis::FromRedisValue>(
        self: &Arc<Self>,
        call: &redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        self.supervise();
        let (generation, mut conn) = self.conn.lock().expect("fleet lock").clone()?;
        match tokio::time::timeout(self.timeout, call.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                if self.refusing.load(Ordering::Relaxed) {
                    self.refusing.store(false, Ordering::Relaxed);
                }
                Some(v)
            }
            Ok(Err(e)) if gone(&e) => {
                self.lost(generation, &kind(&e));
                None
            }
            Ok(Err(e)) => {
                // Redis answered, but not as the script should (out of memory, an ACL
                // without the script's commands): decide locally, keep the connection,
                // say so once.
                if !self.refusing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(error = %kind(&e), "fleet: Redis refused a limit script; deciding locally");
                }
                self.metrics.fleet_error("script");
                None
            }
            Err(_) => {
                self.lost(generation, "timeout");
                None
            }
        }
    }

    /// Counts a decision made without Redis.
    pub(crate) fn local(&self, limit: &str) {
        self.metrics.fleet_local_decision(limit);
    }

    /// Drops connection `generation` (unless a newer one replaced it), announces the
    /// loss once, and wakes the reconnecting task.
    fn lost(&self, generation: u64, why: &str) {
        self.metrics.fleet_error(why);
        {
            let mut conn = self.conn.lock().expect("fleet lock");
            match &*conn {
                Some((current, _)) if *current != generation => return,
                _ => *conn = None,
            }
        }
        if !self.down.swap(true, Ordering::AcqRel) {
            self.metrics.fleet_redis_up(false);
            tracing::warn!(
                error = why,
                size = self.size,
                "fleet: Redis unreachable; limits are per gateway (each 1/size of the \
                 shared limit) until it is back"
            );
        }
        self.wake.notify_one();
    }

    fn connected(&self, conn: MultiplexedConnection) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.conn.lock().expect("fleet lock") = Some((generation, conn));
        self.metrics.fleet_redis_up(true);
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("fleet: Redis reachable again; limits are shared");
        } else {
            tracing::info!("fleet: connected to Redis; limits are shared");
        }
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(self.timeout.max(Duration::from_millis(500))));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| kind(&e))?;
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| kind(&e))?;
        Ok(conn)
    }
}

/// Whether `e` means this connection can no longer decide: it broke, timed out, or the
/// server is not (or no longer) the primary that holds the keys.
fn gone(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                S::ReadOnly
                    | S::Moved
                    | S::Ask
                    | S::BusyLoading
                    | S::ClusterDown
                    | S::MasterDown
                    | S::TryAgain
            )
        )
}

/// What went wrong, for logs and metrics: the error's category (`io_error`,
/// `authentication_failed`), never its text (which may quote what was sent).
fn kind(e: &redis::RedisError) -> String {
    e.category().replace(' ', "_")
}

/// Connects, checks the connection every `probe_ms`, and reconnects after a loss (at
/// most every `probe_ms`), for as long as the fleet is in use.
async fn supervise(fleet: Weak<Fleet>, wake: Arc<Notify>) {
    loop {
        let Some(f) = fleet.upgrade() else { return };
        let conn = f.conn.lock().expect("fleet lock").clone();
        match conn {
            // A health check, so that a gateway with no traffic notices too.
            Some((generation, mut conn)) => {
                let ping = redis::cmd("PING");
                match tokio::time::timeout(f.timeout, ping.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => f.lost(generation, &kind(&e)),
                    Err(_) => f.lost(generation, "timeout"),
                }
            }
            None => match f.connect().await {
                Ok(conn) => f.connected(conn),
                Err(why) => f.lost(0, &why),
            },
        }
        let probe = f.probe;
        drop(f);
        // A loss wakes the task at once, but reconnecting waits at least a probe
        // interval after the last try.
        let woken = wake.notified();
        tokio::select! {
            () = woken => tokio::time::sleep(probe).await,
            () = tokio::time::sleep(probe) => {}
        }
    }
}

/// A rate limit's share in the fleet: its key, its GCRA settings, and the tokens leased
/// for local spending.
#[derive(Debug)]
pub(crate) struct SharedRate {
    fleet: Arc<Fleet>,
    key: String,
    interval_us: f64,
    burst: u32,
    want: u32,
    /// Tokens leased, and until when they may be spent.
    leased: Mutex<(u32, Instant)>,
}

impl SharedRate {
    pub(crate) fn new(fleet: Arc<Fleet>, key: String, per_s: u32, burst: u32) -> Self {
        SharedRate {
            want: fleet.want(burst),
            fleet,
            key,
            interval_us: 1e6 / f64::from(per_s),
            burst,
            leased: Mutex::new((0, Instant::now())),
        }
    }

    /// A token: leased, or taken from Redis (`Err`: how long until one is there); `None`
    /// when Redis could not say.
    pub(crate) async fn take(&self) -> Option<Result<(), Duration>> {
        {
            let mut leased = self.leased.lock().expect("lease lock");
            if leased.0 > 0 && Instant::now() < leased.1 {
                leased.0 -= 1;
                return Some(Ok(()));
            }
        }
        let (granted, wait) = self
            .fleet
            .take(&self.key, self.interval_us, self.burst, self.want)
            .await?;
        if granted == 0 {
            return Some(Err(wait));
        }
        if granted > 1 {
            let mut leased = self.leased.lock().expect("lease lock");
            let now = Instant::now();
            if now >= leased.1 {
                leased.0 = 0;
            }
            leased.0 += granted - 1;
            leased.1 = now + self.fleet.lease_ttl;
        }
        Some(Ok(()))
    }

    pub(crate) fn local(&self, limit: &str) {
        self.fleet.local(limit);
    }
}

/// A fuel budget's share in the fleet: charges not sent yet, and the balance as last
/// read.
#[derive(Debug)]
pub(crate) struct SharedFuel {
    fleet: Arc<Fleet>,
    key: String,
    interval_us: f64,
    /// Fuel charged locally and not yet sent.
    pending: AtomicU64,
    /// Send the pending charges once they reach this much.
    flush: u64,
    /// Whether a send is under way.
    sending: AtomicBool,
    /// (refused until, when read)
    state: Mutex<(Instant, Instant)>,
}

impl SharedFuel {
    pub(crate) fn new(fleet: Arc<Fleet>, key: String, per_s: u64) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(SharedFuel {
            flush: (per_s / (4 * u64::from(fleet.size))).max(1),
            fleet,
            key,
            interval_us: 1e6 / per_s as f64,
            pending: AtomicU64::new(0),
            sending: AtomicBool::new(false),
            state: Mutex::new((now, now - Duration::from_secs(3600))),
        })
    }

    /// Adds `fuel` to the charges; once they reach the flush share they are sent in the
    /// background, so the fleet learns of them even if this gateway's tenant goes quiet.
    pub(crate) fn charge(self: &Arc<Self>, fuel: u64) {
        let pending = self.pending.fetch_add(fuel, Ordering::Relaxed) + fuel;
        if pending < self.flush || self.sending.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sending.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            this.send().await;
            this.sending.store(false, Ordering::Release);
        });
    }

    /// Sends the pending charges and reads the balance: how long until it is positive,
    /// or `None` when Redis could not say. Charges that could not be sent are dropped,
    /// not kept for later: while Redis is away the local budget is charged instead, and a
    /// backlog sent on recovery would charge the same fuel twice.
    async fn send(&self) -> Option<Duration> {
        let add = self.pending.swap(0, Ordering::Relaxed);
        let wait = self.fleet.fuel(&self.key, self.interval_us, add).await?;
        let now = Instant::now();
        *self.state.lock().expect("fuel lock") = (now + wait, now);
        Some(wait)
    }

    /// Ok while the fleet's balance is positive, else the time until it is; `None` when
    /// Redis could not say.
    pub(crate) async fn check(&self) -> Option<Result<(), Duration>> {
        let now = Instant::now();
        let (until, read) = *self.state.lock().expect("fuel lock");
        let stale = now.duration_since(read) >= self.fleet.lease_ttl;
        if stale || self.pending.load(Ordering::Relaxed) >= self.flush {
            let wait = self.send().await?;
            return Some(if wait.is_zero() { Ok(()) } else { Err(wait) });
        }
        Some(if now < until {
            Err(until - now)
        } else {
            Ok(())
        })
    }

    pub(crate) fn local(&self) {
        self.fleet.local("tenant_cpu_budget");
    }

    /// Whether the fleet's Redis decides right now (else this gateway does alone).
    pub(crate) fn shared_now(&self) -> bool {
        self.fleet.conn.lock().expect("fleet lock").is_some()
    }
}

mod d {
    use std::time::Duration;

    pub(super) fn size() -> u32 {
        1
    }
    pub(super) fn lease() -> u32 {
        16
    }
    pub(super) fn lease_ttl() -> Duration {
        Duration::from_millis(200)
    }
    pub(super) fn timeout() -> Duration {
        Duration::from_millis(50)
    }
    pub(super) fn probe() -> Duration {
        Duration::from_secs(1)
    }
    pub(super) fn prefix() -> String {
        "palisade".into()
    }
}
