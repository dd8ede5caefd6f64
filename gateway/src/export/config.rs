//! `[[audit.export]]`: one entry per sink, lowered into [`Sink`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::de::{millis, rebase};

/// One `[[audit.export]]` entry, typed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Raw")]
pub struct Sink {
    /// The sink's name: its cursor's key, its metrics label (`[A-Za-z0-9_.-]`, 1-64).
    pub name: String,
    /// Where the records go, and how.
    pub kind: Kind,
    /// The most blocks sent in one batch (`batch`). By default 500.
    pub batch: usize,
    /// Time allowed for one batch to be acknowledged (`timeout_ms`). By default 10 s.
    pub timeout: Duration,
    /// The first retry's delay after a failure (`backoff_ms`); doubled per failure, with
    /// jitter. By default 500 ms.
    pub backoff: Duration,
    /// The longest delay between retries (`backoff_max_ms`). By default 30 s.
    pub backoff_max: Duration,
    /// How often the ledger is read for new blocks while the sink is caught up
    /// (`poll_ms`). By default 200 ms.
    pub poll: Duration,
}

/// What a sink is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `kind = "jsonl"`: a JSON-lines file, rotated by size.
    Jsonl {
        /// The file (`path`); rotated files are `path.1` (newest) to `path.keep`.
        path: PathBuf,
        /// The size past which the file is rotated (`max_bytes`). By default 100 MiB.
        max_bytes: u64,
        /// Rotated files kept (`keep`). By default 10.
        keep: u32,
    },
    /// `kind = "syslog"`: RFC 5424 messages over TCP, octet-counted (RFC 6587 3.4.1).
    Syslog {
        /// `host:port` (`address`).
        address: String,
        /// TLS (`tls = true`, RFC 5425), with the server's certificate verified. By default
        /// none.
        tls: Option<Tls>,
        /// The message's APP-NAME (`app_name`). By default `palisade`.
        app_name: String,
    },
    /// `kind = "elastic"`: Elasticsearch (or OpenSearch) `_bulk`.
    Elastic {
        /// The cluster's base URL (`url`); `/_bulk` is appended.
        url: http::Uri,
        /// The index (`index`).
        index: String,
        /// Credentials, when the cluster wants them.
        auth: Option<ElasticAuth>,
        /// Extra PEM CA certificates for `https://` (`ca`).
        ca: Option<PathBuf>,
    },
    /// `kind = "splunk"`: a Splunk HTTP Event Collector (`/services/collector/event`).
    Splunk {
        /// The collector's URL, path included (`url`).
        url: http::Uri,
        /// The HEC token (`token_file` or `token_env`).
        token: Credential,
        /// The Splunk index (`index`). By default the token's.
        index: Option<String>,
        /// Extra PEM CA certificates for `https://` (`ca`).
        ca: Option<PathBuf>,
    },
}

/// TLS to a syslog server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Extra PEM CA certificates trusted besides the system's (`ca`).
    pub ca: Option<PathBuf>,
    /// The name the certificate must carry (`server_name`). By default the address's host.
    pub server_name: String,
}

/// Elasticsearch credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElasticAuth {
    /// `Authorization: ApiKey <key>` (`api_key_file` or `api_key_env`: the encoded key).
    ApiKey(Credential),
    /// HTTP Basic (`username` with `password_file` or `password_env`).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: Credential,
    },
}

/// Where a secret is read from at start: never the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A file holding it (`*_file`; one trailing newline ignored).
    File(PathBuf),
    /// An environment variable holding it (`*_env`).
    Env(String),
}

