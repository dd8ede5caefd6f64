//! Semantic checks: every problem in the file, each with its line.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{FailMode, File, Problem, Route};
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
    /// A problem with `field` (a dotted key) of the entry at `entry`, at its line.
    fn add_at(&mut self, entry: Span, field: &str, context: String, message: impl Into<String>) {
        let at = self.file.spans.find(Some(&entry), field);
        self.issues.push(Issue {
            path: self.file.path.clone(),
            at: at.map(|s| self.file.position(s.start)),
            context,
            message: message.into(),
        });
    }

    fn add<T>(
        &mut self,
        at: &Spanned<T>,
        field: &str,
        context: String,
        message: impl Into<String>,
    ) {
        self.add_at(at.span(), field, context, message);
    }

    /// A problem with a section's key (`server.max_headers`), at its line if the file
    /// has it, else at its section's.
    fn key(&mut self, key: &str, message: impl Into<String>) {
        let at = self.file.spans.find(None, key);
        self.issues.push(Issue {
            path: self.file.path.clone(),
            at: at.map(|s| self.file.position(s.start)),
            context: format!("[{}]", key.rsplit_once('.').map_or(key, |(s, _)| s)),
            message: message.into(),
        });
    }

    /// Whether `name` of `kind` (`tenant`) is defined, or was written but did not lower
    /// (its own problem is reported; a reference to it is not one more).
    fn known(&self, kind: &str, name: &str, defined: bool) -> bool {
        defined || self.file.unlowered.contains(&format!("{kind} {name}"))
    }
}

