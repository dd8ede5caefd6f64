//! `palisade secret put|delete|list|verify|rotate|rotate-master|reveal`: the encrypted
//! secret store, and reading back fields an `encrypt` redaction rule sealed.
//!
//! Values are read from stdin, never from argv (argv is visible to every user of the
//! machine); they are never printed. Exit codes: 0 done; 1 no such secret or tenant;
//! 2 bad arguments, or the config, master key or database cannot be used.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use palisade_gateway::secrets::{FileMasterKey, MasterKey, SecretError, SecretStore};

/// The gateway config naming `[secrets]`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The gateway config.
    #[arg(long, short, default_value = "palisade.toml")]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Store a new version of a secret; the value is read from stdin.
    Put {
        #[command(flatten)]
        at: StoreArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The secret's id.
        id: String,
    },
    /// Delete every version of a secret. Refused while a route or upstream of the config
    /// names it (exit 1, naming them), unless `--force`.
    Delete {
        #[command(flatten)]
        at: StoreArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The secret's id.
        id: String,
        /// Delete even though the config names it: those routes answer 503 until the
        /// config stops naming it (and a reload or restart refuses the config as it is).
        #[arg(long)]
        force: bool,
    },
    /// List a tenant's secrets (ids, versions, key versions; never values).
    List {
        #[command(flatten)]
        at: StoreArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// `text` or `json` (one document; never a value).
        #[arg(long, value_enum, default_value = "text")]
        format: super::OutputFormat,
    },
    /// Check that a secret decrypts (authenticated decryption through the master key);
    /// prints its version and length, never the value.
    Verify {
        #[command(flatten)]
        at: StoreArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The secret's id.
        id: String,
    },
    /// Start a new data key for a tenant (later writes use it; older secrets keep theirs).
    Rotate {
        #[command(flatten)]
        at: StoreArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Say which data key version would start; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Decrypt a field an `encrypt` redaction rule sealed: the token is read from stdin,
    /// the value printed as JSON. Every reveal is an audit block (kind `admin`) naming
    /// who (the OS user), the tenant, the path and the key version, never the value.
    /// Exit 1 when the token does not open at PATH for TENANT.
    Reveal {
        #[command(flatten)]
        at: StoreArgs,
        /// The tenant whose body held the token.
        #[arg(long)]
        tenant: String,
        /// Where the token was: its normalized path (`$['user']['ssn']`), as the audit
        /// block of the request records it.
        #[arg(long)]
        path: String,
    },
    /// Create the AES-256 master key on the PKCS#11 token `[secrets.pkcs11]` names
    /// (sensitive, not extractable).
    HsmKeygen {
        #[command(flatten)]
        at: StoreArgs,
    },
    /// Re-wrap every data key under the config's `master_key` (unwrapping with the
    /// `previous_master_keys`), then retire the previous keys: the zero-downtime step of
    /// a rotation (docs/operations.md). With `--new-master FILE`, re-wrap under FILE
    /// instead and retire the config's key (for stopped gateways).
    RotateMaster {
        #[command(flatten)]
        at: StoreArgs,
        /// Re-wrap under this key file instead (`palisade keygen --master`).
        #[arg(long, value_name = "FILE")]
        new_master: Option<PathBuf>,
        /// Unwrap every data key that would be re-wrapped and say what would be retired;
        /// change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) fn main(command: SecretCommand) -> ExitCode {
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}

fn open(at: &StoreArgs) -> Result<(SecretStore, Vec<String>), String> {
    open_file(at, false).map(|(store, tenants, _)| (store, tenants))
}

/// The store the config names, its tenants and the config; `read_only` for what only
/// reads (dry runs): nothing is created.
fn open_file(
    at: &StoreArgs,
    read_only: bool,
) -> Result<(SecretStore, Vec<String>, palisade_gateway::config::File), String> {
    let file = palisade_gateway::config::load(&at.config).map_err(|e| e.to_string())?;
    let tenants = file
        .tenants
        .iter()
        .map(|t| t.get_ref().name.clone())
        .collect();
    let config = file
        .secrets
        .as_ref()
        .ok_or_else(|| format!("{}: no [secrets] section", at.config.display()))?;
    let store = if read_only {
        SecretStore::open_read_only(config, &file.audit.store)
    } else {
        SecretStore::open(config, &file.audit.store)
    }
    .map_err(|e| format!("{}: [secrets] {e}", at.config.display()))?;
    Ok((store, tenants, file))
}

fn known(tenants: &[String], tenant: &str) -> Result<(), ExitCode> {
    if tenants.iter().any(|t| t == tenant) {
        Ok(())
    } else {
        eprintln!("palisade: tenant {tenant:?} is not defined in the config");
        Err(ExitCode::from(1))
    }
}

fn run(command: SecretCommand) -> Result<ExitCode, String> {
    match command {
        SecretCommand::Put { at, tenant, id } => {
            let (store, tenants) = open(&at)?;
            if let Err(code) = known(&tenants, &tenant) {
                return Ok(code);
            }
            let mut value = zeroize::Zeroizing::new(Vec::new());
            std::io::stdin()
                .read_to_end(&mut value)
                .map_err(|e| format!("stdin: {e}"))?;
            // One trailing newline (from `echo` or a terminal) is not part of the value.
            if value.last() == Some(&b'\n') {
                value.pop();
                if value.last() == Some(&b'\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                return Err("the value on stdin is empty".into());
            }
            let version = store.put(&tenant, &id, &value).map_err(|e| e.to_string())?;
            eprintln!("stored {tenant}/{id} version {version}");
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Delete {
            at,
            tenant,
            id,
            force,
        } => {
            let (store, tenants, file) = open_file(&at, false)?;
            if let Err(code) = known(&tenants, &tenant) {
                return Ok(code);
            }
            let users = palisade_gateway::pipeline::secret_users(&file, &tenant, &id);
            if !users.is_empty() && !force {
                eprintln!(
                    "palisade: secret {id:?} of tenant {tenant:?} is named by {} in {}; \
                     change the config first (or --force)",
                    users.join(", "),
                    at.config.display()
                );
                return Ok(ExitCode::from(1));
            }
            match store.delete(&tenant, &id) {
                Ok(n) => {
                    eprintln!("deleted {tenant}/{id} ({n} version(s))");
                    Ok(ExitCode::SUCCESS)
                }
                Err(SecretError::NotFound) => {
                    eprintln!("palisade: no secret {id:?} for tenant {tenant:?}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.to_string()),
            }
        }
        SecretCommand::List { at, tenant, format } => {
            let (store, tenants) = open(&at)?;
            if let Err(code) = known(&tenants, &tenant) {
                return Ok(code);
            }
            let list = store.list(&tenant).map_err(|e| e.to_string())?;
            if format == super::OutputFormat::Json {
                println!("{}", serde_json::json!({ "secrets": list }));
                return Ok(ExitCode::SUCCESS);
            }
            for s in list {
                println!(
                    "{}  version={} key_version={}",
                    s.id, s.version, s.key_version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Verify { at, tenant, id } => {
            let (store, tenants) = open(&at)?;
            if let Err(code) = known(&tenants, &tenant) {
                return Ok(code);
            }
            match store.get(&tenant, &id) {
                Ok(v) => {
                    let (version, key_version, _) =
                        store.sealed(&tenant, &id).map_err(|e| e.to_string())?;
                    println!(
                        "{id}: decrypts (version {version}, key version {key_version}, {} bytes)",
                        v.expose().len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(SecretError::NotFound) => {
                    eprintln!("palisade: no secret {id:?} for tenant {tenant:?}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.to_string()),
            }
        }
        SecretCommand::Rotate {
            at,
            tenant,
            dry_run,
        } => {
            let (store, tenants, _) = open_file(&at, dry_run)?;
            if let Err(code) = known(&tenants, &tenant) {
                return Ok(code);
            }
            if dry_run {
                let next = store.next_key_version(&tenant).map_err(|e| e.to_string())?;
                eprintln!("dry run: tenant {tenant} would start data key version {next}");
                return Ok(ExitCode::SUCCESS);
            }
            let v = store.rotate(&tenant).map_err(|e| e.to_string())?;
            eprintln!("tenant {tenant}: data key version {v}");
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Reveal { at, tenant, path } => {
            let (store, tenants, file) = open_file(&at, true)?;
            if let Err(code) = known(&tenants, &tenant) {
                return Ok(code);
            }
            let mut token = String::new();
            std::io::stdin()
                .take(palisade_gateway::redaction::encrypt::MAX_TOKEN as u64 + 1)
                .read_to_string(&mut token)
                .map_err(|e| format!("stdin: {e}"))?;
            let token = token.trim();
            let revealed = store.reveal(&tenant, token, &path);
            // The audit block first: no block, no value.
            let key_version = palisade_gateway::redaction::encrypt::parse(token)
                .map(|t| t.key_version)
                .ok();
            audit_reveal(&file, &tenant, &path, key_version, revealed.is_ok())?;
            match revealed {
                Ok(value) => {
                    println!("{value}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("palisade: not revealed: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        SecretCommand::HsmKeygen { at } => {
            let file = palisade_gateway::config::load(&at.config).map_err(|e| e.to_string())?;
            let hsm = match file.secrets.as_ref().map(|s| &s.master) {
                Some(palisade_gateway::secrets::Master::Pkcs11(hsm)) => hsm,
                _ => return Err(format!("{}: no [secrets.pkcs11]", at.config.display())),
            };
            let key = palisade_gateway::secrets::Pkcs11MasterKey::generate(hsm)
                .map_err(|e| e.to_string())?;
            println!("{}", palisade_gateway::secrets::MasterKey::id(&key));
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::RotateMaster {
            at,
            new_master,
            dry_run,
        } => {
            let (store, _, _) = open_file(&at, dry_run)?;
            let to: std::sync::Arc<dyn MasterKey> = match &new_master {
                Some(path) => {
                    std::sync::Arc::new(FileMasterKey::load(path).map_err(|e| e.to_string())?)
                }
                None => store.current_master(),
            };
            let held = store.master_ids();
            if dry_run {
                let plan = store
                    .plan_master_rotation(to.as_ref())
                    .map_err(|e| e.to_string())?;
                eprintln!(
                    "dry run: {} data key(s) would be re-wrapped under master key {} (each unwraps); would retire: {}",
                    plan.rewrap,
                    to.id(),
                    if plan.retire.is_empty() {
                        "none".to_string()
                    } else {
                        plan.retire.join(", ")
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            match store.rotate_master(to.as_ref()) {
                Ok(n) => {
                    let retired: Vec<&String> = held.iter().filter(|id| **id != to.id()).collect();
                    eprintln!(
                        "re-wrapped {n} data key(s) under master key {}; retired: {}",
                        to.id(),
                        if retired.is_empty() {
                            "none".to_string()
                        } else {
                            retired.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        }
                    );
                    match &new_master {
                        Some(path) => eprintln!(
                            "now set [secrets] master_key = {:?} and restart or reload every gateway",
                            path.display()
                        ),
                        None => eprintln!(
                            "now remove [secrets] previous_master_keys and reload every gateway"
                        ),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(SecretError::Decrypt) => Err(
                    "a data key does not unwrap with the key its row names; nothing more was changed"
                        .into(),
                ),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// Appends the audit block of a reveal from the command line: who is the OS user.
fn audit_reveal(
    file: &palisade_gateway::config::File,
    tenant: &str,
    path: &str,
    key_version: Option<u64>,
    revealed: bool,
) -> Result<(), String> {
    use palisade_ledger::{Kind, Ledger, Options, Record};
    let uid = rustix::process::getuid().as_raw();
    let user = std::env::var("USER").unwrap_or_default();
    let ledger = Ledger::open(file.audit.store.clone(), Options::default())
        .map_err(|e| format!("audit ledger: {e}"))?;
    let record = Record {
        kind: Kind::Admin,
        correlation_id: palisade_gateway::pipeline::new_id(),
        decision: if revealed { "allowed" } else { "refused" }.into(),
        cause: (!revealed).then(|| "token_refused".to_string()),
        detail: Some(serde_json::json!({
            "revealed": {
                "path": palisade_jsonpath::scrub_keys(path),
                "key_version": key_version,
            }
        })),
        identity: Some(format!("cli:{user} (uid {uid})")),
        method: "REVEAL".into(),
        path: "palisade secret reveal".into(),
        route: "admin".into(),
        tenant: tenant.to_string(),
        time_ms: Record::now_ms(),
        ..Record::default()
    };
    ledger
        .append_blocking(record)
        .map_err(|e| format!("audit ledger: {e}; nothing revealed"))?;
    Ok(())
}
