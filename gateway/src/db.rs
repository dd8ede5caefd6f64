//! The gateway's own tables (module registry, secrets) in the ledger's database: the
//! SQLite file on its own connection, or PostgreSQL. Statements are written once, with
//! PostgreSQL's `$N` placeholders, and values travel as text.

use std::sync::Mutex;
use std::time::Duration;

use palisade_ledger::Target;

/// Why the database could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DbError(pub String);

/// A connection to the ledger's database for the gateway's own tables.
pub(crate) struct Db(Mutex<Conn>);

/// Whether opening may create what is missing (`serve`, the CLI's writes) or only
/// reads (`check-config`: no side effects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Create,
    ReadOnly,
}

impl Db {
    /// Opens the ledger's database `target` (`[audit]`). On SQLite `schema` is created
    /// (with [`Access::Create`]); on PostgreSQL `palisade ledger init` creates it. `probe`
    /// (a query on the tables) checks they exist.
    pub(crate) fn open(
        target: &Target,
        schema: &'static str,
        probe: &'static str,
        access: Access,
    ) -> Result<Self, DbError> {
        let conn = match target {
            Target::Postgres(url) => {
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut c = palisade_ledger::pg::connect(&url).map_err(|e| e.to_string())?;
                    c.query(probe, &[]).map_err(|e| {
                        format!(
                            "postgres: {} (run `palisade ledger init`)",
                            palisade_ledger::postgres_message(&e)
                        )
                    })?;
                    Ok::<_, String>(Conn::Postgres(PgClient(Some(c))))
                })
                .join()
                .map_err(|_| DbError("postgres thread panicked".into()))?
                .map_err(DbError)?
            }
            Target::Sqlite(db) if access == Access::ReadOnly => {
                if !db.exists() {
                    return Err(DbError(format!(
                        "{}: does not exist yet (`palisade serve` creates it)",
                        db.display()
                    )));
                }
                let c = rusqlite::Connection::open_with_flags(
                    db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .and_then(|c| {
                    c.busy_timeout(Duration::from_secs(10))?;
                    c.prepare(probe)?.query(())?.next()?;
                    Ok(c)
                })
                .map_err(|e| DbError(format!("{}: {e}", db.display())))?;
                Conn::Sqlite(c)
            }
            Target::Sqlite(db) => {
                let c = rusqlite::Connection::open(db)
                    .and_then(|c| {
                        c.busy_timeout(Duration::from_secs(10))?;
                        c.execute_batch(schema)?;
                        Ok(c)
                    })
                    .map_err(|e| DbError(format!("{}: {e}", db.display())))?;
                Conn::Sqlite(c)
            }
        };
        Ok(Db(Mutex::new(conn)))
    }

    /// Runs `f` on the connection on this thread, which must be one where a synchronous
    /// PostgreSQL client may block: not an async runtime's (the audit exporter's own
    /// threads, a CLI's main thread).
    pub(crate) fn run_here<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, String>,
    ) -> Result<T, DbError> {
        let mut conn = self.0.lock().expect("db lock");
        f(&mut conn).map_err(DbError)
    }

    /// Runs `f` on the connection, on a thread where a synchronous PostgreSQL client may
    /// block (never an async runtime's).
    pub(crate) fn run<T: Send>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, String> + Send,
    ) -> Result<T, DbError> {
        let mut conn = self.0.lock().expect("db lock");
        let conn = &mut *conn;
        std::thread::scope(|s| s.spawn(|| f(conn)).join())
            .map_err(|_| DbError("database thread panicked".into()))?
            .map_err(DbError)
    }
}

pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(PgClient),
}

/// A synchronous PostgreSQL client that may be dropped anywhere: closing it blocks, which
/// must not happen on an async runtime's thread, so it is closed on a thread of its own.
pub(crate) struct PgClient(Option<postgres::Client>);

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = std::thread::spawn(move || drop(c)).join();
        }
    }
}

impl std::ops::Deref for PgClient {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        self.0.as_ref().expect("open until dropped")
    }
}

impl std::ops::DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0.as_mut().expect("open until dropped")
    }
}

impl Conn {
    pub(crate) fn rows(
        &mut self,
        sql: &str,
        args: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c
                    .prepare_cached(&sqlite_sql(sql))
                    .map_err(|e| e.to_string())?;
                let n = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        (0..n)
                            .map(|i| {
                                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                                    rusqlite::types::Value::Null => None,
                                    rusqlite::types::Value::Integer(i) => Some(i.to_string()),
                                    rusqlite::types::Value::Text(t) => Some(t),
                                    other => Some(format!("{other:?}")),
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|e| e.to_string())?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())
            }
            Conn::Postgres(c) => {
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                    .iter()
                    .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                let rows = c
                    .query(sql, &params)
                    .map_err(|e| palisade_ledger::postgres_message(&e))?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.try_get::<_, Option<String>>(i)
                                    .ok()
                                    .flatten()
                                    .or_else(|| r.try_get::<_, i64>(i).ok().map(|n| n.to_string()))
                            })
                            .collect()
                    })
                    .collect())
            }
        }
    }

    pub(crate) fn exec(&mut self, sql: &str, args: &[&str]) -> Result<u64, String> {
        match self {
            Conn::Sqlite(c) => c
                .execute(&sqlite_sql(sql), rusqlite::params_from_iter(args.iter()))
                .map(|n| n as u64)
                .map_err(|e| e.to_string()),
            Conn::Postgres(c) => {
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                    .iter()
                    .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                c.execute(sql, &params)
                    .map_err(|e| palisade_ledger::postgres_message(&e))
            }
        }
    }

    /// Runs `f` in one transaction that holds `lock` (a name) until it ends: on
    /// PostgreSQL a transaction-scoped advisory lock, so gateways sharing the database
    /// take turns; on SQLite the write lock (`BEGIN IMMEDIATE`). Rolled back when `f`
    /// fails.
    pub(crate) fn locked<T>(
        &mut self,
        lock: &str,
        f: impl FnOnce(&mut Conn) -> Result<T, String>,
    ) -> Result<T, String> {
        match self {
            Conn::Sqlite(c) => c
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| e.to_string())?,
            Conn::Postgres(c) => {
                c.batch_execute("BEGIN")
                    .map_err(|e| palisade_ledger::postgres_message(&e))?;
                let taken = c
                    .execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock])
                    .map_err(|e| palisade_ledger::postgres_message(&e));
                if let Err(e) = taken {
                    let _ = c.batch_execute("ROLLBACK");
                    return Err(e);
                }
            }
        }
        let done = f(self);
        let end = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = match self {
            Conn::Sqlite(c) => c.execute_batch(end).map_err(|e| e.to_string()),
            Conn::Postgres(c) => c
                .batch_execute(end)
                .map_err(|e| palisade_ledger::postgres_message(&e)),
        };
        let value = done?;
        ended?;
        Ok(value)
    }
}

/// The statements are written with PostgreSQL's `$N`; SQLite numbers by `?N` (its `$N`
/// would be a name, numbered by first appearance).
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}
