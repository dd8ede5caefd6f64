//! Phase: client addresses. The client's address is the connection's peer, or, when the
//! peer is a trusted proxy (`[server] trusted_proxies`), the right-most address in
//! `X-Forwarded-For` that is not a trusted proxy: the one the nearest trusted proxy saw.
//! Addresses further left are the client's own claims and are never believed. The
//! tenant's and the route's lists then decide, before authentication: a deny list
//! refuses, and every non-empty allow list must contain the address.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

use super::forward::canonical;
use crate::error::Error;
use crate::server::Cidr;

/// A route's address lists, its tenant's included.
#[derive(Debug, Clone, Default)]
pub(crate) struct IpRules {
    /// Each non-empty list must contain the client (the tenant's, the route's).
    allow: Vec<Vec<IpNet>>,
    /// None may contain it.
    deny: Vec<IpNet>,
}

impl IpRules {
    pub(crate) fn new<'a>(
        allow: impl IntoIterator<Item = &'a [Cidr]>,
        deny: impl IntoIterator<Item = &'a Cidr>,
    ) -> Self {
        IpRules {
            allow: allow
                .into_iter()
                .filter(|list| !list.is_empty())
                .map(|list| list.iter().map(|c| c.0).collect())
                .collect(),
            deny: deny.into_iter().map(|c| c.0).collect(),
        }
    }

    /// Refuses the request (403 `ip_refused`) unless its client may call the route. A
    /// client address that cannot be read (a trusted proxy's unparsable
    /// `X-Forwarded-For`) is refused whenever a list applies.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        trusted: &[IpNet],
    ) -> Result<(), Error> {
        if self.allow.is_empty() && self.deny.is_empty() {
            return Ok(());
        }
        let allowed = client(headers, peer, trusted).is_some_and(|ip| {
            !self.deny.iter().any(|net| net.contains(&ip))
                && self
                    .allow
                    .iter()
                    .all(|list| list.iter().any(|net| net.contains(&ip)))
        });
        if allowed {
            Ok(())
        } else {
            Err(Error::Forbidden {
                cause: "ip_refused",
                subject: String::new(),
                challenge: None,
            })
        }
    }
}

/// The client's address (see the module's documentation); `None` when a trusted proxy
/// sent an `X-Forwarded-For` entry that is not an address.
pub(crate) fn client(headers: &HeaderMap, peer: SocketAddr, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut ip = canonical(peer.ip());
    if !is_trusted(&ip) {
        return Some(ip);
    }
    // Every `X-Forwarded-For` line, in order, read right to left.
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        hops.extend(value.to_str().ok()?.split(','));
    }
    for hop in hops.iter().rev() {
        ip = canonical(parse(hop.trim())?);
        if !is_trusted(&ip) {
            return Some(ip);
        }
    }
    // Trusted all the way: the left-most proxy is the client.
    Some(ip)
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, with or
/// without a port.
fn parse(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn only_a_trusted_peer_s_forwarded_for_is_read_right_to_left() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = nets(&["127.0.0.0/8", "10.0.0.0/8"]);
        let h = headers(&["203.0.113.9, 198.51.100.7", "10.1.1.1"]);
        // The right-most untrusted hop, not the client's own claim on the left.
        assert_eq!(client(&h, peer, &trusted), "198.51.100.7".parse().ok());
        // An untrusted peer's header is ignored.
        assert_eq!(client(&h, peer, &[]), Some(peer.ip()));
        assert_eq!(
            client(&headers(&["[2001:db8::7]:443"]), peer, &trusted),
            "2001:db8::7".parse().ok()
        );
        assert_eq!(client(&headers(&["not-an-ip"]), peer, &trusted), None);
        // IPv4-mapped IPv6 is compared as IPv4.
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:80".parse().unwrap();
        assert_eq!(
            client(&HeaderMap::new(), mapped, &[]),
            "192.0.2.1".parse().ok()
        );
    }

    #[test]
    fn mapped_ipv6_entries_are_the_ipv4_ranges_they_name() {
        let cidr = |s: &str| Cidr::try_from(s.to_string()).unwrap().0;
        assert_eq!(
            cidr("::ffff:192.0.2.66"),
            "192.0.2.66/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            cidr("::ffff:192.0.2.0/120"),
            "192.0.2.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            cidr("2001:db8::/32"),
            "2001:db8::/32".parse::<IpNet>().unwrap()
        );
        let rules = IpRules::new(
            [],
            &[Cidr::try_from("::ffff:192.0.2.66".to_string()).unwrap()],
        );
        let peer: SocketAddr = "192.0.2.66:1".parse().unwrap();
        assert!(rules.check(&HeaderMap::new(), peer, &[]).is_err());
    }

    #[test]
    fn deny_refuses_and_every_allow_list_must_contain_the_client() {
        let cidr = |s: &str| Cidr(s.parse().unwrap());
        let tenant = [cidr("192.0.2.0/24"), cidr("2001:db8::/32")];
        let route = [cidr("192.0.2.0/25")];
        let rules = IpRules::new([&tenant[..], &route[..]], &[cidr("192.0.2.66/32")]);
        let at = |ip: &str| {
            let peer = SocketAddr::new(ip.parse().unwrap(), 1);
            rules.check(&HeaderMap::new(), peer, &[]).is_ok()
        };
        assert!(at("192.0.2.10"));
        assert!(!at("192.0.2.66"), "denied");
        assert!(!at("192.0.2.200"), "in the tenant's list, not the route's");
        assert!(!at("2001:db8::1"), "in the tenant's list, not the route's");
        assert!(!at("198.51.100.1"));
        let v6 = IpRules::new([], &[cidr("2001:db8::/32")]);
        let peer = SocketAddr::new("2001:db8::5".parse().unwrap(), 1);
        assert!(v6.check(&HeaderMap::new(), peer, &[]).is_err());
        assert!(
            IpRules::default()
                .check(&HeaderMap::new(), peer, &[])
                .is_ok()
        );
    }
}
