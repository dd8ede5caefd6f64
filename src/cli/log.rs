//! The log of the commands that serve (`serve`, `quickstart`): `tracing` events to
//! stderr, as text lines or JSON objects.
//!
//! Events carry configuration names, correlation ids, statuses and causes; never a
//! header, body, path, token or secret value.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, the event's fields).
    Json,
}

/// The logging flags.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Which events to log: a `tracing` filter such as `warn`, `info` or
    /// `info,palisade_gateway=debug` (the last adds a line per request).
    #[arg(long = "log", env = "PALISADE_LOG", default_value = "info", value_parser = filter)]
    filter: String,
    /// `text` or `json`.
    #[arg(long, env = "PALISADE_LOG_FORMAT", value_enum, default_value_t = Format::Text)]
    log_format: Format,
}

/// Checks a filter when the command line is parsed, so a typo is a usage error (exit 2).
fn filter(directives: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(directives)
        .map(|_| directives.to_owned())
        .map_err(|e| format!("not a log filter: {e}"))
}

impl LogArgs {
    /// Installs the process's subscriber (once; later calls change nothing).
    pub(crate) fn install(&self) {
        let filter = EnvFilter::builder()
            .parse(&self.filter)
            .expect("checked when parsed");
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false);
        let _ = match self.log_format {
            Format::Text => builder.try_init(),
            Format::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init(),
        };
    }
}
