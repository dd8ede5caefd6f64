//! `palisade audit show CORRELATION_ID`: what the ledger holds about one request or admin
//! call (the id is in every error body and response's `x-correlation-id`).
//!
//! Exit codes: 0 found (one JSON object per block on stdout); 1 no block has that id;
//! 2 the ledger or config could not be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use palisade_ledger::Target;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the blocks of one correlation id.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The correlation id.
    correlation_id: String,
    /// The gateway config whose `[audit]` ledger is read.
    #[arg(long, short, default_value = "palisade.toml", conflicts_with_all = ["db", "postgres"])]
    config: PathBuf,
    /// A SQLite ledger instead.
    #[arg(long, value_name = "FILE", conflicts_with = "postgres")]
    db: Option<PathBuf>,
    /// A PostgreSQL ledger instead (any role that may SELECT it).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

pub(crate) fn main(command: AuditCommand) -> ExitCode {
    let AuditCommand::Show(args) = command;
    let target = match (&args.db, &args.postgres) {
        (Some(db), _) => Target::Sqlite(db.clone()),
        (_, Some(url)) => Target::Postgres(url.clone()),
        _ => match palisade_gateway::config::load(&args.config) {
            Ok(file) => file.audit.store,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    match palisade_ledger::find_correlation(&target, &args.correlation_id) {
        Ok(blocks) if blocks.is_empty() => {
            eprintln!(
                "palisade: no block has correlation id {:?}",
                args.correlation_id
            );
            ExitCode::from(1)
        }
        Ok(blocks) => {
            for (seq, record) in blocks {
                println!("{}", serde_json::json!({ "seq": seq, "record": record }));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}
