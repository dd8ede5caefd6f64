//! The exporter's side of the ledger's database: blocks read by sequence number, and
//! each sink's cursor (`palisade_export_cursor`), moved only after the sink acknowledged.
//!
//! On PostgreSQL several gateways share the database: a sink is exported by the one
//! gateway that holds its session advisory lock (on the connection that reads and moves
//! the cursor, so a lost connection is a lost lock), and the cursor moves by
//! compare-and-set from the position the exporter read, so two exporters can never both
//! advance it.

use palisade_ledger::block::parse_hex;
use palisade_ledger::{EXPORT_SCHEMA, Target};

use super::Error;
use super::item::{Position, Row};
use crate::db::{Access, Conn, Db};

/// A connection to the ledger's database for one exporter (or back-fill).
pub(crate) struct Source {
    db: Db,
}

impl Source {
    /// Opens `target`. With [`Access::Create`] the cursor table is created on SQLite
    /// (and must exist on PostgreSQL: `palisade ledger init`); with
    /// [`Access::ReadOnly`] only blocks are read.
    pub(crate) fn open(target: &Target, access: Access) -> Result<Self, Error> {
        let probe = match (access, target) {
            (Access::Create, _) => "SELECT sink FROM palisade_export_cursor LIMIT 1",
            (Access::ReadOnly, Target::Sqlite(_)) => "SELECT seq FROM ledger LIMIT 1",
            (Access::ReadOnly, Target::Postgres(_)) => "SELECT seq FROM palisade_ledger LIMIT 1",
        };
        let db =
            Db::open(target, EXPORT_SCHEMA, probe, access).map_err(|e| Error::Database(e.0))?;
        Ok(Source { db })
    }