impl Credential {
    /// The secret.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or the variable is unset, empty or not UTF-8. The
    /// message names the source, never the value.
    pub fn read(&self) -> Result<Zeroizing<String>, String> {
        let value = match self {
            Credential::File(path) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            ),
            Credential::Env(name) => Zeroizing::new(
                std::env::var(name)
                    .map_err(|_| format!("environment variable {name} is not set"))?,
            ),
        };
        let trimmed = Zeroizing::new(value.trim_end_matches(['\r', '\n']).to_string());
        if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
            return Err(format!(
                "{} is empty or holds a control character",
                self.source()
            ));
        }
        Ok(trimmed)
    }

    /// Where it comes from, for messages.
    pub fn source(&self) -> String {
        match self {
            Credential::File(path) => path.display().to_string(),
            Credential::Env(name) => format!("${name}"),
        }
    }

    fn rebase(&mut self, base: &Path) {
        if let Credential::File(path) = self {
            *path = rebase(base, path);
        }
    }
}

impl Sink {
    /// Makes the file paths relative to `base` (the config file's directory).
    pub(crate) fn rebase(&mut self, base: &Path) {
        match &mut self.kind {
            Kind::Jsonl { path, .. } => *path = rebase(base, path),
            Kind::Syslog { tls, .. } => {
                if let Some(Tls { ca: Some(ca), .. }) = tls {
                    *ca = rebase(base, ca);
                }
            }
            Kind::Elastic { auth, ca, .. } => {
                match auth {
                    Some(ElasticAuth::ApiKey(c)) => c.rebase(base),
                    Some(ElasticAuth::Basic { password, .. }) => password.rebase(base),
                    None => {}
                }
                if let Some(ca) = ca {
                    *ca = rebase(base, ca);
                }
            }
            Kind::Splunk { token, ca, .. } => {
                token.rebase(base);
                if let Some(ca) = ca {
                    *ca = rebase(base, ca);
                }
            }
        }
    }

    /// Every credential the sink reads at start, with its key, to check it is there.
    pub(crate) fn credentials(&self) -> Vec<(&'static str, &Credential)> {
        match &self.kind {
            Kind::Splunk { token, .. } => vec![("token", token)],
            Kind::Elastic {
                auth: Some(ElasticAuth::ApiKey(c)),
                ..
            } => vec![("api_key", c)],
            Kind::Elastic {
                auth: Some(ElasticAuth::Basic { password, .. }),
                ..
            } => vec![("password", password)],
            _ => Vec::new(),
        }
    }
}

/// `[[audit.export]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    kind: Written,
    #[serde(default = "d::batch")]
    batch: usize,
    #[serde(default = "d::timeout", deserialize_with = "millis")]
    timeout_ms: Duration,
    #[serde(default = "d::backoff", deserialize_with = "millis")]
    backoff_ms: Duration,
    #[serde(default = "d::backoff_max", deserialize_with = "millis")]
    backoff_max_ms: Duration,
    #[serde(default = "d::poll", deserialize_with = "millis")]
    poll_ms: Duration,
    path: Option<PathBuf>,
    max_bytes: Option<u64>,
    keep: Option<u32>,
    address: Option<String>,
    tls: Option<bool>,
    server_name: Option<String>,
    app_name: Option<String>,
    url: Option<String>,
    index: Option<String>,
    ca: Option<PathBuf>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    allow_cleartext: Option<bool>,
}

/// `kind` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Written {
    Jsonl,
    Syslog,
    Elastic,
    Splunk,
}

impl Written {
    fn name(self) -> &'static str {
        match self {
            Written::Jsonl => "jsonl",
            Written::Syslog => "syslog",
            Written::Elastic => "elastic",
            Written::Splunk => "splunk",
        }
    }

    /// The keys of this kind besides the shared ones.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Written::Jsonl => &["path", "max_bytes", "keep"],
            Written::Syslog => &["address", "tls", "ca", "server_name", "app_name"],
            Written::Elastic => &[
                "url",
                "index",
                "ca",
                "api_key_file",
                "api_key_env",
                "username",
                "password_file",
                "password_env",
                "allow_cleartext",
            ],
            Written::Splunk => &[
                "url",
                "index",
                "ca",
                "token_file",
                "token_env",
                "allow_cleartext",
            ],
        }
    }
}

