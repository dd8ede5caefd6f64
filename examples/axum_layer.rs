//! Palisade policies around an axum app, as a tower layer.
//!
//! The app's `/customers/{id}` handler returns a record full of PII. The layer runs a Wasm
//! request policy (adds a header), then, on the way out, a Lua policy (reshapes the JSON),
//! the Wasm PII redactor, and built-in JSONPath redaction: the handler stays unaware.
//!
//! Run (from the repository root):
//!
//! ```text
//! cargo guests
//! cargo run --example axum_layer
//! curl -s http://127.0.0.1:3001/customers/42
//! # {"card":"[REDACTED:card]","customer":"Ada Lovelace","id":"42","seen_header":"added-by-wasm","ssn":"[REDACTED]"}
//! ```

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use palisade_gateway::PolicyLayer;
use palisade_gateway::redaction::{Action, Redactor, Rule};
use palisade_runtime::{Config, Engine, Policy};
use serde_json::{Value, json};
use tower_layer::Layer as _;

async fn customer(Path(id): Path<String>, headers: HeaderMap) -> Json<Value> {
    let seen = headers
        .get("x-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    Json(json!({
        "id": id,
        "name": "Ada Lovelace",
        "ssn": "123-45-6789",
        "card": "4111 1111 1111 1111",
        "seen_header": seen,
        "internal": {"risk": 0.2}
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let engine = Engine::new(&Config::new())?;
    let layer = PolicyLayer::new("demo", "customers")
        .request_policy(
            Policy::from_file(&engine, "target/policies/inject-headers.wasm")?,
            &[("request.set.x-policy", "added-by-wasm")],
        )
        .response_policy(
            Policy::from_file(&engine, "policies/lua/reshape-json.lua")?,
            &[("ops", r#"[{"op":"drop","path":"/internal"},{"op":"rename","from":"/name","to":"/customer"}]"#)],
        )
        .response_policy(
            Policy::from_file(&engine, "target/policies/redact-pii.wasm")?,
            &[("detectors", "card")],
        )
        .redact(Redactor::new(&[Rule::path("$..ssn", Action::Mask)], None)?);

    // The layer wraps the whole router, so the policies run before routing (a policy's
    // path rewrite picks the handler).
    let routes = Router::new().route("/customers/{id}", get(customer));
    let app = Router::new().fallback_service(layer.layer(routes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("axum + Palisade on http://127.0.0.1:3001/customers/42");
    axum::serve(listener, app).await?;
    Ok(())
}
