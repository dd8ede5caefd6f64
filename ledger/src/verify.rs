//! Walking a chain and naming the first bad block.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;

use crate::block::{self, GENESIS_PREV};
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::store::{Target, open_reader};

/// Something wrong with a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Anomaly {
    /// The ledger has no block at all (not even its genesis block).
    Empty,
    /// Block `expected` is missing: the next stored block is `found`.
    Gap {
        /// The sequence number that should come next.
        expected: u64,
        /// The one that came.
        found: u64,
    },
    /// A stored hash is not 64 lowercase hex digits, or the record is not text.
    Malformed {
        /// The block.
        seq: u64,
        /// Which column.
        field: &'static str,
    },
    /// The block's `prev` is not the previous block's hash (rows swapped or replaced).
    BrokenLink {
        /// The block.
        seq: u64,
    },
    /// The block's contents do not hash to its stored hash (an edited field or bit).
    HashMismatch {
        /// The block.
        seq: u64,
    },
    /// A signed checkpoint names a block past the ledger's end (tail truncated, or an
    /// older copy restored).
    Truncated {
        /// The checkpoint's block.
        checkpoint: u64,
        /// The ledger's last block (0 when empty).
        head: u64,
    },
    /// The block at a signed checkpoint has another hash (the chain was recomputed).
    CheckpointMismatch {
        /// The block.
        seq: u64,
    },
    /// A checkpoint's signature does not verify under the given key.
    BadSignature {
        /// The checkpoint's block.
        seq: u64,
    },
}

impl Anomaly {
    /// A stable name for the anomaly's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::Empty => "empty",
            Anomaly::Gap { .. } => "gap",
            Anomaly::Malformed { .. } => "malformed",
            Anomaly::BrokenLink { .. } => "broken_link",
            Anomaly::HashMismatch { .. } => "hash_mismatch",
            Anomaly::Truncated { .. } => "truncated",
            Anomaly::CheckpointMismatch { .. } => "checkpoint_mismatch",
            Anomaly::BadSignature { .. } => "bad_signature",
        }
    }

    /// The first bad block, when the anomaly is about one.
    pub fn seq(&self) -> Option<u64> {
        match *self {
            Anomaly::Empty => None,
            Anomaly::Gap { expected, .. } => Some(expected),
            Anomaly::Malformed { seq, .. }
            | Anomaly::BrokenLink { seq }
            | Anomaly::HashMismatch { seq }
            | Anomaly::CheckpointMismatch { seq }
            | Anomaly::BadSignature { seq } => Some(seq),
            Anomaly::Truncated { head, .. } => Some(head + 1),
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::Empty => write!(f, "the ledger is empty (its genesis block is gone)"),
            Anomaly::Gap { expected, found } => {
                write!(
                    f,
                    "block {expected}: missing (next stored block is {found})"
                )
            }
            Anomaly::Malformed { seq, field } => write!(f, "block {seq}: malformed {field}"),
            Anomaly::BrokenLink { seq } => {
                write!(
                    f,
                    "block {seq}: prev does not match block {}'s hash",
                    seq - 1
                )
            }
            Anomaly::HashMismatch { seq } => {
                write!(f, "block {seq}: contents do not match its hash")
            }
            Anomaly::Truncated { checkpoint, head } => write!(
                f,
                "block {}: missing, the ledger ends at {head} but a signed checkpoint names block {checkpoint} (truncated or restored from an older copy)",
                head + 1
            ),
            Anomaly::CheckpointMismatch { seq } => {
                write!(
                    f,
                    "block {seq}: hash differs from the signed checkpoint (chain recomputed)"
                )
            }
            Anomaly::BadSignature { seq } => {
                write!(f, "checkpoint for block {seq}: signature does not verify")
            }
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Blocks read.
    pub blocks: u64,
    /// Anomalies found (each gap, bad link, bad hash... counts once).
    pub anomalies: u64,
    /// The first anomaly, in chain order.
    pub first: Option<Anomaly>,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Time taken.
    pub elapsed: Duration,
}

impl Report {
    /// Whether the ledger passed.
    pub fn is_intact(&self) -> bool {
        self.anomalies == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.elapsed.as_secs_f64() * 1e3;
        match &self.first {
            None => write!(
                f,
                "{} blocks · chain intact · 0 anomalies · verified in {ms:.0} ms",
                self.blocks
            ),
            Some(first) => write!(
                f,
                "{} blocks · chain BROKEN · {} anomal{} · first: {first} [{}] · verified in {ms:.0} ms",
                self.blocks,
                self.anomalies,
                if self.anomalies == 1 { "y" } else { "ies" },
                first.kind()
            ),
        }
    }
}

/// Signed checkpoints to hold the ledger against.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    /// The checkpoints, as read from their file.
    pub list: Vec<Checkpoint>,
    /// The key they must be signed with.
    pub key: VerifyingKey,
}

