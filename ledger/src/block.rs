//! The block encoding and hash.
//!
//! `hash = SHA-256("palisade-ledger/1" || 0x00 || seq as 8 bytes big-endian || prev (32
//! bytes) || record (UTF-8 canonical JSON))`, stored as lowercase hex. The first block
//! (`seq` 1) has `prev` = 32 zero bytes. `docs/audit.md` has a ten-line script that
//! re-verifies a ledger with nothing but SQLite and SHA-256.

use sha2::{Digest, Sha256};

/// The domain separator at the start of every hashed block.
pub const DOMAIN: &[u8] = b"palisade-ledger/1\0";

/// The `prev` of the first block.
pub const GENESIS_PREV: [u8; 32] = [0; 32];

/// One block of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// The canonical JSON of the [`Record`](crate::Record).
    pub record: String,
    /// The previous block's hash.
    pub prev: [u8; 32],
    /// This block's hash.
    pub hash: [u8; 32],
}

/// The hash of a block.
pub fn hash(seq: u64, prev: &[u8; 32], record: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(record);
    h.finalize().into()
}

/// Chains `records` after the block `(seq, hash)` (`None` for an empty ledger).
pub fn chain(head: Option<(u64, [u8; 32])>, records: &[String]) -> Vec<Block> {
    let (mut seq, mut prev) = head.unwrap_or((0, GENESIS_PREV));
    records
        .iter()
        .map(|record| {
            seq += 1;
            let hash = hash(seq, &prev, record.as_bytes());
            let block = Block {
                seq,
                record: record.clone(),
                prev,
                hash,
            };
            prev = hash;
            block
        })
        .collect()
}

/// Parses a 64-character lowercase hex hash. (Hand-rolled: `verify` calls it twice per
/// block, and a general decoder was a tenth of its time.)
pub fn parse_hex(text: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_links_each_block_to_the_previous_hash() {
        let blocks = chain(None, &["{}".into(), "{\"a\":1}".into()]);
        assert_eq!(blocks[0].seq, 1);
        assert_eq!(blocks[0].prev, GENESIS_PREV);
        assert_eq!(blocks[1].prev, blocks[0].hash);
        assert_eq!(blocks[1].hash, hash(2, &blocks[0].hash, b"{\"a\":1}"));
        // Known answer, so a change to the encoding cannot go unnoticed.
        assert_eq!(
            hex::encode(blocks[0].hash),
            hex::encode(Sha256::digest(
                [DOMAIN, &1u64.to_be_bytes(), &[0; 32], b"{}"].concat()
            ))
        );
    }

    #[test]
    fn hex_must_be_64_lowercase_digits() {
        let h = hex::encode([0xabu8; 32]);
        assert_eq!(parse_hex(&h), Some([0xab; 32]));
        assert_eq!(parse_hex(&h.to_uppercase()), None);
        assert_eq!(parse_hex(&h[1..]), None);
        assert_eq!(parse_hex(&format!("{}zz", &h[2..])), None);
    }
}
