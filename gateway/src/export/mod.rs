//! Audit export: the ledger's blocks, and its newest signed checkpoint, sent to sinks
//! outside the gateway's host (JSON-lines files, syslog, Elastic, Splunk HEC).
//!
//! At-least-once: each sink has a cursor (the last block it acknowledged) in the
//! ledger's own database; an exporter reads the blocks after it by sequence number,
//! checks they continue the chain, sends them, and moves the cursor only once the sink
//! acknowledged. A crash or an outage loses nothing; what was sent but not acknowledged
//! is sent again, recognisable by its `seq` ([`Continuity`] is the receiver's check).
//! `docs/export.md` is the guide.
//!
//! ```no_run
//! use palisade_gateway::export::{Accepted, Continuity};
//!
//! // A receiver: every line of an exported JSON-lines file, in order.
//! let mut chain = Continuity::new();
//! for line in std::fs::read_to_string("audit.jsonl").unwrap().lines() {
//!     match chain.accept(line) {
//!         Ok(Accepted::Block(_) | Accepted::Duplicate(_) | Accepted::Checkpoint(_)) => {}
//!         Err(broken) => panic!("{broken}"),
//!     }
//! }
//! ```
//!
//! Core concepts:
//! - [`Sink`]: one `[[audit.export]]` entry ([`config`]).
//! - `item`: the exported objects (a block, a checkpoint).
//! - `cursor`: the blocks and the cursors in the database, the one-exporter-per-sink lock.
//! - `sinks`: what "acknowledged" means for each kind.
//! - `task`: the loop with retries, metrics and logs; [`backfill`] for re-sends.

mod backfill;
pub mod config;
mod continuity;
mod cursor;
mod item;
mod sinks;
mod task;

use std::sync::Arc;
use std::thread::JoinHandle;

pub use self::backfill::{Backfilled, backfill};
pub use self::config::{Credential, ElasticAuth, Kind, Sink, Tls};
pub use self::continuity::{Accepted, Break, Continuity};
use self::task::{Checkpoints, Exporter, Stop};
use crate::metrics::Metrics;

/// Why an export step failed. Each is retried (with backoff) by the exporter; none
/// loses a block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sink could not be reached, refused the batch or did not acknowledge it.
    #[error("sink: {0}")]
    Sink(String),
    /// The sink answered 413 to a batch of this many blocks: the exporter halves its
    /// batch and sends again (a single block refused waits, as any refusal).
    #[error("sink: a batch of {0} blocks is too large for it (HTTP 413)")]
    TooLarge(usize),
    /// The ledger's database failed (or lacks the cursor table: `palisade ledger init`).
    #[error("database: {0}")]
    Database(String),
    /// The stored cursor names a block the ledger no longer has, or has with another
    /// hash: the chain was cut or rewritten since the sink acknowledged it. Nothing more
    /// is exported until an operator looks.
    #[error(
        "cursor at block {seq}, but the ledger has {found} there: the chain was rewritten or truncated; not exporting"
    )]
    CursorMismatch {
        /// The cursor's block.
        seq: u64,
        /// What the ledger has there.
        found: String,
    },
    /// A block does not continue the chain (`palisade verify` names the damage); the
    /// blocks before it were exported, none after it is.
    #[error("block {seq}: {what}; not exporting past it")]
    Chain {
        /// The block.
        seq: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// Another exporter moved the cursor (it took over the sink).
    #[error("another exporter moved the cursor")]
    CursorMoved,
    /// A sink's credentials or CA could not be read, or another setup failure.
    #[error("{0}")]
    Config(String),
    /// No `[[audit.export]]` sink has that name.
    #[error("no export sink is named {0:?}")]
    UnknownSink(String),
}

