//! Why the registry refused something: one HTTP status and one stable cause per variant.

use crate::db::DbError;

/// Why the registry refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No such tenant, module or version. 404.
    #[error("not found")]
    NotFound,
    /// That version exists already: versions are immutable. 409.
    #[error("version exists")]
    Exists,
    /// Nothing to roll back to. 409.
    #[error("no previous version")]
    NoPrevious,
    /// The name or version is not acceptable. 400.
    #[error("bad name: {0}")]
    BadName(&'static str),
    /// The module is larger than `max_module_bytes`. 413.
    #[error("module too large")]
    TooLarge,
    /// The module was refused: `cause` is the stable reason (a runtime error kind,
    /// `signature_required`, `signature_invalid`, `smoke_*`). 422.
    #[error("module rejected: {cause}")]
    Rejected {
        /// The reason.
        cause: &'static str,
        /// Details for the uploader (never secrets).
        detail: String,
    },
    /// Something still uses it (`version_in_use`: active or pinned by a route;
    /// `secret_in_use`); `detail` says what. 409.
    #[error("{cause}: {detail}")]
    InUseBy {
        /// The reason.
        cause: &'static str,
        /// What uses it (route and upstream names, never values).
        detail: String,
    },
    /// The metadata database or the module store failed. 503.
    #[error("registry storage: {0}")]
    Storage(String),
}

impl RegistryError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            RegistryError::NotFound => 404,
            RegistryError::Exists | RegistryError::InUseBy { .. } | RegistryError::NoPrevious => {
                409
            }
            RegistryError::BadName(_) => 400,
            RegistryError::TooLarge => 413,
            RegistryError::Rejected { .. } => 422,
            RegistryError::Storage(_) => 503,
        }
    }

    /// The stable cause (error bodies, audit blocks).
    pub fn cause(&self) -> &'static str {
        match self {
            RegistryError::NotFound => "not_found",
            RegistryError::Exists => "version_exists",
            RegistryError::NoPrevious => "no_previous_version",
            RegistryError::BadName(what) => what,
            RegistryError::TooLarge => "module_too_large",
            RegistryError::Rejected { cause, .. } | RegistryError::InUseBy { cause, .. } => cause,
            RegistryError::Storage(_) => "registry_unavailable",
        }
    }
}

impl From<DbError> for RegistryError {
    fn from(e: DbError) -> Self {
        RegistryError::Storage(e.0)
    }
}

/// A storage failure with its message.
pub(super) fn storage(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(e.to_string())
}
