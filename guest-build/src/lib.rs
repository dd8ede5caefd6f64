//! Builds Palisade's Rust guests (`policies/*`, `tests/guests/*`) for
//! `wasm32-unknown-unknown` and turns each into a component at
//! `target/policies/<name>.wasm`; and a policy crate anywhere ([`build_crate`], what
//! `palisade build` runs).
//!
//! The toolchain is chosen by [`toolchain::Toolchain::detect`]: rustup's wasm32 target,
//! else Debian's `rustc-web` + `rust-web-src` (installed or upgraded with `apt-get` when
//! this process may), else the build stops with the exact commands to run.
//!
//! A guest crate's directory name is its package name and its output name.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod js;
pub mod toolchain;

use toolchain::Toolchain;

pub(crate) const TARGET: &str = "wasm32-unknown-unknown";
/// Flags for every guest: a 256 KiB stack placed first in memory.
const GUEST_RUSTFLAGS: &str = "-C link-arg=-zstack-size=262144 -C link-arg=--stack-first";
const PROFILE: &str = "guest";
/// The `guest` profile, set through cargo's environment so that a policy crate anywhere
/// builds the same way as the workspace's guests without declaring it: no unwinding (a
/// panic is a trap), speed over size (opt-level "s" left `redact-pii` a third slower for
/// a 22 % smaller component; docs/benchmarks.md), whole-program optimization.
const PROFILE_ENV: &[(&str, &str)] = &[
    ("CARGO_PROFILE_GUEST_INHERITS", "release"),
    ("CARGO_PROFILE_GUEST_OPT_LEVEL", "3"),
    ("CARGO_PROFILE_GUEST_PANIC", "abort"),
    ("CARGO_PROFILE_GUEST_LTO", "true"),
    ("CARGO_PROFILE_GUEST_CODEGEN_UNITS", "1"),
    ("CARGO_PROFILE_GUEST_DEBUG", "false"),
    ("CARGO_PROFILE_GUEST_STRIP", "true"),
];
/// Guest crates live in these directories of the workspace.
pub const GUEST_DIRS: &[&str] = &["policies", "tests/guests"];

/// A guest crate and what it was built into.
#[derive(Debug, Clone)]
pub struct Guest {
    /// Package (and directory) name, e.g. `redact-pii`.
    pub name: String,
    /// The crate's directory.
    pub dir: PathBuf,
    /// The component, `target/policies/<name>.wasm`.
    pub wasm: PathBuf,
}

/// Why guests could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The directory holds no policy crate; the message says what is missing.
    NotAPolicy(String),
    /// No usable wasm32 toolchain; the message says what to install.
    NoToolchain(String),
    /// Cargo failed (its own output was printed to stderr).
    Cargo(String),
    /// A JavaScript or TypeScript module did not build (the reasons were printed).
    Js(String),
    /// A built module could not be turned into a component.
    Componentize {
        /// The guest.
        name: String,
        /// Why.
        message: String,
    },
    /// Reading or writing a file failed.
    Io(String, std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NotAPolicy(msg) => write!(f, "not a policy crate: {msg}"),
            BuildError::NoToolchain(msg) => write!(f, "no wasm32 toolchain: {msg}"),
            BuildError::Cargo(msg) => write!(f, "guest build failed: {msg}"),
            BuildError::Js(msg) => write!(f, "JavaScript build failed: {msg}"),
            BuildError::Componentize { name, message } => {
                write!(
                    f,
                    "guest `{name}` is not a valid policy component: {message}"
                )
            }
            BuildError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("guest-build lives inside the workspace")
        .to_path_buf()
}

/// Every guest crate of the workspace, in a stable order.
pub fn discover(root: &Path) -> Vec<Guest> {
    let out = root.join("target").join("policies");
    let mut guests = Vec::new();
    for dir in GUEST_DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .and_then(OsStr::to_str)
                .unwrap_or_default()
                .to_string();
            guests.push(Guest {
                wasm: out.join(format!("{name}.wasm")),
                name,
                dir,
            });
        }
    }
    guests
}

/// Builds every guest of the workspace at `root`.
///
/// # Errors
///
/// See [`BuildError`].
pub fn build_all(root: &Path) -> Result<Vec<Guest>, BuildError> {
    let guests = discover(root);
    build(root, &guests)?;
    Ok(guests)
}

