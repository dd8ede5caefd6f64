//! Palisade's gateway pipeline as a library.
//!
//! A [`Gateway`] is built from a TOML file ([`config`]), listens ([`server`]) and runs
//! every request through the [`pipeline`]'s named phases: correlation id, limits, auth,
//! tenant binding, request policies, upstream, response policies, built-in
//! [`redaction`], audit. Other Rust servers embed the same phases: [`Pipeline::handle`]
//! inside their own hyper service, or [`PolicyLayer`] around any tower service.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = palisade_gateway::Gateway::from_file("palisade.toml".as_ref())?;
//! let running = gateway.start().await?;
//! println!("proxy on {}", running.proxy_addr());
//! tokio::signal::ctrl_c().await?;
//! running.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Core concepts:
//! - [`config`]: the file, read section by section into the config types the parts own
//!   ([`server::Config`], [`audit::Config`], [`auth::Config`], [`secrets::Config`],
//!   [`registry::Config`], [`pipeline::config`]), and [`config::check`] (every error, with
//!   its line).
//! - [`Pipeline`]: the phases, each a named function; each error is an [`Error`] with one
//!   status and one audit cause, each request a [`Verdict`].
//! - [`Chain`]: Wasm and Lua policies run in order, each in a fresh sandbox.
//! - [`redaction`]: JSONPath and regex rules applied natively, failing closed.
//! - [`Metrics`]: Prometheus metrics on the admin listener.
//! - [`export`]: the ledger sent to SIEMs (files, syslog, Elastic, Splunk), at least once.
//! - [`envoy`]: the same pipeline as Envoy's ext_proc and ext_authz server.

mod admin;
pub mod audit;
pub mod auth;
mod body;
pub mod chain;
pub mod classification;
pub mod config;
mod db;
pub mod envoy;
mod error;
pub mod export;
mod layer;
mod metrics;
pub mod pipeline;
pub mod redaction;
pub mod registry;
pub mod resilience;
pub mod schema;
pub mod secrets;
pub mod server;
pub mod telemetry;

pub use crate::body::{Body, BoxError, full};
pub use crate::chain::{Chain, ChainPolicy, Trace};
pub use crate::error::Error;
pub use crate::layer::{PolicyLayer, PolicyService};
pub use crate::metrics::{Metrics, PolicyOutcome};
pub use crate::pipeline::{BodyLimits, Pipeline, Verdict};
pub use crate::server::{Gateway, Running, StartError};
