//! `palisade build`: a policy project anywhere into a module the gateway loads, and what
//! it is: path, size, contract, phases, imports, and the limits it runs under.
//!
//! A directory with a `Cargo.toml` is a Rust policy crate, built for wasm32 and made a
//! component (the toolchain logic of `cargo guests`, `palisade-guest-build`); a `.lua`
//! script (or a directory holding one) is compiled and checked; a `.wasm` file is checked.
//! Either way the module then goes through the gateway's admission.
//!
//! Exit codes: 0 built and admitted; 2 usage error (no such path, not a policy crate);
//! 5 the module was rejected (not a component of the contract, wrong contract version,
//! forbidden import, a Lua script that does not compile); 6 the build failed (no wasm32
//! toolchain, the compiler's errors); 1 a host error (a file that cannot be read or
//! written).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use palisade_guest_build::{BuildError, Crate};
use palisade_runtime::{CONTRACT_VERSION, Config, Engine, Error, Kind, Limits, Policy};
use serde_json::{Value, json};

use super::OutputFormat;

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// A Rust policy crate's directory, a `.lua` script (or a directory holding one), or
    /// a `.wasm` module to check.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Where to write the component (Rust). Default: `target/palisade/<name>.wasm` in the
    /// crate.
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// How to print what was built.
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

/// Exit code: the build itself failed.
pub(crate) const EXIT_BUILD: u8 = 6;

/// Why a project could not be made into a module.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Exit 2.
    Usage(anyhow::Error),
    /// Exit 6.
    Build(BuildError),
    /// The runtime's class (5 for a rejected module).
    Runtime(Error),
}

impl Failure {
    /// Prints the one-line cause on stderr and returns the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        let (code, text) = match self {
            Failure::Usage(e) => (2, format!("{e:#}")),
            // A module cargo built that is not a component of the contract (a forbidden
            // import, no WIT type section) is the module's fault, as at admission.
            Failure::Build(e @ BuildError::Componentize { .. }) => (5, e.to_string()),
            Failure::Build(e @ BuildError::NotAPolicy(_)) => (2, e.to_string()),
            Failure::Build(e @ BuildError::Io(..)) => (1, e.to_string()),
            Failure::Build(e) => (EXIT_BUILD, e.to_string()),
            Failure::Runtime(e) => (e.class().exit_code(), e.to_string()),
        };
        eprintln!("palisade: {}", text.replace(['\n', '\r'], " "));
        ExitCode::from(code)
    }
}

/// A module made from a project: its file and the loaded policy.
pub(crate) struct Built {
    pub(crate) path: PathBuf,
    pub(crate) policy: Policy,
    /// The directory of the project (for its `cases.json`).
    pub(crate) project: PathBuf,
}

pub(crate) fn main(args: BuildArgs) -> ExitCode {
    let engine = match engine() {
        Ok(e) => e,
        Err(e) => return Failure::Runtime(e).report(),
    };
    match build(&engine, &args.path, args.out.as_deref()) {
        Ok(built) => {
            let report = describe(&built);
            match args.format {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("JSON serializes")
                ),
                OutputFormat::Text => print_text(&report),
            }
            ExitCode::SUCCESS
        }
        Err(e) => e.report(),
    }
}

/// The engine of `palisade run`, `build` and `test`: the gateway's default limits; with
/// `PALISADE_CACHE_DIR` set, compiled modules are kept there (a JavaScript policy's
/// 12 MB component takes seconds to compile, then milliseconds to load).
pub(crate) fn engine() -> Result<Engine, Error> {
    let config = Config::new().pool(16, 4 << 30);
    let config = match std::env::var_os("PALISADE_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => config.cache_dir(PathBuf::from(dir)),
        _ => config,
    };
    Engine::new(&config)
}

