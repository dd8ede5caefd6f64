//! The one way tests run the `palisade` binary: in a directory, with extra environment
//! variables and standard input, as a user's shell would.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `palisade ARGS` with `stdin` (closed when `None`); the whole output.
pub(crate) fn run(
    dir: Option<&Path>,
    envs: &[(&str, &OsStr)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
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
    let out = run(Some(dir), envs, args, stdin.map(str::as_bytes));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
