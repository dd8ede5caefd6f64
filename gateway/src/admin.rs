//! The admin listener: `/metrics` and `/healthz` for anyone who can reach it, and the
//! admin API under `/v1/` for authenticated principals with the right [`Role`].
//!
//! | endpoint | needs |
//! | --- | --- |
//! | `GET /v1/whoami` | any credential the admin API accepts |
//! | `GET /v1/audit/verify` | `auditor` or `admin` |
//!
//! Credentials are those of [`crate::auth`] (`server.admin_auth` lists the schemes; API
//! keys and JWTs by default), and roles come with them (an API key's `roles`, a JWT's
//! roles claim). 401 with `WWW-Authenticate` without a valid credential, 403 without
//! the role. Every `/v1/` call is an audit block of kind `admin`: who, what, the outcome.
//!
//! [`Role`]: crate::auth::Role

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use palisade_ledger::verify::{Checkpoints, verify};
use palisade_ledger::{Kind, Record, Target, checkpoint};

use crate::auth::{Action, Principal};
use crate::body::{Body, full};
use crate::config::Scheme;
use crate::error::Error;
use crate::pipeline::{Pipeline, new_id};

/// Where the admin API finds the ledger to verify.
#[derive(Debug, Clone)]
pub(crate) struct LedgerInfo {
    pub(crate) target: Target,
    /// Checkpoint file and the public key that verifies it.
    pub(crate) checkpoints: Option<(PathBuf, PathBuf)>,
}

/// The admin listener's handler.
pub(crate) struct Admin {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) schemes: Vec<Scheme>,
    pub(crate) ledger: LedgerInfo,
}

impl Admin {
    pub(crate) async fn handle<B>(&self, req: http::Request<B>) -> Response<Body> {
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

    async fn api<B>(&self, req: http::Request<B>) -> Response<Body> {
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
                self.route(req.method(), &path, &principal).await
            }
        };
        let response = match outcome {
            Ok(r) => {
                record.decision = "allowed".into();
                r
            }
            Err(e) => {
                record.decision = e.decision().into();
                record.cause = Some(e.cause().into());
                e.to_response(&cid, false)
            }
        };
        record.status = response.status().as_u16();
        record.latency_us = started.elapsed().as_micros() as u64;
        if self.pipeline.ledger().append(record).await.is_err() {
            return Error::AuditUnavailable.to_response(&cid, false);
        }
        response
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        who: &Principal,
    ) -> Result<Response<Body>, Error> {
        let forbidden = || Error::Forbidden {
            cause: "missing_role",
            subject: who.subject.clone(),
            challenge: None,
        };
        match (method, path) {
            (&Method::GET, "/v1/whoami") => Ok(json(StatusCode::OK, who)),
            (&Method::GET, "/v1/audit/verify") => {
                if !who.may(Action::VerifyAudit) {
                    return Err(forbidden());
                }
                let info = self.ledger.clone();
                let report = tokio::task::spawn_blocking(move || verify_ledger(&info))
                    .await
                    .map_err(|_| Error::AuditUnavailable)?;
                Ok(match report {
                    Ok(r) => json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "intact": r.is_intact(),
                            "blocks": r.blocks,
                            "anomalies": r.anomalies,
                            "first_bad_block": r.first.as_ref().and_then(|a| a.seq()),
                            "checkpoints": r.checkpoints,
                            "report": r.to_string(),
                        }),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "admin verify could not read the ledger");
                        return Err(Error::AuditUnavailable);
                    }
                })
            }
            _ => Ok(json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not_found"}),
            )),
        }
    }
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
