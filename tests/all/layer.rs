//! `PolicyLayer` around an axum router, in-process (as tower's `oneshot` tests do), and
//! the same engine as `palisade serve`: one case table of policy rewrites, checked at
//! the gateway's upstream and at the layer's inner service.

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use palisade_gateway::PolicyLayer;
use palisade_gateway::redaction::{Action, Redactor, Rule};
use palisade_runtime::Policy;
use palisade_test_artifacts::{INJECT_HEADERS, MISBEHAVE, REDACT_PII};
use serde_json::{Value, json};
use tower_layer::Layer as _;
use tower_service::Service;

use crate::fixtures::engine;
use crate::support;

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

/// `layer` around the whole router, served by an outer one: the policies run before
/// routing.
fn app(layer: PolicyLayer) -> Router {
    let routes = Router::new()
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
        );
    Router::new().fallback_service(layer.layer(routes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_runs_request_and_response_policies_and_redaction_around_axum() {
    let layer = PolicyLayer::new("acme", "customers")
        .request_policy(
            Policy::from_file(engine(), INJECT_HEADERS).unwrap(),
            &[("request.set.x-policy", "wasm")],
        )
        .response_policy(
            Policy::from_file(engine(), REDACT_PII).unwrap(),
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
        Policy::from_file(engine(), MISBEHAVE)
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

/// A Lua request policy that rewrites what its config names: `method`, `path`, `query`,
/// `header` (`name=value`, set), `drop` (a header removed), `body`.
const REWRITE: &str = r#"
function on_request(req, ctx)
  local c = ctx.config
  if c.method then req.method = c.method end
  if c.path then req.path = c.path end
  if c.query then req.query = c.query end
  if c.header then
    local name, value = string.match(c.header, "^([^=]+)=(.*)$")
    req.headers[name] = value
  end
  if c.drop then req.headers[c.drop] = nil end
  if c.body then req.raw_body = c.body end
  return req
end
"#;

/// The caller sends `POST /echo/a?x=1` with `x-keep: 1`, `x-gone: 1` and `hello`; each
/// case's policy config, and what the receiver must get: method, path, query, one header
/// that must be there (name, value), one that must not, body.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    (&'static str, &'static str, &'static str),
    (&'static str, &'static str),
    &'static str,
    &'static str,
);

const CASES: &[Case] = &[
    (
        "unchanged",
        &[],
        ("POST", "/echo/a", "x=1"),
        ("x-keep", "1"),
        "x-rewritten",
        "hello",
    ),
    (
        "method",
        &[("method", "PUT")],
        ("PUT", "/echo/a", "x=1"),
        ("x-keep", "1"),
        "x-rewritten",
        "hello",
    ),
    (
        "path",
        &[("path", "/echo/b/c")],
        ("POST", "/echo/b/c", "x=1"),
        ("x-keep", "1"),
        "x-rewritten",
        "hello",
    ),
    (
        "query",
        &[("query", "y=2&z=%20")],
        ("POST", "/echo/a", "y=2&z=%20"),
        ("x-keep", "1"),
        "x-rewritten",
        "hello",
    ),
    (
        "headers",
        &[("header", "x-rewritten=yes"), ("drop", "x-gone")],
        ("POST", "/echo/a", "x=1"),
        ("x-rewritten", "yes"),
        "x-gone",
        "hello",
    ),
    (
        "body",
        &[("body", r#"{"replaced":true}"#)],
        ("POST", "/echo/a", "x=1"),
        ("x-keep", "1"),
        "x-rewritten",
        r#"{"replaced":true}"#,
    ),
    (
        "everything",
        &[
            ("method", "PATCH"),
            ("path", "/echo/z"),
            ("query", ""),
            ("header", "x-rewritten=all"),
            ("body", "bye"),
        ],
        ("PATCH", "/echo/z", ""),
        ("x-rewritten", "all"),
        "x-none",
        "bye",
    ),
];

const SENT: [(&str, &str); 2] = [("x-keep", "1"), ("x-gone", "1")];

/// What a receiver got (the support upstream's echo, and the inner service's below).
fn check(case: &Case, via: &str, status: u16, echo: &Value) {
    let (name, _, (method, path, query), (has, value), hasnt, body) = *case;
    let at = format!("case {name:?} via {via}: {echo}");
    assert_eq!(status, 200, "{at}");
    assert_eq!(echo["method"], method, "{at}");
    assert_eq!(echo["path"], path, "{at}");
    assert_eq!(echo["query"], query, "{at}");
    assert_eq!(echo["headers"][has], value, "{at}");
    assert!(echo["headers"].get(hasnt).is_none(), "{at}");
    assert_eq!(echo["body"], body, "{at}");
    assert_eq!(
        echo["headers"]["content-length"],
        body.len().to_string(),
        "{at}"
    );
    assert_eq!(echo["headers"]["x-palisade-tenant"], "acme", "{at}");
}

fn policy_config(config: &[(&str, &str)]) -> String {
    config
        .iter()
        .map(|(k, v)| format!("{k} = {}", Value::from(*v)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_rewrite_reaches_the_upstream_in_serve() {
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("rewrite.lua");
    std::fs::write(&lua, REWRITE).unwrap();
    for case in CASES {
        let routes = format!(
            r#"
[[route]]
name = "echo"
tenant = "acme"
upstream = "up"
path = "/echo"

[[route.request]]
module = "{}"
[route.request.config]
{}
"#,
            lua.display(),
            policy_config(case.1)
        );
        let gw = support::start("", &routes).await;
        let reply = support::send(gw.addr(), "POST", "/echo/a?x=1", &SENT, "hello").await;
        check(case, "serve", reply.status, &reply.json());
    }
}

/// The inner service: the same echo as the gateway tests' upstream.
async fn echo(req: http::Request<Body>) -> axum::Json<Value> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().into()))
        .collect();
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_rewrite_reaches_the_inner_service_in_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("rewrite.lua");
    std::fs::write(&lua, REWRITE).unwrap();
    for case in CASES {
        let layer = PolicyLayer::new("acme", "echo")
            .request_policy(Policy::from_file(engine(), &lua).unwrap(), case.1);
        let routes = Router::new()
            .route("/", axum::routing::any(echo))
            .route("/{*rest}", axum::routing::any(echo));
        let router = Router::new().fallback_service(layer.layer(routes));
        let mut req = http::Request::post("/echo/a?x=1");
        for (k, v) in SENT {
            req = req.header(k, v);
        }
        let req = req
            .header("content-length", "5")
            .body(Body::from("hello"))
            .unwrap();
        let (status, body) = call(router, req).await;
        check(case, "layer", status, &body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_audits_every_request_to_a_ledger_when_given_one() {
    use palisade_ledger::{Ledger, Options, Target};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let ledger =
        std::sync::Arc::new(Ledger::open(Target::Sqlite(db.clone()), Options::default()).unwrap());
    let layer = PolicyLayer::new("acme", "customers")
        .response_policy(
            Policy::from_file(engine(), REDACT_PII).unwrap(),
            &[("detectors", "card")],
        )
        .redact(Redactor::new(&[Rule::path("$.ssn", Action::Mask)], None).unwrap())
        .audit(ledger.clone());
    let router = app(layer);
    let res = router
        .clone()
        .call(
            http::Request::get("/customer?email=ada@example.com")
                .header("x-correlation-id", "layer-audit-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-correlation-id"], "layer-audit-1");
    let (status, _) = call(
        router,
        http::Request::get("/pub/%2e%2e/customer")
            .header("x-correlation-id", "layer-audit-2")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "an ambiguous path is refused as in serve");
    let blocks = support::blocks(&db);
    let block = |cid: &str| {
        blocks
            .iter()
            .find(|b| b["correlation_id"] == cid)
            .unwrap_or_else(|| panic!("no block for {cid}: {blocks:?}"))
            .clone()
    };
    let ok = block("layer-audit-1");
    assert_eq!(ok["tenant"], "acme");
    assert_eq!(ok["route"], "customers");
    assert_eq!(ok["decision"], "allowed");
    assert_eq!(ok["status"], 200);
    assert_eq!(
        ok["path"], "/customer?email=",
        "query values never reach the ledger"
    );
    assert_eq!(ok["modules"][0]["name"], "redact-pii");
    assert!(
        ok["redacted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "$['ssn']"),
        "{ok}"
    );
    let refused = block("layer-audit-2");
    assert_eq!(refused["decision"], "refused");
    assert_eq!(refused["cause"], "bad_path");
    assert_eq!(refused["status"], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_router_layer_a_path_the_router_saw_raw_is_refused_not_judged_normalized() {
    // A policy that blocks /admin; axum's `Router::layer` routes on the raw path first.
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("block-admin.lua");
    std::fs::write(
        &lua,
        r#"function on_request(req, ctx)
  if string.sub(req.path, 1, 6) == "/admin" then
    return palisade.deny(403, "no")
  end
  return req
end"#,
    )
    .unwrap();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = ran.clone();
    let router = Router::new()
        .route(
            "/admin/{*rest}",
            get(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { "admin" }
            }),
        )
        .route("/public", get(|| async { "public" }))
        .layer(
            PolicyLayer::new("acme", "r")
                .request_policy(Policy::from_file(engine(), &lua).unwrap(), &[]),
        );
    let (status, body) = call(
        router.clone(),
        http::Request::get("/admin/../public")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_path");
    let (status, _) = call(
        router,
        http::Request::get("/admin/x").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 403, "the policy sees the path the router used");
    assert_eq!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the admin handler never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inner_service_gets_an_origin_form_uri_whatever_authority_the_caller_named() {
    let routes = Router::new().fallback(|req: http::Request<Body>| async move {
        axum::Json(json!({
            "uri": req.uri().to_string(),
            "host": req.headers().get("host").map(|h| h.to_str().unwrap().to_string()),
            "forwarded_host": req.headers().get("x-forwarded-host").map(|h| h.to_str().unwrap().to_string()),
        }))
    });
    let router = Router::new().fallback_service(PolicyLayer::new("acme", "r").layer(routes));
    let (status, body) = call(
        router,
        http::Request::get("http://evil.example:8443/orders?x=1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uri"], "/orders?x=1");
    assert_eq!(body["host"], Value::Null);
    assert_eq!(body["forwarded_host"], "evil.example:8443");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_validates_bodies_against_schemas_before_the_inner_service() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("echo.json");
    std::fs::write(
        &schema,
        json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}})
            .to_string(),
    )
    .unwrap();
    let schemas = palisade_gateway::schema::compile(
        &palisade_gateway::schema::Config {
            request: Some(schema),
            request_required: true,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let router = app(PolicyLayer::new("acme", "echo").schemas(schemas));
    let post = |body: &'static str| {
        http::Request::post("/echo")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, body) = call(router.clone(), post(r#"{"n": 1}"#)).await;
    assert_eq!((status, &body["body"]), (200, &json!(r#"{"n": 1}"#)));
    let (status, body) = call(router, post(r#"{"n": "4111111111111111"}"#)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"],
        json!([{"pointer": "/n", "keyword": "type"}])
    );
    assert!(!body.to_string().contains("4111"));
}
