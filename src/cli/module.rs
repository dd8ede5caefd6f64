//! `palisade keygen`, `palisade module sign`, and `palisade module
//! push|list|inspect|activate|rollback|delete` (wrappers over the admin API).
//!
//! The admin API credential comes from `PALISADE_API_KEY` or `--api-key-file`, never
//! from argv (argv is visible to every user of the machine).
//!
//! Exit codes: 0 done; 1 the admin API refused (its status and cause are printed);
//! 2 bad arguments, unreadable files, or the admin API unreachable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key (mode 0600); the public key goes to `FILE.pub`.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Write a 256-bit master key for `[secrets]` instead of an Ed25519 signing key.
    #[arg(long)]
    master: bool,
}

/// The admin API to talk to.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The admin listener, `http://host:port`.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// A file holding the API key (else `PALISADE_API_KEY`).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// The tenant.
    #[arg(long, value_parser = module_name)]
    tenant: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModuleCommand {
    /// Sign a module: writes `MODULE.sig` (base64 Ed25519 over the module's SHA-256).
    Sign {
        /// The private key (`palisade keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The module file.
        module: PathBuf,
    },
    /// Upload a module version (`MODULE.sig` is sent along when it exists).
    Push {
        #[command(flatten)]
        to: AdminArgs,
        /// Module name.
        #[arg(long, value_parser = module_name)]
        name: String,
        /// Version label.
        #[arg(long, value_parser = module_version)]
        version: String,
        /// The signature file. By default `MODULE.sig` if present.
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// The module file (`.wasm` component or `.lua` script).
        module: PathBuf,
    },
    /// List the tenant's module versions.
    List {
        #[command(flatten)]
        to: AdminArgs,
    },
    /// Show one version: digest, size, exports, contract version, limits, signer.
    Inspect {
        #[command(flatten)]
        to: AdminArgs,
        /// Module name.
        #[arg(value_parser = module_name)]
        name: String,
        /// Version.
        #[arg(value_parser = module_version)]
        version: String,
    },
    /// Make a version the active one (routes naming `registry:NAME` switch to it).
    Activate {
        #[command(flatten)]
        to: AdminArgs,
        /// Module name.
        #[arg(value_parser = module_name)]
        name: String,
        /// Version.
        #[arg(value_parser = module_version)]
        version: String,
    },
    /// A module's history: every activation, rollback and revert, newest first.
    History {
        #[command(flatten)]
        to: AdminArgs,
        /// Module name.
        #[arg(value_parser = module_name)]
        name: String,
    },
    /// Go back one step in the module's history (again: further back).
    Rollback {
        #[command(flatten)]
        to: AdminArgs,
        /// Module name.
        #[arg(value_parser = module_name)]
        name: String,
    },
    /// Delete a version that is not in use.
    Delete {
        #[command(flatten)]
        to: AdminArgs,
        /// Module name.
        #[arg(value_parser = module_name)]
        name: String,
        /// Version.
        #[arg(value_parser = module_version)]
        version: String,
    },
}