/// Verifies blocks `range` (inclusive; the whole ledger by default) of `target`.
///
/// # Errors
///
/// When the database cannot be opened or read. A damaged chain is not an error: it is a
/// [`Report`] with anomalies.
pub fn verify(
    target: &Target,
    range: Option<(u64, u64)>,
    checkpoints: Option<&Checkpoints>,
) -> Result<Report> {
    let started = Instant::now();
    let (from, to) = range.unwrap_or((1, u64::MAX));
    let mut store = open_reader(target)?;
    let mut state = Walk::new(from);

    // Signed hashes by block; bad signatures are anomalies of their own.
    let mut signed: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    let mut sig_anomalies = Vec::new();
    if let Some(cps) = checkpoints {
        for cp in &cps.list {
            match cp.verified_hash(&cps.key) {
                Some(hash) if (from..=to).contains(&cp.seq) => {
                    signed.insert(cp.seq, hash);
                }
                Some(_) => {}
                None => sig_anomalies.push(Anomaly::BadSignature { seq: cp.seq }),
            }
        }
    }

    // The block before the range anchors its first link.
    if from > 1 {
        store.scan(from - 1, from - 1, &mut |raw| {
            state.prev = block::parse_hex(&raw.hash);
            ControlFlow::Break(())
        })?;
    }
    store.scan(from, to, &mut |raw| {
        state.step(raw.seq, &raw.record, &raw.prev, &raw.hash, &signed);
        ControlFlow::Continue(())
    })?;

    let mut anomalies = state.anomalies;
    if state.blocks == 0 && from == 1 {
        anomalies.insert(0, Anomaly::Empty);
    }
    let head = state.expected - 1;
    if let Some((&last_signed, _)) = signed.last_key_value()
        && last_signed > head
        && to > head
    {
        anomalies.push(Anomaly::Truncated {
            checkpoint: last_signed,
            head,
        });
    }
    anomalies.extend(sig_anomalies);
    Ok(Report {
        blocks: state.blocks,
        anomalies: anomalies.len() as u64,
        first: anomalies.into_iter().next(),
        checkpoints: signed.len() as u64,
        elapsed: started.elapsed(),
    })
}

struct Walk {
    expected: u64,
    prev: Option<[u8; 32]>,
    blocks: u64,
    anomalies: Vec<Anomaly>,
}

impl Walk {
    fn new(from: u64) -> Self {
        Walk {
            expected: from,
            prev: (from == 1).then_some(GENESIS_PREV),
            blocks: 0,
            anomalies: Vec::new(),
        }
    }

    fn step(
        &mut self,
        seq: i64,
        record: &str,
        prev: &str,
        hash: &str,
        signed: &BTreeMap<u64, [u8; 32]>,
    ) {
        self.blocks += 1;
        let seq = seq.max(0) as u64;
        if seq != self.expected {
            self.anomalies.push(Anomaly::Gap {
                expected: self.expected,
                found: seq,
            });
        }
        self.expected = seq + 1;
        let stored_hash = block::parse_hex(hash);
        let stored_prev = block::parse_hex(prev);
        match (stored_prev, stored_hash) {
            (None, _) => self
                .anomalies
                .push(Anomaly::Malformed { seq, field: "prev" }),
            (_, None) => self
                .anomalies
                .push(Anomaly::Malformed { seq, field: "hash" }),
            (Some(p), Some(h)) => {
                if self.prev.is_some_and(|want| want != p) {
                    self.anomalies.push(Anomaly::BrokenLink { seq });
                } else if block::hash(seq, &p, record.as_bytes()) != h {
                    self.anomalies.push(Anomaly::HashMismatch { seq });
                }
            }
        }
        if let Some(want) = signed.get(&seq)
            && stored_hash != Some(*want)
        {
            self.anomalies.push(Anomaly::CheckpointMismatch { seq });
        }
        self.prev = stored_hash;
    }
}
