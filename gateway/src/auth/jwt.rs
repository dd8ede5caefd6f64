//! JWT bearer tokens (RFC 7519), verified with `jsonwebtoken`.
//!
//! - Each key is pinned to one algorithm in config (or by its JWK `alg`); the token's
//!   `alg` must be that algorithm, so `none`, HS256-with-an-RSA-key and other
//!   confusions fail. The token's `kid` is only a map key: it never reaches a path.
//! - `jwk`, `jku`, `x5u` and `x5c` headers are never used: keys come from config only.
//! - `exp` is required and must be a number; `nbf` is checked when present; `iss` when
//!   the issuer sets `issuer`, `aud` always (see [`super::JwtIssuer::audience`]).

use std::collections::HashMap;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, EllipticCurveKeyParameters, JwkSet, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::verified::{self, VerifiedTokens};
use super::{Caller, Refused, string_list};
use super::{JwtIssuer, JwtKey, Scheme};
use crate::config::Problem;
use toml::Spanned;

/// One verification key.
struct Key {
    issuer: usize,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// An issuer's settings, as checked.
struct Issuer {
    name: String,
    validation: Validation,
    tenant: Option<String>,
    /// Configured as the platform's issuer (`platform = true`).
    platform: bool,
    tenant_claim: String,
    scope_claim: String,
    roles_claim: String,
    /// Its key when it has exactly one: tokens without `kid` use it.
    only_key: Option<usize>,
}

/// Every configured issuer and its keys.
#[derive(Default)]
pub(crate) struct Issuers {
    issuers: Vec<Issuer>,
    keys: Vec<Key>,
    by_kid: HashMap<String, Vec<usize>>,
    /// Tokens these issuers verified recently.
    verified: VerifiedTokens,
}

/// Whether `token` has the shape of a JWS compact serialization.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

impl Issuers {
    pub(crate) fn load(
        config: &[Spanned<JwtIssuer>],
        leeway: u64,
        problems: &mut Vec<Problem>,
    ) -> Self {
        let mut out = Issuers::default();
        for (index, spanned) in config.iter().enumerate() {
            let cfg = spanned.get_ref();
            let mut fail = |field: &str, message: String| {
                problems.push(super::problem(spanned, field, &cfg.name, message));
            };
            let mut keys = Vec::new();
            for (n, k) in cfg.keys.iter().enumerate() {
                match load_key(k) {
                    Ok(key) => keys.push((k.kid.clone(), key)),
                    Err(e) => fail(&format!("key.{n}"), e),
                }
            }
            if let Some(path) = &cfg.jwks {
                match load_jwks(cfg, path) {
                    Ok(mut found) => keys.append(&mut found),
                    Err(e) => fail("jwks", e),
                }
            }
            if keys.is_empty() {
                fail(
                    "",
                    "no usable key: give `key` entries or a `jwks` file".into(),
                );
                continue;
            }
            let only_key = (keys.len() == 1).then_some(out.keys.len());
            for (kid, (algorithm, key)) in keys {
                if let Some(kid) = kid {
                    out.by_kid.entry(kid).or_default().push(out.keys.len());
                }
                out.keys.push(Key {
                    issuer: index,
                    algorithm,
                    key,
                });
            }
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = cfg.leeway_s.unwrap_or(leeway);
            validation.validate_nbf = true;
            let mut required = vec!["exp"];
            if let Some(iss) = &cfg.issuer {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            if !cfg.audience.is_empty() {
                validation.set_audience(&cfg.audience);
                required.push("aud");
            }
            validation.set_required_spec_claims(&required);
            out.issuers.push(Issuer {
                name: cfg.name.clone(),
                validation,
                tenant: cfg.tenant.clone(),
                platform: cfg.platform,
                tenant_claim: cfg.tenant_claim.clone(),
                scope_claim: cfg.scope_claim.clone(),
                roles_claim: cfg.roles_claim.clone(),
                only_key,
            });
        }
        out
    }

    /// Verifies `token` against the keys it may name (`allowed` issuers only, when not
    /// empty).
    pub(crate) fn verify(&self, token: &str, allowed: &[String]) -> Result<Caller, Refused> {
        let cache_key = verified::key(token, allowed);
        let cached = cache_key
            .as_ref()
            .and_then(|k| self.verified.get(k, |i| self.issuers[i].validation.leeway));
        if let Some(caller) = cached {
            return Ok(caller);
        }
        let accepts = |issuer: &Issuer| allowed.is_empty() || allowed.contains(&issuer.name);
        let header = jsonwebtoken::decode_header(token).map_err(|e| refused(e.kind()))?;
        let accepted = |k: &&Key| accepts(&self.issuers[k.issuer]);
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .map(|ks| ks.iter().map(|i| &self.keys[*i]).filter(accepted).collect())
                .unwrap_or_default(),
            None => self
                .issuers
                .iter()
                .filter_map(|i| i.only_key.map(|k| &self.keys[k]))
                .filter(accepted)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(Refused(if header.kid.is_some() {
                "token_unknown_kid"
            } else {
                "token_kid_missing"
            }));
        }
        let mut first_error = None;
        for key in candidates {
            let issuer = &self.issuers[key.issuer];
            let mut validation = issuer.validation.clone();
            // Pinned: the token's `alg` must be the key's.
            validation.algorithms = vec![key.algorithm];
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let caller = caller(issuer, data.claims);
                    if let Some(k) = cache_key {
                        self.verified.insert(k, key.issuer, &caller);
                    }
                    return Ok(caller);
                }
                Err(e) => {
                    let mut cause = refused(e.kind());
                    if let ErrorKind::MissingRequiredClaim(name) = e.kind() {
                        // Signed, but the claim is there with the wrong type (a string
                        // `exp`, say): name that, not a missing claim.
                        let claims: Option<Map<String, Value>> =
                            jsonwebtoken::dangerous::insecure_decode_claims(token).ok();
                        if claims.is_some_and(|c| c.contains_key(name.as_str())) {
                            cause = Refused("token_bad_claim");
                        }
                    }
                    first_error.get_or_insert(cause);
                }
            }
        }
        Err(first_error.unwrap_or(Refused("token_invalid")))
    }
}

