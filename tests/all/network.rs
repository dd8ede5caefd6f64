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
