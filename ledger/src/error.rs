use std::path::PathBuf;

/// A ledger error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite refused or failed an operation (including the append-only guards).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed an operation (including the append-only guards).
    #[error("postgres: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    /// A file (checkpoint, key) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint or key file is malformed.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A key file of another kind than the one expected (a usage error).
    #[error("{path}: this is {found}; expected {expected}")]
    WrongKey {
        /// The file.
        path: PathBuf,
        /// What it holds.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// The PostgreSQL role the gateway connects as owns the ledger or is a superuser, so
    /// the database could not keep the ledger append-only against it.
    #[error("postgres role `{0}` owns the ledger or is a superuser; connect as the writer role")]
    PrivilegedRole(String),
    /// The writer stopped (the gateway is shutting down, or the database failed).
    #[error("ledger writer unavailable: {0}")]
    Unavailable(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// A PostgreSQL error for logs and error messages: severity, SQLSTATE and message, but
/// not the server's DETAIL and HINT, which can quote a row's values ("Failing row
/// contains ...").
pub fn postgres_message(e: &postgres::Error) -> String {
    if let Some(tls) = crate::pg::tls_failure(e) {
        return tls;
    }
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}
