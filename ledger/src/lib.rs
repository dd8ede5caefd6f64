//! Palisade's tamper-evident audit ledger.
//!
//! Every request the gateway handles becomes a [`Record`]; records are chained into
//! blocks whose hash covers the previous block's hash, and the database refuses to
//! change or remove a block once written. [`verify`] walks a chain and names the first
//! bad block; signed [`checkpoint`]s, kept outside the database, catch the attacks a
//! chain alone cannot (tail truncation, a restored older copy, a recomputed chain).
//!
//! ```no_run
//! use palisade_ledger::{Ledger, Options, Record, Target};
//!
//! # async fn demo() -> palisade_ledger::Result<()> {
//! let ledger = Ledger::open(Target::Sqlite("audit.db".into()), Options::default())?;
//! let seq = ledger.append(Record::default()).await?; // returns once the block is durable
//! println!("block {seq:?}");
//! let report = palisade_ledger::verify::verify(&Target::Sqlite("audit.db".into()), None, None)?;
//! assert!(report.is_intact());
//! # Ok(()) }
//! ```
//!
//! Core concepts:
//! - [`Record`]: what one request (or registry change) leaves behind; paths, never values.
//! - [`block`]: the canonical encoding and hash (documented in `docs/audit.md`).
//! - [`Store`]: SQLite (embedded default) or PostgreSQL (shared by several gateways).
//! - [`Ledger`]: the group-commit writer the gateway appends through.
//! - [`verify`] and [`checkpoint`]: proof that the chain is intact.

pub mod block;
pub mod checkpoint;
mod error;
pub mod keyfile;
pub mod pg;
mod record;
mod store;
pub mod verify;
mod writer;

pub use crate::block::{Block, GENESIS_PREV};
pub use crate::error::{Error, Result, postgres_message};
pub use crate::record::{Kind, ModuleRef, Record};
pub use crate::store::{RawBlock, Store, Target, find_correlation, open_store, postgres_init};
pub use crate::writer::{Durability, Ledger, Options};

/// The secret store's tables: wrapped data keys and sealed secrets (no plaintext).
pub const SECRETS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS palisade_secret_keys (
  tenant TEXT NOT NULL, version BIGINT NOT NULL, wrapped TEXT NOT NULL, master_id TEXT NOT NULL,
  uses BIGINT NOT NULL, created_ms BIGINT NOT NULL,
  PRIMARY KEY (tenant, version));
CREATE TABLE IF NOT EXISTS palisade_secrets (
  tenant TEXT NOT NULL, id TEXT NOT NULL, version BIGINT NOT NULL, key_version BIGINT NOT NULL,
  sealed TEXT NOT NULL, created_ms BIGINT NOT NULL,
  PRIMARY KEY (tenant, id, version));
CREATE TABLE IF NOT EXISTS palisade_secret_retired_masters (
  master_id TEXT NOT NULL PRIMARY KEY, retired_ms BIGINT NOT NULL);";

/// The audit exporter's cursors (palisade-gateway's `export`): per sink, the last block
/// the sink acknowledged and its hash. In the ledger's database, so a cursor moves only
/// with the ledger it points into (`palisade ledger init` creates it on PostgreSQL).
pub const EXPORT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS palisade_export_cursor (
  sink TEXT NOT NULL PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL,
  updated_ms BIGINT NOT NULL);";

/// The module registry's metadata tables, kept in the ledger's database (SQLite and
/// PostgreSQL alike; `palisade ledger init` creates them on PostgreSQL).
pub const REGISTRY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS palisade_registry_versions (
  tenant TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
  digest TEXT NOT NULL, kind TEXT NOT NULL, size BIGINT NOT NULL, phases TEXT NOT NULL,
  signer TEXT, signature TEXT, uploaded_by TEXT NOT NULL, created_ms BIGINT NOT NULL,
  PRIMARY KEY (tenant, name, version));
CREATE TABLE IF NOT EXISTS palisade_registry_active (
  tenant TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, previous TEXT,
  PRIMARY KEY (tenant, name));
CREATE TABLE IF NOT EXISTS palisade_registry_history (
  tenant TEXT NOT NULL, name TEXT NOT NULL, seq BIGINT NOT NULL, action TEXT NOT NULL,
  version TEXT NOT NULL, stack TEXT NOT NULL, actor TEXT NOT NULL, time_ms BIGINT NOT NULL,
  PRIMARY KEY (tenant, name, seq));";
