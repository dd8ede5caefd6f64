//! Data protection over real sockets (issue 22): JSON Schema validation of request and
//! response bodies (from schema files and from an OpenAPI document), and field-level
//! encryption with reveal by a dedicated role, through the admin API and the CLI, by the
//! built-in redaction and by policies granted the host's `seal`.

use std::path::Path;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::cli::palisade;
use crate::support::{Config, Route, send, start_with};

fn write(dir: &Path, name: &str, value: &Value) {
    std::fs::write(dir.join(name), value.to_string()).unwrap();
}

fn schemas(dir: &Path) {
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    let d = dir.join("schemas");
    write(
        &d,
        "common.json",
        &json!({"$defs": {"qty": {"type": "integer", "minimum": 1, "maximum": 100}}}),
    );
    write(
        &d,
        "order.json",
        &json!({
            "type": "object",
            "required": ["sku", "qty"],
            "additionalProperties": false,
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{1,6}$"},
                "qty": {"$ref": "common.json#/$defs/qty"},
                "card": {"type": "string", "maxLength": 4}
            }
        }),
    );
    // What the echo upstream answers must have: a `method` and a numeric `len`.
    write(
        &d,
        "echo.json",
        &json!({"type": "object", "required": ["method", "len"], "properties": {"len": {"type": "integer"}}}),
    );
    // What `/pii` does not satisfy: no `ssn` may leave.
    write(
        &d,
        "no-ssn.json",
        &json!({"type": "object", "not": {"required": ["ssn"]}}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_validated_before_policies_and_failures_name_places_not_values() {
    let h = start_with(|up, dir| {
        schemas(dir);
        Config::new(up)
            .route(
                Route::new("orders")
                    .path("/orders")
                    .request_with("@INJECT_HEADERS", r#"config = { "request.set.x-policy" = "ran" }"#)
                    .keys("[route.schema]\nrequest = \"schemas/order.json\"\nresponse = \"schemas/echo.json\""),
            )
            .route(
                Route::new("closed")
                    .path("/pii")
                    .keys("[route.schema]\nresponse = \"schemas/no-ssn.json\""),
            )
            .route(
                Route::new("report")
                    .tenant("globex")
                    .path("/report")
                    .keys("strip_prefix = true\n[route.schema]\nresponse = \"schemas/no-ssn.json\"\nresponse_fail = \"report\""),
            )
    })
    .await;
    let post = |body: &'static str| send(h.addr(), "POST", "/orders", &[], body);

    // Valid: the policy ran, the upstream answered, its answer passed its schema.
    let r = post(r#"{"sku": "ABC-12", "qty": 3}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-policy"], "ran");
    let hits = h.upstream.hits();

    // Invalid: 400 with pointers and keywords, the values nowhere; no policy, no upstream.
    let r = post(r#"{"sku": "4111111111111111", "qty": 1000, "card": "4111111111111111", "extra": "219-09-9999"}"#).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "schema_invalid");
    // The first place that fails, one of those the body has.
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    let got = (
        errors[0]["pointer"].as_str().unwrap(),
        errors[0]["keyword"].as_str().unwrap(),
    );
    assert!(
        [
            ("", "additionalProperties"),
            ("/card", "maxLength"),
            ("/qty", "maximum"),
            ("/sku", "pattern"),
        ]
        .contains(&got),
        "{got:?}"
    );
    for value in ["4111111111111111", "219-09-9999", "1000"] {
        assert!(!r.text().contains(value), "{value} in {}", r.text());
    }
    let block = h.block_for(&r);
    assert_eq!(block["cause"], "schema_invalid");
    assert_eq!(block["decision"], "refused");
    assert_eq!(block["modules"], json!([]), "no policy ran: {block}");
    assert_eq!(block["detail"]["schema"]["side"], "request");
    let recorded = &block["detail"]["schema"]["failures"][0];
    assert_eq!(recorded["keyword"], got.1, "{block}");
    for value in ["4111111111111111", "219-09-9999"] {
        assert!(!block.to_string().contains(value), "{block}");
        assert!(
            !crate::support::log_text().contains(value),
            "{value} in the log"
        );
    }
    // A key given twice (the schema would pass the last, an upstream might read the first).
    let r = post(r#"{"sku": "ABC-12", "qty": 1000, "qty": 3}"#).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("body_not_json"))
    );

    // Not JSON, and missing.
    let r = post("sku=ABC-1").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("body_not_json"))
    );
    let r = post("").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("body_missing"))
    );
    assert_eq!(
        h.upstream.hits(),
        hits,
        "nothing invalid reached the upstream"
    );

    // A response that fails its schema: 502 (closed, the default), its body kept in.
    let r = send(h.addr(), "GET", "/pii", &[], Bytes::new()).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"], "response_schema_invalid");
    assert!(!r.text().contains("123-45-6789"));
    let block = h.block_for(&r);
    assert_eq!(block["detail"]["schema"]["side"], "response");
    assert_eq!(block["upstream"], "up");

    // `report`: passed, counted, recorded.
    let r = send(h.addr(), "GET", "/report/pii", &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ssn"], "123-45-6789");
    let block = h.block_for(&r);
    assert_eq!(block["decision"], "allowed");
    assert_eq!(block["detail"]["schema"]["reason"], "failed");
    let metrics = h.metrics().await;
    for value in ["4111111111111111", "219-09-9999"] {
        assert!(!metrics.contains(value), "{value} in the metrics");
    }
    for line in [
        r#"palisade_schema_failures_total{tenant="globex",route="report",side="response",outcome="reported"} 1"#,
        r#"palisade_schema_failures_total{tenant="acme",route="closed",side="response",outcome="refused"} 1"#,
        r#"palisade_schema_failures_total{tenant="acme",route="orders",side="request",outcome="refused"} 4"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openapi_document_supplies_each_operations_schemas() {
    let h = start_with(|up, dir| {
        write(
            dir,
            "orders-api.json",
            &json!({
                "openapi": "3.1.0",
                "info": {"title": "orders", "version": "1"},
                "paths": {
                    "/orders": {"post": {
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}},
                        "responses": {"200": {"content": {"application/json": {"schema": {"type": "object", "required": ["len"]}}}}}
                    }},
                    "/orders/{id}": {"get": {
                        "responses": {"2XX": {"content": {"application/json": {"schema": {"type": "object", "required": ["missing"]}}}}}
                    }}
                },
                "components": {"schemas": {"Order": {"type": "object", "required": ["qty"], "properties": {"qty": {"type": "integer", "minimum": 1}}}}}
            }),
        );
        Config::new(up).route(
            Route::new("api")
                .path("/api")
                .keys("strip_prefix = true\n[route.schema]\nopenapi = \"orders-api.json\""),
        )
    })
    .await;
    let r = send(h.addr(), "POST", "/api/orders", &[], r#"{"qty": 2}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send(h.addr(), "POST", "/api/orders", &[], r#"{"qty": 0}"#).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["pointer"], "/qty");
    let r = send(h.addr(), "DELETE", "/api/orders", &[], Bytes::new()).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("no_operation"))
    );
    // The `2XX` schema of `GET /orders/{id}` requires what the echo lacks.
    let r = send(h.addr(), "GET", "/api/orders/7", &[], Bytes::new()).await;
    assert_eq!(r.status, 502, "{}", r.text());
}

