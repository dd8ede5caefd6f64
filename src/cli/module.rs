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

use super::admin::{Endpoint, lines, plain, pretty};

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key (mode 0600); the public key goes to `FILE.pub`.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Write a 256-bit master key for `[secrets]` instead of an Ed25519 signing key.
    #[arg(long)]
    master: bool,
}

/// The admin API to talk to, and the tenant.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    endpoint: Endpoint,
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
        /// Check that it exists and loads, and say what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
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
        /// Say which version it would make active; change nothing.
        #[arg(long)]
        dry_run: bool,
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
pub(crate) fn module_name(s: &str) -> Result<String, String> {
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
            call(&to, "PUT", &path, Bytes::from(bytes), sig, pretty).await
        }
        ModuleCommand::List { to } => {
            call(&to, "GET", "modules", Bytes::new(), None, |v| {
                lines(v, "modules", |m| {
                    format!(
                        "{}@{}  {}  {} bytes  sha256:{}  signer={}",
                        plain(&m["name"]),
                        plain(&m["version"]),
                        if m["active"] == true { "active" } else { "-" },
                        m["size"],
                        plain(&m["digest"]).chars().take(12).collect::<String>(),
                        plain(&m["signer"]),
                    )
                })
            })
            .await
        }
        ModuleCommand::Inspect { to, name, version } => {
            call(
                &to,
                "GET",
                &format!("modules/{name}/{version}"),
                Bytes::new(),
                None,
                pretty,
            )
            .await
        }
        ModuleCommand::Activate {
            to,
            name,
            version,
            dry_run,
        } => {
            let path = format!("modules/{name}/{version}/activate{}", dry(dry_run));
            call(&to, "POST", &path, Bytes::new(), None, pretty).await
        }
        ModuleCommand::History { to, name } => {
            call(
                &to,
                "GET",
                &format!("modules/{name}"),
                Bytes::new(),
                None,
                |v| {
                    lines(v, "history", |e| {
                        format!(
                            "{}  {}  {}  by {}  at {}",
                            e["seq"],
                            plain(&e["action"]),
                            plain(&e["version"]),
                            plain(&e["actor"]),
                            e["time_ms"],
                        )
                    })
                },
            )
            .await
        }
        ModuleCommand::Rollback { to, name, dry_run } => {
            let path = format!("modules/{name}/rollback{}", dry(dry_run));
            call(&to, "POST", &path, Bytes::new(), None, pretty).await
        }
        ModuleCommand::Delete { to, name, version } => {
            call(
                &to,
                "DELETE",
                &format!("modules/{name}/{version}"),
                Bytes::new(),
                None,
                pretty,
            )
            .await
        }
    }
}

/// `?dry_run=true` when asked.
fn dry(dry_run: bool) -> &'static str {
    if dry_run { "?dry_run=true" } else { "" }
}

/// One call under `/v1/tenants/{tenant}/`.
async fn call(
    to: &AdminArgs,
    method: &str,
    path: &str,
    body: Bytes,
    signature: Option<String>,
    text: fn(&serde_json::Value) -> String,
) -> Result<ExitCode, String> {
    let headers: Vec<(&str, String)> = signature
        .map(|s| ("x-palisade-signature", s))
        .into_iter()
        .collect();
    let path = format!("tenants/{}/{path}", to.tenant);
    super::admin::call(&to.endpoint, method, &path, body, &headers, text).await
}
