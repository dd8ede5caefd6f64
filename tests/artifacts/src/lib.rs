//! Paths of the wasm guests built from this workspace's sources, for tests and benches.
//! Depending on this crate builds them (see `build.rs`).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The workspace root.
pub const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Reads the first line `palisade serve` prints on stdout (piped) and returns the
/// addresses it names: the proxy listener's, and the admin listener's if there is one.
///
/// # Panics
///
/// When the process ends or prints no address first: the gateway did not start.
pub fn serve_addresses(
    child: &mut std::process::Child,
) -> (std::net::SocketAddr, Option<std::net::SocketAddr>) {
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("reading palisade serve's stdout");
    let proxy = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("palisade serve did not start: {line:?}"));
    let admin = line
        .split("(admin: http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|a| a.parse().ok());
    (proxy, admin)
}

/// Makes sure a Debian package the tests need is installed: when `present()` says no and
/// this process runs as root on Debian (and `PALISADE_NO_APT` is unset), the package index
/// is refreshed once per test process and `packages` are installed. One test at a time
/// runs apt-get. Returns `present()` afterwards.
///
/// This is what lets the README's test command pass on a fresh machine by itself.
pub fn debian_packages(packages: &[&str], present: impl Fn() -> bool) -> bool {
    use std::process::Command;
    use std::sync::Mutex;
    static APT: Mutex<bool> = Mutex::new(false); // whether the index was refreshed
    if present() {
        return true;
    }
    let mut refreshed = APT.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root || std::env::var_os("PALISADE_NO_APT").is_some() {
        return false;
    }
    let apt = |args: &[&str]| {
        eprintln!("installing for the tests: apt-get {}", args.join(" "));
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !*refreshed {
        *refreshed = apt(&["update", "-q"]);
    }
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install);
    present()
}
