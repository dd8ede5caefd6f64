//! The embedded ledger: one SQLite file in WAL mode.
//!
//! Append-only is enforced three times over: triggers that abort any UPDATE or DELETE of
//! a block; `SQLITE_DBCONFIG_DEFENSIVE`, which forbids `writable_schema` and other ways
//! of editing the schema behind SQLite's back; and an authorizer on the gateway's own
//! connection that allows nothing but reading and inserting blocks, so even a bug (or an
//! injected statement) in the gateway cannot drop a trigger or rewrite a row.

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{RawBlock, Store};
use crate::block::{self, Block};
use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    seq    INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    prev   TEXT NOT NULL,
    hash   TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the palisade ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the palisade ledger is append-only'); END;
";

pub(super) struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    pub(super) fn open(path: &Path, durable: bool) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before the writer acknowledges it.
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        conn.execute_batch(SCHEMA)?;
        let mut store = SqliteStore { conn };
        if store.head()?.is_none() {
            store.append(&[crate::Record::genesis()])?;
        }
        store.conn.authorizer(Some(append_only))?;
        Ok(store)
    }

    pub(super) fn open_read_only(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such ledger"),
            ));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(SqliteStore { conn })
    }
}

/// The gateway's connection may read blocks and insert new ones; nothing else.
fn append_only(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::Function { .. } => Authorization::Allow,
        AuthAction::Insert {
            table_name: "ledger",
        } => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

impl Store for SqliteStore {
    fn append(&mut self, records: &[String]) -> Result<Vec<Block>> {
        // IMMEDIATE takes the write lock before reading the head: two processes sharing
        // the file serialize here instead of forking the chain.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head = read_head(&tx)?;
        let blocks = block::chain(head, records);
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO ledger (seq, record, prev, hash) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for b in &blocks {
                insert.execute((
                    b.seq as i64,
                    &b.record,
                    hex::encode(b.prev),
                    hex::encode(b.hash),
                ))?;
            }
        }
        tx.commit()?;
        Ok(blocks)
    }

    fn head(&mut self) -> Result<Option<(u64, [u8; 32])>> {
        read_head(&self.conn)
    }

    fn execute_unchecked(&mut self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn scan(
        &mut self,
        from: u64,
        to: u64,
        each: &mut dyn FnMut(RawBlock<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, record, prev, hash FROM ledger WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query((
            from.min(i64::MAX as u64) as i64,
            to.min(i64::MAX as u64) as i64,
        ))?;
        while let Some(row) = rows.next()? {
            let raw = RawBlock {
                seq: row.get(0)?,
                record: text(row.get_ref(1)?),
                prev: text(row.get_ref(2)?),
                hash: text(row.get_ref(3)?),
            };
            if each(raw).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// A column as text, whatever type it was edited to.
fn text(value: ValueRef<'_>) -> Cow<'_, str> {
    match value {
        ValueRef::Text(t) | ValueRef::Blob(t) => match std::str::from_utf8(t) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(t),
        },
        ValueRef::Integer(i) => i.to_string().into(),
        ValueRef::Real(r) => r.to_string().into(),
        ValueRef::Null => Cow::Borrowed(""),
    }
}

fn read_head(conn: &Connection) -> Result<Option<(u64, [u8; 32])>> {
    let mut stmt = conn.prepare_cached("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")?;
    let mut rows = stmt.query(())?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let seq: i64 = row.get(0)?;
    super::parse_head("ledger", seq, &text(row.get_ref(1)?)).map(Some)
}
