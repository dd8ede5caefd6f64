//! Generated bindings of `sdk/wit` (wit-bindgen): the SDK's only `unsafe`. The export
//! side is implemented in `glue.rs`, the host calls are wrapped in `backend/wasm.rs`.
#![allow(unsafe_code, missing_docs, unreachable_pub)]

wit_bindgen::generate!({
    path: "wit",
    world: "policy",
    pub_export_macro: true,
    export_macro_name: "__export_policy_impl",
    default_bindings_module: "palisade_sdk::__private::bindings",
});
