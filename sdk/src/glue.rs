//! The export side of the component: wit-bindgen's export traits implemented for any
//! [`Policy`], between the component ABI and the types of `message.rs`. Nothing here is
//! for policy authors.
#![allow(missing_docs, unreachable_pub)]

use std::marker::PhantomData;

use crate::Policy;
use crate::message::{Action, Body, Context, Headers, Identity, Request, RequestHead, Response};

use crate::bindings::exports::palisade::policy::{request_phase, response_phase};
use crate::bindings::palisade::policy::types as wit;

/// Implements the generated export traits for any [`Policy`].
pub struct Adapter<P>(PhantomData<P>);

impl<P: Policy> request_phase::Guest for Adapter<P> {
    fn on_request(ctx: wit::Context, req: wit::RequestHead) -> Result<wit::RequestAction, String> {
        install_panic_hook();
        let request = Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: Headers(req.headers),
            body: Body::Unread,
        };
        match P::on_request(&context(ctx), request) {
            Ok(Action::Continue(r)) => Ok(wit::RequestAction::Continue(wit::RequestChange {
                head: wit::RequestHead {
                    method: r.method,
                    path: r.path,
                    query: r.query,
                    headers: r.headers.0,
                },
                body: r.body.into_replacement(),
            })),
            Ok(Action::Respond(res)) => Ok(wit::RequestAction::Respond(reply(res))),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl<P: Policy> response_phase::Guest for Adapter<P> {
    fn on_response(
        ctx: wit::Context,
        req: wit::RequestHead,
        res: wit::ResponseHead,
    ) -> Result<wit::ResponseAction, String> {
        install_panic_hook();
        let head = RequestHead {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: Headers(req.headers),
        };
        let response = Response {
            status: res.status,
            headers: Headers(res.headers),
            body: Body::Unread,
        };
        match P::on_response(&context(ctx), &head, response) {
            Ok(Action::Continue(r)) => Ok(wit::ResponseAction::Continue(wit::ResponseChange {
                head: wit::ResponseHead {
                    status: r.status,
                    headers: r.headers.0,
                },
                body: r.body.into_replacement(),
            })),
            Ok(Action::Respond(res)) => Ok(wit::ResponseAction::Respond(reply(res))),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn reply(res: Response) -> wit::Reply {
    wit::Reply {
        status: res.status,
        headers: res.headers.0.clone(),
        body: res.into_body(),
    }
}

fn context(ctx: wit::Context) -> Context {
    Context {
        tenant: ctx.tenant,
        route: ctx.route,
        correlation_id: ctx.correlation_id,
        identity: ctx.identity.map(|id| Identity {
            subject: id.subject,
            scopes: id.scopes,
            claims: id
                .claims
                .into_iter()
                .map(|(k, v)| {
                    let value = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
                    (k, value)
                })
                .collect(),
        }),
        config: ctx.config,
    }
}

/// A panic aborts the guest (a trap); log its message first so the host can report it.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::host::log(crate::LogLevel::Error, &format!("panic: {info}"));
        }));
    });
}