impl Raw {
    /// The kind-specific keys that are set.
    fn set_keys(&self) -> Vec<&'static str> {
        [
            ("path", self.path.is_some()),
            ("max_bytes", self.max_bytes.is_some()),
            ("keep", self.keep.is_some()),
            ("address", self.address.is_some()),
            ("tls", self.tls.is_some()),
            ("server_name", self.server_name.is_some()),
            ("app_name", self.app_name.is_some()),
            ("url", self.url.is_some()),
            ("index", self.index.is_some()),
            ("ca", self.ca.is_some()),
            ("token_file", self.token_file.is_some()),
            ("token_env", self.token_env.is_some()),
            ("api_key_file", self.api_key_file.is_some()),
            ("api_key_env", self.api_key_env.is_some()),
            ("username", self.username.is_some()),
            ("password_file", self.password_file.is_some()),
            ("password_env", self.password_env.is_some()),
            ("allow_cleartext", self.allow_cleartext.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }
}

/// A credential from `*_file` or `*_env`, exactly one.
fn credential(
    key: &str,
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<Option<Credential>, String> {
    match (file, env) {
        (Some(_), Some(_)) => Err(format!("set `{key}_file` or `{key}_env`, not both")),
        (Some(f), None) => Ok(Some(Credential::File(f))),
        (None, Some(e))
            if e.is_empty() || !e.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric()) =>
        {
            Err(format!(
                "`{key}_env` must name an environment variable ([A-Za-z0-9_]), not hold the secret"
            ))
        }
        (None, Some(e)) => Ok(Some(Credential::Env(e))),
        (None, None) => Ok(None),
    }
}

/// An `http://` or `https://` URL without credentials in it.
fn http_url(url: &str) -> Result<http::Uri, String> {
    let shown = crate::config::de::shown_url(url);
    let uri: http::Uri = url.parse().map_err(|e| format!("url `{shown}`: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("url `{shown}` must be http:// or https://"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        // Not echoed: what precedes `@` is a credential.
        return Err(
            "url must not carry credentials (`user:pass@`): use the `*_file` or `*_env` keys"
                .into(),
        );
    }
    if uri.query().is_some() {
        return Err(format!("url `{shown}` must not have a query"));
    }
    Ok(uri)
}

/// Refuses to send a credential over `http://` to another machine: it would cross the
/// network in cleartext. Loopback is allowed (a local forwarder, the tests);
/// `allow_cleartext = true` allows the rest.
fn refuse_cleartext(url: &http::Uri) -> Result<(), String> {
    let host = url
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme_str() == Some("http") && !loopback {
        return Err(format!(
            "url `{}` is http:// to another host: its credential would cross the network in cleartext (use https://, or set `allow_cleartext = true`)",
            crate::config::de::shown_url(&url.to_string())
        ));
    }
    Ok(())
}

/// A token of printable ASCII without spaces (syslog header fields, index names).
fn printable(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.bytes().all(|b| (33..=126).contains(&b))
}

impl TryFrom<Raw> for Sink {
    type Error = String;

    fn try_from(raw: Raw) -> Result<Self, String> {
        let name = raw.name.clone();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(format!(
                "export sink name {name:?} must be 1-64 characters of [A-Za-z0-9_.-]"
            ));
        }
        let fail = |m: String| format!("export sink {name:?}: {m}");
        if let Some(key) = raw
            .set_keys()
            .into_iter()
            .find(|k| !raw.kind.keys().contains(k))
        {
            return Err(fail(format!(
                "`{key}` is not a key of a `{}` sink",
                raw.kind.name()
            )));
        }
        if raw.batch == 0 || raw.batch > 10_000 {
            return Err(fail("batch must be 1-10000".into()));
        }
        for (key, zero) in [
            ("timeout_ms", raw.timeout_ms.is_zero()),
            ("backoff_ms", raw.backoff_ms.is_zero()),
            ("poll_ms", raw.poll_ms.is_zero()),
        ] {
            if zero {
                return Err(fail(format!("{key} must be at least 1")));
            }
        }
        if raw.backoff_max_ms < raw.backoff_ms {
            return Err(fail("backoff_max_ms must be at least backoff_ms".into()));
        }
        let need = |v: Option<String>, key: &str| {
            v.ok_or_else(|| fail(format!("a `{}` sink needs `{key}`", raw.kind.name())))
        };
        let kind = match raw.kind {
            Written::Jsonl => {
                let path = raw
                    .path
                    .ok_or_else(|| fail("a `jsonl` sink needs `path`".into()))?;
                let max_bytes = raw.max_bytes.unwrap_or(100 << 20);
                if max_bytes < 4096 {
                    return Err(fail("max_bytes must be at least 4096".into()));
                }
                let keep = raw.keep.unwrap_or(10);
                if keep == 0 || keep > 1000 {
                    return Err(fail("keep must be 1-1000".into()));
                }
                Kind::Jsonl {
                    path,
                    max_bytes,
                    keep,
                }
            }
            Written::Syslog => {
                let address = need(raw.address, "address")?;
                let host = match address.rsplit_once(':') {
                    Some((host, port))
                        if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) =>
                    {
                        host.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string()
                    }
                    _ => return Err(fail(format!("address `{address}` must be host:port"))),
                };
                let tls = match raw.tls.unwrap_or(false) {
                    true => Some(Tls {
                        ca: raw.ca,
                        server_name: raw.server_name.unwrap_or(host),
                    }),
                    false if raw.ca.is_some() || raw.server_name.is_some() => {
                        return Err(fail("`ca` and `server_name` need `tls = true`".into()));
                    }
                    false => None,
                };
                let app_name = raw.app_name.unwrap_or_else(|| "palisade".into());
                if !printable(&app_name, 48) {
                    return Err(fail(
                        "app_name must be 1-48 printable ASCII characters, no space".into(),
                    ));
                }
                Kind::Syslog {
                    address,
                    tls,
                    app_name,
                }
            }
            Written::Elastic => {
                let url = http_url(&need(raw.url, "url")?).map_err(fail)?;
                let index = need(raw.index, "index")?;
                let valid = !index.starts_with(['_', '-', '+'])
                    && printable(&index, 255)
                    && !index
                        .bytes()
                        .any(|b| b.is_ascii_uppercase() || b"\\/*?\"<>|,#:".contains(&b));
                if !valid {
                    return Err(fail(format!("index `{index}` is not a valid index name")));
                }
                let api_key =
                    credential("api_key", raw.api_key_file, raw.api_key_env).map_err(fail)?;
                let password =
                    credential("password", raw.password_file, raw.password_env).map_err(fail)?;
                let auth = match (api_key, raw.username, password) {
                    (None, None, None) => None,
                    (Some(key), None, None) => Some(ElasticAuth::ApiKey(key)),
                    (None, Some(username), Some(password)) if !username.contains(':') => {
                        Some(ElasticAuth::Basic { username, password })
                    }
                    _ => {
                        return Err(fail(
                            "set `api_key_file`/`api_key_env`, or `username` (no `:`) with `password_file`/`password_env`, or none".into(),
                        ));
                    }
                };
                if auth.is_some() && !raw.allow_cleartext.unwrap_or(false) {
                    refuse_cleartext(&url).map_err(fail)?;
                }
                Kind::Elastic {
                    url,
                    index,
                    auth,
                    ca: raw.ca,
                }
            }
            Written::Splunk => {
                let url = http_url(&need(raw.url, "url")?).map_err(fail)?;
                let token = credential("token", raw.token_file, raw.token_env)
                    .map_err(fail)?
                    .ok_or_else(|| {
                        fail("a `splunk` sink needs `token_file` or `token_env`".into())
                    })?;
                if raw.index.as_deref().is_some_and(|i| !printable(i, 255)) {
                    return Err(fail("index must be printable ASCII, no space".into()));
                }
                if !raw.allow_cleartext.unwrap_or(false) {
                    refuse_cleartext(&url).map_err(fail)?;
                }
                Kind::Splunk {
                    url,
                    token,
                    index: raw.index,
                    ca: raw.ca,
                }
            }
        };
        Ok(Sink {
            name,
            kind,
            batch: raw.batch,
            timeout: raw.timeout_ms,
            backoff: raw.backoff_ms,
            backoff_max: raw.backoff_max_ms,
            poll: raw.poll_ms,
        })
    }
}

