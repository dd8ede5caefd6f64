//! Phase: client addresses. The client's address is the connection's peer, or, when the
//! peer is a trusted proxy (`[server] trusted_proxies`), the right-most address in
//! `X-Forwarded-For` (or RFC 7239 `Forwarded`'s `for=`, with `forwarded_header =
//! "forwarded"`) that is not a trusted proxy: the one the nearest trusted proxy saw.
//! Addresses further left are the client's own claims and are never believed. The
//! tenant's and the route's lists then decide, before authentication: a deny list
//! refuses, and every non-empty allow list must contain the address.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;

use super::forward::canonical;
use crate::error::Error;
use crate::server::Cidr;

/// `[server] forwarded_header`: the header a trusted proxy's hops are read from. Only
/// one is ever read: a proxy that appends to one may pass the other through from its
/// client untouched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:80"`.
    Forwarded,
}

/// The trusted proxies, and the header their hops are read from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    pub(crate) nets: Vec<IpNet>,
    pub(crate) header: ForwardedHeader,
}

impl Proxies {
    pub(crate) fn trusts(&self, ip: &IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// The hops a trusted proxy reported, left (farthest) to right (nearest), as written;
    /// `None` when a header line is not text or not RFC 7239 syntax.
    pub(crate) fn hops(&self, headers: &HeaderMap) -> Option<Vec<String>> {
        let mut hops = Vec::new();
        match self.header {
            ForwardedHeader::XForwardedFor => {
                for value in headers.get_all("x-forwarded-for") {
                    hops.extend(
                        value
                            .to_str()
                            .ok()?
                            .split(',')
                            .map(|h| h.trim().to_string()),
                    );
                }
            }
            ForwardedHeader::Forwarded => {
                for value in headers.get_all("forwarded") {
                    for element in forwarded_elements(value.to_str().ok()?)? {
                        // An element without `for=` names no hop the gateway can check.
                        hops.push(param(&element, "for").unwrap_or_else(|| "unknown".into()));
                    }
                }
            }
        }
        Some(hops)
    }

    /// The scheme the nearest trusted proxy reported (`X-Forwarded-Proto`, or the last
    /// `Forwarded` element's `proto=`).
    pub(crate) fn proto(&self, headers: &HeaderMap) -> Option<String> {
        let mut values = match self.header {
            ForwardedHeader::XForwardedFor => headers.get_all("x-forwarded-proto").iter(),
            ForwardedHeader::Forwarded => headers.get_all("forwarded").iter(),
        };
        let one = values.next()?.to_str().ok()?.to_string();
        match self.header {
            ForwardedHeader::XForwardedFor => values.next().is_none().then_some(one),
            ForwardedHeader::Forwarded => {
                let last = values
                    .next_back()
                    .and_then(|v| v.to_str().ok().map(str::to_string));
                let elements = forwarded_elements(last.as_deref().unwrap_or(&one))?;
                param(elements.last()?, "proto")
            }
        }
    }
}

/// The elements of one `Forwarded` line (RFC 7239 §4): split on commas outside quoted
/// strings; `None` for an unterminated quote.
fn forwarded_elements(line: &str) -> Option<Vec<String>> {
    let mut elements = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in line.chars() {
        let current = elements.last_mut().expect("one element at least");
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => elements.push(String::new()),
            _ => current.push(c),
        }
    }
    (!quoted).then(|| elements.into_iter().map(|e| e.trim().to_string()).collect())
}

