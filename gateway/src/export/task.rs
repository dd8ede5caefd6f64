//! One sink's exporter: a thread that reads the ledger after the sink's cursor, sends,
//! and moves the cursor once the sink acknowledged; on failure it retries the same
//! blocks with exponential backoff (full jitter, capped) until the sink takes them.
//!
//! Its own thread, with a current-thread runtime for the sink's I/O: the ledger's
//! database clients block, and must never do so on the gateway's async workers.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use palisade_ledger::Target;
use palisade_ledger::checkpoint::Checkpoint;

use super::Error;
use super::config::Sink as Config;
use super::cursor::Source;
use super::item::{self, Item, Position};
use super::sinks::Sink;
use crate::db::Access;
use crate::metrics::Metrics;

/// How long a gateway that does not hold a sink's lock waits before asking again.
const STANDBY: Duration = Duration::from_secs(2);

/// The signed checkpoints the exporter pushes: `[audit] checkpoint` and the key that
/// verifies it.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoints {
    pub(crate) file: PathBuf,
    pub(crate) key: VerifyingKey,
    /// The first 16 hex digits of the SHA-256 of the public key.
    pub(crate) key_id: String,
}

impl Checkpoints {
    pub(crate) fn new(file: PathBuf, key: VerifyingKey) -> Self {
        use sha2::Digest as _;
        let key_id = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8]);
        Checkpoints { file, key, key_id }
    }

    /// The newest checkpoint in the file, if it verifies. Reads the file's last 4 KiB.
    pub(crate) fn newest(&self) -> Option<Checkpoint> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.file).ok()?;
        let len = file.metadata().ok()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
        let mut tail = String::new();
        file.read_to_string(&mut tail).ok()?;
        let line = tail.lines().rev().find(|l| !l.trim().is_empty())?;
        let checkpoint: Checkpoint = serde_json::from_str(line).ok()?;
        match checkpoint.verified_hash(&self.key) {
            Some(_) => Some(checkpoint),
            None => {
                tracing::warn!(file = %self.file.display(), seq = checkpoint.seq, "checkpoint does not verify; not exported");
                None
            }
        }
    }
}

/// A stop signal the exporter threads wait on.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub(crate) fn stop(&self) {
        *self.stopped.lock().expect("stop lock") = true;
        self.wake.notify_all();
    }

    /// Waits up to `d`; whether stopped.
    fn wait(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().expect("stop lock");
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, d, |s| !*s)
            .expect("stop lock");
        *guard
    }
}

/// One sink's exporter, ready to run.
pub(crate) struct Exporter {
    pub(crate) config: Config,
    pub(crate) sink: Sink,
    pub(crate) target: Target,
    pub(crate) checkpoints: Option<Checkpoints>,
    pub(crate) metrics: Arc<Metrics>,
}

/// What one step did.
enum Step {
    /// Sent a full batch: more may be waiting.
    More,
    /// Nothing left to send.
    CaughtUp,
    /// Another gateway exports this sink.
    Standby,
}

/// The exporter's connection and, once it holds the sink's lock, where its cursor is.
struct Session {
    source: Source,
    at: Option<Position>,
}