mod d {
    use std::time::Duration;

    pub(super) fn batch() -> usize {
        500
    }
    pub(super) fn timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn backoff() -> Duration {
        Duration::from_millis(500)
    }
    pub(super) fn backoff_max() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn poll() -> Duration {
        Duration::from_millis(200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Sink, String> {
        toml::from_str::<Sink>(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn export_sinks_are_lowered_to_their_kinds_with_defaults() {
        let s = parse("name = \"f\"\nkind = \"jsonl\"\npath = \"out/a.jsonl\"").unwrap();
        assert_eq!(
            s.kind,
            Kind::Jsonl {
                path: "out/a.jsonl".into(),
                max_bytes: 100 << 20,
                keep: 10
            }
        );
        assert_eq!(
            (s.batch, s.timeout, s.backoff, s.backoff_max, s.poll),
            (
                500,
                Duration::from_secs(10),
                Duration::from_millis(500),
                Duration::from_secs(30),
                Duration::from_millis(200)
            )
        );
        let s =
            parse("name = \"s\"\nkind = \"syslog\"\naddress = \"siem.example:6514\"\ntls = true")
                .unwrap();
        assert_eq!(
            s.kind,
            Kind::Syslog {
                address: "siem.example:6514".into(),
                tls: Some(Tls {
                    ca: None,
                    server_name: "siem.example".into()
                }),
                app_name: "palisade".into()
            }
        );
        let mut s = parse(
            "name = \"hec\"\nkind = \"splunk\"\nurl = \"https://s:8088/services/collector/event\"\ntoken_file = \"hec.token\"",
        )
        .unwrap();
        s.rebase(Path::new("/etc/p"));
        assert!(
            matches!(&s.kind, Kind::Splunk { token: Credential::File(f), .. } if f == Path::new("/etc/p/hec.token"))
        );
        let s = parse(
            "name = \"es\"\nkind = \"elastic\"\nurl = \"http://es:9200\"\nindex = \"audit\"\nusername = \"u\"\npassword_env = \"ES_PASSWORD\"\nallow_cleartext = true",
        )
        .unwrap();
        assert!(matches!(
            &s.kind,
            Kind::Elastic { auth: Some(ElasticAuth::Basic { password: Credential::Env(e), .. }), .. } if e == "ES_PASSWORD"
        ));
    }

    #[test]
    fn bad_sinks_are_refused_with_what_is_wrong() {
        for (text, says) in [
            (
                "name = \"a b\"\nkind = \"jsonl\"\npath = \"x\"",
                "must be 1-64 characters",
            ),
            ("name = \"a\"\nkind = \"kafka\"", "unknown variant `kafka`"),
            ("name = \"a\"\nkind = \"jsonl\"", "needs `path`"),
            (
                "name = \"a\"\nkind = \"jsonl\"\npath = \"x\"\nurl = \"http://h\"",
                "`url` is not a key of a `jsonl` sink",
            ),
            (
                "name = \"a\"\nkind = \"jsonl\"\npath = \"x\"\nkeep = 0",
                "keep must be 1-1000",
            ),
            (
                "name = \"a\"\nkind = \"jsonl\"\npath = \"x\"\nbatch = 0",
                "batch must be 1-10000",
            ),
            (
                "name = \"a\"\nkind = \"syslog\"\naddress = \"nohost\"",
                "must be host:port",
            ),
            (
                "name = \"a\"\nkind = \"syslog\"\naddress = \"h:1\"\nca = \"c\"",
                "need `tls = true`",
            ),
            (
                "name = \"a\"\nkind = \"splunk\"\nurl = \"https://h/e\"",
                "needs `token_file` or `token_env`",
            ),
            (
                "name = \"a\"\nkind = \"splunk\"\nurl = \"https://h/e\"\ntoken_env = \"abc-def-secret\"",
                "must name an environment variable",
            ),
            (
                "name = \"a\"\nkind = \"splunk\"\nurl = \"https://h/e\"\ntoken_file = \"t\"\ntoken_env = \"T\"",
                "not both",
            ),
            (
                "name = \"a\"\nkind = \"elastic\"\nurl = \"https://u:hunter2@h\"\nindex = \"i\"",
                "must not carry credentials",
            ),
            (
                "name = \"a\"\nkind = \"elastic\"\nurl = \"ftp://h\"\nindex = \"i\"",
                "must be http:// or https://",
            ),
            (
                "name = \"a\"\nkind = \"elastic\"\nurl = \"http://h\"\nindex = \"Bad*\"",
                "not a valid index name",
            ),
            (
                "name = \"a\"\nkind = \"elastic\"\nurl = \"http://h\"\nindex = \"i\"\nusername = \"u\"",
                "or none",
            ),
            (
                "name = \"a\"\nkind = \"elastic\"\nurl = \"http://es:9200/\"\nindex = \"i\"\napi_key_env = \"K\"",
                "credential would cross the network in cleartext",
            ),
            (
                "name = \"a\"\nkind = \"splunk\"\nurl = \"http://10.0.0.5:8088/e\"\ntoken_env = \"T\"",
                "credential would cross the network in cleartext",
            ),
            (
                "name = \"a\"\nkind = \"jsonl\"\npath = \"x\"\nallow_cleartext = true",
                "`allow_cleartext` is not a key of a `jsonl` sink",
            ),
            (
                "name = \"a\"\nkind = \"jsonl\"\npath = \"x\"\nbackoff_ms = 10\nbackoff_max_ms = 5",
                "at least backoff_ms",
            ),
            (
                "name = \"a\"\nkind = \"jsonl\"\npath = \"x\"\ncolour = 1",
                "unknown field `colour`",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn credentials_go_over_http_only_to_loopback_or_when_allowed() {
        for host in [
            "127.0.0.1:8088",
            "[::1]:8088",
            "localhost:8088",
            "LOCALHOST",
        ] {
            let text = format!(
                "name = \"a\"\nkind = \"splunk\"\nurl = \"http://{host}/e\"\ntoken_env = \"T\""
            );
            assert!(parse(&text).is_ok(), "{host}");
        }
        for url in ["https://siem.example/e", "http://siem.example/e"] {
            let allowed = if url.starts_with("http:") {
                "\nallow_cleartext = true"
            } else {
                ""
            };
            let text = format!(
                "name = \"a\"\nkind = \"splunk\"\nurl = \"{url}\"\ntoken_env = \"T\"{allowed}"
            );
            assert!(parse(&text).is_ok(), "{url}");
        }
        // No credential, nothing to leak: an Elastic sink without auth may use http://.
        assert!(
            parse("name = \"a\"\nkind = \"elastic\"\nurl = \"http://es:9200\"\nindex = \"i\"")
                .is_ok()
        );
    }

    #[test]
    fn credentials_are_read_from_their_source_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "s3cr3t-token\n").unwrap();
        assert_eq!(
            &*Credential::File(f.clone()).read().unwrap(),
            "s3cr3t-token"
        );
        let e = Credential::Env("PALISADE_TEST_UNSET_VARIABLE".into())
            .read()
            .unwrap_err();
        assert!(e.contains("PALISADE_TEST_UNSET_VARIABLE is not set"), "{e}");
        std::fs::write(&f, "a\nb").unwrap();
        let e = Credential::File(f).read().unwrap_err();
        assert!(e.contains("control character"), "{e}");
    }
}
