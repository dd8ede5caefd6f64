//! `palisade test`: runs a policy against its case file, the way `opa test` or
//! `kwctl run` let policy authors test in CI.
//!
//! The policy is built first when PATH is a Rust crate (as `palisade build` does); the
//! same case file runs any version of a policy (Rust, Lua) unchanged.
//!
//! Exit codes: 0 every case passed; 1 a case failed (or a host error, named on stderr);
//! 2 usage error or an invalid case file; 5 the module was rejected; 6 the build failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use serde_json::{Value, json};

use super::OutputFormat;
use super::build::{Failure, build, engine};
use super::cases;

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// A Rust policy crate's directory (built first), a `.lua` script (or a directory
    /// holding one), or a `.wasm` module.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The case file. Default: `cases.json` in the project's directory (the script's or
    /// module's directory for a file).
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
    /// Run only the cases whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// Lines for people, or one JSON document for CI.
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

pub(crate) fn main(args: TestArgs) -> ExitCode {
    let engine = match engine() {
        Ok(e) => e,
        Err(e) => return Failure::Runtime(e).report(),
    };
    let built = match build(&engine, &args.path, None) {
        Ok(b) => b,
        Err(e) => return e.report(),
    };
    let cases_path = args
        .cases
        .clone()
        .unwrap_or_else(|| built.project.join("cases.json"));
    let file = match cases::load(&cases_path) {
        Ok(f) => f,
        Err(e) => return Failure::Usage(e).report(),
    };
    let selected: Vec<&cases::Case> = file
        .cases
        .iter()
        .filter(|c| {
            args.filter
                .as_ref()
                .is_none_or(|f| c.name.contains(f.as_str()))
        })
        .collect();
    if selected.is_empty() {
        return Failure::Usage(anyhow!("no case matches --filter")).report();
    }
    let text = args.format == OutputFormat::Text;
    if text {
        println!(
            "testing {} ({}) against {}: {} case(s)",
            built.path.display(),
            built.policy.kind().as_str(),
            cases_path.display(),
            selected.len()
        );
        if let Some(d) = &file.description {
            println!("{d}");
        }
    }
    let mut outcomes = Vec::new();
    for case in selected {
        let outcome = match cases::run(&built.policy, case) {
            Ok(o) => o,
            Err(e) => return Failure::Usage(e).report(),
        };
        if text {
            print_line(&outcome);
        }
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let passed = outcomes.len() - failed;
    if text {
        println!(
            "{} case(s): {passed} passed, {failed} failed",
            outcomes.len()
        );
    } else {
        let cases: Vec<Value> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "name": o.name,
                    "passed": o.failures.is_empty(),
                    "failures": o.failures,
                    "result": o.report,
                })
            })
            .collect();
        let doc = json!({
            "module": built.path.display().to_string(),
            "kind": built.policy.kind().as_str(),
            "cases_file": cases_path.display().to_string(),
            "passed": passed,
            "failed": failed,
            "cases": cases,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON serializes")
        );
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_line(o: &cases::Outcome) {
    let stats = &o.report["stats"];
    let cost = format!("fuel {}, {} µs", stats["fuel"], stats["duration_us"]);
    if o.failures.is_empty() {
        println!("ok    {} ({cost})", o.name);
    } else {
        println!("FAIL  {} ({cost})", o.name);
        for f in &o.failures {
            println!("      {f}");
        }
    }
}
