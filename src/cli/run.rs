//! `palisade run`: one module, one input, a JSON answer and a documented exit code.
//!
//! Exit codes: 0 success (a respond decision is a success); 2 usage error or malformed
//! input; 3 a resource limit was hit; 4 the guest failed; 5 the module was rejected;
//! 1 a host error. On failure one line on stderr names the cause.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use palisade_runtime::{Decision, Error, Invocation, Limits, Policy};
use serde_json::{Value, json};

use super::envelope;

/// Which phase to run.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Phase {
    /// The request phase; the input is a request envelope.
    Request,
    /// The response phase; the input is a response envelope.
    Response,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The module: a `.wasm` component, a core module carrying a WIT type section, or a `.lua` script.
    module: PathBuf,
    /// The phase to run.
    #[arg(long, value_enum, default_value = "request")]
    phase: Phase,
    /// The input envelope (JSON); `-` reads stdin. Without it, an empty GET / request.
    #[arg(long, value_name = "FILE|-")]
    input: Option<String>,
    /// Fuel (instruction budget), or `unlimited`. Default 1000000000.
    #[arg(long, value_name = "N|unlimited")]
    fuel: Option<String>,
    /// Memory limit in bytes (suffixes K, M, G allowed: 64M). Default 64M.
    #[arg(long, value_name = "BYTES")]
    memory: Option<String>,
    /// Wall-clock deadline in milliseconds. Default 1000.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// A config entry for the policy; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
}

/// Exit code for usage and input errors.
const EXIT_USAGE: u8 = 2;

pub(crate) fn main(args: RunArgs) -> ExitCode {
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(e)) => {
            eprintln!("palisade: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("palisade: {}", e.to_string().replace(['\n', '\r'], " "));
            ExitCode::from(e.class().exit_code())
        }
    }
}

enum Failure {
    Usage(anyhow::Error),
    Runtime(Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Usage(e)
    }
}

fn run(args: &RunArgs) -> Result<u8, Failure> {
    if !args.module.is_file() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "module {} not found",
            args.module.display()
        )));
    }
    let limits = limits(args)?;
    let input = read_input(args.input.as_deref())?;
    let mut ctx = envelope::context(&input)?;
    ctx.config = args
        .config
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--config `{kv}` is not KEY=VALUE"))
        })
        .collect::<Result<_>>()?;

    let engine = super::build::engine().map_err(Failure::Runtime)?;
    let module = Policy::from_file(&engine, &args.module)
        .map_err(Failure::Runtime)?
        .with_limits(limits);

    let (output, error) = match args.phase {
        Phase::Request => {
            let req = envelope::request(&input)?;
            let inv = module.on_request(&ctx, req);
            report(inv, "request", envelope::request_json)
        }
        Phase::Response => {
            let (req, res) = envelope::response(&input)?;
            let inv = module.on_response(&ctx, &req, res);
            report(inv, "response", envelope::response_json)
        }
    };
    // A closed stdout (`| head`) is not worth a panic.
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&output).expect("JSON serializes")
    );
    match error {
        None => Ok(0),
        Some(e) => Err(Failure::Runtime(e)),
    }
}

/// The JSON report of an invocation (what `palisade run` prints), and its error.
pub(crate) fn report<T>(
    inv: Invocation<T>,
    noun: &str,
    to_json: fn(&T) -> Value,
) -> (Value, Option<Error>) {
    let logs: Vec<Value> = inv
        .logs
        .iter()
        .map(|l| json!({"level": l.level.as_str(), "message": l.message}))
        .collect();
    let stats = json!({
        "fuel": inv.stats.fuel,
        "memory_peak": inv.stats.memory_peak,
        "duration_us": inv.stats.duration.as_micros() as u64,
    });
    let mut out = match &inv.result {
        Ok(Decision::Continue(t)) => json!({"action": "continue", noun: to_json(t)}),
        Ok(Decision::Respond(res)) => {
            json!({"action": "respond", "response": envelope::response_json(res)})
        }
        Err(e) => json!({"action": "error", "error": {"kind": e.kind(), "message": e.to_string()}}),
    };
    let obj = out.as_object_mut().expect("an object");
    obj.insert("logs".into(), Value::Array(logs));
    if inv.logs_dropped > 0 {
        obj.insert("logs_dropped".into(), json!(inv.logs_dropped));
    }
    obj.insert("redacted".into(), json!(inv.redacted));
    obj.insert("stats".into(), stats);
    (out, inv.result.err())
}

fn read_input(input: Option<&str>) -> Result<Value> {
    let text = match input {
        None => return Ok(json!({})),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading stdin")?;
            s
        }
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading input {path}"))?
        }
    };
    serde_json::from_str(&text).context("the input is not valid JSON")
}

fn limits(args: &RunArgs) -> Result<Limits> {
    let fuel = match args.fuel.as_deref() {
        None => None,
        Some("unlimited") => Some(None),
        Some(n) => Some(Some(
            n.parse()
                .with_context(|| format!("--fuel `{n}` is not a number"))?,
        )),
    };
    let memory = args.memory.as_deref().map(parse_bytes).transpose()?;
    limits_of(fuel, memory, args.timeout, "--timeout")
}

/// The default limits with these overrides: fuel (`Some(None)`: unlimited), memory in
/// bytes, a deadline in milliseconds (at least 1; `timeout_name` says where it came from).
pub(crate) fn limits_of(
    fuel: Option<Option<u64>>,
    memory: Option<u64>,
    timeout_ms: Option<u64>,
    timeout_name: &str,
) -> Result<Limits> {
    let mut limits = Limits::default();
    match fuel {
        None => {}
        Some(None) => limits = limits.unlimited_fuel(),
        Some(Some(n)) => limits = limits.fuel(n),
    }
    if let Some(m) = memory {
        limits = limits.memory(m);
    }
    if let Some(ms) = timeout_ms {
        if ms == 0 {
            bail!("{timeout_name} must be at least 1 ms");
        }
        limits = limits.timeout(Duration::from_millis(ms));
    }
    Ok(limits)
}

fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .with_context(|| format!("--memory `{s}` is not a byte count (e.g. 67108864 or 64M)"))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert!(parse_bytes("lots").is_err());
    }
}
