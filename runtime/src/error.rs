//! The runtime's one error type.

use std::time::Duration;

/// A specialized `Result` whose error is the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when loading or invoking a policy.
///
/// Every variant belongs to one [`ErrorClass`], which decides the `palisade run`
/// exit code, the gateway's HTTP status and the audit outcome. Messages never
/// contain request data: only sizes, limits, names and the guest's own words.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The invocation used up its fuel (instruction budget).
    #[error("fuel exhausted (budget {limit})")]
    FuelExhausted {
        /// The budget the invocation started with.
        limit: u64,
    },
    /// A linear memory would grow past the policy's memory limit, or was declared larger.
    #[error("memory limit exceeded ({requested} bytes requested, limit {limit})")]
    MemoryLimit {
        /// Bytes the guest asked for.
        requested: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A table, instance or memory count would exceed its limit.
    #[error("resource limit exceeded: {what}")]
    ResourceLimit {
        /// Which resource, e.g. `table elements (10000000 > 100000)`.
        what: String,
    },
    /// The wall-clock deadline passed while the guest was running, or a WASI guest
    /// waited on frozen time (which would have lasted until the deadline).
    #[error("deadline of {0:?} exceeded")]
    Deadline(Duration),
    /// The guest exhausted its stack (unbounded recursion).
    #[error("guest stack overflow")]
    StackOverflow,
    /// The guest returned more bytes than the output cap allows. When the output was
    /// refused while it was being copied out of the guest, `size` is a lower bound.
    #[error("output too large ({size} bytes, limit {limit})")]
    OutputTooLarge {
        /// Bytes the guest returned.
        size: u64,
        /// The configured cap.
        limit: u64,
    },
    /// The guest returned more headers, or a longer head (method, path, query, header
    /// names and values), than [`Limits::max_headers`](crate::Limits::max_headers) and
    /// [`Limits::max_head_bytes`](crate::Limits::max_head_bytes) allow. The counts are
    /// of what was read before the cap was hit.
    #[error(
        "output head too large ({headers} headers, {bytes} bytes; limits {max_headers} headers, {max_bytes} bytes)"
    )]
    HeadTooLarge {
        /// Headers returned (at least).
        headers: u64,
        /// Head bytes returned (at least).
        bytes: u64,
        /// The configured header cap.
        max_headers: u64,
        /// The configured head-bytes cap.
        max_bytes: u64,
    },
    /// The guest called the host more often than the per-invocation bound allows.
    #[error("host call limit exceeded ({limit} calls)")]
    HostCallLimit {
        /// The configured bound.
        limit: u64,
    },
    /// The guest trapped (a Rust panic, `unreachable`, an out-of-bounds access...).
    #[error("guest trapped: {trap}{}", guest_message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Trap {
        /// The trap, e.g. `wasm trap: wasm 'unreachable' instruction executed`.
        trap: String,
        /// The last error-level line the guest logged before trapping (the SDK logs its panic message).
        guest_message: Option<String>,
    },
    /// The guest returned its contract's error variant.
    #[error("guest returned an error: {0}")]
    Guest(String),
    /// The guest's answer breaks the contract: out-of-bounds pointers, invalid UTF-8,
    /// an invalid status code, a header name or value that is not valid HTTP.
    #[error("guest output violates the contract: {0}")]
    InvalidOutput(String),
    /// A Lua script failed (syntax or runtime error).
    #[error("script error: {0}")]
    Script(String),
    /// A host function panicked; the invocation was abandoned and its store dropped.
    #[error("host function panicked")]
    HostPanic,
    /// The module is not valid Wasm, not a component, or cannot be componentized.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The module was built against an incompatible version of the contract.
    #[error(
        "contract version mismatch: module uses `{found}`, host supports palisade:policy@{supported}"
    )]
    ContractVersion {
        /// The interface name and version found in the module.
        found: String,
        /// The version this host implements.
        supported: String,
    },
    /// The module imports something outside the allowlist.
    #[error("forbidden import `{0}`")]
    ForbiddenImport(String),
    /// The module is larger than the configured cap.
    #[error("module too large ({size} bytes, limit {limit})")]
    ModuleTooLarge {
        /// The module's size.
        size: u64,
        /// The configured cap.
        limit: u64,
    },
    /// The module exceeds a compile-time bound (function count, body size, nesting depth).
    #[error("module exceeds a compile bound: {0}")]
    CompileBound(String),
    /// The input handed to the policy is malformed (a bad envelope, an invalid header).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An I/O error of the host (reading a module, the artifact cache).
    #[error("{context}: {source}")]
    Io {
        /// What the runtime was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The engine could not be built or a module could not be compiled for reasons of the host.
    #[error("engine error: {0}")]
    Engine(String),
}

/// The coarse classes of [`Error`], one per exit code and audit outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The input was malformed. `palisade run` exits 2.
    Input,
    /// A resource limit was hit: fuel, memory, deadline, stack, output size. Exit 3.
    Limit,
    /// The guest failed: trap, returned error, script error. Exit 4.
    Guest,
    /// The module was rejected at load. Exit 5.
    Rejected,
    /// The host failed (I/O, engine). Exit 1.
    Host,
}

impl ErrorClass {
    /// The `palisade run` exit code for this class.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Input => 2,
            ErrorClass::Limit => 3,
            ErrorClass::Guest => 4,
            ErrorClass::Rejected => 5,
            ErrorClass::Host => 1,
        }
    }
}

impl Error {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::FuelExhausted { .. }
            | Error::MemoryLimit { .. }
            | Error::ResourceLimit { .. }
            | Error::Deadline(_)
            | Error::StackOverflow
            | Error::OutputTooLarge { .. }
            | Error::HeadTooLarge { .. }
            | Error::HostCallLimit { .. } => ErrorClass::Limit,
            Error::Trap { .. }
            | Error::Guest(_)
            | Error::InvalidOutput(_)
            | Error::Script(_)
            | Error::HostPanic => ErrorClass::Guest,
            Error::InvalidModule(_)
            | Error::ContractVersion { .. }
            | Error::ForbiddenImport(_)
            | Error::ModuleTooLarge { .. }
            | Error::CompileBound(_) => ErrorClass::Rejected,
            Error::InvalidInput(_) => ErrorClass::Input,
            Error::Io { .. } | Error::Engine(_) => ErrorClass::Host,
        }
    }

    /// A short, stable, machine-readable name for this error (`fuel_exhausted`, ...),
    /// used in metrics labels and audit records.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::FuelExhausted { .. } => "fuel_exhausted",
            Error::MemoryLimit { .. } => "memory_limit",
            Error::ResourceLimit { .. } => "resource_limit",
            Error::Deadline(_) => "deadline",
            Error::StackOverflow => "stack_overflow",
            Error::OutputTooLarge { .. } => "output_too_large",
            Error::HeadTooLarge { .. } => "head_too_large",
            Error::HostCallLimit { .. } => "host_call_limit",
            Error::Trap { .. } => "trap",
            Error::Guest(_) => "guest_error",
            Error::InvalidOutput(_) => "policy_invalid_output",
            Error::Script(_) => "script_error",
            Error::HostPanic => "host_panic",
            Error::InvalidModule(_) => "invalid_module",
            Error::ContractVersion { .. } => "contract_version",
            Error::ForbiddenImport(_) => "forbidden_import",
            Error::ModuleTooLarge { .. } => "module_too_large",
            Error::CompileBound(_) => "compile_bound",
            Error::InvalidInput(_) => "invalid_input",
            Error::Io { .. } => "io",
            Error::Engine(_) => "engine",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