/// The value of parameter `name` (case-insensitive) of one `Forwarded` element, unquoted.
fn param(element: &str, name: &str) -> Option<String> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted) = (0, false);
    let bytes = element.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => quoted = !quoted,
            b';' if !quoted => {
                pairs.push(&element[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pairs.push(&element[start..]);
    pairs.into_iter().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let value = value.trim();
        Some(
            match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => value.to_string(),
            },
        )
    })
}

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
        trusted: &Proxies,
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
/// sent a hop that is not an address.
pub(crate) fn client(headers: &HeaderMap, peer: SocketAddr, trusted: &Proxies) -> Option<IpAddr> {
    let mut ip = canonical(peer.ip());
    if !trusted.trusts(&ip) {
        return Some(ip);
    }
    // Every line, in order, read right to left.
    for hop in trusted.hops(headers)?.iter().rev() {
        ip = canonical(parse(hop)?);
        if !trusted.trusts(&ip) {
            return Some(ip);
        }
    }
    // Trusted all the way: the left-most proxy is the client.
    Some(ip)
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, with or
/// without a port.
pub(crate) fn parse(hop: &str) -> Option<IpAddr> {
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

    fn proxies(list: &[&str]) -> Proxies {
        Proxies {
            nets: list.iter().map(|n| n.parse().unwrap()).collect(),
            header: ForwardedHeader::XForwardedFor,
        }
    }

    #[test]
    fn rfc7239_forwarded_is_read_only_when_configured() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut trusted = proxies(&["127.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.append(
            "forwarded",
            r#"for=203.0.113.9;proto=http, for="[2001:db8:cafe::17]:4711";by="x,y";proto=https"#
                .parse()
                .unwrap(),
        );
        h.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        // X-Forwarded-For by default: the Forwarded line is the client's, ignored.
        assert_eq!(client(&h, peer, &trusted), "198.51.100.1".parse().ok());
        trusted.header = ForwardedHeader::Forwarded;
        assert_eq!(client(&h, peer, &trusted), "2001:db8:cafe::17".parse().ok());
        assert_eq!(trusted.proto(&h).as_deref(), Some("https"));
        // Obfuscated identifiers and elements without `for=` are not addresses.
        for line in [
            "for=_hidden",
            "proto=https",
            "for=unknown",
            "for=\"[2001:db8::1",
        ] {
            let mut h = HeaderMap::new();
            h.append("forwarded", line.parse().unwrap());
            assert_eq!(client(&h, peer, &trusted), None, "{line}");
        }
        assert_eq!(
            forwarded_elements(r#"for="a,b";x=1, for=c"#).unwrap(),
            [r#"for="a,b";x=1"#, "for=c"]
        );
        assert_eq!(
            param(r#"For="[::1]:80";proto=http"#, "for").as_deref(),
            Some("[::1]:80")
        );
    }

    #[test]
    fn only_a_trusted_peer_s_forwarded_for_is_read_right_to_left() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = proxies(&["127.0.0.0/8", "10.0.0.0/8"]);
        let h = headers(&["203.0.113.9, 198.51.100.7", "10.1.1.1"]);
        // The right-most untrusted hop, not the client's own claim on the left.
        assert_eq!(client(&h, peer, &trusted), "198.51.100.7".parse().ok());
        // An untrusted peer's header is ignored.
        assert_eq!(client(&h, peer, &Proxies::default()), Some(peer.ip()));
        assert_eq!(
            client(&headers(&["[2001:db8::7]:443"]), peer, &trusted),
            "2001:db8::7".parse().ok()
        );
        assert_eq!(client(&headers(&["not-an-ip"]), peer, &trusted), None);
        // IPv4-mapped IPv6 is compared as IPv4.
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:80".parse().unwrap();
        assert_eq!(
            client(&HeaderMap::new(), mapped, &Proxies::default()),
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
        assert!(
            rules
                .check(&HeaderMap::new(), peer, &Proxies::default())
                .is_err()
        );
    }

    #[test]
    fn deny_refuses_and_every_allow_list_must_contain_the_client() {
        let cidr = |s: &str| Cidr(s.parse().unwrap());
        let tenant = [cidr("192.0.2.0/24"), cidr("2001:db8::/32")];
        let route = [cidr("192.0.2.0/25")];
        let rules = IpRules::new([&tenant[..], &route[..]], &[cidr("192.0.2.66/32")]);
        let at = |ip: &str| {
            let peer = SocketAddr::new(ip.parse().unwrap(), 1);
            rules
                .check(&HeaderMap::new(), peer, &Proxies::default())
                .is_ok()
        };
        assert!(at("192.0.2.10"));
        assert!(!at("192.0.2.66"), "denied");
        assert!(!at("192.0.2.200"), "in the tenant's list, not the route's");
        assert!(!at("2001:db8::1"), "in the tenant's list, not the route's");
        assert!(!at("198.51.100.1"));
        let v6 = IpRules::new([], &[cidr("2001:db8::/32")]);
        let peer = SocketAddr::new("2001:db8::5".parse().unwrap(), 1);
        assert!(
            v6.check(&HeaderMap::new(), peer, &Proxies::default())
                .is_err()
        );
        assert!(
            IpRules::default()
                .check(&HeaderMap::new(), peer, &Proxies::default())
                .is_ok()
        );
    }
}
