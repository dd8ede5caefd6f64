//! Finding, and on Debian installing or upgrading, a compiler that builds guests for wasm32.
//!
//! The order:
//! 1. rustup's `wasm32-unknown-unknown` target, when installed: a plain cargo build;
//! 2. Debian's `rustc-web` + `rust-web-src` (the standard library built from source with
//!    `-Z build-std`, scoped to this build through `RUSTC_BOOTSTRAP=1`), when it is at least
//!    [`minimum`] and both packages are the same version;
//! 3. otherwise, when this process may run `apt-get` (root, Debian, `PALISADE_NO_APT` unset):
//!    the package index is refreshed first (bookworm's main suite offers rustc-web 1.85,
//!    too old; the newer build is in bookworm-security, which a stale index does not know),
//!    then both packages are installed or upgraded in one call, and checked again;
//! 4. otherwise the build stops with the exact commands to run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, TARGET, capture, which};

/// A way to build for wasm32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's installed `wasm32-unknown-unknown` target.
    Rustup,
    /// Debian's `rustc-web` with its `rust-web-src`, building std from source.
    BuildStd {
        /// The compiler, `/usr/bin/rustc`.
        rustc: PathBuf,
        /// Its version.
        version: Version,
        /// rustup's `rust-lld` (LTO-capable) or Debian's `wasm-ld` (LTO off).
        linker: PathBuf,
        /// Whether the guest profile's LTO stays on (only with `rust-lld`).
        lto: bool,
    },
}

/// A compiler version, as `rustc --version` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Reads `rustc 1.85.0 (...)`, `1.89` or `1.96.1`.
    pub fn parse(text: &str) -> Option<Self> {
        let word = text
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
        let mut parts = word
            .split(|c: char| !c.is_ascii_digit())
            .map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(Version(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The oldest compiler that builds the SDK and the policies: the workspace's `rust-version`.
pub fn minimum() -> Version {
    Version::parse(env!("CARGO_PKG_RUST_VERSION")).expect("rust-version is set")
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Toolchain::Rustup => write!(f, "rustup target {TARGET}"),
            Toolchain::BuildStd { rustc, version, .. } => {
                write!(f, "{} {version} with -Z build-std", rustc.display())
            }
        }
    }
}

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const PACKAGES: [&str; 2] = ["rustc-web", "rust-web-src"];
const APT_INSTALL: &str = "apt-get install -y --no-install-recommends rustc-web rust-web-src";

/// What Debian's compiler looks like on this machine.
enum Debian {
    Ready(Toolchain),
    /// Installed but older than [`minimum`], or the two packages differ in version.
    Unusable(String),
    /// Not installed (or no linker for it).
    Missing,
}

impl Toolchain {
    /// Finds a toolchain, installing or upgrading Debian's when this process may.
    ///
    /// `PALISADE_DEBIAN_RUSTC` names another Debian compiler (tests simulate machines with
    /// it); `PALISADE_NO_APT` forbids running `apt-get`.
    ///
    /// # Errors
    ///
    /// [`BuildError::NoToolchain`] with the exact commands to run.
    pub fn detect() -> Result<Self, BuildError> {
        if rustup_target_installed() {
            return Ok(Toolchain::Rustup);
        }
        let rustc = std::env::var_os("PALISADE_DEBIAN_RUSTC")
            .map_or_else(|| PathBuf::from(DEBIAN_RUSTC), PathBuf::from);
        let problem = match debian(&rustc) {
            Debian::Ready(t) => return Ok(t),
            Debian::Unusable(why) => Some(why),
            Debian::Missing => None,
        };
        if std::env::var_os("PALISADE_NO_APT").is_some() || !can_apt() {
            return Err(no_toolchain(problem.as_deref(), false));
        }
        match &problem {
            Some(why) => progress(&format!("{why}; upgrading it with apt-get")),
            None => progress(
                "no wasm32 toolchain found; installing Debian's rustc-web and rust-web-src with apt-get",
            ),
        }
        // Always refresh first: a stale index offers bookworm's rustc-web 1.85 only.
        progress("[1/2] refreshing the package index (apt-get update)");
        let updated = apt(&["update", "-q"]);
        progress(
            "[2/2] installing rustc-web and rust-web-src (about 300 MB; a few minutes on a slow link)",
        );
        apt(&[
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            PACKAGES[0],
            PACKAGES[1],
        ]);
        match debian(&rustc) {
            Debian::Ready(t) => {
                progress(&format!("using {t}"));
                Ok(t)
            }
            Debian::Unusable(why) => Err(no_toolchain(Some(&why), updated)),
            Debian::Missing => Err(no_toolchain(problem.as_deref(), updated)),
        }
    }

    pub(crate) fn configure(&self, cmd: &mut Command) {
        if let Toolchain::BuildStd {
            rustc, linker, lto, ..
        } = self
        {
            cmd.env("RUSTC", rustc)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker)
                .args(["-Z", "build-std=std,panic_abort"]);
            if !lto {
                cmd.env("CARGO_PROFILE_GUEST_LTO", "false");
            }
        }
    }
}

