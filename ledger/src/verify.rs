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
    verify_split(target, range, checkpoints, PARALLEL_MIN)
}

fn verify_split(
    target: &Target,
    range: Option<(u64, u64)>,
    checkpoints: Option<&Checkpoints>,
    parallel_min: u64,
) -> Result<Report> {
    let started = Instant::now();
    let (from, to) = range.unwrap_or((1, u64::MAX));
    let mut store = open_reader(target)?;

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

    // Big ranges are split in two and walked on two threads, each with its own
    // connection; the halves are joined where they meet.
    let last = match store.head() {
        Ok(Some((seq, _))) => seq.min(to),
        _ => to,
    };
    let state = if last != u64::MAX && last > from && last - from >= parallel_min {
        let mid = from + (last - from) / 2;
        let signed = &signed;
        let (first, second) = std::thread::scope(|scope| {
            let second = scope.spawn(move || walk(target, None, mid + 1, to, signed));
            (
                walk(target, Some(store), from, mid, signed),
                second.join().expect("walker thread"),
            )
        });
        first?.join(second?)
    } else {
        walk(target, Some(store), from, to, &signed)?
    };

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

/// Ranges at least this long are verified on two threads.
const PARALLEL_MIN: u64 = 100_000;

/// Walks blocks `from..=to`, anchored on block `from - 1`.
fn walk(
    target: &Target,
    store: Option<Box<dyn crate::store::Store>>,
    from: u64,
    to: u64,
    signed: &BTreeMap<u64, [u8; 32]>,
) -> Result<Walk> {
    let mut store = match store {
        Some(s) => s,
        None => open_reader(target)?,
    };
    let mut state = Walk::new(from);
    if from > 1 {
        store.scan(from - 1, from - 1, &mut |raw| {
            state.prev = block::parse_hex(&raw.hash);
            if state.prev.is_some() {
                state.prev_text.copy_from_slice(raw.hash.as_bytes());
            }
            ControlFlow::Break(())
        })?;
    }
    store.scan(from, to, &mut |raw| {
        state.step(raw.seq, &raw.record, &raw.prev, &raw.hash, signed);
        ControlFlow::Continue(())
    })?;
    Ok(state)
}

struct Walk {
    /// The first sequence number seen.
    first_seen: Option<u64>,
    expected: u64,
    prev: Option<[u8; 32]>,
    /// `prev` as its 64 hex digits (meaningful when `prev` is `Some`).
    prev_text: [u8; 64],
    blocks: u64,
    anomalies: Vec<Anomaly>,
    /// The first sequence number of the range.
    start: u64,
}

impl Walk {
    fn new(from: u64) -> Self {
        Walk {
            first_seen: None,
            expected: from,
            prev: (from == 1).then_some(GENESIS_PREV),
            prev_text: [b'0'; 64],
            blocks: 0,
            anomalies: Vec::new(),
            start: from,
        }
    }

    /// Joins the walk of the blocks after this one's range.
    fn join(mut self, next: Walk) -> Walk {
        // Blocks missing at the end of this half show up as one gap before the next half
        // (replacing the next half's own gap at its start, if it saw one).
        let mut next = next;
        if let Some(found) = next.first_seen
            && self.expected != next.start
        {
            if let Some(Anomaly::Gap { expected, .. }) = next.anomalies.first()
                && *expected == next.start
            {
                next.anomalies.remove(0);
            }
            self.anomalies.push(Anomaly::Gap {
                expected: self.expected,
                found,
            });
        }
        self.anomalies.extend(next.anomalies);
        Walk {
            first_seen: self.first_seen.or(next.first_seen),
            expected: if next.blocks > 0 {
                next.expected
            } else {
                self.expected
            },
            prev: next.prev,
            prev_text: next.prev_text,
            blocks: self.blocks + next.blocks,
            anomalies: self.anomalies,
            start: self.start,
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
        self.first_seen.get_or_insert(seq);
        if seq != self.expected {
            self.anomalies.push(Anomaly::Gap {
                expected: self.expected,
                found: seq,
            });
            // The link across a gap cannot hold; the gap is the anomaly, not the link.
            self.prev = None;
        }
        self.expected = seq + 1;
        let stored_hash = block::parse_hex(hash);
        // The usual case: `prev` is, byte for byte, the previous block's stored hash, whose
        // value is already parsed. Only otherwise is it parsed (and found bad).
        let linked = self.prev.is_some() && prev.as_bytes() == self.prev_text.as_slice();
        let stored_prev = if linked {
            self.prev
        } else {
            block::parse_hex(prev)
        };
        match (stored_prev, stored_hash) {
            (None, _) => self
                .anomalies
                .push(Anomaly::Malformed { seq, field: "prev" }),
            (_, None) => self
                .anomalies
                .push(Anomaly::Malformed { seq, field: "hash" }),
            (Some(p), Some(h)) => {
                if !linked && self.prev.is_some_and(|want| want != p) {
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
        if stored_hash.is_some() {
            self.prev_text.copy_from_slice(hash.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ledger, Options, Record};

    fn ledger(dir: &std::path::Path, blocks: u64) -> Target {
        let target = Target::Sqlite(dir.join("l.db"));
        let l = Ledger::open(target.clone(), Options::default()).unwrap();
        for _ in 1..blocks {
            l.append_blocking(Record::default()).unwrap();
        }
        l.close();
        target
    }

    #[test]
    fn split_walks_agree_with_a_single_walk_at_the_seam() {
        // 40 blocks split at 20 | 21.
        for deleted in [
            vec![],
            vec![20i64],
            vec![21],
            vec![20, 21],
            vec![19, 20, 21, 22],
            vec![40],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let target = ledger(dir.path(), 40);
            let Target::Sqlite(path) = &target else {
                unreachable!()
            };
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch("DROP TRIGGER ledger_no_delete").unwrap();
            for d in &deleted {
                conn.execute("DELETE FROM ledger WHERE seq = ?1", [d])
                    .unwrap();
            }
            let single = verify_split(&target, None, None, u64::MAX).unwrap();
            let split = verify_split(&target, None, None, 10).unwrap();
            assert_eq!(
                (split.blocks, split.anomalies, &split.first),
                (single.blocks, single.anomalies, &single.first),
                "{deleted:?}"
            );
            if let Some(&d) = deleted.first().filter(|&&d| d < 40) {
                assert_eq!(
                    split.first.as_ref().and_then(Anomaly::seq),
                    Some(d as u64),
                    "{deleted:?}"
                );
            }
        }
    }
}
