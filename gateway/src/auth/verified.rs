//! Tokens verified recently: a bounded cache that spares a signature check and a JSON
//! parse when a client presents the same JWT again (they usually do, until it expires).
//!
//! Entries are keyed by the token's SHA-256, so the cache holds no credential, and hold
//! the issuer that verified the token and the caller it made. The time claims are
//! checked again on every hit, so a cached token expires when its `exp` says; a hit for
//! an issuer the route does not accept is a miss. The cache belongs to the issuers it
//! was filled from: a reload that changes keys builds new issuers and a new cache.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hashlink::LruCache;
use sha2::{Digest, Sha256};

use super::Caller;

/// Tokens kept at most: the least recently presented is dropped first.
pub(crate) const CAPACITY: usize = 4_096;

/// The cache of one set of issuers.
pub(crate) struct VerifiedTokens {
    entries: Mutex<LruCache<[u8; 32], (usize, Caller)>>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens {
            entries: Mutex::new(LruCache::new(CAPACITY)),
        }
    }
}

impl VerifiedTokens {
    /// The issuer (its index) and caller `token` verified as, if it did recently and
    /// `accept` accepts the issuer and its time claims still hold (`leeway` seconds).
    pub(crate) fn get(
        &self,
        token: &str,
        accept: impl FnOnce(usize) -> Option<u64>,
    ) -> Option<Caller> {
        let key: [u8; 32] = Sha256::digest(token).into();
        let (issuer, caller) = {
            let mut entries = self.entries.lock().expect("token cache lock");
            entries.get(&key)?.clone()
        };
        let leeway = accept(issuer)?;
        in_time(&caller, leeway).then_some(caller)
    }

    /// Remembers that `token` verified as `caller` with `issuer`'s key.
    pub(crate) fn insert(&self, token: &str, issuer: usize, caller: &Caller) {
        let key: [u8; 32] = Sha256::digest(token).into();
        self.entries
            .lock()
            .expect("token cache lock")
            .insert(key, (issuer, caller.clone()));
    }
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
    fn a_hit_is_checked_for_time_and_issuer_again() {
        let cache = VerifiedTokens::default();
        cache.insert("a.b.c", 0, &caller(Value::from(now() + 60), None));
        assert!(cache.get("a.b.c", |_| Some(0)).is_some());
        assert!(cache.get("a.b.d", |_| Some(0)).is_none(), "another token");
        assert!(
            cache.get("a.b.c", |_| None).is_none(),
            "issuer not accepted"
        );

        cache.insert("old", 0, &caller(Value::from(now() - 120), None));
        assert!(cache.get("old", |_| Some(0)).is_none(), "expired since");
        assert!(
            cache.get("old", |_| Some(300)).is_some(),
            "within the leeway"
        );

        let later = caller(Value::from(now() + 600), Some(Value::from(now() + 300)));
        cache.insert("later", 0, &later);
        assert!(cache.get("later", |_| Some(0)).is_none(), "not yet valid");
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = VerifiedTokens::default();
        let c = caller(Value::from(now() + 60), None);
        for n in 0..CAPACITY + 10 {
            cache.insert(&format!("t{n}"), 0, &c);
        }
        assert_eq!(cache.entries.lock().unwrap().len(), CAPACITY);
        assert!(
            cache.get("t0", |_| Some(0)).is_none(),
            "the oldest went first"
        );
    }
}