/// Checks `file` as a whole and returns every problem (empty when valid). It reads
/// nothing but the file: key files, modules and the database are checked where they are
/// used ([`crate::pipeline::validate`], the gateway's start and reload).
pub fn check(file: &File) -> Vec<Issue> {
    let mut r = Report {
        file,
        issues: Vec::new(),
    };
    for (key, message) in file.traces.iter().flat_map(|t| t.problems()) {
        r.key(key, message);
    }
    for (key, message) in file.envoy.iter().flat_map(|e| e.problems()) {
        r.key(key, message);
    }
    if let Some(fleet) = &file.fleet {
        for (key, message) in fleet.problems() {
            r.key(key, message);
        }
        // Redis counts in whole microseconds: a faster rate would round to nothing.
        let fast =
            |l: &Option<crate::resilience::RateLimit>| l.is_some_and(|l| l.per_s > 1_000_000);
        if file.tenants.iter().any(|t| fast(&t.get_ref().rate_limit))
            || file.routes.iter().any(|rt| fast(&rt.get_ref().rate_limit))
        {
            r.key(
                "fleet",
                "with [fleet], a rate_limit's per_s may be at most 1,000,000",
            );
        }
        if let Some(secret) = &fleet.redis.password {
            if file.secrets.is_none() {
                r.key(
                    "fleet.redis.password",
                    "names a secret but there is no [secrets] section",
                );
            }
            if !file
                .tenants
                .iter()
                .any(|t| t.get_ref().name == secret.tenant)
            {
                r.key(
                    "fleet.redis.password",
                    format!(
                        "tenant {:?} (the secret's namespace) is not defined",
                        secret.tenant
                    ),
                );
            }
        }
    }
    let server = &file.server;
    if server.max_header_bytes < 8192 {
        r.key(
            "server.max_header_bytes",
            "must be at least 8192 (HTTP/1.1 parser minimum)",
        );
    }
    for (key, zero) in [
        ("server.max_headers", server.max_headers == 0),
        ("server.header_timeout_ms", server.header_timeout.is_zero()),
        ("server.body_timeout_ms", server.body_timeout.is_zero()),
        (
            "server.overload.max_in_flight",
            server.overload.max_in_flight == 0,
        ),
        (
            "server.overload.queue_target_ms",
            server.overload.queue_target.is_zero(),
        ),
        (
            "server.overload.queue_interval_ms",
            server.overload.queue_interval.is_zero(),
        ),
    ] {
        if zero {
            r.key(key, "must be positive");
        }
    }
    for problem in server.connections.problems() {
        r.key("server.connections", problem);
    }

    let mut tenants = HashMap::new();
    for t in &file.tenants {
        let tenant = t.get_ref();
        let ctx = format!("tenant {:?}", tenant.name);
        if !valid_name(&tenant.name) {
            r.add(
                t,
                "name",
                ctx.clone(),
                "name must be 1-64 of [A-Za-z0-9_.-]",
            );
        }
        if tenants.insert(tenant.name.clone(), tenant).is_some() {
            r.add(t, "name", ctx.clone(), "defined twice");
        }
        for (n, m) in tenant.mandatory_pii.iter().enumerate() {
            if serde_json_path::JsonPath::parse(m).is_err() {
                r.add(
                    t,
                    &format!("mandatory_pii.{n}"),
                    ctx.clone(),
                    format!("mandatory_pii `{m}` is not a valid JSONPath"),
                );
            }
        }
        if let Some(message) = rate_limit_problem(tenant.rate_limit.as_ref()) {
            r.add(t, "rate_limit", ctx.clone(), message);
        }
        if tenant.max_in_flight == Some(0) {
            r.add(
                t,
                "max_in_flight",
                ctx.clone(),
                "max_in_flight must be positive",
            );
        }
        if tenant.fuel_per_s == Some(0) {
            r.add(t, "fuel_per_s", ctx.clone(), "fuel_per_s must be positive");
        }
    }

    let issuers = check_auth(&mut r, &tenants);

    let mut upstreams = HashSet::new();
    for u in &file.upstreams {
        let up = u.get_ref();
        let ctx = format!("upstream {:?}", up.name);
        if !upstreams.insert(up.name.clone()) {
            r.add(u, "name", ctx.clone(), "defined twice");
        }
        let https = match up.url.parse::<http::Uri>() {
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
                    "url",
                    ctx.clone(),
                    format!(
                        "url `{}` must be http(s)://host:port[/prefix]",
                        super::de::shown_url(&up.url)
                    ),
                );
                false
            }
        };
        if up.max_in_flight == 0 {
            r.add(
                u,
                "max_in_flight",
                ctx.clone(),
                "max_in_flight must be positive",
            );
        }
        if up.connect_timeout.is_zero() {
            r.add(
                u,
                "connect_timeout_ms",
                ctx.clone(),
                "connect_timeout_ms must be positive",
            );
        }
        let b = &up.breaker;
        if !(b.failure_rate > 0.0 && b.failure_rate <= 1.0)
            || b.min_requests == 0
            || b.window < std::time::Duration::from_millis(10)
            || b.open.is_zero()
            || b.half_open_requests == 0
        {
            r.add(
                u,
                "breaker",
                ctx.clone(),
                "breaker: failure_rate must be in (0, 1], window_ms at least 10, min_requests, open_ms and half_open_requests positive",
            );
        }
        if let Some(c) = &up.client_cert {
            if !https {
                r.add(
                    u,
                    "client_cert",
                    ctx.clone(),
                    "client_cert needs an https:// url",
                );
            }
            if file.secrets.is_none() {
                r.add(u, "client_cert", ctx.clone(), "client_cert needs [secrets]");
            }
            if !r.known("tenant", &c.tenant, tenants.contains_key(&c.tenant)) {
                r.add(
                    u,
                    "client_cert.tenant",
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
            r.add(
                sr,
                "name",
                ctx.clone(),
                "name must be 1-64 of [A-Za-z0-9_.-]",
            );
        }
        if !names.insert(route.name.clone()) {
            r.add(sr, "name", ctx.clone(), "defined twice");
        }
        let tenant = tenants.get(&route.tenant).copied();
        if !r.known("tenant", &route.tenant, tenant.is_some()) {
            r.add(
                sr,
                "tenant",
                ctx.clone(),
                format!("tenant {:?} is not defined", route.tenant),
            );
        }
        if !r.known(
            "upstream",
            &route.upstream,
            upstreams.contains(&route.upstream),
        ) {
            r.add(
                sr,
                "upstream",
                ctx.clone(),
                format!("upstream {:?} is not defined", route.upstream),
            );
        }
        if !route.path.starts_with('/') {
            r.add(
                sr,
                "path",
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
                "path",
                ctx.clone(),
                "another route matches the same host, path and methods",
            );
        }
        for (key, zero) in [
            ("max_body_bytes", route.max_body_bytes == 0),
            ("concurrency", route.concurrency == 0),
            ("timeout_ms", route.first_byte_timeout.is_zero()),
            (
                "connect_timeout_ms",
                route.connect_timeout.is_some_and(|t| t.is_zero()),
            ),
        ] {
            if zero {
                r.add(sr, key, ctx.clone(), format!("{key} must be positive"));
            }
        }
        if route.total_timeout < route.first_byte_timeout {
            r.add(
                sr,
                "total_timeout_ms",
                ctx.clone(),
                "total_timeout_ms must be at least timeout_ms (first byte)",
            );
        }
        if let Some(message) = rate_limit_problem(route.rate_limit.as_ref()) {
            r.add(sr, "rate_limit", ctx.clone(), message);
        }
        if let Some(retry) = &route.retry {
            if !(1..=10).contains(&retry.attempts)
                || !(0.0..=1.0).contains(&retry.budget_ratio)
                || retry.backoff > std::time::Duration::from_secs(60)
            {
                r.add(
                    sr,
                    "retry",
                    ctx.clone(),
                    "retry: attempts must be 1-10, budget_ratio in [0, 1], backoff_ms at most 60,000",
                );
            }
            for (n, on) in retry.on.iter().enumerate() {
                if crate::resilience::RetryOn::parse(on).is_none() {
                    r.add(
                        sr,
                        &format!("retry.on.{n}"),
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
                "hedge",
                ctx.clone(),
                "hedge: delay_ms must be positive and percentile 1-99",
            );
        }
        for (n, p) in route.response.iter().enumerate() {
            if p.fail == FailMode::Open {
                r.add(
                    sr,
                    &format!("response.{n}.fail"),
                    ctx.clone(),
                    format!(
                        "response policy {} has fail = \"open\": response policies see (and may redact) the response, so they always fail closed",
                        p.module.display()
                    ),
                );
            }
        }
        let policies = (route
            .request
            .iter()
            .enumerate()
            .map(|(n, p)| (format!("request.{n}"), p)))
        .chain(
            route
                .response
                .iter()
                .enumerate()
                .map(|(n, p)| (format!("response.{n}"), p)),
        );
        for (key, p) in policies {
            if !p.secrets.is_empty() && file.secrets.is_none() {
                r.add(
                    sr,
                    &format!("{key}.secrets"),
                    ctx.clone(),
                    "policy `secrets` grants need [secrets]",
                );
            }
            if p.field_encryption != crate::pipeline::config::FieldEncryption::Off
                && file.secrets.is_none()
            {
                r.add(
                    sr,
                    &format!("{key}.field_encryption"),
                    ctx.clone(),
                    "`field_encryption` needs [secrets], where the tenant's data key is kept",
                );
            }
            if let Some(name) = p.registry_name()
                && file.registry.is_none()
            {
                r.add(
                    sr,
                    &format!("{key}.module"),
                    ctx.clone(),
                    format!("module registry:{name} needs a [registry]"),
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
                        &format!("{key}.config.{k}"),
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
            r.add(
                sr,
                "upstream_auth",
                ctx.clone(),
                "upstream_auth needs [secrets]",
            );
        }
        if let Some(auth) = &route.auth {
            check_route_auth(&mut r, sr, auth, tenant, &issuers, &ctx);
        }
    }
    r.issues
}

fn check_auth(r: &mut Report<'_>, tenants: &HashMap<String, &super::Tenant>) -> HashSet<String> {
    let file = r.file;
    if file.server.proxy_protocol && file.server.trusted_proxies.is_empty() {
        r.key(
            "server.proxy_protocol",
            "proxy_protocol needs trusted_proxies: only they may send the header",
        );
    }
    if file.server.admin_auth.is_empty() {
        r.key("server.admin_auth", "must name at least one scheme");
    }
    if file.server.admin_auth.contains(&Scheme::Mtls) {
        r.key(
            "server.admin_auth",
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
                "name",
                ctx.clone(),
                "name must be 1-64 of [A-Za-z0-9_.-]",
            );
        }
        if !names.insert(name.clone()) {
            r.add_at(at.clone(), "name", ctx.clone(), "name used twice in [auth]");
        }
        if platform && tenant.is_some() {
            r.add_at(
                at.clone(),
                "platform",
                ctx.clone(),
                "`platform = true` and `tenant` exclude each other: a tenant's issuer never \
                 grants platform roles",
            );
        }
        if let Some(t) = tenant
            && !r.known("tenant", t, tenants.contains_key(t))
        {
            r.add_at(at, "tenant", ctx, format!("tenant {t:?} is not defined"));
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
    let mut say = |field: &str, m: String| r.add(sr, field, ctx.into(), m);
    if auth.schemes.is_empty() {
        say(
            "auth.schemes",
            "auth.schemes must name at least one scheme".into(),
        );
    }
    let has_ca = tenant.is_some_and(|t| t.client_ca.is_some());
    for (n, s) in auth.schemes.iter().enumerate() {
        let field = format!("auth.schemes.{n}");
        match s {
            Scheme::Jwt if file.auth.jwt.is_empty() => {
                say(
                    &field,
                    "auth scheme `jwt` needs an [[auth.jwt]] issuer".into(),
                );
            }
            Scheme::Oauth2 if file.auth.introspection.is_empty() => {
                say(
                    &field,
                    "auth scheme `oauth2` needs an [[auth.introspection]] endpoint".into(),
                );
            }
            Scheme::ApiKey if file.auth.api_keys.is_none() => {
                say(&field, "auth scheme `api_key` needs [auth] api_keys".into());
            }
            Scheme::Mtls if file.server.tls.is_none() || !has_ca => {
                say(
                    &field,
                    "auth scheme `mtls` needs [server.tls] and the tenant's client_ca".into(),
                );
            }
            _ => {}
        }
    }
    if auth.bind_certificate && (file.server.tls.is_none() || !has_ca) {
        say(
            "auth.bind_certificate",
            "auth.bind_certificate needs [server.tls] and the tenant's client_ca".into(),
        );
    }
    for (n, i) in auth.issuers.iter().enumerate() {
        if !issuers.contains(i) {
            say(
                &format!("auth.issuers.{n}"),
                format!(
                    "auth.issuers: {i:?} is not an [[auth.jwt]] or [[auth.introspection]] name"
                ),
            );
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
    // The key is read when the route is built; a placeholder lets the rules compile here.
    let key = tenant
        .and_then(|t| t.hash_key_file.as_ref())
        .map(|_| [1u8; 16]);
    // Likewise the tenant's data key, which `[secrets]` holds.
    let field_key = r.file.secrets.as_ref().map(|_| {
        std::sync::Arc::new(crate::redaction::encrypt::FieldKey::new(
            &route.tenant,
            1,
            &[1u8; 32],
        ))
    });
    match Redactor::with_keys(&rules, key.as_ref().map(|k| k.as_slice()), field_key) {
        Err(e) => {
            let problem = redaction_problem(r.file, sr, &e);
            r.issues.extend(r.file.issues(vec![problem]));
        }
        Ok(redactor) => {
            for h in tenant
                .map(|t| t.mandatory_headers.as_slice())
                .unwrap_or_default()
            {
                if !redactor.header_names().any(|n| n.eq_ignore_ascii_case(h)) {
                    r.add(
                        sr,
                        "redact",
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
                            "redact",
                            ctx.into(),
                            format!("mandatory PII path `{m}` cannot be checked: use names, indices, `*` and `..name`"),
                        );
                        continue;
                    }
                };
                if !covered {
                    r.add(
                        sr,
                        "redact",
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

/// A route's redaction rule that cannot be used, where it is written: the tenant's
/// rules come first in the list, then the route's.
pub(crate) fn redaction_problem(
    file: &File,
    sr: &Spanned<Route>,
    e: &crate::redaction::ConfigError,
) -> Problem {
    let route = sr.get_ref();
    let tenant = file
        .tenants
        .iter()
        .find(|t| t.get_ref().name == route.tenant);
    let inherited = tenant.map_or(0, |t| t.get_ref().redact.len());
    let message = format!("redaction {e}");
    match (e.index(), tenant) {
        (Some(n), Some(t)) if n < inherited => Problem::at(
            t,
            &format!("redact.{n}"),
            format!("tenant {:?}", route.tenant),
            message,
        ),
        (Some(n), _) => Problem::at(
            sr,
            &format!("redact.{}", n - inherited),
            format!("route {:?}", route.name),
            message,
        ),
        (None, _) => Problem::at(sr, "redact", format!("route {:?}", route.name), message),
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
