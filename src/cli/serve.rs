//! `palisade serve` and `palisade check-config`.
//!
//! Exit codes: 0 clean shutdown / valid config; 2 invalid config (every problem is
//! printed, one per line, `file:line:col: entry: problem`); 1 any other start failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use palisade_gateway::{Gateway, Running, StartError, config};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The gateway's TOML configuration.
    #[arg(long, short, default_value = "palisade.toml")]
    config: PathBuf,
    #[command(flatten)]
    log: super::log::LogArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The configuration to check.
    config: PathBuf,
}

pub(crate) fn serve(args: ServeArgs) -> ExitCode {
    args.log.install();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        let running = match start(&args.config).await {
            Ok(r) => r,
            Err(code) => return code,
        };
        println!(
            "palisade: serving {} on http://{}{}",
            args.config.display(),
            running.proxy_addr(),
            running
                .admin_addr()
                .map(|a| format!(" (admin: http://{a}/metrics)"))
                .unwrap_or_default()
        );
        tracing::info!(
            config = %args.config.display(),
            proxy = %running.proxy_addr(),
            admin = running.admin_addr().map(tracing::field::display),
            "serving"
        );
        run_until_signal(running).await;
        ExitCode::SUCCESS
    })
}

pub(crate) async fn start(config: &Path) -> Result<Running, ExitCode> {
    let gateway = match Gateway::from_file(config) {
        Ok(g) => g,
        Err(StartError::Config(invalid)) => {
            for issue in &invalid.issues {
                eprintln!("{issue}");
            }
            eprintln!(
                "palisade: {} problem(s) in {}; not serving",
                invalid.issues.len(),
                config.display()
            );
            return Err(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            return Err(ExitCode::from(1));
        }
    };
    gateway.start().await.map_err(|e| {
        eprintln!("palisade: {e}");
        ExitCode::from(1)
    })
}

/// Serves until SIGINT or SIGTERM, reloading routes on SIGHUP.
pub(crate) async fn run_until_signal(running: Running) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    loop {
        tokio::select! {
            _ = hup.recv() => match running.reload() {
                Ok(()) => tracing::info!("routes reloaded"),
                Err(invalid) => {
                    for issue in &invalid.issues {
                        tracing::warn!(%issue, "config problem");
                    }
                    tracing::warn!(
                        problems = invalid.issues.len(),
                        "reload refused; the previous routes stay in service"
                    );
                }
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down; in-flight requests finish first");
    running.shutdown().await;
}

pub(crate) fn check(args: CheckArgs) -> ExitCode {
    let file = match config::load(&args.config) {
        Ok(f) => f,
        Err(invalid) => {
            for issue in &invalid.issues {
                eprintln!("{issue}");
            }
            return ExitCode::from(2);
        }
    };
    // The same checks as at start: the file, its keys and CAs, and every module.
    let engine = palisade_runtime::Engine::new(&palisade_runtime::Config::new())
        .expect("the policy engine starts");
    let issues = match palisade_gateway::pipeline::validate(&file, &engine) {
        Ok(()) => Vec::new(),
        Err(invalid) => invalid.issues,
    };
    if issues.is_empty() {
        println!(
            "{}: ok ({} tenants, {} upstreams, {} routes)",
            args.config.display(),
            file.tenants.len(),
            file.upstreams.len(),
            file.routes.len()
        );
        return ExitCode::SUCCESS;
    }
    for issue in &issues {
        eprintln!("{issue}");
    }
    eprintln!("{}: {} problem(s)", args.config.display(), issues.len());
    ExitCode::from(2)
}
