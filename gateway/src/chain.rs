//! A policy chain: Wasm and Lua modules run in order on one message, each in a fresh
//! sandbox on the invocation pool, with the outcome recorded for metrics and audit.

use std::sync::Arc;

use palisade_ledger::ModuleRef;
use palisade_runtime::{Context, Decision, Invocation, InvocationPool, Policy, Request, Response};

use crate::config::FailMode;
use crate::error::Error;
use crate::metrics::{Metrics, PolicyOutcome};

/// One policy in a chain.
#[derive(Clone)]
pub struct ChainPolicy {
    /// The loaded module, with its limits.
    pub module: Arc<Policy>,
    /// Its config (`host.config`).
    pub config: Vec<(String, String)>,
    /// What its failure does.
    pub fail: FailMode,
    /// Name, version and digest, as the audit record names it.
    pub reference: ModuleRef,
    /// Secrets the route grants this policy: it reads them as config `secret.<id>`.
    pub grants: Vec<String>,
    /// Seals fields with the tenant's data key, when the route grants it
    /// (`field_encryption = true`).
    pub sealer: Option<palisade_runtime::Sealer>,
}

impl std::fmt::Debug for ChainPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainPolicy")
            .field("module", &self.reference)
            .field(
                "config_keys",
                &self.config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("fail", &self.fail)
            .field("grants", &self.grants)
            .field("seals", &self.sealer.is_some())
            .finish()
    }
}

impl ChainPolicy {
    /// A policy that fails closed, named after its module.
    pub fn new(module: Policy, config: Vec<(String, String)>) -> Self {
        let reference = ModuleRef {
            digest: hex::encode(module.digest()),
            name: module.name().to_string(),
            version: "-".into(),
        };
        ChainPolicy {
            module: Arc::new(module),
            config,
            fail: FailMode::Closed,
            reference,
            grants: Vec::new(),
            sealer: None,
        }
    }
}

impl ChainPolicy {
    /// The request's context with this policy's config and the secrets granted to it
    /// (and no others).
    fn context(&self, base: &Context, observer: &Observer) -> Context {
        let mut config = self.config.clone();
        for id in &self.grants {
            if let Some(v) = observer.granted.get(id) {
                config.push((
                    format!("secret.{id}"),
                    String::from_utf8_lossy(v.expose()).into_owned(),
                ));
            }
        }
        Context {
            config,
            sealer: self.sealer.clone(),
            ..base.clone()
        }
    }
}

/// What the chains did to one request, for the audit record.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The modules that ran, in order.
    pub modules: Vec<ModuleRef>,
    /// Paths redacted by policies and built-in redaction (never values).
    pub redacted: Vec<String>,
    /// Causes of policies skipped under `fail = "open"`.
    pub skipped: Vec<&'static str>,
    /// What the audit block's `detail` records (schema failures, say): never values.
    pub detail: serde_json::Map<String, serde_json::Value>,
    /// The method and path the request body was validated as, before any policy: the
    /// response is validated as the answer to that operation, whatever the policies sent.
    pub validated_as: Option<(String, String)>,
}

/// Where a chain reports to, and what it may hand its policies.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    /// Metrics, with the tenant and route labels.
    pub metrics: Option<(Arc<Metrics>, String, String)>,
    /// Decrypted secrets the route grants to some of its policies, by id; each policy
    /// gets only those in its own [`ChainPolicy::grants`].
    pub granted: Arc<std::collections::HashMap<String, crate::secrets::SecretValue>>,
    /// Told how long each invocation waited for the pool (load shedding).
    pub(crate) queue: Option<Arc<crate::resilience::Shedder>>,
    /// Charged the fuel each invocation burned (the tenant's CPU budget).
    pub(crate) tenant: Option<Arc<crate::resilience::TenantGuard>>,
    /// The request's trace, which gets a span per invocation.
    pub(crate) spans: Option<Arc<crate::telemetry::Spans>>,
}

impl Observer {
    /// Awaits an invocation on the pool, reporting its queue wait.
    async fn run<T>(&self, invocation: impl Future<Output = Invocation<T>>) -> Invocation<T> {
        let queued = std::time::Instant::now();
        let inv = invocation.await;
        if let Some(shedder) = &self.queue {
            shedder.observe_queue(queued.elapsed().saturating_sub(inv.stats.duration));
        }
        if let Some(budget) = self.tenant.as_ref().and_then(|t| t.fuel.as_ref()) {
            budget.charge(inv.stats.fuel);
        }
        inv
    }