    /// Runs `f` on this thread: a source is used only on the exporter's own thread or a
    /// CLI's, never on an async runtime's.
    fn run<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, String>) -> Result<T, Error> {
        self.db.run_here(f).map_err(|e| Error::Database(e.0))
    }

    /// Takes `sink`'s export lock, if no other connection holds it: a PostgreSQL session
    /// advisory lock, kept until this connection closes. Always `true` on SQLite.
    pub(crate) fn try_lock(&self, sink: &str) -> Result<bool, Error> {
        let key = format!("palisade-export/{sink}");
        self.run(move |conn| match conn {
            Conn::Sqlite(_) => Ok(true),
            Conn::Postgres(c) => c
                .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
                .map(|row| row.get::<_, bool>(0))
                .map_err(|e| palisade_ledger::postgres_message(&e)),
        })
    }

    /// `sink`'s cursor: the last block it acknowledged (created at the start of the
    /// chain when the sink is new).
    pub(crate) fn cursor(&self, sink: &str) -> Result<Position, Error> {
        let sink = sink.to_string();
        let zero = hex::encode(Position::START.hash);
        let (seq, hash) = self.run(move |conn| {
            let now = palisade_ledger::Record::now_ms() as i64;
            match conn {
                Conn::Sqlite(c) => {
                    c.execute(
                        "INSERT INTO palisade_export_cursor (sink, seq, hash, updated_ms) VALUES (?1, 0, ?2, ?3) ON CONFLICT (sink) DO NOTHING",
                        (&sink, &zero, now),
                    )
                    .and_then(|_| {
                        c.query_row(
                            "SELECT seq, hash FROM palisade_export_cursor WHERE sink = ?1",
                            [&sink],
                            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                        )
                    })
                    .map_err(|e| e.to_string())
                }
                Conn::Postgres(c) => c
                    .execute(
                        "INSERT INTO palisade_export_cursor (sink, seq, hash, updated_ms) VALUES ($1, 0, $2, $3) ON CONFLICT (sink) DO NOTHING",
                        &[&sink, &zero, &now],
                    )
                    .and_then(|_| {
                        c.query_one(
                            "SELECT seq, hash FROM palisade_export_cursor WHERE sink = $1",
                            &[&sink],
                        )
                    })
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                    .map_err(|e| palisade_ledger::postgres_message(&e)),
            }
        })?;
        match (u64::try_from(seq), parse_hex(&hash)) {
            (Ok(seq), Some(hash)) => Ok(Position { seq, hash }),
            _ => Err(Error::CursorMismatch {
                seq: seq.max(0) as u64,
                found: "a malformed cursor".into(),
            }),
        }
    }

    /// Checks that the ledger still holds the block `at` names, with its hash: a cursor
    /// past the ledger's end, or at a block with another hash, means the chain was cut
    /// or rewritten since the sink acknowledged it.
    pub(crate) fn confirm(&self, at: Position) -> Result<(), Error> {
        if at.seq == 0 {
            return Ok(());
        }
        let rows = self.read(at.seq - 1, 1)?;
        match rows.first() {
            Some(row) if row.seq == at.seq && parse_hex(&row.hash) == Some(at.hash) => Ok(()),
            Some(row) if row.seq == at.seq => Err(Error::CursorMismatch {
                seq: at.seq,
                found: "a block with another hash".into(),
            }),
            _ => Err(Error::CursorMismatch {
                seq: at.seq,
                found: "no such block".into(),
            }),
        }
    }

    /// The last block's sequence number (0 when empty).
    pub(crate) fn head(&self) -> Result<u64, Error> {
        let seq = self.run(|conn| match conn {
            Conn::Sqlite(c) => c
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM ledger", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| e.to_string()),
            Conn::Postgres(c) => c
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0)::bigint FROM palisade_ledger",
                    &[],
                )
                .map(|r| r.get::<_, i64>(0))
                .map_err(|e| palisade_ledger::postgres_message(&e)),
        })?;
        Ok(seq.max(0) as u64)
    }

    /// Up to `limit` blocks after `after`, in sequence order, unchecked.
    pub(crate) fn read(&self, after: u64, limit: usize) -> Result<Vec<Row>, Error> {
        let after = after.min(i64::MAX as u64) as i64;
        let limit = limit as i64;
        self.run(move |conn| match conn {
            Conn::Sqlite(c) => {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT seq, CAST(record AS TEXT), CAST(prev AS TEXT), CAST(hash AS TEXT) FROM ledger WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(|e| e.to_string())?;
                stmt.query_map((after, limit), |r| {
                    Ok(Row {
                        seq: r.get::<_, i64>(0)?.max(0) as u64,
                        record: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        prev: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        hash: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    })
                })
                .and_then(Iterator::collect)
                .map_err(|e| e.to_string())
            }
            Conn::Postgres(c) => c
                .query(
                    "SELECT seq, record, prev, hash FROM palisade_ledger WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &limit],
                )
                .map(|rows| {
                    rows.iter()
                        .map(|r| Row {
                            seq: r.get::<_, i64>(0).max(0) as u64,
                            record: r.get(1),
                            prev: r.get(2),
                            hash: r.get(3),
                        })
                        .collect()
                })
                .map_err(|e| palisade_ledger::postgres_message(&e)),
        })
    }

    /// Moves `sink`'s cursor from `from` to `to`, only if it is still at `from`.
    ///
    /// # Errors
    ///
    /// [`Error::CursorMoved`] when another exporter moved it meanwhile.
    pub(crate) fn advance(&self, sink: &str, from: Position, to: Position) -> Result<(), Error> {
        let sink = sink.to_string();
        let (old, new) = (from.seq as i64, to.seq as i64);
        let (old_hash, new_hash) = (hex::encode(from.hash), hex::encode(to.hash));
        let moved = self.run(move |conn| {
            let now = palisade_ledger::Record::now_ms() as i64;
            match conn {
                Conn::Sqlite(c) => c
                    .execute(
                        "UPDATE palisade_export_cursor SET seq = ?1, hash = ?2, updated_ms = ?3 WHERE sink = ?4 AND seq = ?5 AND hash = ?6",
                        (new, &new_hash, now, &sink, old, &old_hash),
                    )
                    .map(|n| n as u64)
                    .map_err(|e| e.to_string()),
                Conn::Postgres(c) => c
                    .execute(
                        "UPDATE palisade_export_cursor SET seq = $1, hash = $2, updated_ms = $3 WHERE sink = $4 AND seq = $5 AND hash = $6",
                        &[&new, &new_hash, &now, &sink, &old, &old_hash],
                    )
                    .map_err(|e| palisade_ledger::postgres_message(&e)),
            }
        })?;
        if moved == 1 {
            Ok(())
        } else {
            Err(Error::CursorMoved)
        }
    }
}
