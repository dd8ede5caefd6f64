//! What a receiver checks: exported objects, in the order received, continue one chain.
//!
//! Each block must be the next one (`seq` one more than the last), name the last
//! block's hash as its `prev_hash`, and hash to its `hash` (its record re-encoded
//! canonically, as `docs/audit.md` says). A block resent (at-least-once) is recognised
//! by its `seq` and must repeat the hash already received. A checkpoint must name a
//! block already received, with its hash, and (given the key) carry a valid signature.

use std::collections::VecDeque;

use ed25519_dalek::VerifyingKey;
use palisade_ledger::block::{self, GENESIS_PREV, parse_hex};
use palisade_ledger::checkpoint::Checkpoint;
use serde::Deserialize;

/// How many recent hashes are kept to recognise resent blocks (more than a batch).
const REMEMBERED: usize = 20_000;

/// A receiver's continuity check. See the module docs.
#[derive(Debug, Clone)]
pub struct Continuity {
    next: u64,
    last: [u8; 32],
    recent: VecDeque<(u64, [u8; 32])>,
    key: Option<VerifyingKey>,
}

/// What an accepted object was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The next block.
    Block(u64),
    /// A block received before, resent.
    Duplicate(u64),
    /// A checkpoint of a block received.
    Checkpoint(u64),
}

/// Why an object does not continue the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Break {
    /// Not an exported object.
    #[error("not an exported object: {0}")]
    Malformed(String),
    /// Blocks are missing: `found` came where `expected` should have.
    #[error("block {expected} missing: block {found} came next")]
    Gap {
        /// The block that should have come.
        expected: u64,
        /// The one that came.
        found: u64,
    },
    /// The block's `prev_hash` is not the last block's hash.
    #[error("block {0}: prev_hash does not match the previous block's hash")]
    BrokenLink(u64),
    /// The block's contents do not hash to its `hash`.
    #[error("block {0}: contents do not match its hash")]
    HashMismatch(u64),
    /// A resent block, or a checkpoint, with another hash than the block received.
    #[error("block {0}: received before with another hash")]
    Rewritten(u64),
    /// A checkpoint whose signature does not verify.
    #[error("checkpoint of block {0}: bad signature")]
    BadSignature(u64),
}

#[derive(Deserialize)]
struct Object {
    #[serde(rename = "type")]
    kind: String,
    seq: u64,
    hash: String,
    prev_hash: Option<String>,
    record: Option<serde_json::Value>,
    signature: Option<String>,
    time_ms: Option<u64>,
}

impl Default for Continuity {
    fn default() -> Self {
        Self::new()
    }
}

impl Continuity {
    /// Expects the chain from its first block.
    pub fn new() -> Self {
        Self::after(0, GENESIS_PREV)
    }

    /// Expects the block after `seq`, whose hash is `hash` (a receiver resuming).
    pub fn after(seq: u64, hash: [u8; 32]) -> Self {
        Continuity {
            next: seq + 1,
            last: hash,
            recent: VecDeque::new(),
            key: None,
        }
    }

