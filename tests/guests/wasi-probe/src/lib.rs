//! A test guest built against WASI 0.2 that tries every ambient capability: files,
//! environment, arguments, sockets, clocks and randomness. It answers with a JSON
//! report of what it got, which the deny-all context must make empty.

use palisade_sdk::{Action, Context, Policy, Request, Result};
use serde_json::json;

/// Probes the WASI context and responds with what it found.
pub struct WasiProbe;

#[cfg(target_arch = "wasm32")]
fn probe() -> serde_json::Value {
    use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};

    let preopens = wasip2::filesystem::preopens::get_directories();
    // With no preopened directory there is nothing to resolve a path against:
    // try to open one relative to each preopen (there are none) and report it.
    let opened = preopens.iter().any(|(dir, _)| {
        dir.open_at(
            wasip2::filesystem::types::PathFlags::empty(),
            "etc/passwd",
            wasip2::filesystem::types::OpenFlags::empty(),
            wasip2::filesystem::types::DescriptorFlags::READ,
        )
        .is_ok()
    });
    let env = wasip2::cli::environment::get_environment();
    let args = wasip2::cli::environment::get_arguments();
    let network = wasip2::sockets::instance_network::instance_network();
    let socket = match wasip2::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
    {
        Err(e) => format!("create refused: {e:?}"),
        Ok(sock) => {
            let addr = IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: 80,
                address: (127, 0, 0, 1),
            });
            match sock.start_connect(&network, addr) {
                Err(e) => format!("connect refused: {e:?}"),
                Ok(()) => "connect started".to_string(),
            }
        }
    };
    let lookup = wasip2::sockets::ip_name_lookup::resolve_addresses(&network, "localhost")
        .map(|_| "lookup started".to_string())
        .unwrap_or_else(|e| format!("lookup refused: {e:?}"));
    let stdout = wasip2::cli::stdout::get_stdout();
    let _ = stdout.blocking_write_and_flush(b"hello from wasi stdout\n");
    json!({
        "preopens": preopens.len(),
        "opened": opened,
        "env": env.len(),
        "args": args.len(),
        "socket": socket,
        "lookup": lookup,
        "wall_clock": wasip2::clocks::wall_clock::now().seconds,
        "monotonic": wasip2::clocks::monotonic_clock::now(),
        "random": wasip2::random::random::get_random_u64(),
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn probe() -> serde_json::Value {
    json!({ "native": true })
}

impl Policy for WasiProbe {
    fn on_request(_ctx: &Context, _req: Request) -> Result<Action<Request>> {
        Ok(Action::Respond(palisade_sdk::Response::from_json(
            200,
            &probe(),
        )))
    }
}

palisade_sdk::export!(WasiProbe);
