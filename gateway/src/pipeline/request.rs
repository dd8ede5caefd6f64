//! What the pipeline knows of a request before any phase: its correlation id, the host it
//! names, and its audit record, which is appended even if the handler is dropped.

use std::sync::Arc;

use palisade_ledger::{Ledger, Record};

/// A request's audit record until it is appended. If the handler is dropped first (the
/// client closed the connection or reset the stream while the pipeline worked), the
/// record is appended from a task of its own with the decision `client_closed` and
/// status 499, with what was known by then (route, tenant, identity).
pub(super) struct Pending {
    pub(super) record: Option<Record>,
    pub(super) ledger: Arc<Ledger>,
}

impl Pending {
    pub(super) fn record(&mut self) -> &mut Record {
        self.record.as_mut().expect("the record is appended once")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.decision = "client_closed".into();
        record.cause = Some("client_closed".into());
        record.status = 499;
        let ledger = self.ledger.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = ledger.append(record).await {
                    tracing::error!(error = %e, "no audit block for a request the client closed");
                }
            });
        }
    }
}

/// `host[:port]` without its port (`[::1]:80` gives `[::1]`).
pub(super) fn without_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    }
}

/// The caller's correlation id when it is safe to echo, else a fresh one.
pub(super) fn correlation_id(headers: &http::HeaderMap) -> String {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(new_id, str::to_string)
}

/// 128 random bits, hex.
pub(crate) fn new_id() -> String {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("the OS random source is available");
    hex::encode(id)
}
