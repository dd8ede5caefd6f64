//! Types generated from the WIT contract (`sdk/wit/policy.wit`).
//!
//! Only the types are used: host functions are defined by hand in `host/` so that
//! each one can charge fuel against the calling store.
#![allow(missing_docs, unreachable_pub, dead_code)]

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "policy",
});
