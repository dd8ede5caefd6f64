use std::path::Path;

use bytes::Bytes;
use serde_json::json;

use super::*;

fn write(dir: &Path, name: &str, value: &Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

fn order_schemas(dir: &Path) -> Config {
    write(
        dir,
        "defs.json",
        &json!({"$defs": {"qty": {"type": "integer", "minimum": 1}}}),
    );
    let order = write(
        dir,
        "order.json",
        &json!({
            "type": "object",
            "required": ["sku", "qty"],
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                "qty": {"$ref": "defs.json#/$defs/qty"},
                "by_ssn": {"type": "object", "additionalProperties": {"type": "integer"}}
            }
        }),
    );
    Config {
        request: Some(order),
        request_required: true,
        ..Config::default()
    }
}

fn body(v: Value) -> Bytes {
    Bytes::from(v.to_string())
}

#[test]
fn refs_across_files_of_the_directory_and_failures_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = compile(&order_schemas(dir.path()), None).unwrap();
    assert_eq!(
        schemas.request("POST", "/", &body(json!({"sku": "ABC-1", "qty": 2}))),
        Ok(())
    );
    let err = schemas
        .request(
            "POST",
            "/",
            &body(json!({"sku": "4111111111111111", "qty": 0, "by_ssn": {"219-09-9999": "x"}})),
        )
        .unwrap_err();
    // The first failure only, one of those the body has, never a value.
    let [failure] = err.failures() else {
        panic!("{err:?}")
    };
    assert!(
        [
            ("/by_ssn/219-09-9999", "type"),
            ("/qty", "minimum"),
            ("/sku", "pattern")
        ]
        .contains(&(failure.pointer.as_str(), failure.keyword.as_str())),
        "{failure:?}"
    );
    let err = schemas
        .request(
            "POST",
            "/",
            &body(json!({"sku": "ABC-1", "qty": 1, "by_ssn": {"219-09-9999": "x"}})),
        )
        .unwrap_err();
    // The audit record hides the data-like key and holds no value.
    let audit = err.audit(Side::Request).to_string();
    assert!(audit.contains("$['by_ssn'][*]"), "{audit}");
    assert_eq!(err.failures()[0].pointer, "/by_ssn/219-09-9999");
    for value in ["219-09-9999", "4111111111111111"] {
        assert!(!audit.contains(value), "{audit}");
        assert!(!public_errors(err.failures()).to_string().contains("4111"));
    }
}

#[test]
fn empty_and_non_json_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = order_schemas(dir.path());
    let schemas = compile(&config, None).unwrap();
    assert_eq!(
        schemas.request("POST", "/", &Bytes::new()),
        Err(Invalid::Missing)
    );
    assert_eq!(
        schemas.request("POST", "/", &Bytes::from_static(b"{nope")),
        Err(Invalid::NotJson)
    );
    // A key given twice reads two ways: refused, whichever value would pass.
    assert_eq!(
        schemas.request(
            "POST",
            "/",
            &body_text(r#"{"sku": "ABC-1", "qty": 0, "qty": 1}"#)
        ),
        Err(Invalid::NotJson)
    );
    // Methods that carry no body pass without one.
    assert_eq!(schemas.request("GET", "/", &Bytes::new()), Ok(()));
    assert!(schemas.request("GET", "/", &body_text("{}")).is_err());
    config.request_required = false;
    let schemas = compile(&config, None).unwrap();
    assert_eq!(
        schemas.request("POST", "/", &Bytes::from_static(b" \n")),
        Ok(())
    );
}

fn body_text(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

#[test]
fn a_fixed_response_schema_checks_successes_and_honours_schema_drafts() {
    let dir = tempfile::tempdir().unwrap();
    // Draft 7's `dependencies` (gone in 2020-12): enforced because `$schema` says draft 7.
    let path = write(
        dir.path(),
        "seven.json",
        &json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "dependencies": {"card": ["cvv"]}
        }),
    );
    let schemas = compile(
        &Config {
            response: Some(path),
            ..Config::default()
        },
        None,
    )
    .unwrap();
    let bad = body(json!({"card": "4111"}));
    assert!(schemas.response("GET", "/", 200, &bad).is_err());
    assert_eq!(
        schemas.response("GET", "/", 200, &body(json!({"card": "4111", "cvv": 1}))),
        Ok(())
    );
    // The upstream's errors are not what the schema describes: not the client's 502.
    assert_eq!(schemas.response("GET", "/", 404, &bad), Ok(()));
}

