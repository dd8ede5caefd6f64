//! Subcommands.

pub(crate) mod apikey;
pub(crate) mod envelope;
pub(crate) mod log;
pub(crate) mod module;
pub(crate) mod quickstart;
pub(crate) mod run;
pub(crate) mod secret;
pub(crate) mod serve;
pub(crate) mod verify;
