//! A test guest built against WASI 0.2 that tries to outlive its deadline through WASI
//! calls: sleeping on the monotonic clock, polling, drawing huge amounts of randomness.
//! The request path picks the call and its size (`/sleep/30000`: a 30 s sleep).

use palisade_sdk::{Action, Context, Policy, Request, Response, Result};

/// Makes the WASI call the request path names.
pub struct WasiMisbehave;

#[cfg(target_arch = "wasm32")]
fn misbehave(what: &str, n: u64) -> serde_json::Value {
    use serde_json::json;
    use wasip2::clocks::monotonic_clock;
    use wasip2::io::poll;
    use wasip2::random::{insecure, random};

    const MS: u64 = 1_000_000;
    match what {
        // `pollable.block` on a timer of `n` ms.
        "sleep" => {
            monotonic_clock::subscribe_duration(n * MS).block();
            json!({ "woke": true })
        }
        // `poll` on a timer of `n` ms.
        "poll" => {
            let ready = poll::poll(&[&monotonic_clock::subscribe_duration(n * MS)]);
            json!({ "ready": ready })
        }
        // `pollable.block` on an instant `n` ms after "now".
        "sleep-until" => {
            monotonic_clock::subscribe_instant(monotonic_clock::now() + n * MS).block();
            json!({ "woke": true })
        }
        // `poll` on a timer of `n` ms, a due timer and stdout: only the last two are ready.
        "poll-some" => {
            let stdout = wasip2::cli::stdout::get_stdout();
            let ready = poll::poll(&[
                &monotonic_clock::subscribe_duration(n * MS),
                &monotonic_clock::subscribe_duration(0),
                &stdout.subscribe(),
            ]);
            json!({ "ready": ready })
        }
        "random" => {
            let bytes = random::get_random_bytes(n);
            json!({ "len": bytes.len(), "first": bytes.first() })
        }
        "insecure-random" => {
            let bytes = insecure::get_insecure_random_bytes(n);
            json!({ "len": bytes.len(), "first": bytes.first() })
        }
        // Draws `n` random bytes again and again.
        "random-loop" => loop {
            std::hint::black_box(random::get_random_bytes(n));
        },
        _ => json!({ "unknown": what }),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn misbehave(_what: &str, _n: u64) -> serde_json::Value {
    serde_json::json!({ "native": true })
}

impl Policy for WasiMisbehave {
    fn on_request(_ctx: &Context, req: Request) -> Result<Action<Request>> {
        let (what, n) = req
            .path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((req.path.as_str(), "0"));
        let n = n.parse().unwrap_or(0);
        Ok(Action::Respond(Response::from_json(
            200,
            &misbehave(what, n),
        )))
    }
}

palisade_sdk::export!(WasiMisbehave);