    fn record<T>(&self, policy: &ChainPolicy, inv: &Invocation<T>, phase: &'static str) {
        let outcome = match &inv.result {
            Ok(Decision::Continue(_)) => PolicyOutcome::Continue,
            Ok(Decision::Respond(_)) => PolicyOutcome::Respond,
            Err(e) => PolicyOutcome::Error(e.kind()),
        };
        if let Some(spans) = &self.spans {
            let name = match outcome {
                PolicyOutcome::Continue => "continue",
                PolicyOutcome::Respond => "respond",
                PolicyOutcome::Error(kind) => kind,
            };
            spans.policy(&policy.reference.name, phase, &inv.stats, name);
        }
        if let Some((m, tenant, route)) = &self.metrics {
            m.policy(tenant, route, &policy.reference.name, outcome, &inv.stats);
        }
    }
}

/// The cause of a policy whose output the gateway will not send: a request that is not
/// origin-form or not valid HTTP, a status outside 200-599, a body on 204/304. The policy's
/// fault (500 in the request phase, 502 in the response phase), never the caller's.
pub const POLICY_INVALID_OUTPUT: &str = "policy_invalid_output";

/// Checks a request a policy passes on: a token method, a path already in normal
/// origin-form (so it cannot reach another authority or another route's files), a valid
/// query. Header names and values were checked by the runtime.
fn check_request(req: &Request) -> Result<(), String> {
    use crate::pipeline::target;
    if !target::check_method(&req.method) {
        return Err("the method is not an HTTP token".into());
    }
    target::check_policy_path(&req.path).map_err(|e| e.to_string())?;
    target::check_query(&req.query).map_err(|e| e.to_string())
}

/// Checks a response a policy produces: a final status (200-599; 1xx would switch or
/// confuse the client's connection), and no body where the status forbids one.
fn check_response(res: &Response) -> Result<(), String> {
    if !(200..=599).contains(&res.status) {
        return Err(format!(
            "status {} is not a final status (200-599)",
            res.status
        ));
    }
    if matches!(res.status, 204 | 304) && !res.body.is_empty() {
        return Err(format!("status {} cannot carry a body", res.status));
    }
    Ok(())
}

/// An ordered list of policies for one phase.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// The policies, in order.
    pub policies: Vec<ChainPolicy>,
}

impl Chain {
    /// Whether the chain has no policy.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Runs the request policies. A policy's `Respond` ends the chain.
    ///
    /// # Errors
    ///
    /// [`Error::RequestPolicy`] when a fail-closed policy fails.
    pub async fn on_request(
        &self,
        pool: &InvocationPool,
        observer: &Observer,
        base: &Context,
        mut req: Request,
        trace: &mut Trace,
    ) -> Result<Decision<Request>, Error> {
        for policy in &self.policies {
            trace.modules.push(policy.reference.clone());
            let ctx = policy.context(base, observer);
            let keep = (policy.fail == FailMode::Open).then(|| req.clone());
            let inv = observer
                .run(pool.on_request(&policy.module, ctx, req))
                .await;
            observer.record(policy, &inv, "request");
            let result = inv
                .result
                .map_err(|e| (e.kind(), e.to_string()))
                .and_then(|decision| {
                    match &decision {
                        Decision::Continue(next) => check_request(next),
                        Decision::Respond(own) => check_response(own),
                    }
                    .map(|()| decision)
                    .map_err(|detail| (POLICY_INVALID_OUTPUT, detail))
                });
            match result {
                Ok(decision) => {
                    // Only a run that succeeded may claim redactions.
                    trace.redacted.extend(inv.redacted);
                    match decision {
                        Decision::Continue(next) => req = next,
                        Decision::Respond(res) => return Ok(Decision::Respond(res)),
                    }
                }
                Err((cause, detail)) => match keep {
                    Some(original) => {
                        trace.skipped.push(cause);
                        req = original;
                    }
                    None => return Err(Error::RequestPolicy { cause, detail }),
                },
            }
        }
        Ok(Decision::Continue(req))
    }

