//! The shared ledger: one PostgreSQL table that several gateways append to.
//!
//! The schema belongs to an owner role ([`postgres_init`]); gateways connect as a writer
//! role that may only SELECT and INSERT. Triggers (`ENABLE ALWAYS`, so replication-role
//! tricks do not skip them) reject UPDATE, DELETE and TRUNCATE even for roles that hold
//! those privileges. Appends take a transaction-scoped advisory lock, read the head and
//! insert the batch, so concurrent writers produce one chain with no fork and no gap.

use std::borrow::Cow;
use std::ops::ControlFlow;

use postgres::{Client, GenericClient};

use super::{RawBlock, Store};
use crate::block::{self, Block};
use crate::error::{Error, Result};

/// The advisory lock key that serializes appends (ASCII "palisade").
const APPEND_LOCK: i64 = 0x7061_6c69_7361_6465;

pub(super) struct PgStore {
    client: Client,
}

impl PgStore {
    pub(super) fn connect(url: &str) -> Result<Self> {
        let mut client = crate::pg::connect(url)?;
        let row = client.query_one(
            "SELECT r.rolsuper OR COALESCE(pg_get_userbyid(c.relowner) = current_user, false), current_user::text
             FROM pg_roles r LEFT JOIN pg_class c ON c.relname = 'palisade_ledger' AND c.relkind = 'r'
             WHERE r.rolname = current_user",
            &[],
        )?;
        if row.get::<_, bool>(0) {
            return Err(Error::PrivilegedRole(row.get(1)));
        }
        Ok(PgStore { client })
    }

    pub(super) fn connect_reader(url: &str) -> Result<Self> {
        Ok(PgStore {
            client: crate::pg::connect(url)?,
        })
    }
}

fn read_head(client: &mut impl GenericClient) -> Result<Option<(u64, [u8; 32])>> {
    let row = client.query_opt(
        "SELECT seq, hash FROM palisade_ledger ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    row.map(|row| super::parse_head("palisade_ledger", row.get(0), row.get(1)))
        .transpose()
}

/// Creates the ledger schema as its owner and lets `writer_role` append to it.
///
/// Idempotent. `writer_role` must already exist and must not be a superuser.
///
/// # Errors
///
/// When `writer_role` is not a plain identifier (`[a-z_][a-z0-9_]*`) or the database
/// refuses a statement.
pub fn postgres_init(owner_url: &str, writer_role: &str) -> Result<()> {
    let valid = writer_role
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit()));
    if writer_role.is_empty() || !valid {
        return Err(Error::Format {
            path: "postgres".into(),
            message: format!("writer role must match [a-z_][a-z0-9_]*, got {writer_role:?}"),
        });
    }
    let mut client = crate::pg::connect(owner_url)?;
    // A superuser writer bypasses every guard (`serve` refuses one too): refused here,
    // before anything is created or granted.
    let writer = client.query_opt(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1",
        &[&writer_role],
    )?;
    match writer {
        None => {
            return Err(Error::Format {
                path: "postgres".into(),
                message: format!(
                    "writer role {writer_role:?} does not exist: create it first (CREATE ROLE {writer_role} LOGIN PASSWORD '...')"
                ),
            });
        }
        Some(row) if row.get::<_, bool>(0) => {
            return Err(Error::PrivilegedRole(writer_role.to_string()));
        }
        Some(_) => {}
    }
    client.batch_execute(&format!(
        r#"
        CREATE TABLE IF NOT EXISTS palisade_ledger (
            seq    BIGINT PRIMARY KEY,
            record TEXT NOT NULL,
            prev   TEXT NOT NULL,
            hash   TEXT NOT NULL
        );
        CREATE OR REPLACE FUNCTION palisade_ledger_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the palisade ledger is append-only'; END $$;
        DROP TRIGGER IF EXISTS palisade_ledger_no_change ON palisade_ledger;
        DROP TRIGGER IF EXISTS palisade_ledger_no_truncate ON palisade_ledger;
        CREATE TRIGGER palisade_ledger_no_change BEFORE UPDATE OR DELETE ON palisade_ledger
            FOR EACH ROW EXECUTE FUNCTION palisade_ledger_append_only();
        CREATE TRIGGER palisade_ledger_no_truncate BEFORE TRUNCATE ON palisade_ledger
            FOR EACH STATEMENT EXECUTE FUNCTION palisade_ledger_append_only();
        ALTER TABLE palisade_ledger ENABLE ALWAYS TRIGGER palisade_ledger_no_change;
        ALTER TABLE palisade_ledger ENABLE ALWAYS TRIGGER palisade_ledger_no_truncate;
        REVOKE ALL ON palisade_ledger FROM PUBLIC;
        REVOKE ALL ON palisade_ledger FROM "{writer_role}";
        GRANT SELECT, INSERT ON palisade_ledger TO "{writer_role}";
        -- The module registry's metadata (palisade-gateway's registry) lives beside it.
        {registry_schema}
        REVOKE ALL ON palisade_registry_versions, palisade_registry_active, palisade_registry_history FROM PUBLIC;
        GRANT SELECT, INSERT ON palisade_registry_history TO "{writer_role}";
        GRANT SELECT, INSERT, UPDATE, DELETE ON palisade_registry_versions, palisade_registry_active TO "{writer_role}";
        -- The secret store: wrapped data keys and sealed secrets.
        {secrets_schema}
        REVOKE ALL ON palisade_secret_keys, palisade_secrets, palisade_secret_retired_masters FROM PUBLIC;
        GRANT SELECT, INSERT ON palisade_secret_retired_masters TO "{writer_role}";
        GRANT SELECT, INSERT, UPDATE ON palisade_secret_keys TO "{writer_role}";
        GRANT SELECT, INSERT, UPDATE, DELETE ON palisade_secrets TO "{writer_role}";
        -- The audit exporter's cursors: moved forward by the writer, never deleted.
        {export_schema}
        REVOKE ALL ON palisade_export_cursor FROM PUBLIC;
        GRANT SELECT, INSERT, UPDATE ON palisade_export_cursor TO "{writer_role}";
        "#,
        registry_schema = crate::REGISTRY_SCHEMA,
        secrets_schema = crate::SECRETS_SCHEMA,
        export_schema = crate::EXPORT_SCHEMA,
    ))?;
    let mut store = PgStore { client };
    if store.head()?.is_none() {
        store.append(&[crate::Record::genesis()])?;
    }
    Ok(())
}