    /// Also verifies checkpoint signatures with `key` (`checkpoint.key.pub`).
    pub fn with_key(mut self, key: VerifyingKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The last block received in order: `(seq, hash)`.
    pub fn head(&self) -> (u64, [u8; 32]) {
        (self.next - 1, self.last)
    }

    /// Checks one exported object (a JSON line, an Elastic document, a HEC `event`).
    ///
    /// # Errors
    ///
    /// [`Break`] naming what does not continue; the state is unchanged.
    pub fn accept(&mut self, object: &str) -> Result<Accepted, Break> {
        let o: Object =
            serde_json::from_str(object).map_err(|e| Break::Malformed(e.to_string()))?;
        let hash = parse_hex(&o.hash).ok_or_else(|| Break::Malformed("hash".into()))?;
        match o.kind.as_str() {
            "block" => self.block(&o, hash),
            "checkpoint" => self.checkpoint(&o, hash),
            other => Err(Break::Malformed(format!("type {other:?}"))),
        }
    }

    fn block(&mut self, o: &Object, hash: [u8; 32]) -> Result<Accepted, Break> {
        if o.seq < self.next {
            return match self.remembered(o.seq) {
                Some(h) if h == hash => Ok(Accepted::Duplicate(o.seq)),
                _ => Err(Break::Rewritten(o.seq)),
            };
        }
        if o.seq > self.next {
            return Err(Break::Gap {
                expected: self.next,
                found: o.seq,
            });
        }
        let prev = o
            .prev_hash
            .as_deref()
            .and_then(parse_hex)
            .ok_or_else(|| Break::Malformed("prev_hash".into()))?;
        if prev != self.last {
            return Err(Break::BrokenLink(o.seq));
        }
        let record = o
            .record
            .as_ref()
            .ok_or_else(|| Break::Malformed("record".into()))?;
        let canonical = serde_json::to_string(record).expect("a value serializes");
        if block::hash(o.seq, &prev, canonical.as_bytes()) != hash {
            return Err(Break::HashMismatch(o.seq));
        }
        self.next += 1;
        self.last = hash;
        self.recent.push_back((o.seq, hash));
        if self.recent.len() > REMEMBERED {
            self.recent.pop_front();
        }
        Ok(Accepted::Block(o.seq))
    }

    fn checkpoint(&mut self, o: &Object, hash: [u8; 32]) -> Result<Accepted, Break> {
        if o.seq >= self.next {
            return Err(Break::Gap {
                expected: self.next,
                found: o.seq,
            });
        }
        if let Some(key) = &self.key {
            let c = Checkpoint {
                hash: o.hash.clone(),
                seq: o.seq,
                signature: o.signature.clone().unwrap_or_default(),
                time_ms: o.time_ms.unwrap_or_default(),
            };
            if c.verified_hash(key).is_none() {
                return Err(Break::BadSignature(o.seq));
            }
        }
        match self.remembered(o.seq) {
            Some(h) if h != hash => Err(Break::Rewritten(o.seq)),
            _ => Ok(Accepted::Checkpoint(o.seq)),
        }
    }

    fn remembered(&self, seq: u64) -> Option<[u8; 32]> {
        if seq == self.next - 1 {
            return Some(self.last);
        }
        self.recent
            .iter()
            .rev()
            .find(|(s, _)| *s == seq)
            .map(|(_, h)| *h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::item::{self, Position};

    fn lines(n: usize) -> Vec<String> {
        let (items, _, _) = item::check(Position::START, item::tests::rows(n));
        items.into_iter().map(|i| i.line).collect()
    }

    #[test]
    fn in_order_blocks_and_resent_ones_are_accepted() {
        let lines = lines(5);
        let mut c = Continuity::new();
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(c.accept(l), Ok(Accepted::Block(i as u64 + 1)));
        }
        // At-least-once: a batch resent after a lost acknowledgement.
        assert_eq!(c.accept(&lines[3]), Ok(Accepted::Duplicate(4)));
        assert_eq!(c.accept(&lines[4]), Ok(Accepted::Duplicate(5)));
        assert_eq!(c.head().0, 5);
    }

    #[test]
    fn a_dropped_reordered_or_edited_block_breaks_continuity() {
        let lines = lines(5);
        let mut c = Continuity::new();
        c.accept(&lines[0]).unwrap();
        assert_eq!(
            c.accept(&lines[2]),
            Err(Break::Gap {
                expected: 2,
                found: 3
            })
        );
        c.accept(&lines[1]).unwrap();
        let edited = lines[2].replace("\"correlation_id\":\"c2\"", "\"correlation_id\":\"cX\"");
        assert_eq!(c.accept(&edited), Err(Break::HashMismatch(3)));
        // A block from another chain at the right place.
        let other = lines[2].replace(
            &lines[2][lines[2].find("prev_hash").unwrap() + 12..][..64],
            &"ab".repeat(32),
        );
        assert_eq!(c.accept(&other), Err(Break::BrokenLink(3)));
        // A resent block with another hash.
        let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        let rewritten = lines[1].replace(v["hash"].as_str().unwrap(), &"cd".repeat(32));
        assert_eq!(c.accept(&rewritten), Err(Break::Rewritten(2)));
        assert!(matches!(c.accept("{}"), Err(Break::Malformed(_))));
    }
}
