//! A test guest that tries to carry state from one invocation to the next: a global
//! counter and a marker left in memory. With a fresh instance per invocation, it
//! always reports `count=1` and `marker=absent`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_sdk::{Action, Context, Policy, Request, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);
static LEFTOVER: Mutex<Option<String>> = Mutex::new(None);

/// Reports what it found from earlier invocations in response headers.
pub struct StateProbe;

impl Policy for StateProbe {
    fn on_request(ctx: &Context, mut req: Request) -> Result<Action<Request>> {
        let count = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
        let mut leftover = LEFTOVER.lock().expect("single-threaded guest");
        let seen = leftover.clone().unwrap_or_else(|| "absent".into());
        *leftover = Some(format!("left by tenant {}", ctx.tenant));
        req.headers.insert("x-count", count.to_string());
        req.headers.insert("x-leftover", seen);
        Ok(Action::Continue(req))
    }
}

palisade_sdk::export!(StateProbe);