pub(crate) fn keygen(args: KeygenArgs) -> ExitCode {
    if args.master {
        use palisade_gateway::secrets::{FileMasterKey, MasterKey as _};
        return match FileMasterKey::generate(&args.out) {
            Ok(key) => {
                eprintln!("wrote {} (0600)", args.out.display());
                println!("{}", key.id());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("palisade: {e}");
                ExitCode::from(2)
            }
        };
    }
    match palisade_ledger::checkpoint::generate_key(&args.out) {
        Ok(public) => {
            eprintln!(
                "wrote {} (private, 0600) and {}",
                args.out.display(),
                palisade_ledger::checkpoint::public_key_path(&args.out).display()
            );
            println!("{}", hex::encode(public.to_bytes()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn main(command: ModuleCommand) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match rt.block_on(run(command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}

/// A tenant or module name, refused before any request (`bad_module_name`, exit 2): it
/// goes into the URL as it is, so it must be one the registry accepts.
fn module_name(s: &str) -> Result<String, String> {
    if palisade_gateway::registry::valid_name(s) {
        Ok(s.to_string())
    } else {
        Err("bad_module_name: 1-64 of A-Z a-z 0-9 _ . -, not starting with `.`".into())
    }
}

/// A version, refused before any request (`bad_version`, exit 2).
fn module_version(s: &str) -> Result<String, String> {
    if palisade_gateway::registry::valid_version(s) {
        Ok(s.to_string())
    } else {
        Err("bad_version: 1-64 of A-Z a-z 0-9 _ . - +, not starting with `.`".into())
    }
}

/// The first word of a `.sig` file `palisade module sign` writes.
const SIG_HEADER: &str = "palisade-module-signature/1";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The signature in a `.sig` file's `text`, once its digest is `module`'s (a bare
/// base64 signature of an earlier release is taken as it is).
fn signature_for(text: &str, module: &[u8]) -> Result<String, String> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix(SIG_HEADER) else {
        return Ok(text.to_string());
    };
    let mut words = rest.split_whitespace();
    let (Some(digest), Some(signature), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "the .sig file is damaged: `{SIG_HEADER} sha256:HEX SIGNATURE` expected"
        ));
    };
    let actual = format!("sha256:{}", sha256_hex(module));
    if digest != actual {
        return Err(format!(
            "the .sig file signs other bytes ({digest}) than this module ({actual}): it is stale; run `palisade module sign` again"
        ));
    }
    Ok(signature.to_string())
}

fn sig_path(module: &Path) -> PathBuf {
    let mut p = module.as_os_str().to_owned();
    p.push(".sig");
    p.into()
}

async fn run(command: ModuleCommand) -> Result<ExitCode, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    match command {
        ModuleCommand::Sign { key, module } => {
            let key =
                palisade_ledger::checkpoint::load_signing_key(&key).map_err(|e| e.to_string())?;
            let bytes = read(&module)?;
            let signature = palisade_gateway::registry::sign(&key, &bytes);
            let out = sig_path(&module);
            // The digest it signs is written beside it: a stale `.sig` is caught at push.
            std::fs::write(
                &out,
                format!("{SIG_HEADER} sha256:{} {signature}\n", sha256_hex(&bytes)),
            )
            .map_err(|e| format!("{}: {e}", out.display()))?;
            eprintln!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        ModuleCommand::Push {
            to,
            name,
            version,
            signature,
            module,
        } => {
            let bytes = read(&module)?;
            let sig = match signature {
                Some(p) => Some(read(&p)?),
                None => std::fs::read(sig_path(&module)).ok(),
            };
            let sig = match sig {
                None => None,
                Some(s) => match signature_for(&String::from_utf8_lossy(&s), &bytes) {
                    Ok(sig) => Some(sig),
                    Err(message) => {
                        eprintln!("palisade: {message}");
                        return Ok(ExitCode::from(2));
                    }
                },
            };
            let path = format!("modules/{name}/{version}");
            call(&to, "PUT", &path, Bytes::from(bytes), sig).await
        }
        ModuleCommand::List { to } => call(&to, "GET", "modules", Bytes::new(), None).await,
        ModuleCommand::Inspect { to, name, version } => {
            call(
                &to,
                "GET",
                &format!("modules/{name}/{version}"),
                Bytes::new(),
                None,
            )
            .await
        }
        ModuleCommand::Activate { to, name, version } => {
            let path = format!("modules/{name}/{version}/activate");
            call(&to, "POST", &path, Bytes::new(), None).await
        }
        ModuleCommand::History { to, name } => {
            call(&to, "GET", &format!("modules/{name}"), Bytes::new(), None).await
        }
        ModuleCommand::Rollback { to, name } => {
            call(
                &to,
                "POST",
                &format!("modules/{name}/rollback"),
                Bytes::new(),
                None,
            )
            .await
        }
        ModuleCommand::Delete { to, name, version } => {
            call(
                &to,
                "DELETE",
                &format!("modules/{name}/{version}"),
                Bytes::new(),
                None,
            )
            .await
        }
    }
}

/// One admin API call; prints the JSON answer.
/// An admin API refusal in one line: status, error, cause, detail, correlation id.
pub(crate) fn refusal(status: http::StatusCode, body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
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

async fn call(
    to: &AdminArgs,
    method: &str,
    path: &str,
    body: Bytes,
    signature: Option<String>,
) -> Result<ExitCode, String> {
    let key = match &to.api_key_file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?,
        None => std::env::var("PALISADE_API_KEY")
            .map_err(|_| "set PALISADE_API_KEY or --api-key-file".to_string())?,
    };
    let url = format!(
        "{}/v1/tenants/{}/{path}",
        to.admin.trim_end_matches('/'),
        to.tenant
    );
    let mut req = http::Request::builder()
        .method(method)
        .uri(&url)
        .header("x-api-key", key.trim());
    if let Some(s) = signature {
        req = req.header("x-palisade-signature", s);
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
    let text = serde_json::from_slice::<serde_json::Value>(&body)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    if status.is_success() {
        println!("{text}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("palisade: {method} {url}: {}", refusal(status, &body));
        Ok(ExitCode::from(1))
    }
}
