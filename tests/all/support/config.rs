//! One builder for every gateway config the tests write: [`Config::new`] is the base
//! (loopback listeners, a SQLite ledger, the shared runtime cache, tenants `acme` and
//! `globex`, upstream `up`) and each test adds only what differs. The TOML text comes
//! from `to_string()`; `@NAME` guest placeholders stay for [`super::expand`].
//!
//! ```ignore
//! Config::new(up)
//!     .server(r#"trusted_proxies = ["127.0.0.0/8"]"#)
//!     .section("auth", r#"api_keys = "apikeys.json""#)
//!     .tenant("acme", "rate_limit = { per_s = 1, burst = 3 }")
//!     .route(Route::new("orders").path("/orders").response("@REDACT_PII"))
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// A whole gateway config file, built in code.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// `[name]` tables and their lines, in file order.
    sections: Vec<(String, String)>,
    /// `[[tenant]]` entries: name and extra lines.
    tenants: Vec<(String, String)>,
    /// `[[upstream]]` entries: name, URL and extra lines.
    upstreams: Vec<(String, String, String)>,
    routes: Vec<Route>,
    /// Raw TOML after everything else.
    tail: String,
}

impl Config {
    /// The base every gateway test starts from, with upstream `up` at `upstream`.
    pub(crate) fn new(upstream: SocketAddr) -> Self {
        let cache = std::env::temp_dir().join("palisade-test-cache");
        Config {
            sections: vec![
                (
                    "server".into(),
                    "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n".into(),
                ),
                ("audit".into(), "sqlite = \"audit.db\"\n".into()),
                (
                    "runtime".into(),
                    format!("cache_dir = \"{}\"\n", cache.display()),
                ),
            ],
            tenants: vec![
                ("acme".into(), String::new()),
                ("globex".into(), String::new()),
            ],
            upstreams: vec![("up".into(), format!("http://{upstream}"), String::new())],
            routes: Vec::new(),
            tail: String::new(),
        }
    }

    /// Adds `lines` to `[server]` (sub-tables such as `[server.tls]` may follow the keys).
    pub(crate) fn server(self, lines: &str) -> Self {
        self.append("server", lines)
    }

    /// Adds `lines` to `[name]`, creating the section if the file has none.
    pub(crate) fn append(mut self, name: &str, lines: &str) -> Self {
        match self.sections.iter_mut().find(|(n, _)| n == name) {
            Some((_, body)) => push_lines(body, lines),
            None => self.sections.push((name.into(), with_newline(lines))),
        }
        self
    }

    /// Sets `[name]` to `body`, replacing what the section held (or adding it).
    pub(crate) fn section(mut self, name: &str, body: &str) -> Self {
        match self.sections.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = with_newline(body),
            None => self.sections.push((name.into(), with_newline(body))),
        }
        self
    }

    /// Adds `lines` to tenant `name`, declaring the tenant if the file has none.
    pub(crate) fn tenant(mut self, name: &str, lines: &str) -> Self {
        match self.tenants.iter_mut().find(|(n, _)| n == name) {
            Some((_, body)) => push_lines(body, lines),
            None => self.tenants.push((name.into(), with_newline(lines))),
        }
        self
    }

    /// Declares upstream `name` at `url` with `lines` (sub-tables such as
    /// `[upstream.breaker]` may follow the keys), replacing one of that name.
    pub(crate) fn upstream(mut self, name: &str, url: &str, lines: &str) -> Self {
        let entry = (name.into(), url.into(), with_newline(lines));
        match self.upstreams.iter_mut().find(|(n, _, _)| n == name) {
            Some(old) => *old = entry,
            None => self.upstreams.push(entry),
        }
        self
    }

    /// Adds a route after the ones already added.
    pub(crate) fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Writes the file to `path` with guest placeholders expanded.
    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, super::expand(&self.to_string()))
    }

    /// Adds raw TOML at the end of the file (routes already written as text).
    pub(crate) fn text(mut self, raw: &str) -> Self {
        push_lines(&mut self.tail, raw);
        self
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, body) in &self.sections {
            writeln!(f, "[{name}]\n{body}")?;
        }
        for (name, lines) in &self.tenants {
            writeln!(f, "[[tenant]]\nname = \"{name}\"\n{lines}")?;
        }
        for (name, url, lines) in &self.upstreams {
            writeln!(
                f,
                "[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\n{lines}"
            )?;
        }
        for route in &self.routes {
            writeln!(f, "{route}")?;
        }
        write!(f, "{}", self.tail)
    }
}

