//! The admin listener: `/metrics` and `/healthz` for anyone who can reach it, and the
//! admin API under `/v1/` for authenticated principals with the right [`Role`].
//!
//! | endpoint | needs |
//! | --- | --- |
//! | `GET /v1/whoami` | any credential the admin API accepts |
//! | `GET /v1/audit/verify` | `auditor` or `admin` |
//! | `GET /v1/tenants` | any: lists the tenants the caller may read |
//! | `GET /v1/tenants/{t}/routes` | a role that reads `t`'s modules |
//! | `/v1/tenants/{t}/modules/...`, `/v1/tenants/{t}/secrets/...` | see `docs/registry.md`, `docs/secrets.md` |
//! | `POST /v1/tenants/{t}/reveal` | `revealer` (of `t`, or the platform's): decrypts one encrypted field |
//!
//! Credentials are those of [`crate::auth`] (`server.admin_auth` lists the schemes; API
//! keys and JWTs by default), and roles come with them (an API key's `roles`, a JWT's
//! roles claim). 401 with `WWW-Authenticate` without a valid credential, 403 without
//! the role. Every `/v1/` call is an audit block of kind `admin`: who, what, the outcome.
//!
//! [`Role`]: crate::auth::Role

mod inventory;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use palisade_ledger::verify::{Checkpoints, verify};
use palisade_ledger::{Kind, ModuleRef, Record, checkpoint};

use crate::audit::LedgerInfo;
use crate::auth::Scheme;
use crate::auth::{Action, Principal};
use crate::body::{Body, full};
use crate::error::Error;
use crate::pipeline::{Pipeline, Verdict, new_id};
use crate::registry::{Registry, RegistryError, Version};

/// The admin listener's handler.
pub(crate) struct Admin {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) schemes: Vec<Scheme>,
    pub(crate) ledger: LedgerInfo,
}

/// What an admin call did, for its audit block.
struct Done {
    response: Response<Body>,
    kind: Kind,
    tenant: Option<String>,
    module: Option<ModuleRef>,
    /// The block's `detail` (what was revealed: a path, never the value).
    detail: Option<serde_json::Value>,
    /// A refusal that keeps this block's kind, tenant and detail.
    refused: Option<Error>,
}

impl Done {
    fn admin(response: Response<Body>) -> Self {
        Done {
            response,
            kind: Kind::Admin,
            tenant: None,
            module: None,
            detail: None,
            refused: None,
        }
    }
}

impl Admin {
    pub(crate) async fn handle<B>(&self, req: http::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut r = Response::new(full(self.pipeline.metrics().encode()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            (&Method::GET, "/healthz") => Response::new(full("ok\n")),
            (_, path) if path.starts_with("/v1/") => self.api(req).await,
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not_found"}),
            ),
        }
    }

    async fn api<B>(&self, req: http::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        let started = Instant::now();
        let cid = new_id();
        let path = req.uri().path().to_string();
        let mut record = Record {
            kind: Kind::Admin,
            correlation_id: cid.clone(),
            method: req.method().as_str().to_string(),
            path: path.clone(),
            route: "admin".into(),
            time_ms: Record::now_ms(),
            ..Record::default()
        };
        if path.starts_with("/v1/tenants/") {
            record.kind = Kind::Registry;
            record.route = "registry".into();
        }
        let auth = self.pipeline.authenticator();
        let outcome = match auth
            .authenticate(&self.schemes, &[], req.headers(), None)
            .await
        {
            Err(e) => Err(e),
            Ok(caller) => {
                let principal = caller.principal();
                record.identity = Some(principal.subject.clone());
                record.tenant = principal.tenant.clone().unwrap_or_default();
                self.route(req, &path, &principal).await
            }
        };
        let response = match outcome {
            Ok(done) => {
                record.kind = done.kind;
                if let Some(t) = done.tenant {
                    record.tenant = t;
                }
                record.modules = done.module.into_iter().collect();
                record.detail = done.detail;
                match done.refused {
                    None => {
                        record.decision = Verdict::Allowed.as_str().into();
                        done.response
                    }
                    Some(e) => {
                        record.decision = e.decision().as_str().into();
                        record.cause = Some(e.cause().into());
                        e.to_response(&cid, true)
                    }
                }
            }
            Err(e) => {
                record.decision = e.decision().as_str().into();
                record.cause = Some(e.cause().into());
                // An authenticated caller is told why (`missing_role`, `version_in_use`);
                // an unauthenticated one only that it is not.
                e.to_response(&cid, !matches!(e, Error::Unauthenticated { .. }))
            }
        };
        record.status = response.status().as_u16();
        record.latency_us = started.elapsed().as_micros() as u64;
        if self.pipeline.ledger().append(record).await.is_err() {
            return Error::AuditUnavailable.to_response(&cid, false);
        }
        response
    }

