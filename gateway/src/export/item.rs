//! What is exported: one JSON object per block, and signed checkpoints.
//!
//! - a block: `{"type":"block","seq":N,"hash":"<hex>","prev_hash":"<hex>","record":{...}}`,
//!   `record` being the block's canonical record as the ledger stores it, byte for byte;
//! - a checkpoint: `{"type":"checkpoint","seq":N,"hash":"<hex>","signature":"<hex>",
//!   "time_ms":T,"key_id":"<hex>"}`.

use palisade_ledger::block::{self, GENESIS_PREV};
use palisade_ledger::checkpoint::Checkpoint;
use serde::Deserialize;

use super::Error;

/// One exported object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// `block` or `checkpoint`.
    pub(crate) kind: ItemKind,
    /// The block's sequence number (the checkpoint's block's).
    pub(crate) seq: u64,
    /// Unix milliseconds: the record's `time_ms`, the checkpoint's signing time.
    pub(crate) time_ms: u64,
    /// The JSON object, one line.
    pub(crate) line: String,
}

/// What an [`Item`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind {
    Block,
    Checkpoint,
}

impl ItemKind {
    /// The `type` member (and syslog MSGID).
    pub(crate) fn name(self) -> &'static str {
        match self {
            ItemKind::Block => "block",
            ItemKind::Checkpoint => "checkpoint",
        }
    }
}

/// A block row as read from the database, before any check.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) seq: u64,
    pub(crate) record: String,
    pub(crate) prev: String,
    pub(crate) hash: String,
}

/// Where the chain stands: the last block checked (or exported), `(0, zeros)` before
/// the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) seq: u64,
    pub(crate) hash: [u8; 32],
}

impl Position {
    /// Before block 1.
    pub(crate) const START: Position = Position {
        seq: 0,
        hash: GENESIS_PREV,
    };
}

#[derive(Deserialize)]
struct Time {
    time_ms: u64,
}

/// The items of `rows`, which must continue the chain right after `after`: each row's
/// seq the next one, its `prev` the previous hash, its hash its contents'. Stops at the
/// first row that does not, returning the good ones and the error (nothing past a break
/// is exported).
pub(crate) fn check(after: Position, rows: Vec<Row>) -> (Vec<Item>, Position, Option<Error>) {
    let mut at = after;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let expected = at.seq + 1;
        let broken = |what: &'static str| Error::Chain {
            seq: expected,
            what,
        };
        if row.seq != expected {
            return (
                items,
                at,
                Some(broken("missing: the next stored block has a higher number")),
            );
        }
        if block::parse_hex(&row.prev) != Some(at.hash) {
            return (
                items,
                at,
                Some(broken("prev does not match the previous block's hash")),
            );
        }
        let Some(hash) = block::parse_hex(&row.hash) else {
            return (
                items,
                at,
                Some(broken("stored hash is not 64 lowercase hex digits")),
            );
        };
        if block::hash(row.seq, &at.hash, row.record.as_bytes()) != hash {
            return (items, at, Some(broken("contents do not match its hash")));
        }
        let Ok(time) = serde_json::from_str::<Time>(&row.record) else {
            return (items, at, Some(broken("record is not a JSON record")));
        };
        items.push(Item {
            kind: ItemKind::Block,
            seq: row.seq,
            time_ms: time.time_ms,
            line: format!(
                r#"{{"type":"block","seq":{},"hash":"{}","prev_hash":"{}","record":{}}}"#,
                row.seq, row.hash, row.prev, row.record
            ),
        });
        at = Position { seq: row.seq, hash };
    }
    (items, at, None)
}

/// A signed checkpoint as an item; `key_id` names the key that verifies it.
pub(crate) fn checkpoint(c: &Checkpoint, key_id: &str) -> Item {
    Item {
        kind: ItemKind::Checkpoint,
        seq: c.seq,
        time_ms: c.time_ms,
        // Members in the order the docs show, like a block's (`type` first).
        line: format!(
            r#"{{"type":"checkpoint","seq":{},"hash":{},"signature":{},"time_ms":{},"key_id":{}}}"#,
            c.seq,
            json(&c.hash),
            json(&c.signature),
            c.time_ms,
            json(key_id)
        ),
    }
}

/// A JSON string.
fn json(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Rows of a valid chain of `n` blocks.
    pub(crate) fn rows(n: usize) -> Vec<Row> {
        let records: Vec<String> = (0..n)
            .map(|i| {
                palisade_ledger::Record {
                    correlation_id: format!("c{i}"),
                    time_ms: 1_700_000_000_000 + i as u64,
                    ..Default::default()
                }
                .to_canonical()
            })
            .collect();
        block::chain(None, &records)
            .into_iter()
            .map(|b| Row {
                seq: b.seq,
                record: b.record,
                prev: hex::encode(b.prev),
                hash: hex::encode(b.hash),
            })
            .collect()
    }

    #[test]
    fn a_valid_chain_becomes_one_line_per_block_with_its_record_verbatim() {
        let rows = rows(3);
        let (items, at, err) = check(Position::START, rows.clone());
        assert!(err.is_none());
        assert_eq!(items.len(), 3);
        assert_eq!(at.seq, 3);
        let v: serde_json::Value = serde_json::from_str(&items[1].line).unwrap();
        assert_eq!(v["type"], "block");
        assert_eq!(v["seq"], 2);
        assert_eq!(v["hash"], rows[1].hash);
        assert_eq!(v["prev_hash"], rows[0].hash);
        assert_eq!(v["record"]["correlation_id"], "c1");
        assert!(
            items[1]
                .line
                .ends_with(&format!(",\"record\":{}}}", rows[1].record))
        );
        assert_eq!(items[1].time_ms, 1_700_000_000_001);
    }

    #[test]
    fn a_checkpoint_is_one_line_with_type_first() {
        let c = Checkpoint {
            hash: "ab".repeat(32),
            seq: 9,
            signature: "cd".repeat(64),
            time_ms: 5,
        };
        let item = checkpoint(&c, "0123456789abcdef");
        assert!(
            item.line
                .starts_with(r#"{"type":"checkpoint","seq":9,"hash":"abab"#),
            "{}",
            item.line
        );
        let v: serde_json::Value = serde_json::from_str(&item.line).unwrap();
        assert_eq!(v["signature"], c.signature);
        assert_eq!(v["key_id"], "0123456789abcdef");
        assert_eq!((item.seq, item.time_ms), (9, 5));
    }

    #[test]
    fn nothing_past_a_break_in_the_chain_is_exported() {
        // An edited record.
        let mut edited = rows(4);
        edited[2].record = edited[2].record.replace("c2", "cX");
        let (items, at, err) = check(Position::START, edited);
        assert_eq!(items.len(), 2);
        assert_eq!(at.seq, 2);
        assert!(matches!(err, Some(Error::Chain { seq: 3, what }) if what.contains("contents")));
        // A deleted row.
        let mut gap = rows(4);
        gap.remove(1);
        let (items, _, err) = check(Position::START, gap);
        assert_eq!(items.len(), 1);
        assert!(matches!(err, Some(Error::Chain { seq: 2, .. })));
        // Rows that do not continue from the cursor.
        let all = rows(4);
        let wrong = Position {
            seq: 2,
            hash: [7; 32],
        };
        let (items, _, err) = check(wrong, all[2..].to_vec());
        assert!(items.is_empty());
        assert!(matches!(err, Some(Error::Chain { seq: 3, what }) if what.contains("prev")));
    }
}
