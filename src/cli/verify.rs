//! `palisade verify` and `palisade ledger init`.
//!
//! `verify` exit codes: 0 the chain is intact; 1 anomalies (the first bad block and the
//! kind of anomaly are printed); 2 the ledger or checkpoint could not be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use palisade_ledger::verify::{Checkpoints, verify};
use palisade_ledger::{Target, checkpoint};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The gateway config whose `[audit]` ledger (and checkpoints) are verified, unless
    /// `--db` or `--postgres` names the ledger.
    #[arg(long, short, default_value = "palisade.toml")]
    config: PathBuf,
    /// The SQLite ledger.
    #[arg(long, conflicts_with = "postgres")]
    db: Option<PathBuf>,
    /// A PostgreSQL ledger (any role that may SELECT it).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Only blocks A to B (inclusive): `A..B`, `A..` or `..B`.
    #[arg(long, value_name = "A..B")]
    range: Option<String>,
    /// Hold the ledger against the signed checkpoints in this file.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// The checkpoints' public key. By default `checkpoint.key.pub` beside the checkpoint file.
    #[arg(long, value_name = "FILE", requires = "checkpoint")]
    checkpoint_key: Option<PathBuf>,
    /// `text`: one line; `json`: one JSON document.
    #[arg(long, value_enum, default_value = "text")]
    format: super::OutputFormat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Create the PostgreSQL ledger schema (as its owner) and let a writer role append.
    Init {
        /// Connection string of the owner role.
        #[arg(long, value_name = "URL")]
        postgres: String,
        /// The role gateways connect as (must exist; must not be a superuser).
        #[arg(long, value_name = "ROLE")]
        writer: String,
    },
}

fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once("..")?;
    let a = if a.is_empty() { 1 } else { a.parse().ok()? };
    let b = if b.is_empty() {
        u64::MAX
    } else {
        b.parse().ok()?
    };
    (a >= 1 && a <= b).then_some((a, b))
}

pub(crate) fn main(mut args: VerifyArgs) -> ExitCode {
    let target = match (args.postgres.take(), args.db.take()) {
        (Some(url), _) => Target::Postgres(url),
        (None, Some(db)) => Target::Sqlite(db),
        (None, None) => match palisade_gateway::config::load(&args.config) {
            Ok(file) => {
                // The config's checkpoints, unless others are named.
                if args.checkpoint.is_none()
                    && let Some(c) = &file.audit.checkpoints
                {
                    args.checkpoint = Some(c.file.clone());
                    args.checkpoint_key = Some(checkpoint::public_key_path(&c.key));
                }
                file.audit.store
            }
            Err(e) => {
                eprintln!("{e}\npalisade: name the ledger with --config, --db or --postgres");
                return ExitCode::from(2);
            }
        },
    };
    let range = match args.range.as_deref().map(parse_range) {
        Some(None) => {
            eprintln!("palisade: --range must be A..B with 1 <= A <= B");
            return ExitCode::from(2);
        }
        Some(r) => r,
        None => None,
    };
    let checkpoints = match &args.checkpoint {
        None => None,
        Some(file) => {
            let key_path = args.checkpoint_key.clone().unwrap_or_else(|| {
                checkpoint::public_key_path(&file.with_file_name("checkpoint.key"))
            });
            let loaded = checkpoint::read_checkpoints(file)
                .and_then(|list| Ok((list, checkpoint::load_verifying_key(&key_path)?)));
            match loaded {
                Ok((list, key)) => Some(Checkpoints { list, key }),
                Err(e) => {
                    eprintln!("palisade: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    match verify(&target, range, checkpoints.as_ref()) {
        Ok(report) => {
            match args.format {
                super::OutputFormat::Text => println!("{report}"),
                super::OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "blocks": report.blocks,
                        "intact": report.is_intact(),
                        "anomalies": report.anomalies,
                        "first": report.first.as_ref().map(|a| serde_json::json!({
                            "kind": a.kind(),
                            "what": a.to_string(),
                        })),
                        "checkpoints": report.checkpoints,
                        "ms": report.elapsed.as_millis() as u64,
                    })
                ),
            }
            if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn ledger(command: LedgerCommand) -> ExitCode {
    match command {
        LedgerCommand::Init { postgres, writer } => {
            match palisade_ledger::postgres_init(&postgres, &writer) {
                Ok(()) => {
                    println!("palisade: ledger ready; gateways connect as role {writer}");
                    ExitCode::SUCCESS
                }
                // The writer given cannot be one (a superuser, no such role, a bad name).
                Err(
                    e @ (palisade_ledger::Error::PrivilegedRole(_)
                    | palisade_ledger::Error::Format { .. }),
                ) => {
                    eprintln!("palisade: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("palisade: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
