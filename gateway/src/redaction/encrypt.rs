//! Field-level encryption: the `encrypt` redaction action and its reverse, reveal.
//!
//! A value is replaced by a self-describing token
//!
//! ```text
//! pfe1:<mode>:<tenant>:<key version>:<base64url payload>
//! ```
//!
//! - `r` (randomized, the default): AES-256-GCM. Each token has its own 16-byte salt
//!   and 12-byte nonce; the key is HKDF-SHA256(tenant data key, salt), so no key ever
//!   seals more than one value and the random-nonce bound of one GCM key never applies.
//!   Payload: salt, nonce, ciphertext and tag.
//! - `d` (deterministic): AES-SIV (RFC 5297) under HKDF-SHA256(tenant data key) (64
//!   bytes). Equal values at the same path under the same key version give equal
//!   tokens, so the field stays joinable; that equality is also all it reveals. A new
//!   key version gives new tokens.
//!
//! Both bind, as associated data, the format, mode, tenant, key version and the field's
//! path (normalized, with its names as they are and array indices as `[*]`): a token
//! moved to another field or tenant, or edited, does not open. The plaintext is the
//! value's JSON text, so reveal gives back the value with its type.
//!
//! The tenant data keys are the secret store's (`palisade secret rotate` starts a new
//! version); a route encrypts under the newest version it found when it was built and
//! reveal opens any version the store holds. Only a key derived from the data key for
//! field encryption (HKDF, its own label) is kept in memory by the routes: the data key
//! itself, which also seals the tenant's secrets, is not.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aes_siv::siv::Aes256Siv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use serde_json::Value;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The token prefix and format version.
pub const TOKEN_PREFIX: &str = "pfe1";
const SALT: usize = 16;
const NONCE: usize = 12;
/// The longest token [`parse`] reads (values up to 12 MiB, in base64).
pub const MAX_TOKEN: usize = 16 << 20;

/// How a value is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// AES-256-GCM with a fresh salt and nonce: equal values give unrelated tokens.
    Randomized,
    /// AES-SIV: equal values at the same path give equal tokens.
    Deterministic,
}

impl Mode {
    fn tag(self) -> &'static str {
        match self {
            Mode::Randomized => "r",
            Mode::Deterministic => "d",
        }
    }
}

/// One tenant's data key version, for sealing: the key derived from it for fields.
pub struct FieldKey {
    tenant: String,
    version: u64,
    root: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for FieldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldKey")
            .field("tenant", &self.tenant)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a token does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a `pfe1` token, or its parts are not what they must be.
    #[error("not a field encryption token")]
    Malformed,
    /// Sealed for another tenant than the one asking.
    #[error("the token belongs to another tenant")]
    OtherTenant,
    /// Tampered with, moved from another field, or sealed under another key.
    #[error("the token does not open at this path")]
    Refused,
}

/// A parsed token: who and which key version, before any key is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// The tenant it was sealed for.
    pub tenant: &'a str,
    /// The tenant's data key version.
    pub key_version: u64,
    mode: Mode,
    payload: Vec<u8>,
}

/// The longest path a policy may seal at (the audit block lists it).
const MAX_SEAL_PATH: usize = 1_024;

/// The host's `seal` for a policy its route grants field encryption: `path` must be a
/// normalized path (the one `palisade secret reveal` is then given), where `[*]` may
/// stand for a name, `value` JSON text; deterministic tokens only when
/// `deterministic_granted`. Its errors never hold the value.
pub(crate) fn sealer(
    key: std::sync::Arc<FieldKey>,
    deterministic_granted: bool,
) -> palisade_runtime::Sealer {
    palisade_runtime::Sealer(std::sync::Arc::new(
        move |path: &str, value: &str, deterministic| {
            if deterministic && !deterministic_granted {
                return Err("deterministic sealing is not granted to this policy \
                     (`field_encryption = \"deterministic\"`)"
                    .into());
            }
            // `[*]` stands for a name that is not field-like, as audit paths (and the SDK's
            // walks) write it; the token is bound to the path as given.
            if path.len() > MAX_SEAL_PATH
                || !palisade_jsonpath::is_normalized(&path.replace("[*]", "[0]"))
            {
                return Err(format!(
                    "the path must be a normalized JSONPath such as $['card'][0], of at most {MAX_SEAL_PATH} bytes"
                ));
            }
            let value: Value = serde_json::from_str(value)
                .map_err(|_| "the value is not JSON text".to_string())?;
            let mode = if deterministic {
                Mode::Deterministic
            } else {
                Mode::Randomized
            };
            Ok(key.seal(mode, path, &value))
        },
    ))
}

