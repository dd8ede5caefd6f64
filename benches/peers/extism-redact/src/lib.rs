//! `redact-pii`'s redaction behind an Extism plug-in function: the same code, the same
//! config parsing per call, so the benches compare the runtimes, not the guests.

use extism_pdk::{FnResult, plugin_fn};
use palisade_sdk::Context;

/// Redacts a JSON body (the input) as `redact-pii` does with its default config; returns
/// the body unchanged when there is nothing to redact.
#[plugin_fn]
pub fn redact(body: Vec<u8>) -> FnResult<Vec<u8>> {
    let ctx = Context::default();
    let settings = redact_pii::Settings::from_context(&ctx)
        .map_err(|e| extism_pdk::Error::msg(e.to_string()))?;
    match settings
        .redact_body(&body)
        .map_err(|e| extism_pdk::Error::msg(e.to_string()))?
    {
        Some((out, _paths)) => Ok(out),
        None => Ok(body),
    }
}
