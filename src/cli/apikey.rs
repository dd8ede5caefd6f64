//! `palisade apikey create|list|revoke`: the gateway's API key file.
//!
//! The key file holds only SHA-256 hashes; `create` prints the new key once, on stdout,
//! and nothing can show it again. A running gateway picks changes up within a second.
//!
//! Exit codes: 0 done; 1 no such key (`revoke`); 2 bad arguments, or the config or key
//! file cannot be read or written.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use palisade_gateway::auth::{Role, apikey};

/// Where the key file is.
#[derive(Debug, Args)]
pub(crate) struct KeyFileArgs {
    /// The gateway config naming the key file (`[auth] api_keys`).
    #[arg(long, short, default_value = "palisade.toml", conflicts_with = "file")]
    config: PathBuf,
    /// The key file itself.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Create a key and print it once.
    Create {
        #[command(flatten)]
        at: KeyFileArgs,
        /// The tenant whose routes the key opens. Without it the key is a platform key
        /// (`admin`, platform-wide `auditor` or `revealer`); a tenant's key holds only that
        /// tenant's roles.
        #[arg(long)]
        tenant: Option<String>,
        /// Scopes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Roles, comma-separated (`admin`, `tenant-admin`, `auditor`, `revealer`,
        /// `service`, or a route's own).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// A label.
        #[arg(long)]
        name: Option<String>,
        /// Days until the key expires. By default it does not.
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u64>,
    },
    /// List keys (ids, tenants, scopes, state; never secrets).
    List {
        #[command(flatten)]
        at: KeyFileArgs,
        /// `text` or `json` (one document; never a secret or hash).
        #[arg(long, value_enum, default_value = "text")]
        format: super::OutputFormat,
    },
    /// Revoke a key by id.
    Revoke {
        #[command(flatten)]
        at: KeyFileArgs,
        /// The key's id (16 hex digits).
        id: String,
    },
}

pub(crate) fn main(command: ApiKeyCommand) -> ExitCode {
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: ApiKeyCommand) -> Result<ExitCode, String> {
    match command {
        ApiKeyCommand::Create {
            at,
            tenant,
            scopes,
            roles,
            name,
            expires_in_days,
        } => {
            let (path, known) = locate(&at)?;
            if expires_in_days == Some(0) {
                return Err("--expires-in-days must be at least 1".into());
            }
            for r in &roles {
                let route_role = known.as_ref().is_some_and(|(_, rs)| rs.contains(r));
                if Role::parse(r).is_none() && !route_role {
                    return Err(format!(
                        "role {r:?} is neither a built-in role (admin, tenant-admin, auditor, revealer, service) \
                         nor one a route of the config requires{}",
                        if known.is_none() {
                            " (give --config to use a route's roles)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            let tenants = known.map(|(t, _)| t);
            let platform = roles.iter().any(|r| {
                matches!(
                    Role::parse(r),
                    Some(Role::Admin | Role::Auditor | Role::Revealer)
                )
            });
            match &tenant {
                None if !platform => {
                    return Err(
                        "--tenant is required (except for admin, auditor and revealer keys)".into(),
                    );
                }
                Some(t) if roles.iter().any(|r| Role::parse(r) == Some(Role::Admin)) => {
                    return Err(format!(
                        "`admin` is a platform role: a key of tenant {t:?} cannot hold it \
                         (create a platform key without --tenant)"
                    ));
                }
                Some(t) if tenants.as_ref().is_some_and(|ts| !ts.contains(t)) => {
                    return Err(format!("tenant {t:?} is not defined in the config"));
                }
                _ => {}
            }
            let expires_ms = expires_in_days.map(|d| now_ms() + d * 86_400_000);
            let new = apikey::generate(tenant, name, scopes, roles, expires_ms);
            let entry = new.entry.clone();
            apikey::update(&path, |f| {
                f.keys.push(entry);
                Ok(())
            })?;
            eprintln!(
                "created key {} in {} (shown once; store it now)",
                new.entry.id,
                path.display()
            );
            println!("{}", new.key);
            Ok(ExitCode::SUCCESS)
        }
        ApiKeyCommand::List { at, format } => {
            let (path, _) = locate(&at)?;
            let now = now_ms();
            let keys = apikey::read(&path)?.keys;
            let state = |k: &apikey::KeyEntry| {
                if k.revoked {
                    "revoked"
                } else if k.expires_ms.is_some_and(|t| t <= now) {
                    "expired"
                } else {
                    "active"
                }
            };
            if format == super::OutputFormat::Json {
                let list: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id,
                            "state": state(k),
                            "tenant": k.tenant,
                            "scopes": k.scopes,
                            "roles": k.roles,
                            "name": k.name,
                            "expires_ms": k.expires_ms,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "keys": list }));
                return Ok(ExitCode::SUCCESS);
            }
            for k in keys {
                let state = state(&k);
                println!(
                    "{}  {:<8} tenant={} scopes={} roles={} name={}",
                    k.id,
                    state,
                    k.tenant.as_deref().unwrap_or("-"),
                    k.scopes.join(","),
                    k.roles.join(","),
                    k.name.as_deref().unwrap_or("-"),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApiKeyCommand::Revoke { at, id } => {
            let (path, _) = locate(&at)?;
            let found = apikey::update(&path, |f| {
                Ok(f.keys.iter_mut().find(|k| k.id == id).map(|k| {
                    k.revoked = true;
                }))
            })?;
            if found.is_some() {
                eprintln!("revoked key {id}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("palisade: no key with id {id:?} in {}", path.display());
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// The key file, and the config's tenants when a config names it.
/// The key file, and (when it comes from a config) the config's tenants and the roles
/// its routes require.
type Located = (PathBuf, Option<(Vec<String>, Vec<String>)>);

fn locate(at: &KeyFileArgs) -> Result<Located, String> {
    if let Some(f) = &at.file {
        return Ok((f.clone(), None));
    }
    let file = palisade_gateway::config::load(&at.config).map_err(|e| e.to_string())?;
    let path = file
        .auth
        .api_keys
        .as_ref()
        .cloned()
        .ok_or_else(|| format!("{}: [auth] api_keys is not set", at.config.display()))?;
    let tenants = file
        .tenants
        .iter()
        .map(|t| t.get_ref().name.clone())
        .collect();
    let roles = file
        .routes
        .iter()
        .filter_map(|r| r.get_ref().auth.as_ref())
        .flat_map(|a| a.roles.iter().cloned())
        .collect();
    Ok((path, Some((tenants, roles))))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
