//! `palisade audit export --since N`: blocks from `N` to the head (as it is when the
//! back-fill starts) sent again to a sink, or written as JSON lines, without reading or
//! moving any cursor; then the newest signed checkpoint they cover.

use std::io::Write;

use super::Error;
use super::cursor::Source;
use super::item::{self, Position};
use super::sinks::Sink;
use crate::audit::Config;
use crate::db::Access;

/// What a back-fill did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Backfilled {
    /// Blocks sent (or written).
    pub blocks: u64,
    /// The last block sent (0 when none).
    pub through: u64,
    /// The checkpoint sent after them, if any.
    pub checkpoint: Option<u64>,
    /// Why it stopped early, if it did: nothing after [`Backfilled::through`] was sent.
    pub error: Option<Error>,
}

/// Sends blocks `since..=head` to the sink named `sink` of `audit`, or writes them to
/// `out` (one JSON object per line) when `sink` is `None`.
///
/// # Errors
///
/// [`Error::UnknownSink`], or when the ledger or the sink's credentials cannot be read:
/// nothing was sent. A failure midway is [`Backfilled::error`].
pub fn backfill(
    audit: &Config,
    since: u64,
    sink: Option<&str>,
    out: &mut dyn Write,
) -> Result<Backfilled, Error> {
    let mut sink = match sink {
        None => None,
        Some(name) => {
            let config = audit
                .export
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| Error::UnknownSink(name.to_string()))?;
            let built = Sink::new(config, &audit.instance).map_err(Error::Config)?;
            Some((config, built))
        }
    };
    let checkpoints = super::checkpoints(audit)?;
    let source = Source::open(&audit.store, Access::ReadOnly)?;
    let head = source.head()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;
    // The block before `since` anchors the first one's `prev`.
    let mut at = match since.saturating_sub(1) {
        0 => Position::START,
        before => match source.read(before - 1, 1)?.first() {
            Some(row) if row.seq == before => Position {
                seq: before,
                hash: palisade_ledger::block::parse_hex(&row.hash).ok_or(Error::Chain {
                    seq: before,
                    what: "stored hash is not 64 lowercase hex digits",
                })?,
            },
            _ => return Ok(Backfilled::default()),
        },
    };
    let mut batch = sink.as_ref().map_or(1000, |(c, _)| c.batch);
    let mut done = Backfilled::default();
    let mut send = |items: &[item::Item]| -> Result<(), Error> {
        match &mut sink {
            None => {
                for i in items {
                    writeln!(out, "{}", i.line).map_err(|e| Error::Sink(e.to_string()))?;
                }
                out.flush().map_err(|e| Error::Sink(e.to_string()))
            }
            Some((config, sink)) => {
                match rt.block_on(async {
                    tokio::time::timeout(config.timeout, sink.send(items)).await
                }) {
                    Ok(result) => result,
                    Err(_) => Err(Error::Sink(format!(
                        "no acknowledgement within {} ms",
                        config.timeout.as_millis()
                    ))),
                }
            }
        }
    };
    while at.seq < head {
        let limit = batch.min((head - at.seq) as usize);
        let rows = source.read(at.seq, limit)?;
        if rows.is_empty() {
            break;
        }
        let (items, end, broken) = item::check(at, rows);
        if !items.is_empty() {
            match send(&items) {
                Ok(()) => {}
                // Fewer blocks per batch, from the same place.
                Err(Error::TooLarge(_)) if limit > 1 => {
                    batch = limit / 2;
                    continue;
                }
                Err(e) => {
                    done.error = Some(e);
                    return Ok(done);
                }
            }
            done.blocks += items.len() as u64;
            done.through = end.seq;
        }
        at = end;
        if let Some(e) = broken {
            done.error = Some(e);
            return Ok(done);
        }
    }
    if let Some(c) = checkpoints.as_ref()
        && let Some(newest) = c.newest()
        && newest.seq <= at.seq
        && newest.seq >= since
    {
        match send(&[item::checkpoint(&newest, &c.key_id)]) {
            Ok(()) => done.checkpoint = Some(newest.seq),
            Err(e) => done.error = Some(e),
        }
    }
    Ok(done)
}