fn revealers(dir: &Path, config: &str) -> impl Fn(&[&str]) -> String {
    let dir = dir.to_path_buf();
    let config = config.to_string();
    move |args: &[&str]| {
        let mut all = vec!["apikey", "create", "--config", config.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = palisade(&dir, &all, None);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_fields_reveal_for_revealers_only_and_survive_key_rotation() {
    let h = start_with(|up, dir| {
        assert_eq!(
            palisade(dir, &["keygen", "--master", "--out", "master.key"], None).0,
            0
        );
        Config::new(up)
            .section("secrets", "master_key = \"master.key\"")
            .section("auth", "api_keys = \"apikeys.json\"")
            .route(Route::new("pii").path("/pii").keys(
                r#"redact = [
  { path = "$.ssn", action = "encrypt" },
  { path = "$.email", action = "encrypt", deterministic = true },
  { path = "$.contacts[*].ssn", action = "encrypt" },
]"#,
            ))
    })
    .await;
    let key = revealers(h.dir.path(), "palisade.toml");
    let revealer = key(&["--roles", "revealer"]);
    let acme_revealer = key(&["--tenant", "acme", "--roles", "revealer"]);
    let globex_revealer = key(&["--tenant", "globex", "--roles", "revealer"]);
    let admin = key(&["--roles", "admin"]);
    let acme_admin = key(&["--tenant", "acme", "--roles", "tenant-admin"]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let admin_addr = h.running.admin_addr().unwrap();

    let fetch = || send(h.addr(), "GET", "/pii", &[], Bytes::new());
    let first = fetch().await;
    assert_eq!(first.status, 200, "{}", first.text());
    let second = fetch().await.json();
    let first = first.json();
    for plain in ["123-45-6789", "ada@example.com", "219-09-9999"] {
        assert!(!first.to_string().contains(plain), "{first}");
    }
    let ssn = first["ssn"].as_str().unwrap().to_string();
    assert!(ssn.starts_with("pfe1:r:acme:1:"), "{ssn}");
    // Randomized: a new token each time; deterministic: the same one.
    assert_ne!(first["ssn"], second["ssn"]);
    assert_eq!(first["email"], second["email"]);
    assert!(
        first["email"]
            .as_str()
            .unwrap()
            .starts_with("pfe1:d:acme:1:")
    );

    let reveal = |k: &str, tenant: &str, path: &str, token: &str| {
        let body = json!({"path": path, "token": token}).to_string();
        let (k, at) = (k.to_string(), format!("/v1/tenants/{tenant}/reveal"));
        async move { send(admin_addr, "POST", &at, &[("x-api-key", k.as_str())], body).await }
    };
    for k in [&revealer, &acme_revealer] {
        let r = reveal(k, "acme", "$['ssn']", &ssn).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["value"], "123-45-6789");
    }
    let contact = first["contacts"][0]["ssn"].as_str().unwrap();
    let r = reveal(&revealer, "acme", "$['contacts'][0]['ssn']", contact).await;
    assert_eq!(r.json()["value"], "219-09-9999", "{}", r.text());
    // Other roles, another tenant's revealer.
    for k in [&admin, &acme_admin, &globex_revealer] {
        let r = reveal(k, "acme", "$['ssn']", &ssn).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(!r.text().contains("123-45"));
    }
    // A token moved to another field, another tenant, or tampered with.
    let flipped = {
        let mut t = ssn.clone().into_bytes();
        let last = t.len() - 2;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    };
    for (tenant, path, token) in [
        ("acme", "$['email']", ssn.as_str()),
        ("acme", "$['ssn']", flipped.as_str()),
        ("acme", "$['ssn']", "pfe1:r:acme:9:AAAA"),
        ("globex", "$['ssn']", ssn.as_str()),
    ] {
        let r = reveal(&revealer, tenant, path, token).await;
        assert_eq!(r.status, 422, "{tenant} {path}: {}", r.text());
        assert!(!r.text().contains("123-45"));
    }

    // Refused reveals leave blocks naming the tenant and the path too.
    let refused: Vec<Value> = h
        .blocks()
        .into_iter()
        .filter(|b| b["detail"]["revealed"].is_object() && b["decision"] != "allowed")
        .collect();
    assert_eq!(refused.len(), 7, "{refused:?}");
    for b in &refused {
        assert_eq!(b["kind"], "admin", "{b}");
        assert!(b["tenant"] == "acme" || b["tenant"] == "globex", "{b}");
        assert!(b["detail"]["revealed"]["path"].as_str().is_some(), "{b}");
    }
    // Rotation: new tokens under key version 2 after a reload, old ones still reveal.
    let r = send(
        admin_addr,
        "POST",
        "/v1/tenants/acme/secrets/rotate",
        &[("x-api-key", acme_admin.as_str())],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.json()["key_version"], 2, "{}", r.text());
    h.running.reload().unwrap();
    let rotated = fetch().await.json();
    let new_ssn = rotated["ssn"].as_str().unwrap();
    assert!(new_ssn.starts_with("pfe1:r:acme:2:"), "{new_ssn}");
    assert_ne!(rotated["email"], first["email"]);
    for token in [ssn.as_str(), new_ssn] {
        let r = reveal(&revealer, "acme", "$['ssn']", token).await;
        assert_eq!(r.json()["value"], "123-45-6789", "{}", r.text());
    }

    // The CLI: the token on stdin, the value on stdout, an audit block first.
    let (code, out, err) = palisade(
        h.dir.path(),
        &["secret", "reveal", "--tenant", "acme", "--path", "$['ssn']"],
        Some(&ssn),
    );
    assert_eq!((code, out.trim()), (0, "\"123-45-6789\""), "{err}");
    let (code, out, _) = palisade(
        h.dir.path(),
        &[
            "secret",
            "reveal",
            "--tenant",
            "acme",
            "--path",
            "$['email']",
        ],
        Some(&ssn),
    );
    assert_eq!((code, out.as_str()), (1, ""));

    // Every reveal is a block naming who and which path; no protected value anywhere.
    let blocks = h.blocks();
    let reveals: Vec<&Value> = blocks
        .iter()
        .filter(|b| b["detail"]["revealed"].is_object())
        .collect();
    assert!(
        reveals
            .iter()
            .any(|b| b["detail"]["revealed"]["path"] == "$['ssn']"
                && b["identity"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("cli:"))),
        "{reveals:?}"
    );
    assert!(
        reveals
            .iter()
            .filter(|b| b["decision"] == "allowed")
            .count()
            >= 6
    );
    let mut at_rest = std::fs::read(h.ledger_path()).unwrap();
    at_rest.extend(std::fs::read(h.ledger_path().with_extension("db-wal")).unwrap_or_default());
    let metrics = h.metrics().await;
    for plain in ["123-45-6789", "ada@example.com", "219-09-9999"] {
        assert!(
            !at_rest.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{plain} at rest"
        );
        assert!(
            !crate::support::log_text().contains(plain),
            "{plain} in the log"
        );
        assert!(!metrics.contains(plain), "{plain} in the metrics");
    }
}

/// A Lua policy that seals two fields itself (one deterministically); config
/// `email_path` may be a path that is not normalized, `big` seals 2 MiB first.
const LUA_SEAL: &str = r#"
function on_response(res, ctx)
  local doc = res.body
  if ctx.config.big then
    palisade.seal("$['big']", string.rep("x", 2 * 1024 * 1024))
  end
  doc.email = palisade.seal(ctx.config.email_path, doc.email, "deterministic")
  doc.contacts[1].ssn = palisade.seal("$['contacts'][0]['ssn']", doc.contacts[1].ssn)
  res.body = doc
  return res
end
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_granted_field_encryption_seal_what_revealers_read_and_others_fail_closed() {
    let js_redact = crate::js::built("policies/js/redact-pii.js");
    let h = start_with(|up, dir| {
        assert_eq!(
            palisade(dir, &["keygen", "--master", "--out", "master.key"], None).0,
            0
        );
        std::fs::write(dir.join("seal.lua"), LUA_SEAL).unwrap();
        let wasm = r#"field_encryption = true, config = { mode = "encrypt", paths = "$.ssn", detectors = "none" }"#;
        Config::new(up)
            .section("secrets", "master_key = \"master.key\"")
            .route(Route::new("wasm").path("/pii").response_with("@REDACT_PII", wasm))
            // The Lua and JavaScript versions of redact-pii, through `palisade.seal` and
            // the JS SDK's `seal`.
            .route(Route::new("lua-pii").path("/lua-pii").keys("strip_prefix = true").response_with("@LUA/redact-pii.lua", wasm))
            .route(Route::new("js-pii").path("/js-pii").keys("strip_prefix = true").response_with(&js_redact.display().to_string(), wasm))
            .route(Route::new("lua").path("/lua").keys("strip_prefix = true").response_with(
                "seal.lua",
                r#"field_encryption = "deterministic", config = { email_path = "$['email']" }"#,
            ))
            // The same policies without the grant, and the Lua one with a path that is
            // not normalized: each fails closed.
            .route(Route::new("wasm-ungranted").path("/ungranted").keys("strip_prefix = true").response_with(
                "@REDACT_PII",
                r#"config = { mode = "encrypt", paths = "$.ssn", detectors = "none" }"#,
            ))
            .route(Route::new("lua-ungranted").path("/lua-ungranted").keys("strip_prefix = true").response_with(
                "seal.lua",
                r#"config = { email_path = "$['email']" }"#,
            ))
            .route(Route::new("lua-bad-path").path("/lua-bad").keys("strip_prefix = true").response_with(
                "seal.lua",
                r#"field_encryption = "deterministic", config = { email_path = "$.email" }"#,
            ))
            // Randomized sealing only: the deterministic call is refused.
            .route(Route::new("lua-randomized").path("/lua-randomized").keys("strip_prefix = true").response_with(
                "seal.lua",
                r#"field_encryption = true, config = { email_path = "$['email']" }"#,
            ))
            // A value over the 1 MiB cap.
            .route(Route::new("lua-big").path("/lua-big").keys("strip_prefix = true").response_with(
                "seal.lua",
                r#"field_encryption = "deterministic", config = { email_path = "$['email']", big = "1" }"#,
            ))
    })
    .await;
    let reveal = |path: &str, token: &str| {
        palisade(
            h.dir.path(),
            &["secret", "reveal", "--tenant", "acme", "--path", path],
            Some(token),
        )
    };

    // The Wasm guest (redact-pii, `mode = "encrypt"`) through the SDK's `seal`.
    let r = send(h.addr(), "GET", "/pii", &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    let ssn = doc["ssn"].as_str().unwrap().to_string();
    assert!(ssn.starts_with("pfe1:r:acme:1:"), "{doc}");
    assert_eq!(
        doc["email"], "ada@example.com",
        "only the rule's path is sealed"
    );
    let (code, out, err) = reveal("$['ssn']", &ssn);
    assert_eq!((code, out.trim()), (0, "\"123-45-6789\""), "{err}");
    // Moved to another path, it does not open.
    let (code, out, _) = reveal("$['email']", &ssn);
    assert_eq!((code, out.as_str()), (1, ""));
    let block = h.block_for(&r);
    assert!(
        block.to_string().contains("$['ssn']"),
        "the sealed path is audited: {block}"
    );
    for path in ["/lua-pii/pii", "/js-pii/pii"] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let token = r.json()["ssn"].as_str().unwrap().to_string();
        assert!(token.starts_with("pfe1:r:acme:1:"), "{path}: {token}");
        let (code, out, err) = reveal("$['ssn']", &token);
        assert_eq!((code, out.trim()), (0, "\"123-45-6789\""), "{path}: {err}");
    }

    // The Lua policy through `palisade.seal`: deterministic and randomized.
    let first = send(h.addr(), "GET", "/lua/pii", &[], Bytes::new()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let (first, second) = (
        first.json(),
        send(h.addr(), "GET", "/lua/pii", &[], Bytes::new())
            .await
            .json(),
    );
    let email = first["email"].as_str().unwrap();
    assert!(email.starts_with("pfe1:d:acme:1:"), "{first}");
    assert_eq!(first["email"], second["email"]);
    assert_ne!(first["contacts"][0]["ssn"], second["contacts"][0]["ssn"]);
    let (code, out, err) = reveal("$['email']", email);
    assert_eq!((code, out.trim()), (0, "\"ada@example.com\""), "{err}");
    let contact = first["contacts"][0]["ssn"].as_str().unwrap();
    let (code, out, err) = reveal("$['contacts'][0]['ssn']", contact);
    assert_eq!((code, out.trim()), (0, "\"219-09-9999\""), "{err}");

    // Not granted, a path that is not normalized, a deterministic seal with a randomized
    // grant, a value over the cap: the policy fails, the body does not pass, and neither
    // the reason nor the reply holds the value.
    for (path, cause) in [
        ("/ungranted/pii", "guest_error"),
        ("/lua-ungranted/pii", "script_error"),
        ("/lua-bad/pii", "script_error"),
        ("/lua-randomized/pii", "script_error"),
        ("/lua-big/pii", "script_error"),
    ] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        for plain in ["123-45-6789", "ada@example.com", "219-09-9999"] {
            assert!(!r.text().contains(plain), "{path}: {}", r.text());
        }
        let block = h.block_for(&r);
        assert_eq!(block["decision"], "failed", "{path}: {block}");
        assert_eq!(block["cause"], cause, "{path}: {block}");
        assert_eq!(block["redacted"], json!([]), "{path}: {block}");
    }
}

#[test]
fn check_config_names_bad_schemas_encryption_without_secrets_and_unprotected_labels() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.json", &json!({"type": "nope"}));
    write(dir.path(), "escape.json", &json!({"$ref": "/etc/passwd"}));
    let config = Config::new("127.0.0.1:9".parse().unwrap())
        .route(
            Route::new("a")
                .path("/a")
                .keys("[route.schema]\nrequest = \"bad.json\""),
        )
        .route(
            Route::new("b")
                .path("/b")
                .keys("[route.schema]\nresponse = \"escape.json\""),
        )
        .route(
            Route::new("c")
                .path("/c")
                .keys("redact = [{ path = \"$.ssn\", action = \"encrypt\" }]"),
        )
        .route(
            Route::new("d")
                .path("/d")
                .keys("classification = \"restricted\"\nexpose_errors = true"),
        )
        .route(
            Route::new("e")
                .path("/e")
                .keys("auth = { schemes = [\"api_key\"] }\nclassify = [{ path = \"$.ssn\", label = \"confidential\" }]"),
        )
        .route(
            Route::new("f")
                .path("/f")
                .response_with("@REDACT_PII", "field_encryption = true"),
        );
    config.write(&dir.path().join("palisade.toml")).unwrap();
    let (code, out, err) = palisade(dir.path(), &["check-config", "palisade.toml"], None);
    let text = format!("{out}{err}");
    assert_ne!(code, 0, "{text}");
    for needle in [
        "bad.json",
        "escape.json",
        "action `encrypt` needs",
        "route \"d\": the route is restricted (restricted: set `auth`)",
        "expose_errors",
        "`$.ssn` is confidential: a redaction rule must",
        "route \"f\": `field_encryption` needs [secrets], where the tenant's data key is kept",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_blocks_and_metrics_carry_the_highest_label_a_request_touched() {
    let h = start_with(|up, _| {
        Config::new(up).route(Route::new("labelled").keys(
            "allow_ips = [\"127.0.0.0/8\"]\nclassification = \"public\"\nclassify = [{ path = \"$.internal\", label = \"internal\" }]",
        ))
    })
    .await;
    // `/pii` has an `internal` member: the request touched `internal`; the echo did not.
    for (path, label) in [("/pii", "internal"), ("/echo", "public")] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(h.block_for(&r)["detail"]["classification"], label, "{path}");
    }
    let metrics = h.metrics().await;
    for label in ["internal", "public"] {
        let line = format!(
            r#"palisade_classified_requests_total{{tenant="acme",route="labelled",classification="{label}"}} 1"#
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}
