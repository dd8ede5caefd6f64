//! PROXY protocol v2 (HAProxy's binary header) on the proxy listener (`[server]
//! proxy_protocol = true`): a TCP load balancer in front of the gateway says, before any
//! byte of the connection, which address the client connected from. Parsed with `ppp`.
//!
//! With it on, every connection must start with a header, within the first request's
//! deadline, from a peer in `trusted_proxies`; anything else is closed before a byte of
//! HTTP or TLS is read (`palisade_connections_closed_total{reason="proxy_header"}`), so
//! a client that reaches the listener directly cannot claim an address. A `PROXY`
//! command's source address becomes the connection's peer (for address lists, logs and
//! `X-Forwarded-For`); a `LOCAL` command (the balancer's own health check) keeps the
//! balancer's address. Version 1 (text) headers are refused.

use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Header};
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The largest header read (address block and TLVs): balancers send tens of bytes.
const MAX_HEADER: usize = 4096;
/// The fixed part: the 12-byte signature, version and command, family and protocol, and
/// the length of the rest (HAProxy's spec, §2.2).
const FIXED: usize = 16;

/// Reads one v2 header from `stream`, exactly (no byte after it), and returns the
/// client's address (`peer` for `LOCAL` or an address family without one).
///
/// # Errors
///
/// A static reason for a missing, malformed or oversized header.
pub(crate) async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
) -> Result<SocketAddr, &'static str> {
    let mut head = [0u8; FIXED];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|_| "no PROXY header")?;
    if !head.starts_with(ppp::v2::PROTOCOL_PREFIX) {
        return Err("not a PROXY v2 header");
    }
    let length = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if length > MAX_HEADER {
        return Err("PROXY header too large");
    }
    let mut whole = Vec::with_capacity(head.len() + length);
    whole.extend_from_slice(&head);
    whole.resize(head.len() + length, 0);
    stream
        .read_exact(&mut whole[head.len()..])
        .await
        .map_err(|_| "truncated PROXY header")?;
    let header = Header::try_from(&whole[..]).map_err(|_| "malformed PROXY header")?;
    if header.command == Command::Local {
        return Ok(peer);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => SocketAddr::from((a.source_address, a.source_port)),
        Addresses::IPv6(a) => SocketAddr::from((a.source_address, a.source_port)),
        Addresses::Unspecified | Addresses::Unix(_) => peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Protocol};

    fn header(command: Command, addresses: impl Into<Addresses>) -> Vec<u8> {
        Builder::with_addresses(ppp::v2::Version::Two | command, Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn reads_the_client_address_and_nothing_after_the_header() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let client: SocketAddr = "[2001:db8::7]:443".parse().unwrap();
        let addresses = ppp::v2::IPv6::new(
            "2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap(),
            "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap(),
            443,
            8080,
        );
        let mut bytes = header(Command::Proxy, addresses);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut stream = &bytes[..];
        assert_eq!(read(&mut stream, peer).await, Ok(client));
        assert_eq!(stream, b"GET / HTTP/1.1\r\n");
        let local = header(Command::Local, Addresses::Unspecified);
        assert_eq!(read(&mut &local[..], peer).await, Ok(peer));
    }

    #[tokio::test]
    async fn refuses_what_is_not_one_v2_header() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let v4 = ppp::v2::IPv4::new([192, 0, 2, 1], [192, 0, 2, 2], 1, 2);
        let good = header(Command::Proxy, v4);
        let mut oversized = good[..16].to_vec();
        oversized[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut bad_family = good.clone();
        bad_family[13] = 0x99;
        for bytes in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n",
            &good[..good.len() - 1],
            &oversized,
            &bad_family,
            b"",
        ] {
            assert!(read(&mut &bytes[..], peer).await.is_err(), "{bytes:?}");
        }
    }
}
