//! The store's rows in the ledger's database, typed: one `from_row` per table. Values
//! travel as text (see `crate::db`); a row that does not parse is damaged, and reported
//! as a storage error, never read as zero.

use base64::Engine as _;

use super::SecretError;

/// A secret as listed (no value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretInfo {
    /// The id.
    pub id: String,
    /// Latest version.
    pub version: u64,
    /// The data key version it is sealed under.
    pub key_version: u64,
    /// When the latest version was written, Unix ms.
    pub created_ms: u64,
}

impl SecretInfo {
    /// `id, version, key_version, created_ms` of `palisade_secrets`.
    pub(super) fn from_row(row: &[Option<String>]) -> Result<Self, SecretError> {
        Ok(SecretInfo {
            id: text(row, 0)?,
            version: number(row, 1)?,
            key_version: number(row, 2)?,
            created_ms: number(row, 3)?,
        })
    }
}

/// A sealed secret: `version, key_version, sealed` of `palisade_secrets`.
#[derive(Debug)]
pub(super) struct SealedRow {
    pub(super) version: u64,
    pub(super) key_version: u64,
    pub(super) sealed: String,
}

impl SealedRow {
    pub(super) fn from_row(row: &[Option<String>]) -> Result<Self, SecretError> {
        Ok(SealedRow {
            version: number(row, 0)?,
            key_version: number(row, 1)?,
            sealed: text(row, 2)?,
        })
    }
}

/// A wrapped data key: `tenant, version, wrapped` of `palisade_secret_keys`.
#[derive(Debug)]
pub(super) struct KeyRow {
    pub(super) tenant: String,
    pub(super) version: u64,
    pub(super) wrapped: Vec<u8>,
}

impl KeyRow {
    pub(super) fn from_row(row: &[Option<String>]) -> Result<Self, SecretError> {
        Ok(KeyRow {
            tenant: text(row, 0)?,
            version: number(row, 1)?,
            wrapped: unb64(&text(row, 2)?)?,
        })
    }
}

/// A key's use count: `version, uses` of `palisade_secret_keys`.
pub(super) fn key_uses(row: &[Option<String>]) -> Result<(u64, u64), SecretError> {
    Ok((number(row, 0)?, number(row, 1)?))
}

/// Column `i`, present.
pub(super) fn text(row: &[Option<String>], i: usize) -> Result<String, SecretError> {
    row.get(i)
        .cloned()
        .flatten()
        .ok_or_else(|| SecretError::Storage(format!("column {i} is missing")))
}

/// Column `i` as a number.
pub(super) fn number(row: &[Option<String>], i: usize) -> Result<u64, SecretError> {
    text(row, i)?
        .parse()
        .map_err(|_| SecretError::Storage(format!("column {i} is not a number")))
}

/// Bytes as stored.
pub(super) fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Stored text back to bytes; text that is not base64 does not decrypt.
pub(super) fn unb64(s: &str) -> Result<Vec<u8>, SecretError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| SecretError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[Option<&str>]) -> Vec<Option<String>> {
        cols.iter().map(|c| c.map(str::to_string)).collect()
    }

    #[test]
    fn rows_parse_whole_or_are_storage_errors_never_zero() {
        let info = SecretInfo::from_row(&row(&[Some("tok"), Some("3"), Some("2"), Some("17")]));
        assert_eq!(
            info,
            Ok(SecretInfo {
                id: "tok".into(),
                version: 3,
                key_version: 2,
                created_ms: 17
            })
        );
        let key = KeyRow::from_row(&row(&[Some("acme"), Some("1"), Some("AAEC")])).unwrap();
        assert_eq!(
            (key.tenant.as_str(), key.version, key.wrapped),
            ("acme", 1, vec![0, 1, 2])
        );
        for damaged in [
            row(&[Some("tok"), Some("x"), Some("2"), Some("17")]),
            row(&[Some("tok"), Some("3"), None, Some("17")]),
            row(&[Some("tok"), Some("-1"), Some("2"), Some("17")]),
        ] {
            assert!(
                matches!(SecretInfo::from_row(&damaged), Err(SecretError::Storage(_))),
                "{damaged:?}"
            );
        }
        assert!(matches!(
            SealedRow::from_row(&row(&[Some("1"), Some("one"), Some("c2VhbGVk")])),
            Err(SecretError::Storage(_))
        ));
        assert_eq!(
            KeyRow::from_row(&row(&[Some("acme"), Some("1"), Some("not base64!")])).err(),
            Some(SecretError::Decrypt)
        );
    }
}