fn debian(rustc: &Path) -> Debian {
    let Some(version) =
        capture(Command::new(rustc).arg("--version")).and_then(|v| Version::parse(&v))
    else {
        return Debian::Missing;
    };
    if version < minimum() {
        return Debian::Unusable(format!(
            "Debian's rustc-web is {version}, older than the {} the guests need",
            minimum()
        ));
    }
    if let Some(versions) = dpkg_versions(rustc)
        && versions[0] != versions[1]
    {
        return Debian::Unusable(format!(
            "rustc-web is {} but rust-web-src is {}: they must be the same version",
            versions[0], versions[1]
        ));
    }
    let Some(sysroot) = capture(Command::new(rustc).args(["--print", "sysroot"])) else {
        return Debian::Missing;
    };
    let src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/Cargo.lock");
    if !src.is_file() {
        return Debian::Unusable(format!(
            "rustc-web {version} has no standard library sources (rust-web-src is not installed)"
        ));
    }
    // rustup's rust-lld links LTO builds; Debian's LLVM 14 wasm-ld cannot read newer
    // bitcode, so it is used only with LTO off.
    let rustup_lld = capture(Command::new("rustc").args(["--print", "sysroot"]))
        .map(|s| Path::new(s.trim()).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"))
        .filter(|p| p.is_file());
    let (linker, lto) = match rustup_lld {
        Some(linker) => (linker, true),
        None => match which("wasm-ld") {
            Some(linker) => (linker, false),
            None => return Debian::Missing,
        },
    };
    Debian::Ready(Toolchain::BuildStd {
        rustc: rustc.to_path_buf(),
        version,
        linker,
        lto,
    })
}

/// The installed versions of rustc-web and rust-web-src, for Debian's own compiler.
fn dpkg_versions(rustc: &Path) -> Option<[String; 2]> {
    if rustc != Path::new(DEBIAN_RUSTC) {
        return None;
    }
    let out = capture(
        Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}\\n"])
            .args(PACKAGES),
    )?;
    let mut lines = out.lines().map(str::to_owned);
    Some([lines.next()?, lines.next()?])
}

fn no_toolchain(problem: Option<&str>, updated: bool) -> BuildError {
    let mut msg = String::new();
    if let Some(problem) = problem {
        msg.push_str(problem);
        msg.push_str(". ");
    }
    if updated {
        msg.push_str(&format!(
            "The package index, refreshed, offers no rustc-web {} or newer: the newer build is in \
             the bookworm-security suite, so check that /etc/apt/sources.list (or a file in \
             /etc/apt/sources.list.d/) lists `bookworm-security`, then run ",
            minimum()
        ));
    } else {
        msg.push_str(
            "Install one of: `rustup target add wasm32-unknown-unknown`, or on Debian 12 as root ",
        );
    }
    msg.push_str(&format!(
        "`apt-get update && {APT_INSTALL}` (both packages in one command, same version; rustc-web {} or newer)",
        minimum()
    ));
    BuildError::NoToolchain(msg)
}

/// Runs apt-get non-interactively; whether it succeeded.
pub(crate) fn apt(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
}

/// A progress line on stderr (cargo shows a build script's only when it fails).
pub(crate) fn progress(msg: &str) {
    eprintln!("palisade-guest-build: {msg}");
}

fn rustup_target_installed() -> bool {
    capture(Command::new("rustc").args(["--print", "target-libdir", "--target", TARGET]))
        .map(|dir| Path::new(dir.trim()).to_path_buf())
        .is_some_and(|dir| {
            std::fs::read_dir(dir).is_ok_and(|mut entries| {
                entries.any(|e| {
                    e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
                })
            })
        })
}

pub(crate) fn can_apt() -> bool {
    which("apt-get").is_some()
        && capture(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn versions_parse_from_rustc_output() {
        assert_eq!(
            Version::parse("rustc 1.85.0 (4d91de4e4 2025-02-17) (built from a source tarball)"),
            Some(Version(1, 85, 0))
        );
        assert_eq!(Version::parse("1.89"), Some(Version(1, 89, 0)));
        assert_eq!(
            Version::parse("rustc 1.96.1-beta.2"),
            Some(Version(1, 96, 1))
        );
        assert_eq!(Version::parse("rustc"), None);
        assert!(Version(1, 85, 0) < super::minimum());
        assert!(Version(1, 96, 0) >= super::minimum());
    }
}
