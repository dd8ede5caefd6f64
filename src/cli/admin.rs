//! The admin API client the `module`, `tenant` and `route` commands share, and `palisade
//! tenant list` and `palisade route list`.
//!
//! The admin API credential comes from `PALISADE_API_KEY` or `--api-key-file`, never
//! from argv (argv is visible to every user of the machine). The listener is `--admin`,
//! else the `[server] admin` of `--config` (by default `palisade.toml`, when it exists),
//! else `http://127.0.0.1:9090`.
//!
//! Exit codes: 0 done; 1 the admin API refused (status, cause and correlation id are
//! printed); 2 bad arguments, unreadable files, or the admin API unreachable.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::OutputFormat;

/// Where the admin API is, how to authenticate, how to print.
#[derive(Debug, Args)]
pub(crate) struct Endpoint {
    /// The admin listener, `http://host:port` (by default the config's `[server] admin`).
    #[arg(long)]
    admin: Option<String>,
    /// The gateway config whose admin listener is used when `--admin` is not given.
    #[arg(long, short, default_value = "palisade.toml")]
    config: PathBuf,
    /// A file holding the API key (else `PALISADE_API_KEY`).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// `text` for people, `json` for tools (the admin API's answer as it is).
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: OutputFormat,
}

impl Endpoint {
    fn base(&self) -> Result<String, String> {
        if let Some(url) = &self.admin {
            return Ok(url.trim_end_matches('/').to_string());
        }
        if !self.config.exists() {
            return Ok("http://127.0.0.1:9090".into());
        }
        let file = palisade_gateway::config::load(&self.config).map_err(|e| e.to_string())?;
        let admin = file.server.admin.ok_or_else(|| {
            format!(
                "{}: no [server] admin listener; give --admin",
                self.config.display()
            )
        })?;
        Ok(format!("http://{admin}"))
    }

    fn key(&self) -> Result<String, String> {
        let key = match &self.api_key_file {
            Some(f) => std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?,
            None => std::env::var("PALISADE_API_KEY")
                .map_err(|_| "set PALISADE_API_KEY or --api-key-file".to_string())?,
        };
        Ok(key.trim().to_string())
    }
}

/// One admin API call to `/v1/{path}`, printed: a refusal on one line (exit 1); an
/// answer as JSON (`--format json`), or through `text` for people.
pub(crate) async fn call(
    to: &Endpoint,
    method: &str,
    path: &str,
    body: Bytes,
    headers: &[(&str, String)],
    text: fn(&Value) -> String,
) -> Result<ExitCode, String> {
    let url = format!("{}/v1/{path}", to.base()?);
    let mut req = http::Request::builder()
        .method(method)
        .uri(&url)
        .header("x-api-key", to.key()?);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| format!("{url}: {e}"))?;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let res = client
        .request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        eprintln!("palisade: {method} {url}: {}", refusal(status, &body));
        return Ok(ExitCode::from(1));
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if to.format == OutputFormat::Json => println!("{v}"),
        Ok(v) => print!("{}", text(&v)),
        Err(_) => println!("{}", String::from_utf8_lossy(&body)),
    }
    Ok(ExitCode::SUCCESS)
}

/// An answer as indented JSON: for answers that are one object.
pub(crate) fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// An admin API refusal in one line: status, error, cause, detail, correlation id.
pub(crate) fn refusal(status: http::StatusCode, body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return format!("{status}: {}", String::from_utf8_lossy(body).trim());
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let mut line = status.to_string();
    if let Some(error) = text("error") {
        line += &format!(" {error}");
    }
    if let Some(cause) = text("cause").filter(|c| Some(c) != text("error").as_ref()) {
        line += &format!(": {cause}");
    }
    if let Some(detail) = text("detail") {
        line += &format!(" ({detail})");
    }
    if let Some(cid) = text("correlation_id") {
        line += &format!("; correlation id {cid} (`palisade audit show {cid}`)");
    }
    line
}

/// The rows of `v[key]`, each through `row`, one line each.
pub(crate) fn lines(v: &Value, key: &str, row: impl Fn(&Value) -> String) -> String {
    v[key]
        .as_array()
        .map(|items| items.iter().map(|i| row(i) + "\n").collect())
        .unwrap_or_default()
}

/// A JSON value as plain text (`-` for null).
pub(crate) fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantCommand {
    /// The tenants the credential may read, with their number of routes.
    List {
        #[command(flatten)]
        to: Endpoint,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RouteCommand {
    /// A tenant's routes as they run: path, upstream, policies with their active
    /// module versions.
    List {
        #[command(flatten)]
        to: Endpoint,
        /// The tenant.
        #[arg(long, value_parser = super::module::module_name)]
        tenant: String,
    },
}

pub(crate) fn tenant(command: TenantCommand) -> ExitCode {
    let TenantCommand::List { to } = command;
    block_on(call(&to, "GET", "tenants", Bytes::new(), &[], |v| {
        lines(v, "tenants", |t| {
            format!("{}  routes={}", plain(&t["name"]), t["routes"])
        })
    }))
}

pub(crate) fn route(command: RouteCommand) -> ExitCode {
    let RouteCommand::List { to, tenant } = command;
    let path = format!("tenants/{tenant}/routes");
    block_on(call(&to, "GET", &path, Bytes::new(), &[], |v| {
        lines(v, "routes", |r| {
            let policies = |phase: &str| -> String {
                r[phase]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| match p["registry"].as_str() {
                                Some(name) => format!("{name}@{}", plain(&p["version"])),
                                None => plain(&p["file"]),
                            })
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default()
            };
            format!(
                "{}  {}{} -> {}  request=[{}] response=[{}] redact_rules={}",
                plain(&r["name"]),
                r["host"]
                    .as_str()
                    .map(|h| format!("{h} "))
                    .unwrap_or_default(),
                r["path"].as_str().unwrap_or("/"),
                plain(&r["upstream"]),
                policies("request"),
                policies("response"),
                r["redact_rules"],
            )
        })
    }))
}

/// Runs an admin call to completion; an error is exit 2.
pub(crate) fn block_on(call: impl Future<Output = Result<ExitCode, String>>) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match rt.block_on(call) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}
