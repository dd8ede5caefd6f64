//! What data protection costs per request (issue 22), each beside its baseline in one run:
//!
//! - `schema`: parsing a request body (what any JSON check needs) vs validating it against
//!   a compiled JSON Schema (valid and invalid bodies), for a small order and for a
//!   64 KiB document of 500 line items;
//! - `encrypt`: redacting three fields of a customer record by `mask` (the baseline) vs
//!   `encrypt` (AES-256-GCM with a per-token HKDF key) vs `encrypt` deterministic
//!   (AES-SIV), and revealing one token.
//!
//! `cargo bench --bench data_protection`

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_gateway::redaction::encrypt::{FieldKey, Mode, open, parse};
use palisade_gateway::redaction::{Action, Redactor, Rule};
use palisade_gateway::schema::{Config, compile};
use serde_json::json;

fn schema(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let line = json!({
        "type": "object",
        "required": ["sku", "qty", "price"],
        "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{1,6}$"},
            "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
            "price": {"type": "number", "minimum": 0}
        }
    });
    let order = json!({
        "type": "object",
        "required": ["customer", "lines"],
        "properties": {
            "customer": {"type": "string", "maxLength": 64},
            "email": {"type": "string"},
            "lines": {"type": "array", "maxItems": 1000, "items": {"$ref": "line.json"}}
        }
    });
    std::fs::write(dir.path().join("line.json"), line.to_string()).unwrap();
    std::fs::write(dir.path().join("order.json"), order.to_string()).unwrap();
    let schemas = compile(
        &Config {
            request: Some(dir.path().join("order.json")),
            request_required: true,
            ..Config::default()
        },
        None,
    )
    .unwrap();
    let body = |lines: usize, qty: u32| -> Bytes {
        let lines: Vec<_> = (0..lines)
            .map(|i| json!({"sku": format!("ABC-{i}"), "qty": qty, "price": 9.99}))
            .collect();
        Bytes::from(
            json!({"customer": "c-42", "email": "a@example.com", "lines": lines}).to_string(),
        )
    };
    for (name, lines) in [("small", 3), ("64k", 500)] {
        let valid = body(lines, 2);
        let invalid = body(lines, 0);
        assert!(schemas.request("POST", "/", &valid).is_ok());
        assert!(schemas.request("POST", "/", &invalid).is_err());
        let mut g = c.benchmark_group(format!("schema/{name}"));
        g.throughput(Throughput::Bytes(valid.len() as u64));
        g.bench_function("parse_only", |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(&valid).unwrap())
        });
        g.bench_function("validate", |b| {
            b.iter(|| schemas.request("POST", "/", &valid).unwrap())
        });
        g.bench_function("validate_invalid", |b| {
            b.iter(|| schemas.request("POST", "/", &invalid).unwrap_err())
        });
        g.finish();
    }
}

fn encrypt(c: &mut Criterion) {
    let key = || Some(Arc::new(FieldKey::new("acme", 1, &[7u8; 32])));
    let rules = |action: Action| {
        ["$.ssn", "$.email", "$.card"]
            .iter()
            .map(|p| Rule::path(p, action))
            .collect::<Vec<_>>()
    };
    let doc = json!({
        "id": 7, "name": "Ada Lovelace", "email": "ada@example.com", "ssn": "123-45-6789",
        "card": "4111 1111 1111 1111", "address": {"city": "London", "zip": "N1"},
        "orders": [{"id": 1, "total": 12.5}, {"id": 2, "total": 7.25}]
    })
    .to_string();
    let mut g = c.benchmark_group("encrypt");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    for (name, action) in [
        ("mask", Action::Mask),
        ("encrypt", Action::Encrypt(Mode::Randomized)),
        (
            "encrypt_deterministic",
            Action::Encrypt(Mode::Deterministic),
        ),
    ] {
        let redactor = Redactor::with_keys(&rules(action), None, key()).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| redactor.redact(doc.as_bytes()).unwrap())
        });
    }
    let field_key = key().unwrap();
    let token = field_key.seal(Mode::Randomized, "$['ssn']", &json!("123-45-6789"));
    g.bench_function("reveal", |b| {
        b.iter(|| open(&parse(&token).unwrap(), "$['ssn']", &[7u8; 32]).unwrap())
    });
    g.finish();
}

criterion_group!(benches, schema, encrypt);
criterion_main!(benches);