    async fn route<B>(
        &self,
        req: http::Request<B>,
        path: &str,
        who: &Principal,
    ) -> Result<Done, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        let forbidden = || missing_role(who);
        let method = req.method().clone();
        if method == Method::GET && path == "/v1/tenants" {
            let file = self.pipeline.file();
            let body = inventory::tenants(&file, |t| who.may(Action::ReadModules(t)));
            return Ok(Done::admin(json(StatusCode::OK, &body)));
        }
        if let Some(rest) = path.strip_prefix("/v1/tenants/") {
            let segments: Vec<&str> = rest.split('/').collect();
            if let [tenant, "secrets", rest @ ..] = segments.as_slice() {
                return self.secrets(req, &method, tenant, rest, who).await;
            }
            if let (&Method::POST, [tenant, "reveal"]) = (&method, segments.as_slice()) {
                return self.reveal(req, tenant, who).await;
            }
            if let (&Method::GET, [tenant, "routes"]) = (&method, segments.as_slice()) {
                if !who.may(Action::ReadModules(tenant)) {
                    return Err(forbidden());
                }
                if !self.pipeline.has_tenant(tenant) {
                    return Err(Error::Registry(RegistryError::NotFound));
                }
                let file = self.pipeline.file();
                let registry = self.pipeline.registry().map(|r| r.as_ref());
                let body = inventory::routes(&file, registry, tenant);
                return Ok(Done::admin(json(StatusCode::OK, &body)));
            }
            return self.modules(req, &method, &segments, who).await;
        }
        match (&method, path) {
            (&Method::GET, "/v1/whoami") => Ok(Done::admin(json(StatusCode::OK, who))),
            (&Method::GET, "/v1/audit/verify") => {
                if !who.may(Action::VerifyAudit) {
                    return Err(forbidden());
                }
                let info = self.ledger.clone();
                let report = tokio::task::spawn_blocking(move || verify_ledger(&info))
                    .await
                    .map_err(|_| Error::AuditUnavailable)?;
                match report {
                    Ok(r) => Ok(Done::admin(json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "intact": r.is_intact(),
                            "blocks": r.blocks,
                            "anomalies": r.anomalies,
                            "first_bad_block": r.first.as_ref().and_then(|a| a.seq()),
                            "checkpoints": r.checkpoints,
                            "report": r.to_string(),
                        }),
                    ))),
                    Err(e) => {
                        tracing::warn!(error = %e, "admin verify could not read the ledger");
                        Err(Error::AuditUnavailable)
                    }
                }
            }
            _ => Err(Error::Registry(RegistryError::NotFound)),
        }
    }

    /// `/v1/tenants/{tenant}/modules[/{name}[/{version}[/activate]]]`,
    /// `/v1/tenants/{tenant}/modules/{name}/rollback`; `GET .../modules/{name}` is its history.
    async fn modules<B>(
        &self,
        req: http::Request<B>,
        method: &Method,
        segments: &[&str],
        who: &Principal,
    ) -> Result<Done, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        let not_found = || Error::Registry(RegistryError::NotFound);
        let (tenant, rest) = match segments {
            [tenant, "modules", rest @ ..] => (*tenant, rest),
            _ => return Err(not_found()),
        };
        let write = !matches!(*method, Method::GET);
        let allowed = if write {
            who.may(Action::ManageModules(tenant))
        } else {
            who.may(Action::ReadModules(tenant))
        };
        if !allowed {
            return Err(missing_role(who));
        }
        let registry = self.pipeline.registry().cloned().ok_or_else(not_found)?;
        if !self.pipeline.has_tenant(tenant) {
            return Err(not_found());
        }
        let done = |status: StatusCode, v: Option<&Version>, body: serde_json::Value| Done {
            response: json(status, &body),
            kind: if write { Kind::Registry } else { Kind::Admin },
            tenant: Some(tenant.to_string()),
            module: v.map(|v| ModuleRef {
                digest: v.digest.clone(),
                name: v.name.clone(),
                version: v.version.clone(),
            }),
            detail: None,
            refused: None,
        };
        let blocking = |f: Box<dyn FnOnce() -> Result<Version, RegistryError> + Send>| async move {
            tokio::task::spawn_blocking(f)
                .await
                .map_err(|_| Error::Registry(RegistryError::Storage("task failed".into())))?
                .map_err(Error::Registry)
        };
        let t = tenant.to_string();
        let dry_run = match dry_run(req.uri().query()) {
            Ok(d) => d,
            Err(()) => return Err(Error::Registry(RegistryError::BadName("bad_dry_run"))),
        };
        match (method, rest) {
            (&Method::GET, []) => {
                let list = tokio::task::spawn_blocking(move || registry.list(&t))
                    .await
                    .map_err(|_| not_found())?
                    .map_err(Error::Registry)?;
                Ok(done(
                    StatusCode::OK,
                    None,
                    serde_json::json!({ "modules": list }),
                ))
            }
            (&Method::GET, [name, version]) => {
                let (n, v) = (name.to_string(), version.to_string());
                let found = blocking(Box::new(move || registry.inspect(&t, &n, &v))).await?;
                Ok(done(StatusCode::OK, None, inspect(&found)))
            }
            (&Method::PUT, [name, version]) => {
                let signature = req
                    .headers()
                    .get("x-palisade-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let limit = registry.max_bytes();
                let body =
                    crate::pipeline::io::read_body(req.into_body(), limit, Duration::from_secs(60))
                        .await
                        .map_err(|e| match e {
                            crate::pipeline::io::ReadError::TooLarge => {
                                Error::Registry(RegistryError::TooLarge)
                            }
                            _ => Error::BadBody,
                        })?;
                let (n, v, who) = (name.to_string(), version.to_string(), who.subject.clone());
                let stored = blocking(Box::new(move || {
                    registry.upload(&t, &n, &v, &body, signature.as_deref(), &who)
                }))
                .await?;
                Ok(done(StatusCode::CREATED, Some(&stored), inspect(&stored)))
            }
            (&Method::POST, [name, version, "activate"]) if dry_run => {
                // Would it load? Nothing changes.
                let (n, v) = (name.to_string(), version.to_string());
                let active = registry.active_version(tenant, name);
                let found = blocking(Box::new(move || {
                    let found = registry.inspect(&t, &n, &v)?;
                    registry.load(&t, &format!("{n}@{v}")).map_err(|detail| {
                        RegistryError::Rejected {
                            cause: "module_not_loadable",
                            detail,
                        }
                    })?;
                    Ok(found)
                }))
                .await?;
                Ok(done(
                    StatusCode::OK,
                    None,
                    serde_json::json!({
                        "dry_run": true,
                        "active": active,
                        "would_activate": found.version,
                    }),
                ))
            }
            (&Method::POST, [name, "rollback"]) if dry_run => {
                let n = name.to_string();
                let active = registry.active_version(tenant, name);
                let target = tokio::task::spawn_blocking(move || {
                    let target = registry.rollback_target(&t, &n)?;
                    registry
                        .load(&t, &format!("{n}@{target}"))
                        .map_err(|detail| RegistryError::Rejected {
                            cause: "module_not_loadable",
                            detail,
                        })?;
                    Ok(target)
                })
                .await
                .map_err(|_| not_found())?
                .map_err(Error::Registry)?;
                Ok(done(
                    StatusCode::OK,
                    None,
                    serde_json::json!({
                        "dry_run": true,
                        "active": active,
                        "would_activate": target,
                    }),
                ))
            }
            (&Method::POST, [name, version, "activate"]) => {
                let (n, v) = (name.to_string(), version.to_string());
                let (pipeline, who) = (self.pipeline.clone(), who.subject.clone());
                let active = blocking(Box::new(move || {
                    let before = registry.active_version(&t, &n);
                    let (active, undo) = registry.activate(&t, &n, &v, &who)?;
                    swap_in(&pipeline, &registry, &active, before, undo, &who)?;
                    Ok(active)
                }))
                .await?;
                Ok(done(StatusCode::OK, Some(&active), inspect(&active)))
            }
            (&Method::POST, [name, "rollback"]) => {
                let n = name.to_string();
                let (pipeline, who) = (self.pipeline.clone(), who.subject.clone());
                let active = blocking(Box::new(move || {
                    let before = registry.active_version(&t, &n);
                    let (active, undo) = registry.rollback(&t, &n, &who)?;
                    swap_in(&pipeline, &registry, &active, before, undo, &who)?;
                    Ok(active)
                }))
                .await?;
                Ok(done(StatusCode::OK, Some(&active), inspect(&active)))
            }
            (&Method::GET, [name]) => {
                let n = name.to_string();
                let entries = tokio::task::spawn_blocking(move || registry.history(&t, &n))
                    .await
                    .map_err(|_| not_found())?
                    .map_err(Error::Registry)?;
                Ok(done(
                    StatusCode::OK,
                    None,
                    serde_json::json!({ "history": entries }),
                ))
            }
            (&Method::DELETE, [name, version]) => {
                let pinned = self.pipeline.pins(tenant, name, version);
                let (n, v) = (name.to_string(), version.to_string());
                let gone = blocking(Box::new(move || registry.delete(&t, &n, &v, pinned))).await?;
                Ok(done(StatusCode::OK, Some(&gone), inspect(&gone)))
            }
            _ => Err(not_found()),
        }
    }
}

