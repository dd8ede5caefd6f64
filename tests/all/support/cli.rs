//! The one way tests run the `palisade` binary: in a directory, with extra environment
//! variables and standard input, as a user's shell would; or left running, as `serve`.

use std::ffi::OsStr;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// `palisade ARGS` with `stdin` (closed when `None`); the whole output.
pub(crate) fn run(
    dir: Option<&Path>,
    envs: &[(&str, &OsStr)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let mut cmd = Command::new(BIN);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .envs(envs.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("palisade runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("palisade reads its stdin");
    }
    drop(input);
    child.wait_with_output().expect("palisade finishes")
}

/// `palisade ARGS` in `dir`: (exit code, stdout, stderr).
pub(crate) fn palisade(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    palisade_env(dir, &[], args, stdin)
}

/// `palisade ARGS` in `dir` with extra environment variables: (exit code, stdout, stderr).
pub(crate) fn palisade_env(
    dir: &Path,
    envs: &[(&str, &OsStr)],
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    texts(run(Some(dir), envs, args, stdin.map(str::as_bytes)))
}

/// `palisade ARGS` in the current directory: (exit code, stdout, stderr).
pub(crate) fn palisade_here(args: &[&str]) -> (i32, String, String) {
    texts(run(None, &[], args, None))
}

/// `palisade apikey COMMAND --config CONFIG ARGS...`: (exit code, trimmed stdout, stderr).
pub(crate) fn apikey(config: &Path, command: &str, args: &[&str]) -> (i32, String, String) {
    let config = config.display().to_string();
    let mut all = vec!["apikey", command, "--config", &config];
    all.extend_from_slice(args);
    let (code, out, err) = palisade_here(&all);
    (code, out.trim().to_string(), err)
}

fn texts(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `palisade ARGS` left running in `dir` (the current one if `None`), after the shell
/// commands `shell` (such as `ulimit -n 512`) if any: stdout piped, stderr to `stderr`.
pub(crate) fn spawn(
    dir: Option<&Path>,
    shell: Option<&str>,
    args: &[&str],
    stderr: Stdio,
) -> Child {
    let mut cmd = match shell {
        Some(shell) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("{shell} && exec \"$0\" \"$@\""))
                .arg(BIN);
            sh
        }
        None => Command::new(BIN),
    };
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("palisade starts")
}

/// A `palisade serve` process that is listening; killed when dropped.
pub(crate) struct Serving {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: Option<SocketAddr>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Already reaped (a test waited for it): nothing is signalled.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `palisade serve --config CONFIG` once it listens; stderr is dropped.
pub(crate) fn serve(config: &Path) -> Serving {
    serve_with(config, &[], None, Stdio::null())
}

/// `palisade serve ARGS --config CONFIG` (after `shell`, as [`spawn`]) once it listens.
pub(crate) fn serve_with(
    config: &Path,
    args: &[&str],
    shell: Option<&str>,
    stderr: Stdio,
) -> Serving {
    let config = config.display().to_string();
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", &config]);
    let mut child = spawn(None, shell, &all, stderr);
    let (addr, admin) = palisade_test_artifacts::serve_addresses(&mut child);
    Serving { child, addr, admin }
}