/// One `[[route]]`: tenant `acme` and upstream `up` unless told otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    name: String,
    tenant: String,
    upstream: String,
    request: Vec<String>,
    response: Vec<String>,
    lines: String,
}

impl Route {
    /// Route `name` of tenant `acme` to upstream `up`, matching every path.
    pub(crate) fn new(name: &str) -> Self {
        Route {
            name: name.into(),
            tenant: "acme".into(),
            upstream: "up".into(),
            request: Vec::new(),
            response: Vec::new(),
            lines: String::new(),
        }
    }

    pub(crate) fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.into();
        self
    }

    pub(crate) fn upstream(mut self, upstream: &str) -> Self {
        self.upstream = upstream.into();
        self
    }

    /// `path = "..."`: the prefix the route matches.
    pub(crate) fn path(self, path: &str) -> Self {
        self.keys(&format!("path = \"{path}\""))
    }

    /// `host = "..."`.
    pub(crate) fn host(self, host: &str) -> Self {
        self.keys(&format!("host = \"{host}\""))
    }

    /// `methods = [...]`.
    pub(crate) fn methods(self, methods: &[&str]) -> Self {
        self.keys(&format!("methods = {methods:?}"))
    }

    /// `auth = { KEYS }`, e.g. `auth(r#"schemes = ["jwt"]"#)`.
    pub(crate) fn auth(self, keys: &str) -> Self {
        self.keys(&format!("auth = {{ {keys} }}"))
    }

    /// A request policy: `{ module = "MODULE" }`.
    pub(crate) fn request(self, module: &str) -> Self {
        self.request_with(module, "")
    }

    /// A request policy with more keys: `{ module = "MODULE", KEYS }`.
    pub(crate) fn request_with(mut self, module: &str, keys: &str) -> Self {
        self.request.push(policy(module, keys));
        self
    }

    /// A response policy: `{ module = "MODULE" }`.
    pub(crate) fn response(self, module: &str) -> Self {
        self.response_with(module, "")
    }

    /// A response policy with more keys: `{ module = "MODULE", KEYS }`.
    pub(crate) fn response_with(mut self, module: &str, keys: &str) -> Self {
        self.response.push(policy(module, keys));
        self
    }

    /// Any other keys of the route, as TOML lines.
    pub(crate) fn keys(mut self, lines: &str) -> Self {
        push_lines(&mut self.lines, lines);
        self
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Route {
            name,
            tenant,
            upstream,
            ..
        } = self;
        writeln!(
            f,
            "[[route]]\nname = \"{name}\"\ntenant = \"{tenant}\"\nupstream = \"{upstream}\""
        )?;
        for (key, list) in [("request", &self.request), ("response", &self.response)] {
            if !list.is_empty() {
                writeln!(f, "{key} = [{}]", list.join(", "))?;
            }
        }
        // Last: the lines may end in a sub-table.
        write!(f, "{}", self.lines)
    }
}

fn policy(module: &str, keys: &str) -> String {
    if keys.is_empty() {
        format!("{{ module = \"{module}\" }}")
    } else {
        format!("{{ module = \"{module}\", {keys} }}")
    }
}

fn with_newline(lines: &str) -> String {
    let mut out = String::new();
    push_lines(&mut out, lines);
    out
}

fn push_lines(body: &mut String, lines: &str) {
    if lines.trim().is_empty() {
        return;
    }
    body.push_str(lines);
    if !lines.ends_with('\n') {
        body.push('\n');
    }
}