impl FieldKey {
    /// `tenant`'s data key `version` (32 bytes from the secret store); only the key
    /// derived from it for fields is kept.
    pub fn new(tenant: &str, version: u64, data_key: &[u8; 32]) -> Self {
        FieldKey {
            tenant: tenant.to_string(),
            version,
            root: root(data_key),
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Seals `value`, found at normalized path `path`, into a token.
    pub fn seal(&self, mode: Mode, path: &str, value: &Value) -> String {
        let plaintext = Zeroizing::new(value.to_string().into_bytes());
        let aad = aad(mode, &self.tenant, self.version, path);
        let payload = match mode {
            Mode::Randomized => {
                let mut head = [0u8; SALT + NONCE];
                getrandom::fill(&mut head).expect("the OS random source is available");
                let cipher = gcm(&self.root, &head[..SALT]);
                let sealed = cipher
                    .encrypt(
                        Nonce::from_slice(&head[SALT..]),
                        Payload {
                            msg: &plaintext,
                            aad: &aad,
                        },
                    )
                    .expect("AES-GCM seals any value under 64 GiB");
                [head.as_slice(), &sealed].concat()
            }
            Mode::Deterministic => siv(&self.root)
                .encrypt([aad.as_slice()], &plaintext)
                .expect("AES-SIV seals any value"),
        };
        format!(
            "{TOKEN_PREFIX}:{}:{}:{}:{}",
            mode.tag(),
            self.tenant,
            self.version,
            URL_SAFE_NO_PAD.encode(payload)
        )
    }
}

/// Parses `token` (nothing is decrypted).
///
/// # Errors
///
/// [`TokenError::Malformed`].
pub fn parse(token: &str) -> Result<Token<'_>, TokenError> {
    if token.len() > MAX_TOKEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split(':');
    let (Some(TOKEN_PREFIX), Some(mode), Some(tenant), Some(version), Some(payload), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    let mode = match mode {
        "r" => Mode::Randomized,
        "d" => Mode::Deterministic,
        _ => return Err(TokenError::Malformed),
    };
    let key_version = version
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0 && !version.starts_with('0'))
        .ok_or(TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    if tenant.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(Token {
        tenant,
        key_version,
        mode,
        payload,
    })
}

/// Opens a parsed token found at normalized path `path` with its tenant's data key of
/// its version (`data_key`, from the secret store).
///
/// # Errors
///
/// [`TokenError::Refused`] for a token that was tampered with, moved, or sealed under
/// another key; [`TokenError::Malformed`] for a payload too short to hold a tag.
pub fn open(token: &Token<'_>, path: &str, data_key: &[u8; 32]) -> Result<Value, TokenError> {
    let key = &root(data_key);
    let aad = aad(token.mode, token.tenant, token.key_version, path);
    let plaintext = Zeroizing::new(match token.mode {
        Mode::Randomized => {
            if token.payload.len() < SALT + NONCE + 16 {
                return Err(TokenError::Malformed);
            }
            let (head, sealed) = token.payload.split_at(SALT + NONCE);
            gcm(key, &head[..SALT])
                .decrypt(
                    Nonce::from_slice(&head[SALT..]),
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| TokenError::Refused)?
        }
        Mode::Deterministic => siv(key)
            .decrypt([aad.as_slice()], &token.payload)
            .map_err(|_| TokenError::Refused)?,
    });
    serde_json::from_slice(&plaintext).map_err(|_| TokenError::Refused)
}

/// The associated data: format, mode, tenant (no NUL: a secret store id), key version,
/// and last the field: the path with indices as `[*]`.
fn aad(mode: Mode, tenant: &str, version: u64, path: &str) -> Vec<u8> {
    format!(
        "{TOKEN_PREFIX}\0{}\0{tenant}\0{version}\0{}",
        mode.tag(),
        field_path(path)
    )
    .into_bytes()
}

/// The key for fields, derived from a tenant data key.
fn root(data_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, data_key)
        .expand(b"palisade-field/1 root", okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    okm
}

/// A normalized path with every array index as `[*]`: a token is bound to its field,
/// not to its element's place in a list (a client may sort it).
pub fn field_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after.as_bytes().get(digits) == Some(&b']') {
            out.push_str("[*]");
            rest = &after[digits + 1..];
        } else if let Some(name) = after.strip_prefix('\'') {
            // A quoted name: copy it whole (it may hold `[` or digits).
            let end = quoted_end(name);
            out.push_str(&rest[open..open + 2 + end]);
            rest = &name[end..];
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The length of a single-quoted name's body and closing quote (backslash escapes).
fn quoted_end(name: &str) -> usize {
    let mut escaped = false;
    for (i, c) in name.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '\'' => return i + 1,
            _ => {}
        }
    }
    name.len()
}

fn gcm(key: &[u8; 32], salt: &[u8]) -> Aes256Gcm {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), key)
        .expand(b"palisade-field/1 gcm", okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Aes256Gcm::new_from_slice(okm.as_ref()).expect("32-byte key")
}

