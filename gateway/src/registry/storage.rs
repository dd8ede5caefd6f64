//! The registry's rows in the ledger's database, typed: one [`Version`] per uploaded
//! module version, and which version of each module is active.

use palisade_runtime::Kind;
use serde::Serialize;

use super::RegistryError;
use super::error::storage;

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// Owner.
    pub tenant: String,
    /// Module name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// SHA-256 of the bytes, hex.
    pub digest: String,
    /// `wasm` or `lua`.
    #[serde(serialize_with = "kind_name")]
    pub kind: Kind,
    /// Bytes.
    pub size: u64,
    /// Exported phases (`request`, `response`).
    pub phases: Vec<String>,
    /// The trusted key (hex) that signed it, if signed.
    pub signer: Option<String>,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When, Unix ms.
    pub created_ms: u64,
    /// Whether it is the tenant's active version of `name`.
    pub active: bool,
}

/// A row as stored (also carries the signature for load-time checks).
#[derive(Clone)]
pub(super) struct Row {
    pub(super) v: Version,
    pub(super) signature: Option<String>,
}

pub(super) const SELECT: &str = "SELECT v.tenant, v.name, v.version, v.digest, v.kind, CAST(v.size AS TEXT), v.phases, v.signer, v.uploaded_by, CAST(v.created_ms AS TEXT), v.signature, a.version FROM palisade_registry_versions v LEFT JOIN palisade_registry_active a ON a.tenant = v.tenant AND a.name = v.name";

fn kind_name<S: serde::Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

/// A row of `SELECT`, typed; a value that does not parse is a storage error (the
/// database was changed by something other than the registry).
pub(super) fn to_row(cols: Vec<Option<String>>) -> Result<Row, RegistryError> {
    let s = |i: usize| cols.get(i).cloned().flatten().unwrap_or_default();
    let number = |i: usize| {
        s(i).parse::<u64>()
            .map_err(|_| storage(format!("column {i} is not a number")))
    };
    let version = s(2);
    Ok(Row {
        v: Version {
            tenant: s(0),
            name: s(1),
            active: cols.get(11).cloned().flatten().as_deref() == Some(version.as_str()),
            version,
            digest: s(3),
            kind: s(4).parse().map_err(storage)?,
            size: number(5)?,
            phases: s(6)
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            signer: cols.get(7).cloned().flatten(),
            uploaded_by: s(8),
            created_ms: number(9)?,
        },
        signature: cols.get(10).cloned().flatten(),
    })
}

/// Stores a new version (with its signature, if any); false when it existed already.
pub(super) const INSERT: &str = "INSERT INTO palisade_registry_versions (tenant, name, version, digest, kind, size, phases, signer, signature, uploaded_by, created_ms) VALUES ($1, $2, $3, $4, $5, CAST(CAST($6 AS TEXT) AS BIGINT), $7, $8, $9, $10, CAST(CAST($11 AS TEXT) AS BIGINT)) ON CONFLICT DO NOTHING";

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, size: &str) -> Vec<Option<String>> {
        [
            "acme", "redact", "1.0.0", "ab", kind, size, "request", "", "ops", "5", "", "1.0.0",
        ]
        .iter()
        .enumerate()
        .map(|(i, v)| (i != 7 && i != 10).then(|| v.to_string()))
        .collect()
    }

    #[test]
    fn a_row_is_typed_or_a_storage_error() {
        let ok = to_row(row("lua", "42")).unwrap();
        assert_eq!(ok.v.kind, Kind::Lua);
        assert_eq!(ok.v.size, 42);
        assert!(ok.v.active);
        assert_eq!(ok.v.phases, ["request"]);
        assert_eq!(to_row(row("wasm", "1")).unwrap().v.kind, Kind::Wasm);
        for (kind, size) in [("exe", "1"), ("lua", "many"), ("wasm", "")] {
            assert!(
                matches!(to_row(row(kind, size)), Err(RegistryError::Storage(_))),
                "{kind} {size}"
            );
        }
    }
}
