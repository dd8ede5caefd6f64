//! What runs, for the admin API: `GET /v1/tenants` (the tenants a caller may read) and
//! `GET /v1/tenants/{tenant}/routes` (each route with its policies and the module
//! versions active now). Names and references only, never a secret or a key.

use serde_json::{Value, json};

use crate::config::{File, Policy, Route};
use crate::registry::Registry;

/// The tenants `visible` lets through, each with its number of routes.
pub(super) fn tenants(file: &File, visible: impl Fn(&str) -> bool) -> Value {
    let list: Vec<Value> = file
        .tenants
        .iter()
        .map(|t| t.get_ref().name.as_str())
        .filter(|t| visible(t))
        .map(|t| {
            let routes = file
                .routes
                .iter()
                .filter(|r| r.get_ref().tenant == t)
                .count();
            json!({ "name": t, "routes": routes })
        })
        .collect();
    json!({ "tenants": list })
}

/// `tenant`'s routes as they run.
pub(super) fn routes(file: &File, registry: Option<&Registry>, tenant: &str) -> Value {
    let list: Vec<Value> = file
        .routes
        .iter()
        .map(|r| r.get_ref())
        .filter(|r| r.tenant == tenant)
        .map(|r| route(r, registry))
        .collect();
    json!({ "routes": list })
}

fn route(r: &Route, registry: Option<&Registry>) -> Value {
    let policies = |list: &[Policy]| -> Vec<Value> {
        list.iter()
            .map(|p| policy(&r.tenant, p, registry))
            .collect()
    };
    json!({
        "name": r.name,
        "host": r.host,
        "path": r.path,
        "methods": r.methods.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        "upstream": r.upstream,
        "auth": r.auth.as_ref().map(|a| json!({
            "schemes": a.schemes,
            "scopes": a.scopes,
            "roles": a.roles,
        })),
        "request": policies(&r.request),
        "response": policies(&r.response),
        "redact_rules": r.redact.len(),
    })
}

fn policy(tenant: &str, p: &Policy, registry: Option<&Registry>) -> Value {
    match p.registry_name() {
        Some(reference) => {
            let (name, pinned) = match reference.split_once('@') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (reference, None),
            };
            let version = pinned.or_else(|| registry.and_then(|r| r.active_version(tenant, name)));
            json!({ "registry": name, "version": version, "fail": p.fail })
        }
        None => json!({
            "file": p.module.file_name().map(|f| f.to_string_lossy().into_owned()),
            "fail": p.fail,
        }),
    }
}
