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
    /// The caller the token of `key` verified as, if it did recently and its time claims
    /// still hold with the verifying issuer's `leeway` (seconds).
    pub(crate) fn get(&self, key: &[u8; 32], leeway: impl FnOnce(usize) -> u64) -> Option<Caller> {
        let (issuer, caller) = {
            let mut entries = self.entries.lock().expect("token cache lock");
            entries.get(key)?.clone()
        };
        in_time(&caller, leeway(issuer)).then(|| Caller::clone(&caller))
    }

    /// Remembers that the token of `key` verified as `caller` with `issuer`'s key.
    pub(crate) fn insert(&self, key: [u8; 32], issuer: usize, caller: &Caller) {
        self.entries
            .lock()
            .expect("token cache lock")
            .insert(key, (issuer, Arc::new(caller.clone())));
    }
}

/// The entry's key for `token` on a route accepting `allowed` issuers (all when empty):
/// the token and the issuers, each length-prefixed, hashed. `None` for a token too large
/// to keep. Computed once per verification, for the lookup and the insert.
pub(crate) fn key(token: &str, allowed: &[String]) -> Option<[u8; 32]> {
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

    /// `get` and `insert` by token and accepted issuers, as `jwt::verify` uses them.
    fn get(cache: &VerifiedTokens, token: &str, allowed: &[String], leeway: u64) -> Option<Caller> {
        cache.get(&key(token, allowed)?, |_| leeway)
    }

    fn insert(cache: &VerifiedTokens, token: &str, allowed: &[String], caller: &Caller) {
        if let Some(k) = key(token, allowed) {
            cache.insert(k, 0, caller);
        }
    }

    #[test]
    fn a_hit_is_checked_for_time_and_the_routes_issuers_again() {
        let cache = VerifiedTokens::default();
        let all: &[String] = &[];
        let only_b = &["b".to_string()];
        insert(&cache, "a.b.c", all, &caller(Value::from(now() + 60), None));
        assert!(get(&cache, "a.b.c", all, 0).is_some());
        assert!(get(&cache, "a.b.d", all, 0).is_none(), "another token");
        assert!(
            get(&cache, "a.b.c", only_b, 0).is_none(),
            "a route accepting other issuers verifies afresh"
        );

        insert(&cache, "old", all, &caller(Value::from(now() - 120), None));
        assert!(get(&cache, "old", all, 0).is_none(), "expired since");
        assert!(get(&cache, "old", all, 300).is_some(), "within the leeway");

        let later = caller(Value::from(now() + 600), Some(Value::from(now() + 300)));
        insert(&cache, "later", all, &later);
        assert!(get(&cache, "later", all, 0).is_none(), "not yet valid");
    }

    #[test]
    fn the_cache_is_bounded_in_entries_and_token_size() {
        let cache = VerifiedTokens::default();
        let c = caller(Value::from(now() + 60), None);
        for n in 0..CAPACITY + 10 {
            insert(&cache, &format!("t{n}"), &[], &c);
        }
        assert_eq!(cache.entries.lock().unwrap().len(), CAPACITY);
        assert!(get(&cache, "t0", &[], 0).is_none(), "the oldest went first");

        let huge = "x".repeat(MAX_TOKEN + 1);
        assert!(key(&huge, &[]).is_none(), "not kept");
    }
}
