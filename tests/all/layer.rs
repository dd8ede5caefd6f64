//! `PolicyLayer` around an axum router, in-process (as tower's `oneshot` tests do).

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use palisade_gateway::PolicyLayer;
use palisade_gateway::redaction::{Action, Redactor, Rule};
use palisade_runtime::Module;
use palisade_test_artifacts::{INJECT_HEADERS, MISBEHAVE, REDACT_PII};
use serde_json::{Value, json};
use tower_service::Service;

use crate::fixtures::engine;

async fn call(mut svc: Router, req: http::Request<Body>) -> (u16, Value) {
    std::future::poll_fn(|cx| Service::<http::Request<Body>>::poll_ready(&mut svc, cx))
        .await
        .unwrap();
    let res = svc.call(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn app(layer: PolicyLayer) -> Router {
    Router::new()
        .route(
            "/customer",
            get(|headers: http::HeaderMap| async move {
                axum::Json(json!({
                    "ssn": "123-45-6789",
                    "card": "4111 1111 1111 1111",
                    "policy": headers.get("x-policy").map(|v| v.to_str().unwrap().to_string()),
                }))
            }),
        )
        .route(
            "/echo",
            post(|body: String| async move { axum::Json(json!({ "body": body })) }),
        )
        .layer(layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_runs_request_and_response_policies_and_redaction_around_axum() {
    let layer = PolicyLayer::new("acme", "customers")
        .request_policy(
            Module::from_file(engine(), INJECT_HEADERS).unwrap(),
            &[("request.set.x-policy", "wasm")],
        )
        .response_policy(
            Module::from_file(engine(), REDACT_PII).unwrap(),
            &[("detectors", "card")],
        )
        .redact(Redactor::new(&[Rule::path("$.ssn", Action::Mask)], None).unwrap())
        .max_body(16);
    let router = app(layer);
    let (status, body) = call(
        router.clone(),
        http::Request::get("/customer").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"ssn": "[REDACTED]", "card": "[REDACTED:card]", "policy": "wasm"})
    );

    let (status, body) = call(
        router,
        http::Request::post("/echo")
            .body(Body::from("x".repeat(17)))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "body_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_policy_in_the_layer_fails_closed() {
    let layer = PolicyLayer::new("acme", "r").request_policy(
        Module::from_file(engine(), MISBEHAVE)
            .unwrap()
            .with_limits(palisade_runtime::Limits::default().fuel(5_000_000)),
        &[],
    );
    let router = Router::new()
        .route("/loop", get(|| async { "never" }))
        .layer(layer);
    let (status, body) = call(
        router,
        http::Request::get("/loop").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "policy_failed");
}
