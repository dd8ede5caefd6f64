//! HTTP batches in the formats SIEMs ingest, one POST per batch:
//!
//! - Elastic `_bulk` (`application/x-ndjson`): `{"create":{"_index":I,"_id":"block-N"}}`
//!   then the object, per item. `create`, not `index`: a document once stored is never
//!   replaced (not by a resend, a diverged ledger, or whoever holds the key; data
//!   streams need it too). Acknowledged by a 2xx whose body says `"errors":false`, or
//!   whose only errors are 409s (the document is already there: a resend).
//!   The `_id` makes a resent block a 409, not a second document.
//! - Splunk HEC (`/services/collector/event`): one event per item,
//!   `{"time":S.mmm,"host":H,"source":"palisade","sourcetype":"palisade:audit","event":{...}}`.
//!   Acknowledged by a 2xx whose body says `"code":0`.
//!
//! Answers are read up to 1 MiB; a credential goes only in `Authorization`, marked
//! sensitive, and is never part of an error message.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::export::Error;
use crate::export::item::Item;

/// Largest answer read.
const MAX_ANSWER: usize = 1 << 20;

pub(crate) struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: http::Uri,
    authorization: Option<http::HeaderValue>,
    format: Format,
}

pub(crate) enum Format {
    Elastic { index: String },
    Splunk { index: Option<String>, host: String },
}

impl Http {
    pub(crate) fn new(
        url: &http::Uri,
        format: Format,
        authorization: Option<zeroize::Zeroizing<String>>,
        ca: Option<&std::path::Path>,
        timeout: std::time::Duration,
    ) -> Result<Self, String> {
        let uri: http::Uri = match &format {
            Format::Elastic { .. } => format!(
                "{}/_bulk?filter_path=errors,items.*.status,items.*.error.type",
                url.to_string().trim_end_matches('/')
            )
            .parse()
            .map_err(|e| format!("url: {e}"))?,
            Format::Splunk { .. } => url.clone(),
        };
        let authorization = authorization
            .map(|a| {
                let mut v = http::HeaderValue::from_str(a.as_str())
                    .map_err(|_| "the credential is not a valid header value".to_string())?;
                v.set_sensitive(true);
                Ok::<_, String>(v)
            })
            .transpose()?;
        let roots = crate::auth::introspect::trust_roots(ca)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Http {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
            authorization,
            format,
        })
    }

    pub(crate) async fn send(&self, items: &[Item]) -> Result<(), Error> {
        self.post(items).await.map_err(|refused| match refused {
            Refused::TooLarge => Error::TooLarge(items.len()),
            Refused::Other(e) => Error::Sink(e),
        })
    }

    async fn post(&self, items: &[Item]) -> Result<(), Refused> {
        let (content_type, body) = match &self.format {
            Format::Elastic { index } => ("application/x-ndjson", elastic_body(index, items)),
            Format::Splunk { index, host } => (
                "application/json",
                splunk_body(index.as_deref(), host, items),
            ),
        };
        let mut req = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, "application/json");
        if let Some(a) = &self.authorization {
            req = req.header(http::header::AUTHORIZATION, a.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let res = self.client.request(req).await.map_err(|e| {
            format!(
                "{}: {}",
                self.uri.authority().map_or("", |a| a.as_str()),
                describe(&e)
            )
        })?;
        let status = res.status();
        let answer = Limited::new(res.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("answer: {e}"))?
            .to_bytes();
        if status == http::StatusCode::PAYLOAD_TOO_LARGE {
            return Err(Refused::TooLarge);
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}").into());
        }
        Ok(match &self.format {
            Format::Elastic { .. } => elastic_ack(&answer),
            Format::Splunk { .. } => splunk_ack(&answer),
        }?)
    }
}

/// A client error's cause chain, which says what failed (refused, TLS, ...).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn elastic_body(index: &str, items: &[Item]) -> String {
    let mut body = String::new();
    for item in items {
        body.push_str(
            &serde_json::json!({"create": {"_index": index, "_id": format!("{}-{}", item.kind.name(), item.seq)}})
                .to_string(),
        );
        body.push('\n');
        body.push_str(&item.line);
        body.push('\n');
    }
    body
}

pub(crate) fn splunk_body(index: Option<&str>, host: &str, items: &[Item]) -> String {
    let mut body = String::new();
    for item in items {
        let mut head = serde_json::json!({
            "host": host,
            "source": "palisade",
            "sourcetype": "palisade:audit",
        });
        if let Some(index) = index {
            head["index"] = index.into();
        }
        // `{"time":S.mmm,...head,"event":<line>}`: the time as an exact decimal, the
        // object inserted as it is, not re-encoded.
        let head = head.to_string();
        body.push_str(&format!(
            "{{\"time\":{}.{:03},{}",
            item.time_ms / 1000,
            item.time_ms % 1000,
            &head[1..head.len() - 1]
        ));
        body.push_str(",\"event\":");
        body.push_str(&item.line);
        body.push_str("}\n");
    }
    body
}

