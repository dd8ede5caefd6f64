//! Semantic checks: every problem in the file, each with its line.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{FailMode, File, Route};
use crate::auth::Scheme;
use crate::redaction::Redactor;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The file.
    pub path: PathBuf,
    /// `(line, column)` of the table or value at fault, when known.
    pub at: Option<(usize, usize)>,
    /// Which entry (`route "orders"`), when it is about one.
    pub context: String,
    /// What is wrong.
    pub message: String,
}

impl Issue {
    pub(crate) fn file(path: &Path, message: String) -> Self {
        Issue {
            path: path.to_path_buf(),
            at: None,
            context: String::new(),
            message,
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        if !self.context.is_empty() {
            write!(f, ": {}", self.context)?;
        }
        write!(f, ": {}", self.message)
    }
}

struct Report<'a> {
    file: &'a File,
    issues: Vec<Issue>,
}

type Span = std::ops::Range<usize>;

impl Report<'_> {
    fn add_at(&mut self, at: Span, context: String, message: impl Into<String>) {
        self.issues.push(Issue {
            path: self.file.path.clone(),
            at: Some(self.file.position(at.start)),
            context,
            message: message.into(),
        });
    }

    fn add<T>(&mut self, at: &Spanned<T>, context: String, message: impl Into<String>) {
        self.add_at(at.span(), context, message);
    }

    fn top(&mut self, context: &str, message: impl Into<String>) {
        self.issues.push(Issue {
            path: self.file.path.clone(),
            at: None,
            context: context.into(),
            message: message.into(),
        });
    }
}

