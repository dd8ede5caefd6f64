//! Subcommands.

pub(crate) mod admin;
pub(crate) mod apikey;
pub(crate) mod audit;
pub(crate) mod build;
pub(crate) mod cases;
pub(crate) mod envelope;
pub(crate) mod log;
pub(crate) mod module;
pub(crate) mod new;
pub(crate) mod quickstart;
pub(crate) mod run;
pub(crate) mod secret;
pub(crate) mod serve;
pub(crate) mod test;
pub(crate) mod verify;

/// How a command prints what it reports: for people, or one JSON document for tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// Lines of text.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}
