//! A test guest that misbehaves on request: the request path picks the misdeed.
//! Used by the runtime's hostile-guest tests.

use palisade_sdk::{Action, Context, LogLevel, Policy, Request, Result, log, redacted};

/// Misbehaves according to the request path.
pub struct Misbehave;

#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    // Not a tail call: the addition happens after the call returns.
    recurse(std::hint::black_box(n + 1)) + 1
}

/// `/<what>/<n>` paths: a misdeed of size `n`.
fn sized(mut req: Request, what: &str, n: usize) -> Result<Action<Request>> {
    match what {
        // `n` headers: past the runtime's header cap, and past `http::HeaderMap`'s.
        "many-headers" => {
            for i in 0..n {
                req.headers.append(format!("x-h{i}"), "v");
            }
        }
        // One header value of `n` bytes.
        "big-header" => req.headers.append("x-big", "v".repeat(n)),
        // A body of `n` bytes.
        "body" => req.set_body(vec![b'a'; n]),
        _ => return Ok(Action::Continue(req)),
    }
    Ok(Action::Continue(req))
}

impl Policy for Misbehave {
    fn on_request(_ctx: &Context, mut req: Request) -> Result<Action<Request>> {
        let sized_path = req.path.strip_prefix('/').and_then(|p| p.split_once('/'));
        if let Some((what, n)) = sized_path
            && let Ok(n) = n.parse::<usize>()
        {
            let what = what.to_string();
            return sized(req, &what, n);
        }
        match req.path.as_str() {
            "/loop" => loop {
                std::hint::black_box(());
            },
            "/host-loop" => loop {
                std::hint::black_box(palisade_sdk::config("never-set"));
            },
            "/alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/recurse" => {
                let depth = recurse(0);
                Ok(Action::respond(200, depth.to_string()))
            }
            "/panic" => panic!("policy bug: index out of range"),
            "/error" => Err(palisade_sdk::Error::msg("upstream contract violated")),
            "/log-flood" => {
                for i in 0..100_000 {
                    log(LogLevel::Info, &format!("line {i} {}", "x".repeat(100)));
                }
                Ok(Action::Continue(req))
            }
            "/big-output" => {
                req.set_body(vec![b'a'; 2 << 20]);
                Ok(Action::Continue(req))
            }
            "/bad-header" => {
                req.headers.insert("x-smuggle", "a\r\nx-admin: true");
                Ok(Action::Continue(req))
            }
            "/bad-status" => Ok(Action::respond(1000, "nope")),
            // Claims a redaction, then fails: nothing it claimed may be audited.
            "/redact-then-trap" => {
                redacted("$.ssn");
                panic!("policy bug after redacting");
            }
            // Reports values and junk instead of paths, and far too many paths.
            "/redact-values" => {
                redacted("123-45-6789");
                redacted("ada@example.com");
                redacted("$.ssn");
                redacted("$.ssn");
                redacted(&format!("$['{}']", "x".repeat(100_000)));
                for i in 0..5_000 {
                    redacted(&format!("$.items[{i}].ssn"));
                }
                Ok(Action::Continue(req))
            }
            "/echo-body" => {
                let body = req.body().to_vec();
                req.set_body(body.into_iter().rev().collect::<Vec<u8>>());
                Ok(Action::Continue(req))
            }
            _ => Ok(Action::Continue(req)),
        }
    }
}

palisade_sdk::export!(Misbehave);
