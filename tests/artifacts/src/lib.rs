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
