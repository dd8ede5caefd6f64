//! Tokens verified recently: a bounded cache that spares a signature check and a JSON
//! parse when a client presents the same JWT again (they usually do, until it expires).
//!
//! Entries are keyed by the SHA-256 of the token and of the issuers the route accepts
//! (two routes that accept different issuers may verify one token as different callers),
//! so the cache holds no credential, and hold the issuer that verified the token and the
//! caller it made. The time claims are checked again on every hit, so a cached token
//! expires when its `exp` says. Tokens over [`MAX_TOKEN`] bytes are not kept, so the
//! cache's memory is bounded by [`CAPACITY`] small entries. The cache belongs to the
//! issuers it was filled from: a reload that changes keys builds new issuers and a new
//! cache.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hashlink::LruCache;
use sha2::{Digest, Sha256};

use super::Caller;

/// Tokens kept at most: the least recently presented is dropped first.
pub(crate) const CAPACITY: usize = 2_048;
/// Larger tokens are verified every time.
pub(crate) const MAX_TOKEN: usize = 4_096;

/// What a verified token made: the verifying issuer (its index) and the caller.
type Entry = (usize, Arc<Caller>);

/// The cache of one set of issuers.
pub(crate) struct VerifiedTokens {
    entries: Mutex<LruCache<[u8; 32], Entry>>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens {
            entries: Mutex::new(LruCache::new(CAPACITY)),
        }
    }
}

impl VerifiedTokens {
    /// The caller `token` verified as on a route accepting `allowed` issuers (all when
    /// empty), if it did recently and its time claims still hold with the verifying
    /// issuer's `leeway` (seconds).
    pub(crate) fn get(
        &self,
        token: &str,
        allowed: &[String],
        leeway: impl FnOnce(usize) -> u64,
    ) -> Option<Caller> {
        let key = key(token, allowed)?;
        let (issuer, caller) = {
            let mut entries = self.entries.lock().expect("token cache lock");
            entries.get(&key)?.clone()
        };
        in_time(&caller, leeway(issuer)).then(|| Caller::clone(&caller))
    }

    /// Remembers that `token` verified as `caller` with `issuer`'s key on a route
    /// accepting `allowed` issuers.
    pub(crate) fn insert(&self, token: &str, allowed: &[String], issuer: usize, caller: &Caller) {
        if let Some(key) = key(token, allowed) {
            self.entries
                .lock()
                .expect("token cache lock")
                .insert(key, (issuer, Arc::new(caller.clone())));
        }
    }
}

/// The entry's key: the token and the accepted issuers, each length-prefixed. `None` for
/// a token too large to keep.
fn key(token: &str, allowed: &[String]) -> Option<[u8; 32]> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let mut hash = Sha256::new();
    for part in std::iter::once(token).chain(allowed.iter().map(String::as_str)) {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    Some(hash.finalize().into())
}

/// `exp` (required: a token without it was never cached) and `nbf` against now, as
/// `jsonwebtoken` checks them: expired when `exp < now - leeway`, not yet valid when
/// `nbf > now + leeway`.
fn in_time(caller: &Caller, leeway: u64) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claim = |name: &str| {
        caller
            .claims
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_f64())
    };
    let Some(exp) = claim("exp") else {
        return false;
    };
    let not_expired = exp >= now.saturating_sub(leeway) as f64;
    let mature = claim("nbf").is_none_or(|nbf| nbf <= now.saturating_add(leeway) as f64);
    not_expired && mature
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::auth::Scheme;

    fn caller(exp: Value, nbf: Option<Value>) -> Caller {
        let mut claims = vec![("exp".to_string(), exp)];
        if let Some(nbf) = nbf {
            claims.push(("nbf".to_string(), nbf));
        }
        Caller {
            scheme: Scheme::Jwt,
            subject: "alice".into(),
            tenant: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            platform: false,
            claims,
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_hit_is_checked_for_time_and_the_routes_issuers_again() {
        let cache = VerifiedTokens::default();
        let all: &[String] = &[];
        let only_b = &["b".to_string()];
        cache.insert("a.b.c", all, 0, &caller(Value::from(now() + 60), None));
        assert!(cache.get("a.b.c", all, |_| 0).is_some());
        assert!(cache.get("a.b.d", all, |_| 0).is_none(), "another token");
        assert!(
            cache.get("a.b.c", only_b, |_| 0).is_none(),
            "a route accepting other issuers verifies afresh"
        );

        cache.insert("old", all, 0, &caller(Value::from(now() - 120), None));
        assert!(cache.get("old", all, |_| 0).is_none(), "expired since");
        assert!(
            cache.get("old", all, |_| 300).is_some(),
            "within the leeway"
        );

        let later = caller(Value::from(now() + 600), Some(Value::from(now() + 300)));
        cache.insert("later", all, 0, &later);
        assert!(cache.get("later", all, |_| 0).is_none(), "not yet valid");
    }

    #[test]
    fn the_cache_is_bounded_in_entries_and_token_size() {
        let cache = VerifiedTokens::default();
        let c = caller(Value::from(now() + 60), None);
        for n in 0..CAPACITY + 10 {
            cache.insert(&format!("t{n}"), &[], 0, &c);
        }
        assert_eq!(cache.entries.lock().unwrap().len(), CAPACITY);
        assert!(
            cache.get("t0", &[], |_| 0).is_none(),
            "the oldest went first"
        );

        let huge = "x".repeat(MAX_TOKEN + 1);
        cache.insert(&huge, &[], 0, &c);
        assert!(cache.get(&huge, &[], |_| 0).is_none(), "not kept");
    }
}