/// Why a receiver did not take a batch.
enum Refused {
    /// 413: fewer blocks per batch may pass.
    TooLarge,
    Other(String),
}

impl From<String> for Refused {
    fn from(e: String) -> Self {
        Refused::Other(e)
    }
}

fn elastic_ack(answer: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Bulk {
        errors: bool,
        #[serde(default)]
        items: Vec<serde_json::Map<String, serde_json::Value>>,
    }
    let bulk: Bulk = serde_json::from_slice(answer)
        .map_err(|_| "elastic: the answer is not a _bulk response".to_string())?;
    if !bulk.errors {
        return Ok(());
    }
    // A 409 on `create` is a document already stored under that id: acknowledged.
    let failed =
        |v: &&serde_json::Value| v.get("error").is_some() && v["status"].as_u64() != Some(409);
    let mut errors = bulk
        .items
        .iter()
        .flat_map(|i| i.values())
        .filter(failed)
        .peekable();
    if !bulk.items.is_empty() && errors.peek().is_none() {
        return Ok(());
    }
    let first = errors
        .find_map(|v| v["error"]["type"].as_str())
        .unwrap_or("unknown");
    Err(format!(
        "elastic: the _bulk response has errors (first: {})",
        safe(first)
    ))
}

fn splunk_ack(answer: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Hec {
        code: i64,
        #[serde(default)]
        text: String,
    }
    let hec: Hec = serde_json::from_slice(answer)
        .map_err(|_| "splunk: the answer is not a HEC response".to_string())?;
    if hec.code == 0 {
        Ok(())
    } else {
        Err(format!("splunk: code {} ({})", hec.code, safe(&hec.text)))
    }
}

/// A receiver's words, bounded, for a log line.
fn safe(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::item::ItemKind;

    fn items() -> Vec<Item> {
        vec![
            Item {
                kind: ItemKind::Block,
                seq: 7,
                time_ms: 1_700_000_000_042,
                line: "{\"type\":\"block\",\"seq\":7}".into(),
            },
            Item {
                kind: ItemKind::Checkpoint,
                seq: 7,
                time_ms: 1_700_000_000_100,
                line: "{\"type\":\"checkpoint\",\"seq\":7}".into(),
            },
        ]
    }

    #[test]
    fn elastic_bulk_names_each_document_by_kind_and_seq() {
        let body = elastic_body("audit", &items());
        let lines: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["create"]["_index"], "audit");
        assert_eq!(lines[0]["create"]["_id"], "block-7");
        assert_eq!(lines[1]["type"], "block");
        assert_eq!(lines[2]["create"]["_id"], "checkpoint-7");
        assert!(body.ends_with('\n'));
    }

    #[test]
    fn splunk_events_carry_the_object_and_its_time() {
        let body = splunk_body(Some("sec"), "gw-1", &items());
        let events: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(body.starts_with("{\"time\":1700000000.042,"), "{body}");
        assert_eq!(events[0]["host"], "gw-1");
        assert_eq!(events[0]["index"], "sec");
        assert_eq!(events[0]["sourcetype"], "palisade:audit");
        assert_eq!(events[0]["event"]["seq"], 7);
        assert_eq!(events[1]["event"]["type"], "checkpoint");
    }

    #[test]
    fn only_a_clean_answer_acknowledges() {
        assert!(elastic_ack(br#"{"errors":false}"#).is_ok());
        let e = elastic_ack(
            br#"{"errors":true,"items":[{"index":{"error":{"type":"mapper_parsing_exception"}}}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("mapper_parsing_exception"), "{e}");
        // Already stored (a resend): acknowledged; anything else among them is not.
        let conflict =
            r#"{"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}}"#;
        let created = r#"{"create":{"status":201}}"#;
        assert!(
            elastic_ack(format!(r#"{{"errors":true,"items":[{conflict},{created}]}}"#).as_bytes())
                .is_ok()
        );
        let rejected =
            r#"{"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}}"#;
        let e =
            elastic_ack(format!(r#"{{"errors":true,"items":[{conflict},{rejected}]}}"#).as_bytes())
                .unwrap_err();
        assert!(e.contains("es_rejected_execution_exception"), "{e}");
        assert!(elastic_ack(b"<html>").is_err());
        assert!(elastic_ack(b"{}").is_err());
        assert!(splunk_ack(br#"{"text":"Success","code":0}"#).is_ok());
        assert!(
            splunk_ack(br#"{"text":"Invalid token","code":4}"#)
                .unwrap_err()
                .contains("code 4")
        );
        assert!(splunk_ack(b"ok").is_err());
    }
}