fn siv(key: &[u8; 32]) -> Aes256Siv {
    let mut okm = Zeroizing::new([0u8; 64]);
    Hkdf::<Sha256>::new(None, key)
        .expand(b"palisade-field/1 siv", okm.as_mut())
        .expect("64 bytes is a valid HKDF-SHA256 length");
    Aes256Siv::new_from_slice(okm.as_ref()).expect("64-byte key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(version: u64, byte: u8) -> FieldKey {
        FieldKey::new("acme", version, &[byte; 32])
    }

    #[test]
    fn round_trips_in_both_modes_and_binds_the_field() {
        for mode in [Mode::Randomized, Mode::Deterministic] {
            let k = key(3, 7);
            let value = json!({"ssn": "219-09-9999", "n": 12});
            let token = k.seal(mode, "$['users'][4]['id']", &value);
            assert!(!token.contains("219-09"), "{token}");
            let parsed = parse(&token).unwrap();
            assert_eq!((parsed.tenant, parsed.key_version), ("acme", 3));
            // Another element of the same field opens; another field does not.
            assert_eq!(open(&parsed, "$['users'][0]['id']", &[7; 32]), Ok(value));
            assert_eq!(
                open(&parsed, "$['users'][0]['name']", &[7; 32]),
                Err(TokenError::Refused)
            );
            // Another key, a flipped byte, another tenant or version named.
            assert_eq!(
                open(&parsed, "$['users'][4]['id']", &[8; 32]),
                Err(TokenError::Refused)
            );
            let mut tampered = parsed.clone();
            let last = tampered.payload.len() - 1;
            tampered.payload[last] ^= 1;
            assert_eq!(
                open(&tampered, "$['users'][4]['id']", &[7; 32]),
                Err(TokenError::Refused)
            );
            for moved in [
                token.replacen(":acme:", ":other:", 1),
                token.replacen(":3:", ":4:", 1),
            ] {
                let p = parse(&moved).unwrap();
                assert_eq!(
                    open(&p, "$['users'][4]['id']", &[7; 32]),
                    Err(TokenError::Refused),
                    "{moved}"
                );
            }
        }
    }

    #[test]
    fn deterministic_tokens_repeat_randomized_do_not() {
        let k = key(1, 1);
        let v = json!("4111111111111111");
        assert_eq!(
            k.seal(Mode::Deterministic, "$['pan']", &v),
            k.seal(Mode::Deterministic, "$['pan']", &v)
        );
        assert_ne!(
            k.seal(Mode::Deterministic, "$['pan']", &v),
            k.seal(Mode::Deterministic, "$['card']", &v)
        );
        assert_ne!(
            k.seal(Mode::Randomized, "$['pan']", &v),
            k.seal(Mode::Randomized, "$['pan']", &v)
        );
    }

    #[test]
    fn malformed_tokens() {
        for bad in [
            "",
            "pfe1:r:acme:1",
            "pfe2:r:acme:1:AAAA",
            "pfe1:x:acme:1:AAAA",
            "pfe1:r:acme:0:AAAA",
            "pfe1:r:acme:01:AAAA",
            "pfe1:r::1:AAAA",
            "pfe1:r:acme:1:***",
            "pfe1:r:acme:1:AAAA:extra",
        ] {
            assert_eq!(parse(bad), Err(TokenError::Malformed), "{bad}");
        }
        let short = parse("pfe1:r:acme:1:AAAA").unwrap();
        assert_eq!(open(&short, "$", &[0; 32]), Err(TokenError::Malformed));
    }

    #[test]
    fn field_paths_drop_indices_only() {
        assert_eq!(field_path("$['a'][12]['b'][0]"), "$['a'][*]['b'][*]");
        assert_eq!(field_path("$['x[1]']['2']"), "$['x[1]']['2']");
        assert_eq!(field_path("$['it\\'s[3]'][3]"), "$['it\\'s[3]'][*]");
        assert_eq!(field_path("header:x-card"), "header:x-card");
        // Names that are not field-like still bind: sibling fields do not share tokens.
        let k = key(1, 9);
        let token = k.seal(Mode::Randomized, "$['número']", &json!(1));
        let parsed = parse(&token).unwrap();
        assert_eq!(open(&parsed, "$['número']", &[9; 32]), Ok(json!(1)));
        for other in ["$['teléfono']", "$[*]", "$.x", "$['número'][*]"] {
            assert_eq!(
                open(&parsed, other, &[9; 32]),
                Err(TokenError::Refused),
                "{other}"
            );
        }
    }
}