#[test]
fn no_reference_leaves_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("schemas");
    std::fs::create_dir(&inner).unwrap();
    write(dir.path(), "secret.json", &json!({"type": "string"}));
    std::os::unix::fs::symlink(dir.path().join("secret.json"), inner.join("link.json")).unwrap();
    for reference in [
        "../secret.json",
        "..%2Fsecret.json",
        "%2E%2E/secret.json",
        "link.json",
        "https://example.com/schema.json",
        "file:///etc/passwd",
        "sub/x.json",
    ] {
        let path = write(&inner, "root.json", &json!({"$ref": reference}));
        let config = Config {
            request: Some(path),
            ..Config::default()
        };
        let e = compile(&config, None).unwrap_err();
        assert_eq!(e.0, "request", "{reference}");
    }
    // Sanity: the same directory is fine.
    write(&inner, "ok.json", &json!({"type": "string"}));
    let path = write(&inner, "root.json", &json!({"$ref": "ok.json"}));
    compile(
        &Config {
            request: Some(path),
            ..Config::default()
        },
        None,
    )
    .unwrap();
}

#[test]
fn an_invalid_schema_or_oversized_pattern_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    for schema in [
        json!({"type": 12}),
        json!({"pattern": "(a{1000}){1000}"}),
        // Backtracking constructs: the linear-time engine has none.
        json!({"pattern": "^(?=a)a$"}),
        json!({"patternProperties": {"(a)\\1": {}}}),
    ] {
        let path = write(dir.path(), "bad.json", &schema);
        let config = Config {
            response: Some(path),
            ..Config::default()
        };
        assert_eq!(
            compile(&config, None).unwrap_err().0,
            "response",
            "{schema}"
        );
    }
    let both = Config {
        openapi: Some(dir.path().join("x.json")),
        request: Some(dir.path().join("bad.json")),
        ..Config::default()
    };
    assert_eq!(compile(&both, None).unwrap_err().0, "openapi");
}

#[test]
fn openapi_operations_supply_the_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let doc = write(
        dir.path(),
        "api.json",
        &json!({
            "openapi": "3.1.0",
            "paths": {
                "/orders": {"post": {
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}},
                    "responses": {"201": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}}}
                }},
                "/orders/{id}": {"get": {
                    "responses": {
                        "2XX": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}},
                        "default": {"content": {"application/problem+json": {"schema": {"type": "object", "required": ["title"]}}}}
                    }
                }},
                "/orders/latest": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"type": "array"}}}}}}}
            },
            "components": {"schemas": {"Order": {"type": "object", "required": ["qty"], "properties": {"qty": {"type": "integer", "minimum": 1}}}}}
        }),
    );
    let config = Config {
        openapi: Some(doc),
        ..Config::default()
    };
    let schemas = compile(&config, Some("/api")).unwrap();
    assert!(schemas.reads_response());
    let good = body(json!({"qty": 1}));
    let bad = body(json!({"qty": 0}));
    assert_eq!(schemas.request("POST", "/api/orders", &good), Ok(()));
    assert!(matches!(
        schemas.request("POST", "/api/orders", &bad),
        Err(Invalid::Failed(_))
    ));
    assert_eq!(
        schemas.request("POST", "/api/orders", &Bytes::new()),
        Err(Invalid::Missing)
    );
    assert_eq!(
        schemas.request("DELETE", "/api/orders", &good),
        Err(Invalid::NoOperation)
    );
    // No requestBody: any body passes.
    assert_eq!(schemas.request("GET", "/api/orders/7", &bad), Ok(()));
    assert_eq!(schemas.response("POST", "/api/orders", 201, &good), Ok(()));
    assert!(schemas.response("POST", "/api/orders", 201, &bad).is_err());
    // No schema for that status.
    assert_eq!(schemas.response("POST", "/api/orders", 500, &bad), Ok(()));
    // `2XX`, then `default`.
    assert!(schemas.response("GET", "/api/orders/7", 204, &bad).is_err());
    assert!(
        schemas
            .response("GET", "/api/orders/7", 404, &good)
            .is_err()
    );
    assert_eq!(
        schemas.response("GET", "/api/orders/7", 404, &body(json!({"title": "no"}))),
        Ok(())
    );
    // Concrete before templated: `/orders/latest` is an array, not an Order.
    assert_eq!(
        schemas.response("GET", "/api/orders/latest", 200, &body(json!([]))),
        Ok(())
    );
}

#[test]
fn audit_paths_from_pointers() {
    assert_eq!(audit_path(""), "$");
    assert_eq!(audit_path("/items/0/qty"), "$['items'][0]['qty']");
    assert_eq!(audit_path("/a~1b/007"), "$[*][*]");
    assert_eq!(audit_path("/by_email/jane@example.com"), "$['by_email'][*]");
}
