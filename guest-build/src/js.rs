//! Building JavaScript and TypeScript policies: node runs `js/build.mjs` of this
//! checkout (componentize-js and TypeScript pinned in `js/package-lock.json`, installed
//! with `npm ci` the first time). Node and npm come from Debian when missing and this
//! process may run `apt-get` (root, Debian, `PALISADE_NO_APT` unset); otherwise the build
//! stops with the exact commands.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::toolchain::{apt, can_apt, progress};
use crate::{BuildError, capture, which};

/// The oldest node that runs componentize-js 0.23.
const MIN_NODE_MAJOR: u32 = 18;

/// The checkout's JS build directory: `js/` beside this crate.
fn js_dir() -> PathBuf {
    crate::workspace_root().join("js")
}

/// Builds the JS or TS module `source` into a component at `out`.
///
/// # Errors
///
/// [`BuildError::NoToolchain`] without node/npm, [`BuildError::Cargo`]-like
/// [`BuildError::Js`] when the module does not compile or cannot be made a component
/// (the reasons were printed above), [`BuildError::Io`].
pub fn build_js(source: &Path, out: &Path) -> Result<(), BuildError> {
    let dir = js_dir();
    if !dir.join("build.mjs").is_file() {
        return Err(BuildError::NoToolchain(format!(
            "{} is missing: JavaScript policies are built with the checkout palisade was built from",
            dir.join("build.mjs").display()
        )));
    }
    let node = node()?;
    install_packages(&dir)?;
    if let Some(parent) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| BuildError::Io(format!("creating {}", parent.display()), e))?;
    }
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // The sources are copied here; removed when this returns, a stopped build included.
    let work = tempfile::Builder::new()
        .prefix("palisade-js-")
        .tempdir()
        .map_err(|e| BuildError::Io("creating a build directory".into(), e))?;
    // In this process's group: Ctrl-C at a terminal reaches node and wizer too.
    let mut child = Command::new(node)
        .arg(dir.join("build.mjs"))
        .arg(absolute(source))
        .arg(absolute(out))
        .arg(crate::workspace_root().join("sdk/wit"))
        .arg(work.path())
        .current_dir(&dir)
        .spawn()
        .map_err(|e| BuildError::Io("running node".into(), e))?;
    // The build runs the module's top level (wizer pre-initializes it): a top level that
    // never returns would hold the build forever.
    let limit = timeout();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| BuildError::Io("waiting for node".into(), e))?
        {
            break status;
        }
        if started.elapsed() > limit {
            // Node's descendants (wizer) first, so none is left running.
            for pid in descendants(child.id()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(BuildError::Js(format!(
                "{} did not build within {} s: does its top level ever return? (the build runs \
                 it once; PALISADE_JS_BUILD_TIMEOUT sets the limit in seconds)",
                source.display(),
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Js(format!(
            "{} could not be built ({status}; the reasons are above)",
            source.display()
        )))
    }
}

/// Every process below `root` (children first found, then theirs), from `/proc`.
fn descendants(root: u32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![i32::try_from(root).unwrap_or(0)];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// How long a build may take: `PALISADE_JS_BUILD_TIMEOUT` seconds, 180 by default.
fn timeout() -> Duration {
    let secs = std::env::var("PALISADE_JS_BUILD_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    Duration::from_secs(secs)
}

/// Runs `npm ci` in `dir` unless what `package-lock.json` pins is installed already. One
/// process at a time (a file lock): builds started together wait for the first install
/// instead of using half of it. A copy of the lock file in `node_modules`, written last,
/// says the install finished.
fn install_packages(dir: &Path) -> Result<(), BuildError> {
    let io = |what: &str, e| BuildError::Io(format!("{what} in {}", dir.display()), e);
    let pinned = std::fs::read(dir.join("package-lock.json"))
        .map_err(|e| io("reading package-lock.json", e))?;
    let marker = dir.join("node_modules/.palisade-package-lock.json");
    let installed = || std::fs::read(&marker).is_ok_and(|m| m == pinned);
    // Installed: nothing to write (a read-only checkout builds too). `npm ci` removes
    // the marker first, so a present one means a finished install.
    if installed() {
        return Ok(());
    }
    let guard = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".palisade-npm.lock"))
        .map_err(|e| io("opening .palisade-npm.lock", e))?;
    guard
        .lock()
        .map_err(|e| io("locking .palisade-npm.lock", e))?;
    if installed() {
        return Ok(());
    }
    progress("installing the JS build's pinned packages (npm ci: componentize-js, typescript)");
    let status = Command::new(npm()?)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .map_err(|e| BuildError::Io("running npm".into(), e))?;
    if !status.success() {
        return Err(BuildError::NoToolchain(format!(
            "`npm ci` in {} failed ({status}); it needs the npm registry once",
            dir.display()
        )));
    }
    std::fs::write(&marker, &pinned).map_err(|e| io("writing the install marker", e))
}

fn node() -> Result<PathBuf, BuildError> {
    if let Some(node) = which("node").filter(|n| node_major(n).is_some_and(|m| m >= MIN_NODE_MAJOR))
    {
        return Ok(node);
    }
    install()?;
    which("node")
        .filter(|n| node_major(n).is_some_and(|m| m >= MIN_NODE_MAJOR))
        .ok_or_else(missing)
}

fn npm() -> Result<PathBuf, BuildError> {
    if let Some(npm) = which("npm") {
        return Ok(npm);
    }
    install()?;
    which("npm").ok_or_else(missing)
}

fn install() -> Result<(), BuildError> {
    if std::env::var_os("PALISADE_NO_APT").is_some() || !can_apt() {
        return Err(missing());
    }
    progress(&format!(
        "[1/2] node {MIN_NODE_MAJOR}+ or npm is missing: refreshing the package index (apt-get update)"
    ));
    let _ = apt(&["update", "-q"]);
    progress("[2/2] installing nodejs and npm (apt-get install)");
    if apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "nodejs",
        "npm",
    ]) {
        Ok(())
    } else {
        Err(missing())
    }
}

fn missing() -> BuildError {
    BuildError::NoToolchain(format!(
        "JavaScript policies need node {MIN_NODE_MAJOR} or newer and npm: on Debian 12 as root \
         `apt-get update && apt-get install -y nodejs npm`"
    ))
}

fn node_major(node: &Path) -> Option<u32> {
    let version = capture(Command::new(node).arg("--version"))?;
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}
