//! Palisade's integration tests: one binary, one module per area (as wasmtime's
//! `tests/all`). Every guest is built from source by `palisade-test-artifacts`.

mod auth;
mod authoring;
mod cache;
mod cli;
mod contract;
mod custom_proxy;
/// `examples/custom_proxy.rs` itself, run by `custom_proxy`.
#[allow(dead_code)]
#[path = "../../examples/custom_proxy.rs"]
mod custom_proxy_example;
mod data_protection;
mod envoy;
mod export;
mod fixtures;
mod fleet;
mod gateway;
mod hardening_auth;
mod hardening_request;
mod hardening_runtime;
mod hardening_server;
mod hostile;
mod js;
mod layer;
mod ledger;
mod limits;
mod lua;
mod network;
mod operator;
mod policies;
mod pool;
mod postgres;
mod registry;
mod resilience;
mod secrets;
mod serve;
mod support;
mod traces;
mod wasi;
