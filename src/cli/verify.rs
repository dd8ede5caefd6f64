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
    /// The SQLite ledger.
    #[arg(long, conflicts_with = "postgres", default_value = "palisade-audit.db")]
    db: PathBuf,
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

pub(crate) fn main(args: VerifyArgs) -> ExitCode {
    let target = match args.postgres {
        Some(url) => Target::Postgres(url),
        None => Target::Sqlite(args.db),
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
            println!("{report}");
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
                Err(e) => {
                    eprintln!("palisade: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
