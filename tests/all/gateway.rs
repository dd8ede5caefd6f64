//! The gateway pipeline over real sockets: routing, policies (Wasm and Lua), fail
//! policy, built-in redaction (catalogue 35, 38, 44), upstream errors, audit, metrics.

use bytes::Bytes;
use serde_json::json;

use crate::support::{get, send, start};

const ROUTES: &str = r#"
[[route]]
name = "echo"
tenant = "acme"
upstream = "up"
path = "/echo"

[[route]]
name = "exact-host"
tenant = "acme"
upstream = "up"
host = "api.acme.test"
path = "/echo"

[[route]]
name = "posts-only"
tenant = "acme"
upstream = "up"
path = "/echo/deep"
methods = ["POST"]
strip_prefix = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_path_and_method_most_specific_first() {
    let h = start("", ROUTES).await;
    let a = h.addr();
    let r = get(a, "/echo/x?q=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/echo/x");
    assert_eq!(r.json()["query"], "q=1");
    assert_eq!(h.block_for(&r)["route"], "echo");

    let r = send(
        a,
        "GET",
        "/echo",
        &[("host", "api.acme.test")],
        Bytes::new(),
    )
    .await;
    assert_eq!(h.block_for(&r)["route"], "exact-host");

    let r = send(a, "POST", "/echo/deep/item", &[], "x").await;
    assert_eq!(h.block_for(&r)["route"], "posts-only");
    assert_eq!(
        r.json()["path"],
        "/item",
        "strip_prefix removes the matched prefix"
    );
    let r = get(a, "/echo/deep/item").await;
    assert_eq!(
        h.block_for(&r)["route"],
        "echo",
        "GET falls back to the less specific route"
    );

    // Prefixes match whole segments only.
    let r = get(a, "/echoes").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no_route");
    let block = h.block_for(&r);
    assert_eq!(block["decision"], "refused");
    assert_eq!(block["cause"], "no_route");
    assert_eq!(h.upstream.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_and_lua_policies_run_in_order_and_are_audited() {
    let h = start(
        "",
        r#"
[[route]]
name = "orders"
tenant = "acme"
upstream = "up"
path = "/"

[[route.request]]
module = "@INJECT_HEADERS"
config = { "request.set.x-added" = "by-wasm", "request.remove" = "x-debug" }

[[route.response]]
module = "@LUA/reshape-json.lua"
config = { ops = '[{"op":"drop","path":"/headers"},{"op":"set","path":"/by","value":"lua"}]' }
"#,
    )
    .await;
    let r = send(
        h.addr(),
        "POST",
        "/orders?secret=hunter2",
        &[("x-debug", "1")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["by"], "lua");
    assert!(
        body.get("headers").is_none(),
        "the Lua response policy dropped /headers"
    );
    let block = h.block_for(&r);
    assert_eq!(block["decision"], "allowed");
    assert_eq!(block["tenant"], "acme");
    assert_eq!(block["upstream"], "up");
    assert_eq!(block["status"], 200);
    assert_eq!(
        block["path"], "/orders?secret=",
        "query values never reach the ledger"
    );
    let names: Vec<&str> = block["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["inject-headers", "reshape-json"]);
    assert_eq!(block["modules"][0]["digest"].as_str().unwrap().len(), 64);

    // The upstream saw what the Wasm policy did (echo before the Lua drop: ask again
    // on a route-less check via the ledger is not possible, so look at a plain echo).
    let h2 = start(
        "",
        r#"
[[route]]
name = "orders"
tenant = "acme"
upstream = "up"
path = "/"
[[route.request]]
module = "@INJECT_HEADERS"
config = { "request.set.x-added" = "by-wasm", "request.remove" = "x-debug" }
"#,
    )
    .await;
    let r = send(
        h2.addr(),
        "GET",
        "/",
        &[
            ("x-debug", "1"),
            ("x-palisade-tenant", "globex"),
            ("x-tenant-id", "globex"),
        ],
        Bytes::new(),
    )
    .await;
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-added"], "by-wasm");
    assert!(seen.get("x-debug").is_none());
    assert_eq!(
        seen["x-palisade-tenant"], "acme",
        "caller tenant headers are replaced, never trusted"
    );
    assert!(seen.get("x-tenant-id").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_deny_ends_the_pipeline_before_the_upstream() {
    let h = start(
        "",
        r#"
[[route]]
name = "guarded"
tenant = "acme"
upstream = "up"
path = "/"
[[route.request]]
module = "@BLOCK_PATTERNS"
"#,
    )
    .await;
    let r = send(h.addr(), "POST", "/search", &[], "q=' OR 1=1 --").await;
    assert_eq!(r.status, 400);
    assert_eq!(h.upstream.hits(), 0, "the upstream never saw the request");
    let block = h.block_for(&r);
    assert_eq!(block["decision"], "denied");
    assert_eq!(block["upstream"], serde_json::Value::Null);
    let ok = send(h.addr(), "POST", "/search", &[], "q=shoes").await;
    assert_eq!(ok.status, 200);
    assert_eq!(h.upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_request_policy_fails_closed_with_a_safe_body() {
    let h = start(
        "",
        r#"
[[route]]
name = "closed"
tenant = "acme"
upstream = "up"
host = "closed.test"
[[route.request]]
module = "@MISBEHAVE"
fuel = 5000000

[[route]]
name = "open"
tenant = "acme"
upstream = "up"
host = "open.test"
[[route.request]]
module = "@MISBEHAVE"
fuel = 5000000
fail = "open"
"#,
    )
    .await;
    let r = send(
        h.addr(),
        "GET",
        "/loop",
        &[("host", "closed.test")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 500);
    let body = r.json();
    assert_eq!(body["error"], "policy_failed");
    assert_eq!(
        body.as_object().unwrap().len(),
        3,
        "error, status, correlation id; nothing else: {body}"
    );
    let block = h.block_for(&r);
    assert_eq!(block["cause"], "fuel_exhausted");
    assert_eq!(block["decision"], "failed");

    let r = send(
        h.addr(),
        "GET",
        "/panic",
        &[("host", "closed.test")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 500);
    assert!(
        !r.text().contains("index out of range"),
        "guest messages never reach clients"
    );
    assert_eq!(h.block_for(&r)["cause"], "trap");
    assert_eq!(h.upstream.hits(), 0);

    // Fail-open is explicit, per policy, and still audited.
    let r = send(
        h.addr(),
        "GET",
        "/loop",
        &[("host", "open.test")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.block_for(&r)["cause"], "fail_open:fuel_exhausted");
    assert_eq!(h.upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_masks_hashes_and_removes_and_audits_paths_never_values() {
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), "0123456789abcdef0123456789abcdef").unwrap();
    let h = start(
        "",
        &format!(
            r#"
[[tenant]]
name = "pii"
hash_key_file = "{}"
mandatory_pii = ["$..ssn"]

[[route]]
name = "customers"
tenant = "pii"
upstream = "up"
path = "/"

[[route.redact]]
path = "$..ssn"

[[route.redact]]
path = "$..email"
action = "hash"

[[route.redact]]
path = "$.internal"
action = "remove"

[[route.redact]]
regex = '4111( ?1111){{3}}'
"#,
            key.path().display()
        ),
    )
    .await;
    let r = get(h.addr(), "/pii").await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["ssn"], "[REDACTED]");
    assert_eq!(body["contacts"][0]["ssn"], "[REDACTED]");
    assert!(body["email"].as_str().unwrap().starts_with("[hash:"));
    assert_ne!(
        body["email"], body["contacts"][0]["email"],
        "keyed hashes differ per value"
    );
    assert!(body.get("internal").is_none());
    assert_eq!(body["card"], "[REDACTED]");
    assert_eq!(body["name"], "Ada Lovelace");

    // Catalogue 44: the ledger, metrics and the response carry paths, never values.
    let block = h.block_for(&r);
    let mut paths: Vec<&str> = block["redacted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    paths.sort();
    assert!(
        paths.contains(&"$['ssn']") && paths.contains(&"$['contacts'][0]['ssn']"),
        "{paths:?}"
    );
    let ledger = std::fs::read(h.ledger_path()).unwrap();
    let wal = std::fs::read(h.dir.path().join("audit.db-wal")).unwrap_or_default();
    let metrics = get(h.running.admin_addr().unwrap(), "/metrics")
        .await
        .text();
    let log = crate::support::log_text();
    assert!(
        log.contains(&r.header("x-correlation-id").unwrap()),
        "the request is in the log"
    );
    for secret in ["123-45-6789", "219-09-9999", "ada@example.com", "4111 1111"] {
        for (what, hay) in [
            ("ledger", &ledger),
            ("wal", &wal),
            ("metrics", &metrics.as_bytes().to_vec()),
            ("body", &r.body.to_vec()),
            ("log", &log.as_bytes().to_vec()),
        ] {
            assert!(
                !hay.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {what}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item38_unreadable_bodies_fail_closed_on_redacting_routes() {
    let h = start(
        "",
        r#"
[[route]]
name = "paths"
tenant = "acme"
upstream = "up"
path = "/"
max_response_bytes = 1048576
[[route.redact]]
path = "$..ssn"

[[route]]
name = "regex"
tenant = "acme"
upstream = "up"
path = "/r"
strip_prefix = true
[[route.redact]]
regex = '\d{3}-\d{2}-\d{4}'
"#,
    )
    .await;
    let r = get(h.addr(), "/text").await;
    assert_eq!(r.status, 502);
    assert!(!r.text().contains("123-45-6789"));
    assert_eq!(h.block_for(&r)["cause"], "redaction_not_json");

    let r = get(h.addr(), "/r/text").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "call me, my ssn is [REDACTED]");

    let r = get(h.addr(), "/r/bytes").await;
    assert_eq!(r.status, 502);
    assert_eq!(h.block_for(&r)["cause"], "redaction_not_utf8");

    // Larger than the route lets redaction read: refused, not passed through.
    let r = get(h.addr(), "/big").await;
    assert_eq!(r.status, 502);
    assert!(!r.text().contains("123-45-6789"));
    assert_eq!(h.block_for(&r)["cause"], "response_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item35_redaction_agrees_with_the_serializer_on_tricky_documents() {
    let h = start(
        "",
        r#"
[[route]]
name = "tricky"
tenant = "acme"
upstream = "up"
path = "/"
[[route.redact]]
path = "$..ssn"
"#,
    )
    .await;
    let r = get(h.addr(), "/tricky").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    for value in ["219-09-9999", "078-05-1120", "123456789", "first"] {
        assert!(!text.contains(value), "{value} leaked: {text}");
    }
    assert_eq!(
        r.json(),
        json!({
            "user": {"ssn": "[REDACTED]"},
            "escaped": {"ssn": "[REDACTED]"},
            "list": [{"ssn": "[REDACTED]"}, {"deep": [{"ssn": "[REDACTED]"}]}],
            "keep": "ok"
        })
    );
    assert_eq!(h.block_for(&r)["redacted"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_response_policy_is_a_502_and_nothing_unredacted_leaves() {
    let h = start(
        "",
        r#"
[[route]]
name = "broken"
tenant = "acme"
upstream = "up"
path = "/"
expose_errors = false
[[route.response]]
module = "@RESHAPE_JSON"
config = { ops = "not json" }
"#,
    )
    .await;
    let r = get(h.addr(), "/pii").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "policy_failed");
    assert!(!r.text().contains("123-45-6789"));
    let block = h.block_for(&r);
    assert_eq!(block["decision"], "failed");
    assert_eq!(block["cause"], "guest_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refused_timed_out_or_reset_maps_to_502_504_with_safe_bodies() {
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // An upstream that accepts, reads and hangs up without answering.
    let rude = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_addr = rude.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = rude.accept().await else {
                continue;
            };
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
            drop(tcp);
        }
    });
    let h = start(
        "",
        &format!(
            r#"
[[upstream]]
name = "closed"
url = "http://{closed}"
[[upstream]]
name = "rude"
url = "http://{rude_addr}"

[[route]]
name = "refused"
tenant = "acme"
upstream = "closed"
path = "/refused"
[[route]]
name = "reset"
tenant = "acme"
upstream = "rude"
path = "/reset"
[[route]]
name = "slow"
tenant = "acme"
upstream = "up"
path = "/slow"
timeout_ms = 200
"#
        ),
    )
    .await;
    let r = get(h.addr(), "/refused").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (502, "upstream_unavailable")
    );
    let r = get(h.addr(), "/reset").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (502, "upstream_reset")
    );
    let r = get(h.addr(), "/slow/3000").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (504, "upstream_timeout")
    );
    assert_eq!(h.block_for(&r)["cause"], "upstream_timeout");
    assert!(!r.text().contains(&rude_addr.to_string()) && !r.text().contains("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_policies_and_limits() {
    let h = start(
        "",
        r#"
[[route]]
name = "m"
tenant = "acme"
upstream = "up"
path = "/"
max_body_bytes = 10
[[route.request]]
module = "@MISBEHAVE"
fuel = 5000000
"#,
    )
    .await;
    get(h.addr(), "/ok").await;
    get(h.addr(), "/loop").await;
    send(h.addr(), "POST", "/ok", &[], "0123456789abc").await;
    let admin = h.running.admin_addr().unwrap();
    let m = get(admin, "/metrics").await.text();
    for line in [
        r#"palisade_requests_total{tenant="acme",route="m",status="200"} 1"#,
        r#"palisade_requests_total{tenant="acme",route="m",status="500"} 1"#,
        r#"palisade_requests_total{tenant="acme",route="m",status="413"} 1"#,
        r#"palisade_policy_invocations_total{tenant="acme",route="m",policy="misbehave",outcome="fuel_exhausted"} 1"#,
        r#"palisade_policy_traps_total{tenant="acme",route="m",policy="misbehave",outcome="fuel_exhausted"} 1"#,
        r#"palisade_limit_hits_total{tenant="acme",route="m",limit="body_too_large"} 1"#,
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
    assert!(m.contains("palisade_request_duration_seconds_bucket"));
    assert!(
        m.contains(r#"palisade_policy_fuel_total{tenant="acme",route="m",policy="misbehave"}"#)
    );
    assert_eq!(get(admin, "/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_redaction_rules_apply_to_every_route_of_the_tenant() {
    let h = start(
        "",
        r#"
[[tenant]]
name = "bank"
mandatory_pii = ["$..ssn"]
redact = [{ path = "$..ssn" }]

[[route]]
name = "a"
tenant = "bank"
upstream = "up"
path = "/a"
strip_prefix = true

[[route]]
name = "b"
tenant = "bank"
upstream = "up"
path = "/b"
strip_prefix = true
[[route.redact]]
path = "$.card"
action = "remove"
"#,
    )
    .await;
    let a = get(h.addr(), "/a/pii").await.json();
    assert_eq!(
        (a["ssn"].as_str(), a["contacts"][0]["ssn"].as_str()),
        (Some("[REDACTED]"), Some("[REDACTED]"))
    );
    assert_eq!(a["card"], "4111 1111 1111 1111");
    let b = get(h.addr(), "/b/pii").await.json();
    assert_eq!(b["ssn"], "[REDACTED]");
    assert!(
        b.get("card").is_none(),
        "the route's own rules apply after the tenant's"
    );
}
