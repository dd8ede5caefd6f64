//! Client addresses: the tenant's and the route's allow and deny lists (IPv4 and IPv6),
//! checked before authentication, with the client's address read from `X-Forwarded-For`
//! only behind a trusted proxy (the right-most untrusted hop).

use bytes::Bytes;

use crate::support::{Config, Route, send, start_with};

fn config(up: std::net::SocketAddr, trusted: &str) -> Config {
    Config::new(up)
        .server(trusted)
        .tenant(
            "acme",
            "allow_ips = [\"192.0.2.0/24\", \"2001:db8::/32\"]\ndeny_ips = [\"2001:db8:bad::/48\"]",
        )
        .route(
            Route::new("acme")
                .tenant("acme")
                .path("/acme")
                .keys("deny_ips = [\"192.0.2.66\"]"),
        )
        .route(Route::new("open").tenant("globex").path("/open"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_lists_per_tenant_and_route_hold_for_ipv4_and_ipv6() {
    let h = start_with(|up, _| config(up, "trusted_proxies = [\"127.0.0.0/8\"]")).await;
    for (path, forwarded_for, status) in [
        ("/acme", "192.0.2.10", 200),
        ("/acme", "2001:db8::1", 200),
        ("/acme", "198.51.100.1", 403),
        // The tenant's IPv6 deny list, inside its allow list.
        ("/acme", "2001:db8:bad::1", 403),
        // The route's own deny list.
        ("/acme", "192.0.2.66", 403),
        // The client's claim on the left is not believed: the nearest untrusted hop is.
        ("/acme", "192.0.2.10, 198.51.100.1", 403),
        // Not an address: refused where a list applies.
        ("/acme", "unknown", 403),
        ("/open", "198.51.100.1", 200),
    ] {
        let r = send(
            h.addr(),
            "GET",
            path,
            &[("x-forwarded-for", forwarded_for)],
            Bytes::new(),
        )
        .await;
        assert_eq!(
            r.status,
            status,
            "{path} from {forwarded_for}: {}",
            r.text()
        );
        if status == 403 {
            assert_eq!(r.json()["error"], "forbidden", "{}", r.text());
            let block = h.block_for(&r);
            assert_eq!(
                (block["cause"].as_str(), block["decision"].as_str()),
                (Some("ip_refused"), Some("denied")),
                "{block}"
            );
            let address = forwarded_for.rsplit(',').next().unwrap().trim();
            assert!(
                address == "unknown" || !block.to_string().contains(address),
                "the address is not in the ledger: {block}"
            );
        }
    }
    assert!(h.upstream.hits() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // No trusted proxy: the peer (127.0.0.1) is the client, whatever it claims.
    let h = start_with(|up, _| config(up, "")).await;
    let r = send(
        h.addr(),
        "GET",
        "/acme",
        &[("x-forwarded-for", "192.0.2.10")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(h.block_for(&r)["cause"], "ip_refused");
}

/// A PROXY protocol v2 header (PROXY, TCP over IPv4) from `source` (HAProxy's spec, §2.2).
fn proxy_v2(source: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&4711u16.to_be_bytes());
    h.extend_from_slice(&8080u16.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_gives_the_client_address_and_nothing_else_is_served() {
    use crate::support::raw;
    use std::time::Duration;
    let h = start_with(|up, _| {
        config(
            up,
            "trusted_proxies = [\"127.0.0.0/8\"]\nproxy_protocol = true\nheader_timeout_ms = 1000",
        )
    })
    .await;
    let request = b"GET /acme HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (source, status) in [([192, 0, 2, 10], "200"), ([198, 51, 100, 1], "403")] {
        let mut bytes = proxy_v2(source);
        bytes.extend_from_slice(request);
        let (answer, _) = raw(h.addr(), &bytes, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{source:?}: {answer}"
        );
        if status == "200" {
            // The upstream hears of the client the header named, not of the balancer.
            assert!(answer.contains("192.0.2.10"), "{answer}");
        }
    }
    // Without a header, with a v1 (text) header, or a truncated one: closed, unserved.
    let mut truncated = proxy_v2([192, 0, 2, 10]);
    truncated.truncate(20);
    for bytes in [
        request.to_vec(),
        [
            &b"PROXY TCP4 192.0.2.10 127.0.0.1 4711 8080\r\n"[..],
            request,
        ]
        .concat(),
        truncated,
    ] {
        let (answer, closed) = raw(h.addr(), &bytes, Duration::from_secs(5)).await;
        assert!(answer.is_empty() && closed, "{answer}");
    }
    // A peer that is not a trusted proxy may not send a header at all.
    let untrusted = start_with(|up, _| {
        config(
            up,
            "trusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = true",
        )
    })
    .await;
    let mut bytes = proxy_v2([192, 0, 2, 10]);
    bytes.extend_from_slice(request);
    let (answer, closed) = raw(untrusted.addr(), &bytes, Duration::from_secs(5)).await;
    assert!(answer.is_empty() && closed, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7239_forwarded_is_read_from_trusted_proxies_when_configured() {
    let h = start_with(|up, _| {
        config(
            up,
            "trusted_proxies = [\"127.0.0.0/8\"]\nforwarded_header = \"forwarded\"",
        )
    })
    .await;
    for (forwarded, status) in [
        ("for=192.0.2.10;proto=https", 200),
        ("for=\"[2001:db8::1]:4711\"", 200),
        // The tenant's IPv6 deny list holds through `Forwarded` too.
        ("for=\"[2001:db8:bad::1]\"", 403),
        ("for=192.0.2.10, for=198.51.100.1", 403),
        ("for=_hidden", 403),
    ] {
        let r = send(
            h.addr(),
            "GET",
            "/acme",
            // Not read in this mode: an `X-Forwarded-For` the client wrote.
            &[("forwarded", forwarded), ("x-forwarded-for", "192.0.2.10")],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, status, "{forwarded}: {}", r.text());
    }
}