impl Admin {
    /// `/v1/tenants/{tenant}/secrets[/{id}|/rotate]`: values go in, never out; a secret
    /// the routes in service name cannot be deleted (409 `secret_in_use`).
    async fn secrets<B>(
        &self,
        req: http::Request<B>,
        method: &Method,
        tenant: &str,
        rest: &[&str],
        who: &Principal,
    ) -> Result<Done, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        let not_found = || Error::Registry(RegistryError::NotFound);
        let write = !matches!(*method, Method::GET);
        let allowed = if write {
            who.may(Action::ManageSecrets(tenant))
        } else {
            who.may(Action::ReadSecrets(tenant))
        };
        if !allowed {
            return Err(missing_role(who));
        }
        let store = self.pipeline.secrets().cloned().ok_or_else(not_found)?;
        if !self.pipeline.has_tenant(tenant) {
            return Err(not_found());
        }
        let failed = |e: crate::secrets::SecretError| match e {
            crate::secrets::SecretError::BadId => {
                Error::Registry(RegistryError::BadName("bad_secret_id"))
            }
            crate::secrets::SecretError::NotFound => not_found(),
            other => {
                tracing::warn!(error = %other, "secret store");
                Error::Registry(RegistryError::Storage("secret store".into()))
            }
        };
        let t = tenant.to_string();
        let answer = match (method, rest) {
            (&Method::GET, []) => {
                let list = tokio::task::spawn_blocking(move || store.list(&t))
                    .await
                    .map_err(|_| not_found())?
                    .map_err(failed)?;
                json(StatusCode::OK, &serde_json::json!({ "secrets": list }))
            }
            (&Method::POST, ["rotate"]) => {
                let v = tokio::task::spawn_blocking(move || store.rotate(&t))
                    .await
                    .map_err(|_| not_found())?
                    .map_err(failed)?;
                json(StatusCode::OK, &serde_json::json!({ "key_version": v }))
            }
            (&Method::PUT, [id]) => {
                let body = crate::pipeline::io::read_body(
                    req.into_body(),
                    64 * 1024,
                    Duration::from_secs(30),
                )
                .await
                .map_err(|_| Error::BadBody)?;
                let value = zeroize::Zeroizing::new(body.to_vec());
                if value.is_empty() {
                    return Err(Error::BadBody);
                }
                let id = id.to_string();
                let (i, v) = (id.clone(), value);
                let version = tokio::task::spawn_blocking(move || store.put(&t, &i, &v))
                    .await
                    .map_err(|_| not_found())?
                    .map_err(failed)?;
                json(
                    StatusCode::CREATED,
                    &serde_json::json!({ "id": id, "version": version }),
                )
            }
            (&Method::DELETE, [id]) => {
                let users = self.pipeline.secret_users(tenant, id);
                if !users.is_empty() {
                    return Err(Error::Registry(RegistryError::InUseBy {
                        cause: "secret_in_use",
                        detail: format!("named by {}", users.join(", ")),
                    }));
                }
                let id = id.to_string();
                let i = id.clone();
                let deleted = tokio::task::spawn_blocking(move || store.delete(&t, &i))
                    .await
                    .map_err(|_| not_found())?
                    .map_err(failed)?;
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "id": id, "versions_deleted": deleted }),
                )
            }
            _ => return Err(not_found()),
        };
        Ok(Done {
            response: answer,
            kind: Kind::Admin,
            tenant: Some(tenant.to_string()),
            module: None,
            detail: None,
            refused: None,
        })
    }

    /// `POST /v1/tenants/{tenant}/reveal` with `{"path": ..., "token": ...}`: the value an
    /// `encrypt` rule sealed at `path`. Every call that names a path, refused or not, is an
    /// audit block of kind `admin` naming the tenant, the path and the key version, never
    /// the value.
    async fn reveal<B>(
        &self,
        req: http::Request<B>,
        tenant: &str,
        who: &Principal,
    ) -> Result<Done, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ask {
            path: String,
            token: String,
        }
        let body = crate::pipeline::io::read_body(
            req.into_body(),
            crate::redaction::encrypt::MAX_TOKEN as u64 + 64 * 1024,
            Duration::from_secs(30),
        )
        .await
        .map_err(|_| Error::BadBody)?;
        let ask: Ask = serde_json::from_slice(&body)
            .map_err(|_| Error::Registry(RegistryError::BadName("bad_reveal_request")))?;
        let key_version = crate::redaction::encrypt::parse(&ask.token)
            .map(|t| t.key_version)
            .ok();
        let mut done = Done {
            response: json(StatusCode::OK, &serde_json::json!({})),
            kind: Kind::Admin,
            tenant: Some(tenant.to_string()),
            module: None,
            detail: Some(serde_json::json!({
                "revealed": {
                    "path": palisade_jsonpath::scrub_keys(&ask.path),
                    "key_version": key_version,
                }
            })),
            refused: None,
        };
        match self.open_token(tenant, who, ask.token, ask.path).await {
            Ok(value) => {
                done.response = json(StatusCode::OK, &serde_json::json!({ "value": value }));
                // Personal data: no cache keeps it.
                done.response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            Err(e) => done.refused = Some(e),
        }
        Ok(done)
    }

    /// What [`Admin::reveal`] answers: the value, or why not.
    async fn open_token(
        &self,
        tenant: &str,
        who: &Principal,
        token: String,
        path: String,
    ) -> Result<serde_json::Value, Error> {
        use crate::secrets::{RevealError, SecretError};
        if !who.may(Action::Reveal(tenant)) {
            return Err(missing_role(who));
        }
        let not_found = || Error::Registry(RegistryError::NotFound);
        let store = self.pipeline.secrets().cloned().ok_or_else(not_found)?;
        if !self.pipeline.has_tenant(tenant) {
            return Err(not_found());
        }
        let t = tenant.to_string();
        let revealed = tokio::task::spawn_blocking(move || store.reveal(&t, &token, &path))
            .await
            .map_err(|_| Error::Internal)?;
        revealed.map_err(|e| {
            let refused = |detail: &str| {
                Error::Registry(RegistryError::Rejected {
                    cause: "token_refused",
                    detail: detail.into(),
                })
            };
            match e {
                RevealError::Token(_) => {
                    refused("the token does not open at this path for this tenant")
                }
                RevealError::Store(SecretError::UnknownKeyVersion(_)) => {
                    refused("the token names a key version this tenant does not have")
                }
                RevealError::Store(other) => {
                    tracing::warn!(error = %other, "secret store");
                    Error::Registry(RegistryError::Storage("secret store".into()))
                }
            }
        })
    }
}