/// Checks `file` as a whole and returns every problem (empty when valid). Modules are
/// loaded and validated separately, by [`crate::Gateway`] (and `palisade check-config`).
pub fn check(file: &File) -> Vec<Issue> {
    let mut r = Report {
        file,
        issues: Vec::new(),
    };
    if file.server.max_header_bytes < 8192 {
        r.top(
            "[server] max_header_bytes",
            "must be at least 8192 (HTTP/1.1 parser minimum)",
        );
    }
    if file.server.max_headers == 0
        || file.server.header_timeout.is_zero()
        || file.server.body_timeout.is_zero()
    {
        r.top(
            "[server]",
            "max_headers, header_timeout_ms and body_timeout_ms must be positive",
        );
    }
    let o = &file.server.overload;
    if o.max_in_flight == 0 || o.queue_target.is_zero() || o.queue_interval.is_zero() {
        r.top(
            "[server.overload]",
            "max_in_flight, queue_target_ms and queue_interval_ms must be positive",
        );
    }
    for problem in file.server.connections.problems() {
        r.top("[server.connections]", problem);
    }

    let mut tenants = HashMap::new();
    for t in &file.tenants {
        let ctx = format!("tenant {:?}", t.get_ref().name);
        if !valid_name(&t.get_ref().name) {
            r.add(t, ctx.clone(), "name must be 1-64 of [A-Za-z0-9_.-]");
        }
        if tenants
            .insert(t.get_ref().name.clone(), t.get_ref())
            .is_some()
        {
            r.add(t, ctx.clone(), "defined twice");
        }
        for m in &t.get_ref().mandatory_pii {
            if serde_json_path::JsonPath::parse(m).is_err() {
                r.add(
                    t,
                    ctx.clone(),
                    format!("mandatory_pii `{m}` is not a valid JSONPath"),
                );
            }
        }
        if let Some(message) = rate_limit_problem(t.get_ref().rate_limit.as_ref()) {
            r.add(t, ctx.clone(), message);
        }
        if t.get_ref().max_in_flight == Some(0) || t.get_ref().fuel_per_s == Some(0) {
            r.add(
                t,
                ctx.clone(),
                "max_in_flight and fuel_per_s must be positive",
            );
        }
        if let Some(key) = &t.get_ref().hash_key_file {
            match std::fs::read(key) {
                Ok(k) if k.len() >= 16 => {}
                Ok(_) => r.add(t, ctx, "hash_key_file must hold at least 16 bytes"),
                Err(e) => r.add(t, ctx, format!("hash_key_file {}: {e}", key.display())),
            }
        }
    }

    let issuers = check_auth(&mut r, &tenants);

    let mut upstreams = HashSet::new();
    for u in &file.upstreams {
        let ctx = format!("upstream {:?}", u.get_ref().name);
        if !upstreams.insert(u.get_ref().name.clone()) {
            r.add(u, ctx.clone(), "defined twice");
        }
        let https = match u.get_ref().url.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.query().is_none() =>
            {
                uri.scheme_str() == Some("https")
            }
            _ => {
                r.add(
                    u,
                    ctx.clone(),
                    format!(
                        "url `{}` must be http(s)://host:port[/prefix]",
                        u.get_ref().url
                    ),
                );
                false
            }
        };
        if u.get_ref().max_in_flight == 0 || u.get_ref().connect_timeout.is_zero() {
            r.add(
                u,
                ctx.clone(),
                "max_in_flight and connect_timeout_ms must be positive",
            );
        }
        let b = &u.get_ref().breaker;
        if !(b.failure_rate > 0.0 && b.failure_rate <= 1.0)
            || b.min_requests == 0
            || b.window < std::time::Duration::from_millis(10)
            || b.open.is_zero()
            || b.half_open_requests == 0
        {
            r.add(
                u,
                ctx.clone(),
                "breaker: failure_rate must be in (0, 1], window_ms at least 10, min_requests, open_ms and half_open_requests positive",
            );
        }
        if let Some(c) = &u.get_ref().client_cert {
            if !https {
                r.add(u, ctx.clone(), "client_cert needs an https:// url");
            }
            if file.secrets.is_none() {
                r.add(u, ctx.clone(), "client_cert needs [secrets]");
            }
            if !tenants.contains_key(&c.tenant) {
                r.add(
                    u,
                    ctx,
                    format!("client_cert: tenant {:?} is not defined", c.tenant),
                );
            }
        }
    }

    let mut names = HashSet::new();
    let mut matches = HashSet::new();
    for sr in &file.routes {
        let route = sr.get_ref();
        let ctx = format!("route {:?}", route.name);
        if !valid_name(&route.name) {
            r.add(sr, ctx.clone(), "name must be 1-64 of [A-Za-z0-9_.-]");
        }
        if !names.insert(route.name.clone()) {
            r.add(sr, ctx.clone(), "defined twice");
        }
        let tenant = tenants.get(&route.tenant).copied();
        if tenant.is_none() {
            r.add(
                sr,
                ctx.clone(),
                format!("tenant {:?} is not defined", route.tenant),
            );
        }
        if !upstreams.contains(&route.upstream) {
            r.add(
                sr,
                ctx.clone(),
                format!("upstream {:?} is not defined", route.upstream),
            );
        }
        if !route.path.starts_with('/') {
            r.add(
                sr,
                ctx.clone(),
                format!("path `{}` must start with /", route.path),
            );
        }
        let mut methods: Vec<String> = route
            .methods
            .iter()
            .map(|m| m.0.as_str().to_string())
            .collect();
        methods.sort();
        if !matches.insert((
            route.host.clone(),
            route.path.trim_end_matches('/').to_string(),
            methods,
        )) {
            r.add(
                sr,
                ctx.clone(),
                "another route matches the same host, path and methods",
            );
        }
        if route.max_body_bytes == 0 || route.concurrency == 0 || route.first_byte_timeout.is_zero()
        {
            r.add(
                sr,
                ctx.clone(),
                "max_body_bytes, concurrency and timeout_ms must be positive",
            );
        }
        if route.total_timeout < route.first_byte_timeout
            || route.connect_timeout.is_some_and(|t| t.is_zero())
        {
            r.add(
                sr,
                ctx.clone(),
                "total_timeout_ms must be at least timeout_ms (first byte), connect_timeout_ms positive",
            );
        }
        if let Some(message) = rate_limit_problem(route.rate_limit.as_ref()) {
            r.add(sr, ctx.clone(), message);
        }
        if let Some(retry) = &route.retry {
            if !(1..=10).contains(&retry.attempts)
                || !(0.0..=1.0).contains(&retry.budget_ratio)
                || retry.backoff > std::time::Duration::from_secs(60)
            {
                r.add(
                    sr,
                    ctx.clone(),
                    "retry: attempts must be 1-10, budget_ratio in [0, 1], backoff_ms at most 60,000",
                );
            }
            for on in &retry.on {
                if crate::resilience::RetryOn::parse(on).is_none() {
                    r.add(
                        sr,
                        ctx.clone(),
                        format!("retry: `{on}` is not connect, reset, timeout or a 5xx status"),
                    );
                }
            }
        }
        if let Some(h) = &route.hedge
            && (h.delay.is_zero() || h.percentile.is_some_and(|p| !(1..=99).contains(&p)))
        {
            r.add(
                sr,
                ctx.clone(),
                "hedge: delay_ms must be positive and percentile 1-99",
            );
        }
        for p in &route.response {
            if p.fail == FailMode::Open {
                r.add(
                    sr,
                    ctx.clone(),
                    format!(
                        "response policy {} has fail = \"open\": response policies see (and may redact) the response, so they always fail closed",
                        p.module.display()
                    ),
                );
            }
        }
        for p in route.request.iter().chain(&route.response) {
            if !p.secrets.is_empty() && file.secrets.is_none() {
                r.add(sr, ctx.clone(), "policy `secrets` grants need [secrets]");
            }
            let module = p.module.clone();
            if let Some(name) = p.registry_name() {
                if file.registry.is_none() {
                    r.add(
                        sr,
                        ctx.clone(),
                        format!("module registry:{name} needs a [registry]"),
                    );
                }
            } else if !module.is_file() {
                r.add(
                    sr,
                    ctx.clone(),
                    format!("module {} not found", module.display()),
                );
            }
            for (k, v) in &p.config {
                if v.is_table()
                    || v.is_array()
                        && !v
                            .as_array()
                            .is_some_and(|a| a.iter().all(|x| !x.is_table()))
                {
                    r.add(
                        sr,
                        ctx.clone(),
                        format!(
                            "policy config `{k}` must be a string, number, boolean or flat array"
                        ),
                    );
                }
            }
        }
        check_redaction(&mut r, sr, route, tenant, &ctx);
        // Its form is checked where it is lowered (`pipeline::Credential`).
        if route.upstream_auth.is_some() && file.secrets.is_none() {
            r.add(sr, ctx.clone(), "upstream_auth needs [secrets]");
        }
        if let Some(auth) = &route.auth {
            check_route_auth(&mut r, sr, auth, tenant, &issuers, &ctx);
        }
    }
    r.issues
}

