//! `palisade`: the command-line face of Palisade.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// Palisade runs tenant-supplied transform and redaction code safely inside an API gateway.
#[derive(Parser)]
#[command(name = "palisade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one policy module on one request or response, locally.
    Run(cli::run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cli::run::main(args),
    }
}
