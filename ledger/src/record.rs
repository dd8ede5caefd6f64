use serde::{Deserialize, Serialize};

/// What a block records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The first block of a ledger, written when the ledger is created.
    Genesis,
    /// One request the gateway handled, allowed or refused.
    #[default]
    Request,
    /// A change to the module registry.
    Registry,
    /// A call to the admin API (who, what, allowed or not).
    Admin,
}

/// A policy module that ran for a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRef {
    /// SHA-256 of the module's bytes, hex.
    pub digest: String,
    /// The module's name.
    pub name: String,
    /// The module's version (`-` when the route names a file, not a registry version).
    pub version: String,
}

/// What one request leaves in the ledger. Paths and names only, never values: no body,
/// no credential, no query values, no redacted value.
///
/// Fields are declared in alphabetical order, so the JSON encoding (`serde_json`,
/// compact) is canonical; see `docs/audit.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Why the request failed or was refused (`fuel_exhausted`, `body_too_large`, ...).
    pub cause: Option<String>,
    /// The correlation id sent back in `x-correlation-id`.
    pub correlation_id: String,
    /// `allowed`, `denied` (by auth or a policy), `failed` (an error) or `refused` (a limit).
    pub decision: String,
    /// Kind-specific details (a registry change's action and digest, say).
    pub detail: Option<serde_json::Value>,
    /// The gateway instance that wrote the block ([`crate::Options::instance`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The caller: a token subject or API key id, never the credential.
    pub identity: Option<String>,
    /// What the block records.
    pub kind: Kind,
    /// Time from the first byte of the request to the response head, in microseconds.
    pub latency_us: u64,
    /// The request method.
    pub method: String,
    /// The policy modules that ran, in order.
    pub modules: Vec<ModuleRef>,
    /// The request path with query values removed (`/a?x=&y=`).
    pub path: String,
    /// Paths of the values that were redacted, never the values.
    pub redacted: Vec<String>,
    /// The route's name (empty when no route matched).
    pub route: String,
    /// The HTTP status sent to the client.
    pub status: u16,
    /// The route's tenant (empty when no route matched).
    pub tenant: String,
    /// Unix time in milliseconds when the block was drafted.
    pub time_ms: u64,
    /// The upstream's name, when the request reached one.
    pub upstream: Option<String>,
}

impl Record {
    /// The canonical encoding hashed into the chain.
    pub fn to_canonical(&self) -> String {
        serde_json::to_string(self).expect("a Record serializes")
    }

    /// Strips query values from `path_and_query`: `/a?x=1&secret` becomes `/a?x=&_`. A
    /// part without `=`, or whose name does not look like a field name (`?ada@x.com=1`,
    /// `?pal_<key>=`), is a value: only its place is kept.
    pub fn path_without_query_values(path_and_query: &str) -> String {
        match path_and_query.split_once('?') {
            None => path_and_query.to_string(),
            Some((path, query)) => {
                // A part without `=` is a value (`?pal_<key>`, `?ada@example.com`):
                // only its place is kept.
                let names: Vec<String> = query
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.split_once('=') {
                        Some((name, _)) if field_like(name) => format!("{name}="),
                        _ => "_".to_string(),
                    })
                    .collect();
                format!("{path}?{}", names.join("&"))
            }
        }
    }

    /// Milliseconds since the Unix epoch, now.
    pub fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A query parameter name that names a field: an ASCII letter or `_` first, then letters,
/// digits, `_`, `-`, `.`, `[`, `]`; at most 64 bytes and 4 digits.
fn field_like(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b))
        && name.bytes().filter(u8::is_ascii_digit).count() <= 4
}

impl Record {
    /// The first block's record.
    pub(crate) fn genesis() -> String {
        Record {
            kind: Kind::Genesis,
            decision: "genesis".into(),
            time_ms: Record::now_ms(),
            ..Record::default()
        }
        .to_canonical()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_never_reach_the_path() {
        assert_eq!(
            Record::path_without_query_values("/a?token=secret&x=1&flag"),
            "/a?token=&x=&_"
        );
        // A bare part is a value: an API key or an email never reaches the ledger.
        assert_eq!(
            Record::path_without_query_values("/x?pal_k1_c2VjcmV0&ada@example.com&&q="),
            "/x?_&_&q="
        );
        assert_eq!(
            Record::path_without_query_values(
                "/x?ada@example.com=1&pal_k1_c2VjcmV0bG9uZzEyMzQ1=&ids[]=2"
            ),
            "/x?_&_&ids[]="
        );
        assert_eq!(Record::path_without_query_values("/a/b"), "/a/b");
    }

    #[test]
    fn canonical_encoding_is_sorted_and_compact() {
        let json = Record::default().to_canonical();
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&json)
                .unwrap()
                .keys()
                .cloned()
                .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(
            json.starts_with("{\"cause\":null,\"correlation_id\":\"\""),
            "{json}"
        );
    }
}