fn check_auth(r: &mut Report<'_>, tenants: &HashMap<String, &super::Tenant>) -> HashSet<String> {
    let file = r.file;
    if file.server.admin_auth.is_empty() {
        r.top("[server] admin_auth", "must name at least one scheme");
    }
    if file.server.admin_auth.contains(&Scheme::Mtls) {
        r.top(
            "[server] admin_auth",
            "`mtls` is not available on the admin listener (it has no TLS)",
        );
    }
    let mut names = HashSet::new();
    let jwt = file.auth.jwt.iter().map(|j| {
        (
            j.span(),
            &j.get_ref().name,
            &j.get_ref().tenant,
            j.get_ref().platform,
        )
    });
    let introspection = file.auth.introspection.iter().map(|i| {
        (
            i.span(),
            &i.get_ref().name,
            &i.get_ref().tenant,
            i.get_ref().platform,
        )
    });
    let mut each = |at: Span, name: &String, tenant: &Option<String>, platform: bool| {
        let ctx = format!("auth {name:?}");
        if !valid_name(name) {
            r.add_at(
                at.clone(),
                ctx.clone(),
                "name must be 1-64 of [A-Za-z0-9_.-]",
            );
        }
        if !names.insert(name.clone()) {
            r.add_at(at.clone(), ctx.clone(), "name used twice in [auth]");
        }
        if platform && tenant.is_some() {
            r.add_at(
                at.clone(),
                ctx.clone(),
                "`platform = true` and `tenant` exclude each other: a tenant's issuer never \
                 grants platform roles",
            );
        }
        if let Some(t) = tenant
            && !tenants.contains_key(t)
        {
            r.add_at(at, ctx, format!("tenant {t:?} is not defined"));
        }
    };
    for (at, name, tenant, platform) in jwt.chain(introspection) {
        each(at, name, tenant, platform);
    }
    names
}

