//! The guest toolchain step on simulated machines: a fake Debian `rustc` whose version the
//! fake `apt-get` changes only after `apt-get update` (as bookworm's stale index offers
//! rustc-web 1.85 and only the refreshed one sees bookworm-security's 1.96), a fake rustup
//! `rustc` without the wasm32 target, and a fake `id` that says root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    /// `installed`: Debian's rustc-web version now (None: not installed);
    /// `refreshed_offers`: what `apt-get install` gets after `apt-get update`.
    fn new(installed: Option<&str>, refreshed_offers: &str) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "bin",
            "state",
            "empty",
            "rustup/lib/rustlib/x86_64-unknown-linux-gnu/bin",
            "debian/lib/rustlib/src/rust/library",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(
            d.join("rustup/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"),
            "",
        )
        .unwrap();
        std::fs::write(d.join("debian/lib/rustlib/src/rust/library/Cargo.lock"), "").unwrap();
        if let Some(v) = installed {
            std::fs::write(d.join("state/version"), format!("{v}\n")).unwrap();
        }
        let p = d.display();
        script(&d.join("bin/id"), "echo 0");
        // rustup's rustc: no wasm32 target, but its rust-lld.
        script(
            &d.join("bin/rustc"),
            &format!(
                "case \"$*\" in *target-libdir*) echo {p}/empty;; *sysroot*) echo {p}/rustup;; esac"
            ),
        );
        // Debian's rustc: exists only once a version is installed.
        script(
            &d.join("debian-rustc"),
            &format!(
                "[ -e {p}/state/version ] || exit 127\nread v < {p}/state/version\n\
                 case \"$1\" in --version) echo \"rustc $v (fake)\";; --print) echo {p}/debian;; esac"
            ),
        );
        // apt-get: a stale index installs 1.85; a refreshed one installs `refreshed_offers`.
        script(
            &d.join("bin/apt-get"),
            &format!(
                "echo \"$*\" >> {p}/apt.log\ncase \"$1\" in\n update) : > {p}/state/fresh;;\n \
                 install) if [ -e {p}/state/fresh ]; then echo {refreshed_offers} > {p}/state/version; \
                 else echo 1.85.0 > {p}/state/version; fi;;\nesac"
            ),
        );
        Machine { dir }
    }

    fn detect(&self) -> Output {
        let d = self.dir.path();
        Command::new(env!("CARGO_BIN_EXE_palisade-guest-build"))
            .arg("--toolchain")
            .env("PATH", d.join("bin"))
            .env("PALISADE_DEBIAN_RUSTC", d.join("debian-rustc"))
            .env_remove("PALISADE_NO_APT")
            .output()
            .expect("runs")
    }

    fn apt_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apt.log")).unwrap_or_default()
    }
}

fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const APT_CALLS: &str = "update -q\ninstall -y -q --no-install-recommends rustc-web rust-web-src\n";

#[test]
fn a_too_old_rustc_web_is_upgraded_after_refreshing_the_index() {
    let m = Machine::new(Some("1.85.0"), "1.96.0");
    let out = m.detect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("debian-rustc 1.96.0 with -Z build-std"),
        "{stdout}"
    );
    assert_eq!(m.apt_log(), APT_CALLS);
    assert!(
        stderr.contains("older than the 1.89.0 the guests need"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[1/2] refreshing the package index"),
        "{stderr}"
    );
}

#[test]
fn a_fresh_machine_refreshes_the_index_before_installing() {
    let m = Machine::new(None, "1.96.0");
    let out = m.detect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.96.0"));
    assert_eq!(m.apt_log(), APT_CALLS);
}

#[test]
fn an_index_with_only_an_old_rustc_web_stops_with_the_exact_commands() {
    let m = Machine::new(Some("1.85.0"), "1.85.0");
    let out = m.detect();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        m.apt_log(),
        APT_CALLS,
        "it tried the refresh and the upgrade first"
    );
    for needle in [
        "Debian's rustc-web is 1.85.0, older than the 1.89.0 the guests need",
        "bookworm-security",
        "/etc/apt/sources.list",
        "`apt-get update && apt-get install -y --no-install-recommends rustc-web rust-web-src`",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}

#[test]
fn without_apt_a_bare_machine_gets_the_exact_install_commands() {
    let m = Machine::new(None, "1.96.0");
    let d: PathBuf = m.dir.path().into();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-guest-build"))
        .env("PATH", d.join("empty")) // no rustc, no apt-get
        .env("PALISADE_DEBIAN_RUSTC", d.join("debian-rustc"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rustup target add wasm32-unknown-unknown"),
        "{err}"
    );
    assert!(
        err.contains(
            "apt-get update && apt-get install -y --no-install-recommends rustc-web rust-web-src"
        ),
        "{err}"
    );
    assert_eq!(m.apt_log(), "");
}
