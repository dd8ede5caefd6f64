//! `palisade audit show CORRELATION_ID`: what the ledger holds about one request or admin
//! call (the id is in every error body and response's `x-correlation-id`).
//!
//! Exit codes: 0 found (one JSON object per block on stdout); 1 no block has that id;
//! 2 the ledger or config could not be read.
//!
//! `palisade audit export --since N [--sink NAME]`: blocks from `N` sent again to a sink
//! of the config's `[[audit.export]]` (or written to stdout as JSON lines), without moving
//! its cursor. Exit codes: 0 done; 1 the sink failed midway (the message says through
//! which block it got); 2 the config, the ledger or the sink's credentials could not be
//! read, or no sink has that name; 3 the chain is broken (nothing past the bad block was
//! sent).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use palisade_ledger::Target;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the blocks of one correlation id.
    Show(ShowArgs),
    /// Send blocks from a sequence number again (a back-fill), to a sink or stdout.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The first block to send.
    #[arg(long, value_name = "N")]
    since: u64,
    /// The `[[audit.export]]` sink to send to; without it, JSON lines on stdout.
    #[arg(long, value_name = "NAME")]
    sink: Option<String>,
    /// The gateway config whose ledger and sinks are used.
    #[arg(long, short, default_value = "palisade.toml")]
    config: PathBuf,
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
    let args = match command {
        AuditCommand::Show(args) => args,
        AuditCommand::Export(args) => return export(args),
    };
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

fn export(args: ExportArgs) -> ExitCode {
    let file = match palisade_gateway::config::load(&args.config) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let done = match palisade_gateway::export::backfill(
        &file.audit,
        args.since,
        args.sink.as_deref(),
        &mut stdout,
    ) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("palisade: {e}");
            return ExitCode::from(2);
        }
    };
    let to = args
        .sink
        .as_deref()
        .map_or("stdout".to_string(), |s| format!("sink {s:?}"));
    let checkpoint = done
        .checkpoint
        .map(|c| format!(" and the checkpoint of block {c}"))
        .unwrap_or_default();
    eprintln!(
        "palisade: {} block(s) sent to {to} (through block {}){checkpoint}",
        done.blocks, done.through
    );
    match done.error {
        None => ExitCode::SUCCESS,
        Some(e @ palisade_gateway::export::Error::Chain { .. }) => {
            eprintln!("palisade: {e}");
            ExitCode::from(3)
        }
        Some(e) => {
            eprintln!(
                "palisade: {e}; resume with --since {}",
                done.through.max(args.since.saturating_sub(1)) + 1
            );
            ExitCode::from(1)
        }
    }
}