/// Rebuilds the routes after an activation or rollback and logs it; if they cannot be
/// built with the new version, reverts it (a `revert` in the module's history) and says
/// why.
fn swap_in(
    pipeline: &Pipeline,
    registry: &Registry,
    active: &Version,
    before: Option<String>,
    undo: crate::registry::history::Undo,
    actor: &str,
) -> Result<(), RegistryError> {
    let (tenant, name) = (&active.tenant, &active.name);
    match pipeline.rebuild() {
        Ok(()) => {
            let change = crate::registry::Change {
                tenant: tenant.clone(),
                name: name.clone(),
                from: before,
                to: Some(active.version.clone()),
            };
            change.log_applied();
            Ok(())
        }
        Err(invalid) => {
            if let Err(e) = registry.revert(tenant, name, undo, actor) {
                tracing::error!(%tenant, module = %name, error = %e, "activation not reverted");
            }
            for issue in &invalid.issues {
                tracing::warn!(%issue, "routes not rebuilt");
            }
            // The caller sees its own routes' problems; other tenants' are only counted.
            let own: Vec<String> = pipeline
                .file()
                .routes
                .iter()
                .map(|r| r.get_ref())
                .filter(|r| r.tenant == *tenant)
                .map(|r| format!("route {:?}", r.name))
                .collect();
            let (mine, others): (Vec<_>, Vec<_>) = invalid
                .issues
                .iter()
                .partition(|i| own.contains(&i.context));
            let mut detail: Vec<String> = mine.iter().map(|i| i.to_string()).collect();
            if !others.is_empty() {
                detail.push(format!(
                    "{} problem(s) outside tenant {tenant:?} (in the gateway's log)",
                    others.len()
                ));
            }
            Err(RegistryError::Rejected {
                cause: "routes_rejected",
                detail: detail.join("\n"),
            })
        }
    }
}