impl Store for PgStore {
    fn append(&mut self, records: &[String]) -> Result<Vec<Block>> {
        let mut tx = self.client.transaction()?;
        tx.query("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])?;
        let head = read_head(&mut tx)?;
        let blocks = block::chain(head, records);
        let seqs: Vec<i64> = blocks.iter().map(|b| b.seq as i64).collect();
        let recs: Vec<&str> = blocks.iter().map(|b| b.record.as_str()).collect();
        let prevs: Vec<String> = blocks.iter().map(|b| hex::encode(b.prev)).collect();
        let hashes: Vec<String> = blocks.iter().map(|b| hex::encode(b.hash)).collect();
        // One statement per batch: a round trip per block would cap throughput.
        tx.execute(
            "INSERT INTO palisade_ledger (seq, record, prev, hash)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])",
            &[&seqs, &recs, &prevs, &hashes],
        )?;
        tx.commit()?;
        Ok(blocks)
    }

    fn head(&mut self) -> Result<Option<(u64, [u8; 32])>> {
        read_head(&mut self.client)
    }

    fn execute_unchecked(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn scan(
        &mut self,
        from: u64,
        to: u64,
        each: &mut dyn FnMut(RawBlock<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        let from = from.min(i64::MAX as u64) as i64;
        let to = to.min(i64::MAX as u64) as i64;
        let mut tx = self.client.build_transaction().read_only(true).start()?;
        let portal = tx.bind(
            "SELECT seq, record, prev, hash FROM palisade_ledger
             WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
            &[&from, &to],
        )?;
        loop {
            let rows = tx.query_portal(&portal, 20_000)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let raw = RawBlock {
                    seq: row.get(0),
                    record: Cow::Borrowed(row.get::<_, &str>(1)),
                    prev: Cow::Borrowed(row.get::<_, &str>(2)),
                    hash: Cow::Borrowed(row.get::<_, &str>(3)),
                };
                if each(raw).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
