//! Data classification: labels on routes (`classification = "confidential"`) and on
//! JSONPaths within their bodies (`classify = [{ path = "$.ssn", label = "restricted" }]`),
//! each with handling rules the gateway enforces when it builds the routes (start, reload
//! and `check-config`), so a route that breaks one is never served.
//!
//! | label | handling rules |
//! | --- | --- |
//! | `public` | none |
//! | `internal` | callers are authenticated (`auth`) or limited by address (the route's or its tenant's `allow_ips`) |
//! | `confidential` | callers are authenticated; every path so labelled is masked, removed, hashed or encrypted by a redaction rule before the body leaves |
//! | `restricted` | as `confidential`, and the caller is bound to the route's tenant (every `auth` route is); no policy is `fail = "open"`; `expose_errors` is off (no guest or upstream text reaches an error body) |
//!
//! Tenants may add labels of their own (`[[tenant.label]] name = "pci", like =
//! "restricted"`): a label has the rules and the rank of the built-in one it is `like`.
//! A path label counts for the route as a whole: a route with a `restricted` path is held
//! to `restricted`'s rules. Audit blocks (`detail.classification`) and the
//! `palisade_classified_requests_total` metric carry the highest label a request touched:
//! the route's, or a path's found in the response body.

use palisade_jsonpath::Selection;
use serde::Deserialize;
use serde_json::Value;

use crate::pipeline::config::{FailMode, Route, Tenant};
use crate::redaction::Redactor;

/// The built-in labels, lowest first; a label's rules include those of the ones below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No handling rules.
    Public,
    /// Authenticated or address-limited callers.
    Internal,
    /// Authenticated callers; labelled paths redacted.
    Confidential,
    /// Tenant-bound callers; labelled paths redacted; fail closed; no error details.
    Restricted,
}

impl Level {
    fn parse(name: &str) -> Option<Level> {
        Some(match name {
            "public" => Level::Public,
            "internal" => Level::Internal,
            "confidential" => Level::Confidential,
            "restricted" => Level::Restricted,
            _ => return None,
        })
    }
}

/// `[[tenant.label]]`: a tenant's own label, with the rules of a built-in one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomLabel {
    /// The label's name (not a built-in one).
    pub name: String,
    /// The built-in label whose rules and rank it has.
    pub like: Level,
}

/// One `classify` entry of a route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classify {
    /// An RFC 9535 JSONPath into the response body.
    pub path: String,
    /// Its label.
    pub label: String,
}

/// A label and its rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Label {
    pub(crate) name: String,
    pub(crate) level: Level,
}

/// A route's labels, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Classification {
    route: Option<Label>,
    paths: Vec<(Selection, Label)>,
}

fn resolve(name: &str, tenant: Option<&Tenant>) -> Option<Label> {
    let level = Level::parse(name).or_else(|| {
        tenant?
            .labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.like)
    })?;
    Some(Label {
        name: name.to_string(),
        level,
    })
}