fn check_route_auth(
    r: &mut Report<'_>,
    sr: &Spanned<Route>,
    auth: &crate::auth::RouteAuth,
    tenant: Option<&super::Tenant>,
    issuers: &HashSet<String>,
    ctx: &str,
) {
    let file = r.file;
    let mut say = |m: String| r.add(sr, ctx.into(), m);
    if auth.schemes.is_empty() {
        say("auth.schemes must name at least one scheme".into());
    }
    let has_ca = tenant.is_some_and(|t| t.client_ca.is_some());
    for s in &auth.schemes {
        match s {
            Scheme::Jwt if file.auth.jwt.is_empty() => {
                say("auth scheme `jwt` needs an [[auth.jwt]] issuer".into());
            }
            Scheme::Oauth2 if file.auth.introspection.is_empty() => {
                say("auth scheme `oauth2` needs an [[auth.introspection]] endpoint".into());
            }
            Scheme::ApiKey if file.auth.api_keys.is_none() => {
                say("auth scheme `api_key` needs [auth] api_keys".into());
            }
            Scheme::Mtls if file.server.tls.is_none() || !has_ca => {
                say("auth scheme `mtls` needs [server.tls] and the tenant's client_ca".into());
            }
            _ => {}
        }
    }
    if auth.bind_certificate && (file.server.tls.is_none() || !has_ca) {
        say("auth.bind_certificate needs [server.tls] and the tenant's client_ca".into());
    }
    for i in &auth.issuers {
        if !issuers.contains(i) {
            say(format!(
                "auth.issuers: {i:?} is not an [[auth.jwt]] or [[auth.introspection]] name"
            ));
        }
    }
}

fn check_redaction(
    r: &mut Report<'_>,
    sr: &Spanned<Route>,
    route: &Route,
    tenant: Option<&super::Tenant>,
    ctx: &str,
) {
    let rules = route.redaction(tenant);
    // A real key is checked with the tenant; a placeholder lets the rules compile here.
    let key = tenant
        .and_then(|t| t.hash_key_file.as_ref())
        .map(|_| [1u8; 16]);
    match Redactor::new(&rules, key.as_ref().map(|k| k.as_slice())) {
        Err(e) => r.add(sr, ctx.into(), format!("redaction {e}")),
        Ok(redactor) => {
            for h in tenant
                .map(|t| t.mandatory_headers.as_slice())
                .unwrap_or_default()
            {
                if !redactor.header_names().any(|n| n.eq_ignore_ascii_case(h)) {
                    r.add(
                        sr,
                        ctx.into(),
                        format!(
                            "redaction does not cover mandatory header `{h}` of tenant {:?}",
                            route.tenant
                        ),
                    );
                }
            }
            for m in tenant
                .map(|t| t.mandatory_pii.as_slice())
                .unwrap_or_default()
            {
                let covered = match redactor.covers(m) {
                    Ok(c) => c,
                    Err(_) => {
                        r.add(
                            sr,
                            ctx.into(),
                            format!("mandatory PII path `{m}` cannot be checked: use names, indices, `*` and `..name`"),
                        );
                        continue;
                    }
                };
                if !covered {
                    r.add(
                        sr,
                        ctx.into(),
                        format!(
                            "redaction does not cover mandatory PII path `{m}` of tenant {:?}",
                            route.tenant
                        ),
                    );
                }
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn rate_limit_problem(limit: Option<&crate::resilience::RateLimit>) -> Option<&'static str> {
    let l = limit?;
    (l.per_s == 0 || l.burst == Some(0)).then_some("rate_limit: per_s and burst must be positive")
}