impl Error {
    /// The error's kind, as the `kind` label of `palisade_export_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Sink(_) => "sink",
            Error::TooLarge(_) => "too_large",
            Error::Database(_) => "database",
            Error::CursorMismatch { .. } => "cursor_mismatch",
            Error::Chain { .. } => "chain",
            Error::CursorMoved => "cursor_moved",
            Error::Config(_) | Error::UnknownSink(_) => "config",
        }
    }
}

/// The exporters of a configuration, built (credentials read) but not running.
pub(crate) struct Prepared(Vec<Exporter>);

/// The running exporters: one thread per sink.
pub(crate) struct Exporters {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
}

/// The signed checkpoints `audit` writes, with the key that verifies them.
fn checkpoints(audit: &crate::audit::Config) -> Result<Option<Checkpoints>, Error> {
    let Some(c) = &audit.checkpoints else {
        return Ok(None);
    };
    // The gateway's own key, else (a back-fill by a user who may not read it) its `.pub`.
    let key = palisade_ledger::checkpoint::load_signing_key(&c.key)
        .map(|k| k.verifying_key())
        .or_else(|_| {
            let public = palisade_ledger::checkpoint::public_key_path(&c.key);
            palisade_ledger::checkpoint::load_verifying_key(&public)
        })
        .map_err(|e| Error::Config(format!("checkpoint key: {e}")))?;
    Ok(Some(Checkpoints::new(c.file.clone(), key)))
}

/// Builds an exporter per `[[audit.export]]` sink (after the ledger opened, so that the
/// checkpoint key exists).
///
/// # Errors
///
/// [`Error::Config`] naming the sink whose credentials, CA or key cannot be read.
pub(crate) fn prepare(
    audit: &crate::audit::Config,
    metrics: &Arc<Metrics>,
) -> Result<Prepared, Error> {
    if audit.export.is_empty() {
        return Ok(Prepared(Vec::new()));
    }
    let checkpoints = checkpoints(audit)?;
    audit
        .export
        .iter()
        .map(|config| {
            let sink = sinks::Sink::new(config, &audit.instance)
                .map_err(|e| Error::Config(format!("export sink {:?}: {e}", config.name)))?;
            Ok(Exporter {
                config: config.clone(),
                sink,
                target: audit.store.clone(),
                checkpoints: checkpoints.clone(),
                metrics: metrics.clone(),
            })
        })
        .collect::<Result<_, _>>()
        .map(Prepared)
}

impl Prepared {
    /// Starts a thread per sink.
    pub(crate) fn spawn(self) -> Exporters {
        let stop = Arc::new(Stop::default());
        let threads = self
            .0
            .into_iter()
            .filter_map(|exporter| {
                let stop = stop.clone();
                let name = exporter.config.name.clone();
                std::thread::Builder::new()
                    .name(format!("palisade-export-{name}"))
                    .spawn(move || exporter.run(&stop))
                    .map_err(
                        |e| tracing::error!(sink = %name, error = %e, "audit exporter not started"),
                    )
                    .ok()
            })
            .collect();
        Exporters { stop, threads }
    }
}

impl Exporters {
    /// Stops every exporter after its current step (a send waits at most its timeout)
    /// and waits for them. What they had not sent, they send after the next start.
    pub(crate) fn stop(mut self) {
        self.stop.stop();
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }
}

impl Drop for Exporters {
    /// A gateway dropped without [`crate::Running::shutdown`] stops its exporters too.
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// Checks that every sink's credentials can be read (for `check-config`): the problems
/// found, each with its key.
pub(crate) fn check_credentials(audit: &crate::audit::Config) -> Vec<crate::config::Problem> {
    let mut problems = Vec::new();
    for (n, sink) in audit.export.iter().enumerate() {
        for (key, credential) in sink.credentials() {
            if let Err(e) = credential.read() {
                problems.push(crate::config::Problem::key(
                    &format!("audit.export.{n}.{key}"),
                    format!("export sink {:?}: {key}: {e}", sink.name),
                ));
            }
        }
    }
    problems
}