/// Compiles `route`'s labels and checks its handling rules against what it is configured
/// with (`redactor`: its built redaction). `Ok(None)` for a route without labels.
///
/// # Errors
///
/// Every rule the route breaks, as `(field, reason)`.
pub(crate) fn check(
    route: &Route,
    tenant: Option<&Tenant>,
    redactor: Option<&Redactor>,
) -> Result<Option<Classification>, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    let route_label = match &route.classification {
        None => None,
        Some(name) => match resolve(name, tenant) {
            Some(l) => Some(l),
            None => {
                problems.push(("classification", unknown(name)));
                None
            }
        },
    };
    let mut paths = Vec::new();
    for c in &route.classify {
        let Some(label) = resolve(&c.label, tenant) else {
            problems.push(("classify", unknown(&c.label)));
            continue;
        };
        let Ok(selection) = Selection::parse(&[&c.path]) else {
            problems.push(("classify", format!("`{}` is not a valid JSONPath", c.path)));
            continue;
        };
        if label.level >= Level::Confidential {
            let covered = redactor.map(|r| r.covers(&c.path));
            match covered {
                Some(Ok(true)) => {}
                Some(Err(_)) => problems.push((
                    "classify",
                    format!(
                        "`{}` ({}): a labelled path must be made of names, indices and wildcards, so its redaction can be checked",
                        c.path, label.name
                    ),
                )),
                _ => problems.push((
                    "classify",
                    format!(
                        "`{}` is {}: a redaction rule must mask, remove, hash or encrypt it",
                        c.path, label.name
                    ),
                )),
            }
        }
        paths.push((selection, label));
    }
    let highest = route_label
        .iter()
        .chain(paths.iter().map(|(_, l)| l))
        .max_by_key(|l| l.level)
        .cloned();
    if let Some(top) = &highest {
        let why = |rule: &str| format!("the route is {} ({rule})", top.name);
        let authenticated = route.auth.is_some();
        match top.level {
            Level::Public => {}
            Level::Internal
                if !authenticated
                    && route.allow_ips.is_empty()
                    && tenant.is_none_or(|t| t.allow_ips.is_empty()) =>
            {
                problems.push(("classification", why("internal: set `auth` or `allow_ips`")))
            }
            Level::Internal => {}
            Level::Confidential | Level::Restricted if !authenticated => problems.push((
                "classification",
                why(&format!("{:?}: set `auth`", top.level).to_lowercase()),
            )),
            _ => {}
        }
        if top.level == Level::Restricted {
            if let Some(n) = route
                .request
                .iter()
                .chain(&route.response)
                .position(|p| p.fail == FailMode::Open)
            {
                problems.push((
                    "classification",
                    why(&format!(
                        "restricted: policy {} may not be `fail = \"open\"`",
                        n + 1
                    )),
                ));
            }
            if route.expose_errors {
                problems.push((
                    "classification",
                    why("restricted: `expose_errors` must be off"),
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if route_label.is_none() && paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(Classification {
        route: route_label,
        paths,
    }))
}

/// A tenant's own labels: none may reuse a built-in name or another of its labels.
pub(crate) fn check_labels(tenant: &Tenant) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, l) in tenant.labels.iter().enumerate() {
        if Level::parse(&l.name).is_some() {
            problems.push(format!("label {:?} is a built-in label", l.name));
        } else if tenant.labels[..i].iter().any(|o| o.name == l.name) {
            problems.push(format!("label {:?} is defined twice", l.name));
        } else if l.name.is_empty() || l.name.len() > 64 {
            problems.push("a label's name has 1 to 64 characters".into());
        }
    }
    problems
}

fn unknown(name: &str) -> String {
    format!(
        "label {name:?} is neither public, internal, confidential, restricted nor one of the tenant's `[[tenant.label]]`"
    )
}

impl Classification {
    /// Whether labels depend on the response body (paths to look for).
    pub(crate) fn reads_body(&self) -> bool {
        !self.paths.is_empty()
    }

    /// The route's own label.
    pub(crate) fn route_label(&self) -> Option<&Label> {
        self.route.as_ref()
    }

    /// The highest label among the route's and those of the paths present in `body` (a
    /// JSON body; anything else touches only the route's).
    pub(crate) fn touched(&self, body: &[u8]) -> Option<&Label> {
        let mut top = self.route.as_ref();
        let higher = |top: Option<&Label>, l: &Label| top.is_none_or(|t| l.level > t.level);
        if !self.paths.iter().any(|(_, l)| higher(top, l)) {
            return top;
        }
        let Ok(doc) = serde_json::from_slice::<Value>(body) else {
            return top;
        };
        for (selection, label) in &self.paths {
            if higher(top, label) && selection.selects_any(&doc) {
                top = Some(label);
            }
        }
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redaction::{Action, Rule};

    fn route(extra: &str) -> Route {
        toml::from_str(&format!(
            "name = \"r\"\ntenant = \"acme\"\nupstream = \"up\"\n{extra}"
        ))
        .unwrap()
    }

    fn tenant(extra: &str) -> Tenant {
        toml::from_str(&format!("name = \"acme\"\n{extra}")).unwrap()
    }

    fn reasons(r: &Route, t: Option<&Tenant>, redactor: Option<&Redactor>) -> Vec<String> {
        match check(r, t, redactor) {
            Ok(_) => Vec::new(),
            Err(p) => p.into_iter().map(|(_, m)| m).collect(),
        }
    }

    #[test]
    fn each_label_holds_its_route_to_its_rules() {
        assert!(reasons(&route("classification = \"public\""), None, None).is_empty());
        let internal = reasons(&route("classification = \"internal\""), None, None);
        assert!(
            internal[0].contains("`auth` or `allow_ips`"),
            "{internal:?}"
        );
        assert!(
            reasons(
                &route("classification = \"internal\"\nallow_ips = [\"10.0.0.0/8\"]"),
                None,
                None
            )
            .is_empty()
        );
        let confidential = reasons(&route("classification = \"confidential\""), None, None);
        assert!(confidential[0].contains("set `auth`"), "{confidential:?}");
        let restricted = route(
            "classification = \"restricted\"\nexpose_errors = true\nauth = { schemes = [\"jwt\"] }\nrequest = [{ module = \"p.wasm\", fail = \"open\" }]",
        );
        let why = reasons(&restricted, None, None);
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("fail = \"open\""), "{why:?}");
        assert!(why[1].contains("expose_errors"), "{why:?}");
        assert!(
            reasons(
                &route("classification = \"restricted\"\nauth = { schemes = [\"jwt\"] }"),
                None,
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn labelled_paths_must_be_redacted_and_raise_the_route() {
        let r = route(
            "auth = { schemes = [\"jwt\"] }\nclassify = [{ path = \"$.ssn\", label = \"restricted\" }, { path = \"$.name\", label = \"internal\" }]",
        );
        let why = reasons(&r, None, None);
        assert!(why[0].contains("`$.ssn` is restricted"), "{why:?}");
        let masks = Redactor::new(&[Rule::path("$.ssn", Action::Mask)], None).unwrap();
        let c = check(&r, None, Some(&masks)).unwrap().unwrap();
        assert_eq!(c.touched(br#"{"name": "x"}"#).unwrap().name, "internal");
        assert_eq!(c.touched(br#"{"ssn": 1}"#).unwrap().name, "restricted");
        assert!(c.touched(b"{}").is_none());
        assert!(c.touched(b"not json").is_none());
        // A restricted path makes the route restricted: `fail = "open"` is refused.
        let open = route(
            "auth = { schemes = [\"jwt\"] }\nclassify = [{ path = \"$.ssn\", label = \"restricted\" }]\nresponse = [{ module = \"p.wasm\", fail = \"open\" }]",
        );
        assert!(reasons(&open, None, Some(&masks))[0].contains("fail = \"open\""));
    }

    #[test]
    fn tenants_add_labels_like_built_in_ones() {
        let t = tenant("[[label]]\nname = \"pci\"\nlike = \"restricted\"");
        assert!(check_labels(&t).is_empty());
        let r = route("classification = \"pci\"");
        assert!(reasons(&r, Some(&t), None)[0].contains("the route is pci"));
        assert!(reasons(&r, None, None)[0].contains("neither public"));
        let bad = tenant(
            "[[label]]\nname = \"restricted\"\nlike = \"public\"\n[[label]]\nname = \"x\"\nlike = \"public\"\n[[label]]\nname = \"x\"\nlike = \"internal\"",
        );
        assert_eq!(check_labels(&bad).len(), 2);
    }
}
