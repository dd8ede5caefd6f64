//! Subcommands.

pub(crate) mod envelope;
pub(crate) mod run;