impl Exporter {
    /// Runs until `stop`.
    pub(crate) fn run(mut self, stop: &Stop) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let name = self.config.name.clone();
        let mut session = None;
        let mut pushed = 0;
        let mut delay = self.config.backoff;
        let mut failing: Option<(Instant, u64)> = None;
        let mut standby = false;
        let mut batch = Batch::new(self.config.batch);
        loop {
            let wait = match self.step(&rt, &mut session, &mut pushed, batch.now) {
                Ok(step) => {
                    if let Some((since, failures)) = failing.take() {
                        tracing::info!(sink = %name, failures, down_ms = since.elapsed().as_millis() as u64, "audit export recovered");
                    }
                    delay = self.config.backoff;
                    match step {
                        Step::More => {
                            batch.sent_full();
                            Duration::ZERO
                        }
                        Step::CaughtUp => {
                            standby = false;
                            self.config.poll
                        }
                        Step::Standby => {
                            if !standby {
                                tracing::info!(sink = %name, "another gateway exports this sink; standing by");
                                standby = true;
                            }
                            STANDBY
                        }
                    }
                }
                // Half of what was refused (a checkpoint may ride along), while that is
                // smaller than the batch; a single block refused waits and retries as
                // any refusal.
                Err(Error::TooLarge(n)) if batch.refused(n) => {
                    self.metrics.export_error(&name, "too_large");
                    tracing::warn!(sink = %name, refused = n, batch = batch.now, "audit export: the sink refused a batch as too large (413); sending fewer blocks per batch");
                    Duration::ZERO
                }
                Err(e) => {
                    self.metrics.export_error(&name, e.kind());
                    match &mut failing {
                        None => {
                            tracing::warn!(sink = %name, kind = e.kind(), error = %e, "audit export failing; blocks wait in the ledger until the sink acknowledges them");
                            failing = Some((Instant::now(), 1));
                        }
                        Some((_, n)) => {
                            *n += 1;
                            tracing::debug!(sink = %name, kind = e.kind(), error = %e, "audit export still failing");
                        }
                    }
                    match e {
                        Error::Sink(_) | Error::TooLarge(_) => self.sink.reset(),
                        // Reconnect and re-read the cursor; the lock is taken afresh.
                        _ => session = None,
                    }
                    let wait = jitter(delay);
                    delay = (delay * 2).min(self.config.backoff_max);
                    wait
                }
            };
            if stop.wait(wait) {
                return;
            }
        }
    }

    fn step(
        &mut self,
        rt: &tokio::runtime::Runtime,
        session: &mut Option<Session>,
        pushed: &mut u64,
        batch: usize,
    ) -> Result<Step, Error> {
        let name = self.config.name.clone();
        let s = match session {
            Some(s) => s,
            None => session.insert(Session {
                source: Source::open(&self.target, Access::Create)?,
                at: None,
            }),
        };
        let at = match s.at {
            Some(at) => at,
            None => {
                if !s.source.try_lock(&name)? {
                    return Ok(Step::Standby);
                }
                let at = s.source.cursor(&name)?;
                s.source.confirm(at)?;
                *s.at.insert(at)
            }
        };
        let head = s.source.head()?;
        let rows = s.source.read(at.seq, batch)?;
        let full = rows.len() == batch;
        let (mut items, end, broken) = item::check(at, rows);
        let blocks = items.len() as u64;
        self.metrics.export_lag(&name, head.saturating_sub(at.seq));
        let checkpoint = self.checkpoints.as_ref().and_then(|c| {
            let newest = c.newest()?;
            (newest.seq > *pushed && newest.seq <= end.seq)
                .then(|| item::checkpoint(&newest, &c.key_id))
        });
        let checkpoint_seq = checkpoint.as_ref().map(|c| c.seq);
        items.extend(checkpoint);
        if !items.is_empty() {
            self.send(rt, &items)?;
        }
        if end != at {
            s.source.advance(&name, at, end)?;
            s.at = Some(end);
            self.metrics.export_sent(&name, blocks);
            self.metrics.export_lag(&name, head.saturating_sub(end.seq));
        }
        if let Some(seq) = checkpoint_seq {
            *pushed = seq;
        }
        match broken {
            Some(e) => Err(e),
            None if full => Ok(Step::More),
            None => Ok(Step::CaughtUp),
        }
    }

    fn send(&mut self, rt: &tokio::runtime::Runtime, items: &[Item]) -> Result<(), Error> {
        let timeout = self.config.timeout;
        let sink = &mut self.sink;
        match rt.block_on(async { tokio::time::timeout(timeout, sink.send(items)).await }) {
            Ok(result) => result,
            Err(_) => {
                sink.reset();
                Err(Error::Sink(format!(
                    "no acknowledgement within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }
}

/// Full batches at a reduced size after which the exporter tries twice the size again.
const GROW_AFTER: u32 = 256;

/// How many blocks a batch reads: the configured `batch`, halved when the sink answers
/// 413, and doubled back (up to `batch`) after [`GROW_AFTER`] full batches went through,
/// so that a receiver whose limit was raised gets full batches again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    now: usize,
    max: usize,
    full: u32,
}

impl Batch {
    fn new(max: usize) -> Self {
        Batch {
            now: max,
            max,
            full: 0,
        }
    }

    /// A batch of `n` items was refused as too large: whether a smaller one is worth
    /// sending at once (half of what was refused, when that is smaller than the batch);
    /// otherwise (a single block) the refusal is an ordinary one.
    fn refused(&mut self, n: usize) -> bool {
        let half = self.now.min(n) / 2;
        self.full = 0;
        if (1..self.now).contains(&half) {
            self.now = half;
            true
        } else {
            false
        }
    }

    fn sent_full(&mut self) {
        if self.now == self.max {
            return;
        }
        self.full += 1;
        if self.full >= GROW_AFTER {
            self.now = (self.now * 2).min(self.max);
            self.full = 0;
        }
    }
}

/// A delay between `d / 2` and `d` (jitter, so gateways retrying one sink spread out).
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let fraction = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    d.mul_f64(0.5 + fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_halves_to_one_block_then_waits_and_grows_back_after_full_batches() {
        let mut b = Batch::new(500);
        assert!(b.refused(500));
        assert_eq!(b.now, 250);
        // Fewer were pending than the batch: half of what was refused.
        assert!(b.refused(9));
        assert_eq!(b.now, 4);
        assert!(b.refused(4) && b.refused(2));
        assert_eq!(b.now, 1);
        // One block (a checkpoint riding along or not): an ordinary refusal, no hot loop.
        assert!(!b.refused(2) && !b.refused(1));
        assert_eq!(b.now, 1);
        for _ in 0..GROW_AFTER {
            b.sent_full();
        }
        assert_eq!(b.now, 2);
        for _ in 0..20 * GROW_AFTER {
            b.sent_full();
        }
        assert_eq!(b.now, 500);
    }

    #[test]
    fn jitter_stays_within_half_and_whole_the_delay() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(
                j >= Duration::from_millis(500) && j <= Duration::from_millis(1000),
                "{j:?}"
            );
        }
    }

    #[test]
    fn the_newest_checkpoint_is_read_from_the_tail_and_must_verify() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("cp.key");
        let public = palisade_ledger::checkpoint::generate_key(&key_path).unwrap();
        let key = palisade_ledger::checkpoint::load_signing_key(&key_path).unwrap();
        let file = dir.path().join("cp.jsonl");
        let mut text = String::new();
        for seq in 1..=200u64 {
            let c = Checkpoint::sign(&key, seq, &[seq as u8; 32]);
            text.push_str(&serde_json::to_string(&c).unwrap());
            text.push('\n');
        }
        std::fs::write(&file, &text).unwrap();
        let cps = Checkpoints::new(file.clone(), public);
        assert_eq!(cps.newest().unwrap().seq, 200);
        assert_eq!(cps.key_id.len(), 16);
        // A forged last line is not exported.
        let mut forged = Checkpoint::sign(&key, 201, &[1; 32]);
        forged.hash = hex::encode([2u8; 32]);
        text.push_str(&serde_json::to_string(&forged).unwrap());
        std::fs::write(&file, &text).unwrap();
        assert!(cps.newest().is_none());
    }
}
