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
    /// The configuration to check (or `--config`).
    #[arg(value_name = "FILE", conflicts_with = "config")]
    file: Option<PathBuf>,
    /// The configuration to check.
    #[arg(long, short, default_value = "palisade.toml")]
    config: PathBuf,
    /// Check only what the files say: no database is opened, so registry modules and
    /// secrets are not looked up (for CI, or a config of another machine).
    #[arg(long)]
    offline: bool,
    /// `text`: one problem per line, then a summary; `json`: one JSON document.
    #[arg(long, value_enum, default_value = "text")]
    format: super::OutputFormat,
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
            "palisade: serving {} on http://{}{}{}",
            args.config.display(),
            running.proxy_addr(),
            running
                .admin_addr()
                .map(|a| format!(" (admin: http://{a}/metrics)"))
                .unwrap_or_default(),
            running
                .envoy_addr()
                .map(|a| format!(" (envoy: grpc://{a})"))
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
                Ok(reloaded) if reloaded.needs_restart.is_empty() => {
                    tracing::info!("routes reloaded");
                }
                Ok(reloaded) => {
                    tracing::info!("routes reloaded");
                    tracing::warn!(
                        keys = %reloaded.needs_restart.join(", "),
                        "changed but read only at start: the running values stay until a restart"
                    );
                }
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
    let path = args.file.unwrap_or(args.config);
    // The file's own problems, then (on whatever lowered) what it names: key files, CAs,
    // modules and, unless offline, the registry's modules and the secrets in the database.
    // Nothing is created or written.
    let (file, mut issues) = config::read(&path);
    if let Some(file) = &file {
        let engine = palisade_runtime::Engine::new(&palisade_runtime::Config::new())
            .expect("the policy engine starts");
        issues.extend(palisade_gateway::pipeline::validate(
            file,
            &engine,
            args.offline,
        ));
    }
    issues.sort_by(|a, b| (a.at, &a.context, &a.message).cmp(&(b.at, &b.context, &b.message)));
    issues.dedup();
    let counts = file
        .as_ref()
        .map(|f| (f.tenants.len(), f.upstreams.len(), f.routes.len()));
    match args.format {
        super::OutputFormat::Json => {
            let report = serde_json::json!({
                "file": path.display().to_string(),
                "ok": issues.is_empty(),
                "offline": args.offline,
                "tenants": counts.map(|c| c.0),
                "upstreams": counts.map(|c| c.1),
                "routes": counts.map(|c| c.2),
                "problems": issues.iter().map(|i| serde_json::json!({
                    "line": i.at.map(|a| a.0),
                    "column": i.at.map(|a| a.1),
                    "entry": (!i.context.is_empty()).then_some(&i.context),
                    "message": i.message,
                })).collect::<Vec<_>>(),
            });
            println!("{report}");
        }
        super::OutputFormat::Text => {
            for issue in &issues {
                eprintln!("{issue}");
            }
            let (t, u, r) = counts.unwrap_or_default();
            let scope = if args.offline { ", offline" } else { "" };
            if issues.is_empty() {
                println!(
                    "{}: ok ({t} tenants, {u} upstreams, {r} routes{scope})",
                    path.display()
                );
            } else {
                eprintln!(
                    "{}: {} problem(s) ({t} tenants, {u} upstreams, {r} routes{scope})",
                    path.display(),
                    issues.len()
                );
            }
        }
    }
    if issues.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