fn caller(issuer: &Issuer, claims: Map<String, Value>) -> Caller {
    let tenant = issuer.tenant.clone().or_else(|| {
        claims
            .get(&issuer.tenant_claim)
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .map_or_else(|| format!("jwt:{}", issuer.name), str::to_string);
    Caller {
        scheme: Scheme::Jwt,
        subject,
        tenant,
        scopes: string_list(claims.get(&issuer.scope_claim)),
        roles: string_list(claims.get(&issuer.roles_claim)),
        platform: issuer.platform,
        claims: claims.into_iter().collect(),
    }
}

/// The audit cause for a `jsonwebtoken` error.
fn refused(kind: &ErrorKind) -> Refused {
    Refused(match kind {
        ErrorKind::ExpiredSignature => "token_expired",
        ErrorKind::ImmatureSignature => "token_not_yet_valid",
        ErrorKind::InvalidSignature => "token_bad_signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "token_wrong_algorithm",
        ErrorKind::InvalidIssuer => "token_wrong_issuer",
        ErrorKind::InvalidAudience => "token_wrong_audience",
        ErrorKind::MissingRequiredClaim(_) => "token_missing_claim",
        ErrorKind::InvalidClaimFormat(_) => "token_bad_claim",
        _ => "token_malformed",
    })
}

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(name).map_err(|_| {
        format!(
            "unknown algorithm `{name}` (HS256, HS384, HS512, RS256, RS384, RS512, PS256, \
             PS384, PS512, ES256, ES384, EdDSA)"
        )
    })
}

fn load_key(k: &JwtKey) -> Result<(Algorithm, DecodingKey), String> {
    let algorithm = parse_algorithm(&k.algorithm)?;
    let name = k.kid.as_deref().unwrap_or("(no kid)");
    let hmac = matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    );
    let key = match (hmac, &k.pem, &k.secret_file) {
        (true, None, Some(path)) => {
            let path = path.clone();
            let secret = std::fs::read(&path)
                .map(hmac_secret)
                .map_err(|e| format!("key {name}: cannot read {}: {e}", path.display()))?;
            let min = match algorithm {
                Algorithm::HS256 => 32,
                Algorithm::HS384 => 48,
                _ => 64,
            };
            if secret.len() < min {
                return Err(format!(
                    "key {name}: a {algorithm:?} secret must be at least {min} bytes (RFC 7518 3.2)"
                ));
            }
            DecodingKey::from_secret(&secret)
        }
        (false, Some(path), None) => {
            let path = path.clone();
            let pem = std::fs::read(&path)
                .map_err(|e| format!("key {name}: cannot read {}: {e}", path.display()))?;
            match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            }
            .map_err(|e| {
                format!(
                    "key {name}: {}: not a {algorithm:?} public key: {e}",
                    path.display()
                )
            })?
        }
        (true, _, _) => {
            return Err(format!(
                "key {name}: {algorithm:?} needs `secret_file` (and no `pem`)"
            ));
        }
        (false, _, _) => {
            return Err(format!(
                "key {name}: {algorithm:?} needs `pem` (and no `secret_file`)"
            ));
        }
    };
    Ok((algorithm, key))
}

