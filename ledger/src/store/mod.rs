//! Where blocks live: SQLite (embedded default) or PostgreSQL (shared).

mod postgres;
mod sqlite;

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::path::PathBuf;

pub use self::postgres::postgres_init;

use crate::block::Block;
use crate::error::Result;

/// A ledger database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A SQLite file (created on first use).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string, for the gateway's writer role. The schema is
    /// created beforehand by the owner with [`postgres_init`].
    Postgres(String),
}

/// A block as stored, before any check: each field exactly as the database holds it,
/// borrowed from the database row where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBlock<'a> {
    /// The sequence number.
    pub seq: i64,
    /// The record text (lossily decoded if it is not UTF-8).
    pub record: Cow<'a, str>,
    /// The previous hash, as stored.
    pub prev: Cow<'a, str>,
    /// The hash, as stored.
    pub hash: Cow<'a, str>,
}

/// A ledger database connection.
pub trait Store: Send {
    /// Appends `records` in one transaction, chained after the current head as read
    /// inside that transaction (so several writers never fork the chain).
    ///
    /// # Errors
    ///
    /// When the database refuses or fails the transaction; nothing is appended then.
    fn append(&mut self, records: &[String]) -> Result<Vec<Block>>;

    /// The last block's sequence number and hash.
    ///
    /// # Errors
    ///
    /// When the database fails, or the stored hash is not valid hex.
    fn head(&mut self) -> Result<Option<(u64, [u8; 32])>>;

    /// Calls `each` for the blocks with `from <= seq <= to`, in sequence order.
    ///
    /// # Errors
    ///
    /// When the database fails.
    fn scan(
        &mut self,
        from: u64,
        to: u64,
        each: &mut dyn FnMut(RawBlock<'_>) -> ControlFlow<()>,
    ) -> Result<()>;

    /// Runs arbitrary SQL on this connection, as a bug or an injected statement in the
    /// gateway would. Exists so tests can prove the connection's guards refuse it.
    #[doc(hidden)]
    fn execute_unchecked(&mut self, sql: &str) -> Result<()>;
}

/// Opens (creating the SQLite schema if needed) a store for appending.
///
/// # Errors
///
/// When the database cannot be opened or set up; for PostgreSQL, also when the role
/// owns the ledger or is a superuser ([`Error::PrivilegedRole`](crate::Error::PrivilegedRole)).
pub fn open_store(target: &Target, durable: bool) -> Result<Box<dyn Store>> {
    Ok(match target {
        Target::Sqlite(path) => Box::new(sqlite::SqliteStore::open(path, durable)?),
        Target::Postgres(url) => Box::new(postgres::PgStore::connect(url)?),
    })
}

/// The head `(seq, hash)` from its stored columns.
///
/// # Errors
///
/// [`Error::Format`](crate::Error::Format) when the stored hash is not 64 hex digits: a
/// chain cannot be extended from a head it cannot read.
fn parse_head(table: &str, seq: i64, hash: &str) -> Result<(u64, [u8; 32])> {
    let hash = crate::block::parse_hex(hash).ok_or_else(|| crate::Error::Format {
        path: table.into(),
        message: format!("block {seq}: stored hash is not 64 hex digits"),
    })?;
    Ok((seq as u64, hash))
}

/// Opens a store for reading only (verification).
pub(crate) fn open_reader(target: &Target) -> Result<Box<dyn Store>> {
    Ok(match target {
        Target::Sqlite(path) => Box::new(sqlite::SqliteStore::open_read_only(path)?),
        Target::Postgres(url) => Box::new(postgres::PgStore::connect_reader(url)?),
    })
}

/// The blocks whose record has `correlation_id`, in sequence order: what one request (or
/// admin call) left in the ledger. Reads the whole ledger.
///
/// # Errors
///
/// When the database cannot be read.
pub fn find_correlation(
    target: &Target,
    correlation_id: &str,
) -> Result<Vec<(u64, serde_json::Value)>> {
    let mut store = open_reader(target)?;
    let mut found = Vec::new();
    // The canonical record holds the id as a JSON string: only those records are parsed.
    let needle = serde_json::to_string(correlation_id).expect("a string serializes");
    store.scan(1, u64::MAX, &mut |b| {
        if b.record.contains(&needle)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&b.record)
            && v["correlation_id"] == correlation_id
        {
            found.push((b.seq as u64, v));
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}