    /// Runs the response policies. Every failure fails the request (closed): these
    /// policies may be what keeps PII in.
    ///
    /// # Errors
    ///
    /// [`Error::ResponsePolicy`] when a policy fails.
    pub async fn on_response(
        &self,
        pool: &InvocationPool,
        observer: &Observer,
        base: &Context,
        req: &Arc<Request>,
        mut res: Response,
        trace: &mut Trace,
    ) -> Result<Response, Error> {
        for policy in &self.policies {
            trace.modules.push(policy.reference.clone());
            let ctx = policy.context(base, observer);
            let inv = observer
                .run(pool.on_response(&policy.module, ctx, req.clone(), res))
                .await;
            observer.record(policy, &inv, "response");
            let decision = inv.result.map_err(|e| Error::ResponsePolicy {
                cause: e.kind(),
                detail: e.to_string(),
            })?;
            let (Decision::Continue(next) | Decision::Respond(next)) = &decision;
            check_response(next).map_err(|detail| Error::ResponsePolicy {
                cause: POLICY_INVALID_OUTPUT,
                detail,
            })?;
            trace.redacted.extend(inv.redacted);
            match decision {
                Decision::Continue(next) => res = next,
                // A policy's own answer replaces the upstream's and ends the chain.
                Decision::Respond(own) => return Ok(own),
            }
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use palisade_runtime::{Config, Engine, Kind};

    use super::*;

    fn engine() -> &'static Engine {
        static ENGINE: OnceLock<Engine> = OnceLock::new();
        ENGINE.get_or_init(|| Engine::new(&Config::new()).expect("an engine"))
    }

    /// A Lua policy from its source, failing as `fail` says.
    fn lua(name: &str, source: &str, fail: FailMode) -> ChainPolicy {
        let module = Policy::from_bytes(engine(), name, Kind::Lua, source.as_bytes()).unwrap();
        let mut p = ChainPolicy::new(module, Vec::new());
        p.fail = fail;
        p
    }

    const TAG: &str = r#"function on_request(req, ctx)
  req.headers["x-seen"] = "yes"
  palisade.redacted("$.tagged")
  return req
end"#;
    const BROKEN: &str = r#"function on_request(req, ctx) error("boom") end"#;
    const BAD_PATH: &str =
        r#"function on_request(req, ctx) req.path = "//evil.example/x" return req end"#;
    const DENY: &str = r#"function on_request(req, ctx) return palisade.deny(451, "no") end"#;

    async fn run(policies: Vec<ChainPolicy>) -> (Result<Decision<Request>, Error>, Trace) {
        let chain = Chain { policies };
        let mut trace = Trace::default();
        let req = Request {
            method: "GET".into(),
            path: "/a".into(),
            ..Request::default()
        };
        let pool = InvocationPool::new(2);
        let out = chain
            .on_request(
                &pool,
                &Observer::default(),
                &Context::default(),
                req,
                &mut trace,
            )
            .await;
        (out, trace)
    }

    fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn a_failing_fail_open_policy_is_skipped_with_the_request_it_was_given() {
        let (out, trace) = run(vec![
            lua("tag", TAG, FailMode::Closed),
            lua("broken", BROKEN, FailMode::Open),
        ])
        .await;
        let Ok(Decision::Continue(req)) = out else {
            panic!("continues: {out:?}")
        };
        assert_eq!(
            header(&req, "x-seen"),
            Some("yes"),
            "the first policy's change stays"
        );
        assert_eq!(trace.skipped, ["script_error"]);
        assert_eq!(trace.modules.len(), 2);
        assert_eq!(trace.redacted, ["$.tagged"]);
    }

    #[tokio::test]
    async fn a_failing_fail_closed_policy_fails_the_request_and_claims_nothing() {
        let (out, trace) = run(vec![lua("broken", BROKEN, FailMode::Closed)]).await;
        assert!(matches!(
            out,
            Err(Error::RequestPolicy {
                cause: "script_error",
                ..
            })
        ));
        assert!(trace.redacted.is_empty());
    }

    #[tokio::test]
    async fn output_the_gateway_will_not_send_is_the_policys_fault_even_fail_open_skips_it() {
        let (out, _) = run(vec![lua("bad", BAD_PATH, FailMode::Closed)]).await;
        assert!(
            matches!(
                out,
                Err(Error::RequestPolicy {
                    cause: POLICY_INVALID_OUTPUT,
                    ..
                })
            ),
            "{out:?}"
        );
        let (out, trace) = run(vec![lua("bad", BAD_PATH, FailMode::Open)]).await;
        let Ok(Decision::Continue(req)) = out else {
            panic!("skipped: {out:?}")
        };
        assert_eq!(req.path, "/a");
        assert_eq!(trace.skipped, [POLICY_INVALID_OUTPUT]);
    }

    #[tokio::test]
    async fn a_policys_own_answer_ends_the_chain() {
        let (out, trace) = run(vec![
            lua("deny", DENY, FailMode::Closed),
            lua("tag", TAG, FailMode::Closed),
        ])
        .await;
        let Ok(Decision::Respond(res)) = out else {
            panic!("answers: {out:?}")
        };
        assert_eq!(res.status, 451);
        assert_eq!(trace.modules.len(), 1, "the second policy never ran");
    }
}