/// The key in an HMAC `secret_file`: a text file (UTF-8) loses one trailing line ending
/// (`\n` or `\r\n`), as `echo` and editors add it; a binary file (`openssl rand 32`) is
/// used byte for byte, since its last byte may be a 0x0A of the key.
fn hmac_secret(mut bytes: Vec<u8>) -> Vec<u8> {
    if std::str::from_utf8(&bytes).is_ok() {
        let end = [&b"\r\n"[..], b"\n"]
            .into_iter()
            .find(|end| bytes.ends_with(end))
            .map_or(0, <[u8]>::len);
        bytes.truncate(bytes.len() - end);
    }
    bytes
}

/// An EC public key from a JWK, checked before any token meets it: `crv` must be the
/// algorithm's curve and (x, y) a point on it. Coordinates shorter than the curve's
/// size are left-padded with zeros: RFC 7518 §6.2.1.2 asks for the full length, but
/// some issuers encode them as minimal integers (PyJWT before 2.10 drops leading zero
/// bytes, about one key in 128), and the integer is the same either way. Longer
/// coordinates are refused.
fn ec_key(ec: &EllipticCurveKeyParameters, algorithm: Algorithm) -> Result<DecodingKey, String> {
    let (curve, size) = match algorithm {
        Algorithm::ES256 => (EllipticCurve::P256, 32),
        Algorithm::ES384 => (EllipticCurve::P384, 48),
        other => return Err(format!("an EC key cannot verify {other:?}")),
    };
    if ec.curve != curve {
        return Err(format!(
            "`crv` {:?} is not the curve of {algorithm:?}",
            ec.curve
        ));
    }
    let coordinate = |name: &str, text: &str| {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| format!("`{name}` is not base64url"))?;
        if bytes.len() > size {
            return Err(format!("`{name}` is longer than {size} bytes"));
        }
        let mut padded = vec![0u8; size - bytes.len()];
        padded.extend_from_slice(&bytes);
        Ok(padded)
    };
    let mut point = vec![0x04];
    point.extend(coordinate("x", &ec.x)?);
    point.extend(coordinate("y", &ec.y)?);
    let on_curve = match curve {
        EllipticCurve::P256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
        _ => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
    };
    if !on_curve {
        return Err("(x, y) is not a point on the curve".to_owned());
    }
    DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&point[1..=size]),
        &URL_SAFE_NO_PAD.encode(&point[size + 1..]),
    )
    .map_err(|e| e.to_string())
}

type Loaded = Vec<(Option<String>, (Algorithm, DecodingKey))>;

