//! `palisade`: the command-line face of Palisade.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Palisade runs tenant-supplied transform and redaction code safely inside an API gateway.
#[derive(Parser)]
#[command(name = "palisade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a policy project (Rust, Lua, JavaScript or TypeScript) in a new directory.
    New(cli::new::NewArgs),
    /// Build a policy project into a module and show what it is.
    Build(cli::build::BuildArgs),
    /// Run a policy against its case file.
    Test(cli::test::TestArgs),
    /// Run one policy module on one request or response, locally.
    Run(cli::run::RunArgs),
    /// Run the gateway (reloads routes on SIGHUP; SIGINT/SIGTERM drain and stop).
    Serve(cli::serve::ServeArgs),
    /// Check a gateway configuration: every problem, with its line.
    CheckConfig(cli::serve::CheckArgs),
    /// Start a demo gateway with a demo upstream, policies, redaction and audit.
    Quickstart(cli::quickstart::QuickstartArgs),
    /// Verify the audit ledger's hash chain (and signed checkpoints).
    Verify(cli::verify::VerifyArgs),
    /// Manage the audit ledger.
    #[command(subcommand)]
    Ledger(cli::verify::LedgerCommand),
    /// Look requests up in the audit ledger.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// Manage API keys (stored hashed; a new key is shown once).
    #[command(subcommand)]
    Apikey(cli::apikey::ApiKeyCommand),
    /// Create an Ed25519 key pair for signing modules.
    Keygen(cli::module::KeygenArgs),
    /// Sign modules, and manage a tenant's modules in the registry (admin API).
    #[command(subcommand)]
    Module(cli::module::ModuleCommand),
    /// List the tenants the admin API credential may read.
    #[command(subcommand)]
    Tenant(cli::admin::TenantCommand),
    /// List a tenant's routes as they run (admin API).
    #[command(subcommand)]
    Route(cli::admin::RouteCommand),
    /// Manage encrypted secrets (values from stdin, never shown).
    #[command(subcommand)]
    Secret(cli::secret::SecretCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::New(args) => cli::new::main(args),
        Command::Build(args) => cli::build::main(args),
        Command::Test(args) => cli::test::main(args),
        Command::Run(args) => cli::run::main(args),
        Command::Serve(args) => cli::serve::serve(args),
        Command::CheckConfig(args) => cli::serve::check(args),
        Command::Quickstart(args) => cli::quickstart::main(args),
        Command::Verify(args) => cli::verify::main(args),
        Command::Ledger(command) => cli::verify::ledger(command),
        Command::Audit(command) => cli::audit::main(command),
        Command::Apikey(command) => cli::apikey::main(command),
        Command::Keygen(args) => cli::module::keygen(args),
        Command::Module(command) => cli::module::main(command),
        Command::Secret(command) => cli::secret::main(command),
        Command::Tenant(command) => cli::admin::tenant(command),
        Command::Route(command) => cli::admin::route(command),
    }
}