/// Builds `guests` with one cargo invocation and componentizes each.
///
/// # Errors
///
/// See [`BuildError`].
pub fn build(root: &Path, guests: &[Guest]) -> Result<(), BuildError> {
    if guests.is_empty() {
        return Ok(());
    }
    let target_dir = root.join("target").join("guests");
    cargo_build(&target_dir, true, |cmd| {
        cmd.current_dir(root);
        for guest in guests {
            cmd.args(["-p", &guest.name]);
        }
    })?;
    let out = root.join("target").join("policies");
    std::fs::create_dir_all(&out)
        .map_err(|e| BuildError::Io(format!("creating {}", out.display()), e))?;
    for guest in guests {
        let lib = guest.name.replace('-', "_");
        write_component(&target_dir, &lib, &guest.name, &guest.wasm)?;
    }
    Ok(())
}

/// Reads the core module cargo built for library `lib` under `target_dir`, makes it a
/// component and writes it to `out` (left untouched when unchanged).
fn write_component(target_dir: &Path, lib: &str, name: &str, out: &Path) -> Result<(), BuildError> {
    let core = target_dir
        .join(TARGET)
        .join(PROFILE)
        .join(format!("{lib}.wasm"));
    let bytes = std::fs::read(&core)
        .map_err(|e| BuildError::Io(format!("reading {}", core.display()), e))?;
    toolchain::progress(&format!(
        "making the component from {} ({} bytes)",
        core.display(),
        bytes.len()
    ));
    let component = componentize(&bytes).map_err(|message| BuildError::Componentize {
        name: name.to_string(),
        message,
    })?;
    write_if_changed(out, &component)
}

/// Builds a standalone guest crate (not a workspace member: a peer runtime's plugin for
/// the benches) into a core module with the same toolchain, flags and `guest` profile,
/// and returns the module's path.
///
/// # Errors
///
/// See [`BuildError`].
pub fn build_core(manifest: &Path, target_dir: &Path) -> Result<PathBuf, BuildError> {
    cargo_build(target_dir, true, |cmd| {
        cmd.arg("--manifest-path").arg(manifest);
    })?;
    let name = manifest
        .parent()
        .and_then(Path::file_name)
        .and_then(OsStr::to_str)
        .unwrap_or_default()
        .replace('-', "_");
    Ok(target_dir
        .join(TARGET)
        .join(PROFILE)
        .join(format!("{name}.wasm")))
}

/// A policy crate outside the workspace: what [`build_crate`] builds.
#[derive(Debug, Clone)]
pub struct Crate {
    /// The package name.
    pub name: String,
    /// The library's name (the core module's file stem).
    pub lib_name: String,
    /// The crate's directory.
    pub dir: PathBuf,
}

impl Crate {
    /// Reads `dir/Cargo.toml` and checks that it describes a policy: a package whose
    /// library is a `cdylib` and which depends on `palisade-sdk`.
    ///
    /// # Errors
    ///
    /// [`BuildError::NotAPolicy`] naming what is missing, [`BuildError::Io`] when the
    /// manifest cannot be read.
    pub fn open(dir: &Path) -> Result<Crate, BuildError> {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| BuildError::Io(format!("reading {}", manifest.display()), e))?;
        let doc: toml::Table = text.parse().map_err(|e| {
            BuildError::NotAPolicy(format!("{} does not parse: {e}", manifest.display()))
        })?;
        let Some(name) = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
        else {
            return Err(BuildError::NotAPolicy(format!(
                "{} has no [package] name (a workspace root? give the policy crate's directory)",
                manifest.display()
            )));
        };
        let lib = doc.get("lib");
        let cdylib = lib
            .and_then(|l| l.get("crate-type"))
            .and_then(toml::Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
        if !cdylib {
            return Err(BuildError::NotAPolicy(format!(
                "`{name}`: [lib] crate-type must include \"cdylib\" (the component), e.g. \
                 crate-type = [\"cdylib\", \"rlib\"]"
            )));
        }
        let sdk = ["dependencies", "target"].iter().any(|section| {
            doc.get(*section).is_some_and(|t| {
                t.get("palisade-sdk").is_some()
                    || t.as_table().is_some_and(|targets| {
                        targets.values().any(|v| {
                            v.get("dependencies")
                                .is_some_and(|d| d.get("palisade-sdk").is_some())
                        })
                    })
            })
        });
        if !sdk {
            return Err(BuildError::NotAPolicy(format!(
                "`{name}` does not depend on palisade-sdk (the contract's bindings and `export!`)"
            )));
        }
        let lib_name = lib
            .and_then(|l| l.get("name"))
            .and_then(toml::Value::as_str)
            .unwrap_or(name)
            .replace('-', "_");
        Ok(Crate {
            name: name.to_string(),
            lib_name,
            dir: dir.to_path_buf(),
        })
    }
}