/// 403 for `who`, whose roles do not allow it.
fn missing_role(who: &Principal) -> Error {
    Error::Forbidden {
        cause: "missing_role",
        subject: who.subject.clone(),
        challenge: None,
    }
}

/// `?dry_run=true|1` or `false|0`; anything else about `dry_run` is refused (400), never
/// taken as a real change.
fn dry_run(query: Option<&str>) -> Result<bool, ()> {
    let mut dry = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "dry_run" {
            continue;
        }
        dry = match value {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(()),
        };
    }
    Ok(dry)
}

fn inspect(v: &Version) -> serde_json::Value {
    serde_json::json!({
        "tenant": v.tenant,
        "name": v.name,
        "version": v.version,
        "digest": v.digest,
        "kind": v.kind.as_str(),
        "size": v.size,
        "exports": v.phases,
        "contract_version": palisade_runtime::CONTRACT_VERSION,
        "limits": {
            "fuel": palisade_runtime::Limits::DEFAULT_FUEL,
            "memory_bytes": palisade_runtime::Limits::DEFAULT_MEMORY,
        },
        "signer": v.signer,
        "uploaded_by": v.uploaded_by,
        "created_ms": v.created_ms,
        "active": v.active,
    })
}

fn verify_ledger(info: &LedgerInfo) -> Result<palisade_ledger::verify::Report, String> {
    let checkpoints = match &info.checkpoints {
        None => None,
        Some((file, key)) if file.exists() => Some(Checkpoints {
            list: checkpoint::read_checkpoints(file).map_err(|e| e.to_string())?,
            key: checkpoint::load_verifying_key(key).map_err(|e| e.to_string())?,
        }),
        Some(_) => None,
    };
    verify(&info.target, None, checkpoints.as_ref()).map_err(|e| e.to_string())
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