/// Builds (Rust) or checks (Lua, Wasm) the project at `path` and loads its module.
pub(crate) fn build(engine: &Engine, path: &Path, out: Option<&Path>) -> Result<Built, Failure> {
    if !path.exists() {
        return Err(Failure::Usage(anyhow!("{} not found", path.display())));
    }
    let (module, project) = if is_js(path) {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("policy");
        let dir = parent_dir(path);
        let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
            dir.join("target")
                .join("palisade")
                .join(format!("{stem}.wasm"))
        });
        palisade_guest_build::js::build_js(path, &out).map_err(Failure::Build)?;
        (out, dir)
    } else if path.is_dir() && path.join("Cargo.toml").is_file() {
        let krate = Crate::open(path).map_err(Failure::Build)?;
        let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
            path.join("target")
                .join("palisade")
                .join(format!("{}.wasm", krate.name))
        });
        palisade_guest_build::build_crate(&krate, &out).map_err(Failure::Build)?;
        (out, path.to_path_buf())
    } else if path.is_dir() {
        let script = script_in(path)?;
        return build(engine, &script, out).map(|b| Built {
            project: path.to_path_buf(),
            ..b
        });
    } else {
        (path.to_path_buf(), parent_dir(path))
    };
    let policy = Policy::from_file(engine, &module).map_err(Failure::Runtime)?;
    Ok(Built {
        path: module,
        policy,
        project,
    })
}

/// A JavaScript or TypeScript source file.
fn is_js(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| e == "js" || e == "mjs" || e == "ts")
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The one policy script (`.lua`, `.js`, `.ts`) of a directory without a `Cargo.toml`;
/// the JS SDK (`palisade.js`) and declaration files are not policies.
fn script_in(dir: &Path) -> Result<PathBuf, Failure> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Failure::Usage(anyhow!("reading {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file()
                && (p.extension().is_some_and(|e| e == "lua") || is_js(p))
                && name != "palisade.js"
                && !name.ends_with(".d.ts")
        })
        .collect();
    match scripts.len() {
        1 => Ok(scripts.remove(0)),
        0 => Err(Failure::Usage(anyhow!(
            "{} has no Cargo.toml (a Rust policy) and no .lua, .js or .ts script",
            dir.display()
        ))),
        _ => Err(Failure::Usage(anyhow!(
            "{} has several policy scripts: name the one to build",
            dir.display()
        ))),
    }
}

fn describe(built: &Built) -> Value {
    let policy = &built.policy;
    let size = std::fs::metadata(&built.path).map(|m| m.len()).unwrap_or(0);
    let phases: Vec<&str> = [
        (policy.phases().request, "request"),
        (policy.phases().response, "response"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let (imports, exports) = match policy {
        Policy::Wasm(w) => (w.imports().to_vec(), w.exports().to_vec()),
        _ => (
            vec!["the `palisade` table (docs/lua.md)".to_string()],
            phases.iter().map(|p| format!("on_{p}")).collect::<Vec<_>>(),
        ),
    };
    json!({
        "path": built.path.display().to_string(),
        "name": policy.name(),
        "kind": policy.kind().as_str(),
        "size": size,
        "digest": hex::encode(policy.digest()),
        "contract": format!("palisade:policy@{CONTRACT_VERSION}"),
        "phases": phases,
        "imports": imports,
        "exports": exports,
        "limits": limits_json(policy.limits()),
    })
}

fn limits_json(l: &Limits) -> Value {
    json!({
        "fuel": l.fuel_budget(),
        "memory_bytes": l.memory_limit(),
        "timeout_ms": l.deadline().as_millis() as u64,
        "output_bytes": l.output_limit(),
        "log_bytes": l.log_limit(),
        "host_calls": l.host_call_limit(),
    })
}

fn print_text(r: &Value) {
    let kind = if r["kind"] == Kind::Lua.as_str() {
        "Luau script"
    } else {
        "Wasm component"
    };
    let list = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let l = &r["limits"];
    let fuel = l["fuel"]
        .as_u64()
        .map_or("unlimited".to_string(), |f| f.to_string());
    println!(
        "built    {} ({} bytes)",
        r["path"].as_str().unwrap_or(""),
        r["size"]
    );
    println!(
        "policy   {} ({kind}, sha256 {})",
        r["name"].as_str().unwrap_or(""),
        r["digest"].as_str().unwrap_or("")
    );
    println!("contract {}", r["contract"].as_str().unwrap_or(""));
    println!("phases   {}", list(&r["phases"]));
    println!("imports  {}", list(&r["imports"]));
    println!("exports  {}", list(&r["exports"]));
    println!(
        "limits   fuel {fuel}, memory {} MiB, deadline {} ms, output {} bytes, logs {} bytes, \
         host calls {} (the defaults; a route's policy entry may set fuel, memory and timeout_ms)",
        l["memory_bytes"].as_u64().unwrap_or(0) >> 20,
        l["timeout_ms"],
        l["output_bytes"],
        l["log_bytes"],
        l["host_calls"],
    );
}