/// Builds a policy crate anywhere into a component at `out`, with the toolchain, flags
/// and profile of the workspace's guests. Cargo's target directory is
/// `$CARGO_TARGET_DIR` when set, else the crate's `target/`; the crate's `Cargo.lock`
/// is created or updated as `cargo build` would.
///
/// # Errors
///
/// See [`BuildError`].
pub fn build_crate(krate: &Crate, out: &Path) -> Result<(), BuildError> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| krate.dir.join("target"));
    cargo_build(&target_dir, false, |cmd| {
        cmd.arg("--manifest-path").arg(krate.dir.join("Cargo.toml"));
    })?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| BuildError::Io(format!("creating {}", dir.display()), e))?;
    }
    write_component(&target_dir, &krate.lib_name, &krate.name, out)
}

/// Runs `cargo build` for wasm32 with the detected toolchain, the `guest` profile and the
/// guests' flags (`--locked` when `locked`); `select` adds what to build.
fn cargo_build(
    target_dir: &Path,
    locked: bool,
    select: impl FnOnce(&mut Command),
) -> Result<(), BuildError> {
    let toolchain = Toolchain::detect()?;
    toolchain::progress(&format!(
        "compiling for {TARGET} with {toolchain} (cargo's progress follows; a first build compiles the standard library too: minutes on 2 cores)"
    ));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    clean_env(&mut cmd);
    cmd.args(["build", "--profile", PROFILE, "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    if locked {
        cmd.arg("--locked");
    }
    select(&mut cmd);
    cmd.envs(PROFILE_ENV.iter().copied());
    // After the profile: a toolchain without an LTO-capable linker turns LTO off.
    toolchain.configure(&mut cmd);
    // Rust reserves a 1 MiB stack at the bottom of linear memory; every fresh instance
    // would start with those pages. 256 KiB is ample for policies (serde_json nests 128
    // levels deep at most), and with the stack first an overflow traps (below address 0)
    // instead of corrupting data.
    cmd.env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        GUEST_RUSTFLAGS,
    );
    let status = cmd
        .status()
        .map_err(|e| BuildError::Io("running cargo".into(), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Cargo(format!(
            "cargo exited with {status} ({toolchain})"
        )))
    }
}

/// Turns a core module with an embedded WIT type section into a component.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

/// Writes `bytes` to `path` unless it holds them already: through a temporary file in
/// the same directory renamed over `path`, so a link planted at `path` is replaced, never
/// followed, and a reader never sees half a component.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link && std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e| BuildError::Io(format!("writing {}", path.display()), e);
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut file, bytes).map_err(io)?;
    // Readable by the gateway's user, as a plain write would leave it (the temporary
    // file is created 0600).
    use std::os::unix::fs::PermissionsExt as _;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io)?;
    match file.persist(path) {
        Ok(_) => Ok(()),
        // A file that cannot be replaced (a bind-mounted output) is written in place,
        // unless it is a link.
        Err(e) if !is_link => std::fs::write(path, bytes).map_err(|_| io(e.error)),
        Err(e) => Err(io(e.error)),
    }
}

/// Strips what an outer cargo (a build script's environment) sets, so the nested build
/// behaves as if run from a shell.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = [
            "CARGO_HOME",
            "CARGO_NET_",
            "CARGO_HTTP_",
            "CARGO_REGISTRIES_",
            "CARGO_REGISTRY_",
        ]
        .iter()
        .any(|p| key.starts_with(p));
        let outer = (key.starts_with("CARGO") && !keep)
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "DEBUG"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "NUM_JOBS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
            );
        if outer {
            cmd.env_remove(key);
        }
    }
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

pub(crate) fn capture(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