fn load_jwks(cfg: &JwtIssuer, path: &std::path::Path) -> Result<Loaded, String> {
    let path = path.to_path_buf();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a JWK set: {e}", path.display()))?;
    let fallback = cfg.algorithm.as_deref().map(parse_algorithm).transpose()?;
    let several = set.keys.len() > 1;
    let mut out = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let kid = jwk.common.key_id.clone();
        let label = kid.clone().unwrap_or_else(|| format!("#{i}"));
        if several && kid.is_none() {
            return Err(format!("{}: key {label} has no `kid`", path.display()));
        }
        let algorithm = match (jwk.common.key_algorithm, fallback) {
            (Some(a), _) => Algorithm::try_from(a).map_err(|_| {
                format!(
                    "{}: key {label}: `alg` is not a signature algorithm",
                    path.display()
                )
            })?,
            (None, Some(a)) => a,
            (None, None) => {
                return Err(format!(
                    "{}: key {label} has no `alg`; set `algorithm` on the issuer",
                    path.display()
                ));
            }
        };
        let key = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(ec) => ec_key(ec, algorithm),
            _ => DecodingKey::from_jwk(jwk).map_err(|e| e.to_string()),
        }
        .map_err(|e| format!("{}: key {label}: {e}", path.display()))?;
        if key.family() != algorithm.family() {
            return Err(format!(
                "{}: key {label}: a {:?} key cannot verify {algorithm:?}",
                path.display(),
                key.family()
            ));
        }
        out.push((kid, (algorithm, key)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    use super::*;

    fn params(curve: EllipticCurve, x: &[u8], y: &[u8]) -> EllipticCurveKeyParameters {
        EllipticCurveKeyParameters {
            curve,
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
            ..Default::default()
        }
    }

    /// A P-256 public point whose x coordinate starts with a zero byte.
    fn point_with_short_x() -> ([u8; 32], [u8; 32]) {
        (1u8..=255)
            .flat_map(|a| (1u8..=255).map(move |b| [a, b]))
            .find_map(|seed| {
                let mut scalar = [0u8; 32];
                scalar[30..].copy_from_slice(&seed);
                let secret = p256::SecretKey::from_slice(&scalar).ok()?;
                let point = secret.public_key().to_encoded_point(false);
                let (x, y) = (point.x()?, point.y()?);
                (x[0] == 0).then(|| (x[..].try_into().unwrap(), y[..].try_into().unwrap()))
            })
            .unwrap()
    }

    #[test]
    fn hmac_secret_files_lose_a_line_ending_only_when_they_are_text() {
        assert_eq!(hmac_secret(b"0123abcd\n".to_vec()), b"0123abcd");
        assert_eq!(hmac_secret(b"0123abcd\r\n".to_vec()), b"0123abcd");
        assert_eq!(hmac_secret(b"0123abcd".to_vec()), b"0123abcd");
        assert_eq!(hmac_secret(b"0123abcd\n\n".to_vec()), b"0123abcd\n");
        // Random bytes that end in 0x0A or 0x0D are all key.
        let binary = b"\xff\x00\x9c\x0d\x0a".to_vec();
        assert_eq!(hmac_secret(binary.clone()), binary);
    }

    #[test]
    fn ec_jwk_coordinates_are_padded_checked_and_matched_to_the_algorithm() {
        let (x, y) = point_with_short_x();
        let full = params(EllipticCurve::P256, &x, &y);
        ec_key(&full, Algorithm::ES256).unwrap();
        // The same point with x as a minimal integer (31 bytes) is the same key.
        let short = params(EllipticCurve::P256, &x[1..], &y);
        ec_key(&short, Algorithm::ES256).unwrap();

        let cases = [
            (
                params(EllipticCurve::P384, &x, &y),
                Algorithm::ES256,
                "`crv` P384",
            ),
            (
                params(EllipticCurve::P256, &x, &y),
                Algorithm::ES384,
                "`crv` P256",
            ),
            (
                params(EllipticCurve::P256, &x, &y),
                Algorithm::RS256,
                "cannot verify RS256",
            ),
            (
                params(EllipticCurve::P256, &[1], &[1]),
                Algorithm::ES256,
                "not a point",
            ),
            (
                params(EllipticCurve::P256, &[0; 33], &y),
                Algorithm::ES256,
                "`x` is longer",
            ),
            (
                EllipticCurveKeyParameters {
                    y: "not base64!".into(),
                    ..full.clone()
                },
                Algorithm::ES256,
                "`y` is not base64url",
            ),
        ];
        for (key, algorithm, expected) in cases {
            let error = ec_key(&key, algorithm).err().unwrap();
            assert!(error.contains(expected), "{error}");
        }
    }
}
