//! What leaves for the upstream: a URI whose authority is always the route's, the headers
//! only the gateway sets, and what it never forwards.
//!
//! | headers | from the caller | from a policy | set by the gateway |
//! | --- | --- | --- | --- |
//! | `x-palisade-*`, `x-tenant*`, `x-correlation-id` (any case, `_` or `-`) | removed | removed | tenant, identity, correlation id |
//! | `Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `X-Client-IP`, `True-Client-IP` | removed (kept in `X-Forwarded-For` only from a trusted proxy) | removed | `X-Forwarded-For`, `X-Forwarded-Host`, and `X-Forwarded-Proto` from a trusted proxy |
//! | method and URL overrides (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`, `X-Original-URL`, `X-Rewrite-URL`) | removed | removed | never |
//! | Palisade API keys (`X-API-Key: pal_...`, `Authorization: ApiKey`) | removed | forwarded: a policy's own choice | never |
//! | `Authorization`, `X-API-Key` on a route with `auth` | removed before policies (a JWT kept with `forward_bearer = true`) | forwarded: a policy's own choice | `upstream_auth` replaces it |
//! | `Range`, `If-Range`, `Request-Range` on a route that reads the response (policies, redaction) | removed | removed | never |

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::Full;
use palisade_runtime::Request;

use super::io::{strip_hop_by_hop, to_map};
use crate::error::Error;

/// `name` (lowercase) read as most frameworks read it: `_` as `-` (CGI-style servers turn
/// `x_palisade_tenant` into `X-Palisade-Tenant`). Compared without allocating: every
/// request's every header passes here twice.
fn dashed(name: &str) -> impl Iterator<Item = u8> + '_ {
    name.bytes().map(|b| if b == b'_' { b'-' } else { b })
}

fn is(name: &str, wanted: &str) -> bool {
    name.len() == wanted.len() && dashed(name).eq(wanted.bytes())
}

fn starts(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && dashed(&name[..prefix.len()]).eq(prefix.bytes())
}

/// Whether `name` (lowercase) is one only the gateway may set, in any spelling.
fn reserved(name: &str) -> bool {
    starts(name, "x-palisade-") || starts(name, "x-tenant") || is(name, "x-correlation-id")
}

/// Whole names that claim where a request came from, or that ask an upstream framework
/// to treat it as another method or URL (besides `forwarded` and `x-forwarded-*`).
pub(crate) const FORWARDING_NAMES: [&str; 14] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded",
    "client-ip",
    "x-cluster-client-ip",
    "x-original-host",
    "x-host",
];

/// Headers that claim where a request came from, or that ask an upstream framework to
/// treat it as another method or URL.
fn forwarding_or_override(name: &str) -> bool {
    starts(name, "x-forwarded-") || FORWARDING_NAMES.iter().any(|w| is(name, w))
}

fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&str) -> bool) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| drop(k.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// What the gateway knows about where a request came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// `X-Forwarded-For` as it leaves: a trusted proxy's chain plus the peer, or the peer
    /// (none when the embedding does not know the peer).
    pub(crate) forwarded_for: Option<String>,
    /// The host the caller asked for.
    pub(crate) host: Option<String>,
    /// `X-Forwarded-Proto` as a trusted proxy sent it.
    pub(crate) proto: Option<String>,
}

/// The caller's headers as policies see them: reserved, forwarding and override headers
/// removed, and the gateway's credentials: Palisade API keys (`X-API-Key: pal_...`,
/// `Authorization: ApiKey`) always; `Authorization` and `X-API-Key` altogether when
/// `strip_authorization` (the route authenticated the caller and does not forward its
/// bearer token). `host` is the host the
/// request was routed by. Returns what the gateway will say about the origin.
pub(crate) fn inbound(
    headers: &mut HeaderMap,
    peer: Option<SocketAddr>,
    host: &str,
    trusted: &super::client::Proxies,
    strip_authorization: bool,
) -> Origin {
    strip_hop_by_hop(headers);
    let peer_ip = peer.map(|p| canonical(p.ip()));
    let from_proxy = peer_ip.is_some_and(|ip| trusted.trusts(&ip));
    let origin = Origin {
        // Read only from a trusted proxy: nobody else's claims are even copied.
        forwarded_for: peer_ip.map(|ip| {
            // Addresses only, as the gateway read them: no port, no `unknown`, no
            // obfuscated identifier, nothing else a proxy's header held.
            let chain = from_proxy
                .then(|| trusted.hops(headers))
                .flatten()
                .and_then(|hops| {
                    hops.iter()
                        .map(|h| super::client::parse(h).map(|a| canonical(a).to_string()))
                        .collect::<Option<Vec<_>>>()
                })
                .filter(|hops| !hops.is_empty());
            match chain {
                Some(chain) => format!("{}, {ip}", chain.join(", ")),
                None => ip.to_string(),
            }
        }),
        host: (!host.is_empty()).then(|| host.to_string()),
        proto: from_proxy
            .then(|| trusted.proto(headers))
            .flatten()
            .filter(|p| matches!(p.as_str(), "http" | "https")),
    };
    remove_where(headers, |n| reserved(n) || forwarding_or_override(n));
    let palisade_key = headers
        .iter()
        .any(|(n, v)| is(n.as_str(), "x-api-key") && v.as_bytes().starts_with(b"pal_"));
    if strip_authorization || palisade_key {
        remove_where(headers, |n| is(n, "x-api-key"));
    }
    let api_key_scheme = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split_once(' ')
                .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("apikey"))
        });
    if strip_authorization || api_key_scheme {
        headers.remove(header::AUTHORIZATION);
    }
    origin
}

pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where a request goes upstream.
pub(crate) struct Target<'a> {
    pub(crate) base: &'a http::Uri,
    /// The path below the route's upstream base (already checked origin-form).
    pub(crate) path: &'a str,
    pub(crate) origin: &'a Origin,
    pub(crate) tenant: &'a str,
    pub(crate) correlation_id: &'a str,
    pub(crate) identity: Option<&'a str>,
    /// The response body will be read by policies or redaction: ask for it unencoded and
    /// whole.
    pub(crate) reads_response: bool,
    /// Upstream credentials (marked sensitive): they replace what the caller sent.
    pub(crate) credentials: Vec<(HeaderName, HeaderValue)>,
}

/// A request ready to go upstream, as many times as retries and hedges need.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) method: http::Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Outbound {
    /// The URI it goes to.
    pub(crate) fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// The headers it carries.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers to send (the trace context goes in here).
    pub(crate) fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The request, once (an embedding's inner service, which is not retried).
    pub(crate) fn into_request(self) -> http::Request<Full<Bytes>> {
        let mut out = http::Request::new(Full::new(self.body));
        *out.method_mut() = self.method;
        *out.uri_mut() = self.uri;
        *out.headers_mut() = self.headers;
        out
    }

    /// One attempt's request (the body is shared, not copied).
    pub(crate) fn build(&self) -> http::Request<Full<Bytes>> {
        let mut out = http::Request::new(Full::new(self.body.clone()));
        *out.method_mut() = self.method.clone();
        *out.uri_mut() = self.uri.clone();
        *out.headers_mut() = self.headers.clone();
        out
    }
}

/// The request `req` (after the request policies) becomes upstream. The scheme and
/// authority come from the route alone; the path and query are one `PathAndQuery`, so
/// nothing in them can name another host or port.
///
/// # Errors
///
/// [`Error::RequestPolicy`] `policy_invalid_output` when the method, path or query is not
/// valid HTTP (the policies' output is checked before this; the caller's was parsed by
/// the connection).
pub(crate) fn outbound(req: &Request, to: Target<'_>) -> Result<Outbound, Error> {
    let invalid = || Error::RequestPolicy {
        cause: super::POLICY_INVALID_OUTPUT,
        detail: "the request cannot be sent upstream".into(),
    };
    let prefix = to.base.path().trim_end_matches('/');
    let mut path_and_query = format!("{prefix}{}", to.path);
    if !req.query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&req.query);
    }
    let mut parts = to.base.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| invalid())?);
    let uri = http::Uri::from_parts(parts).map_err(|_| invalid())?;

    let mut headers = to_map(&req.headers);
    strip_hop_by_hop(&mut headers);
    remove_where(&mut headers, |n| reserved(n) || forwarding_or_override(n));
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    if to.reads_response {
        // The body is read whole: unencoded, and never a slice that redaction cannot
        // see in context (a `Range` could reassemble what redaction removes).
        headers.remove(header::ACCEPT_ENCODING);
        headers.remove(header::RANGE);
        headers.remove(header::IF_RANGE);
        headers.remove("request-range"); // Apache's older spelling
    }
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(&mut headers, "x-palisade-tenant", to.tenant);
    set(&mut headers, "x-correlation-id", to.correlation_id);
    if let Some(id) = to.identity {
        set(&mut headers, "x-palisade-identity", id);
    }
    if let Some(chain) = &to.origin.forwarded_for {
        set(&mut headers, "x-forwarded-for", chain);
    }
    if let Some(host) = &to.origin.host {
        set(&mut headers, "x-forwarded-host", host);
    }
    if let Some(proto) = &to.origin.proto {
        set(&mut headers, "x-forwarded-proto", proto);
    }
    for (name, value) in to.credentials {
        headers.insert(name, value);
    }
    Ok(Outbound {
        method: http::Method::from_bytes(req.method.as_bytes()).map_err(|_| invalid())?,
        uri,
        headers,
        body: req.body.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_forwarding_names_match_in_every_spelling() {
        for n in [
            "x-palisade-tenant",
            "x_palisade_tenant",
            "x-palisade_identity",
            "x-tenant",
            "x-tenant-id",
            "x_tenant_id",
            "x-correlation-id",
            "x_correlation_id",
        ] {
            assert!(reserved(n), "{n}");
        }
        for n in [
            "forwarded",
            "x-forwarded-host",
            "x_forwarded_for",
            "x-real-ip",
            "x_real_ip",
            "x-http-method-override",
            "x-original-url",
        ] {
            assert!(forwarding_or_override(n), "{n}");
        }
        for n in ["x-request-id", "content-type", "x-tenantless"] {
            assert!(!forwarding_or_override(n), "{n}");
        }
    }

    #[test]
    fn a_policy_path_cannot_change_the_authority() {
        let base: http::Uri = "http://127.0.0.1:8000/api".parse().unwrap();
        let origin = Origin::default();
        for path in ["/@127.0.0.1:9999/x", "/7/x", "//evil.example/x"] {
            let req = Request {
                method: "GET".into(),
                path: path.into(),
                ..Request::default()
            };
            let out = outbound(
                &req,
                Target {
                    base: &base,
                    path,
                    origin: &origin,
                    tenant: "t",
                    correlation_id: "c",
                    identity: None,
                    reads_response: false,
                    credentials: Vec::new(),
                },
            )
            .unwrap();
            let uri = out.build().uri().clone();
            assert_eq!(
                uri.authority().unwrap().as_str(),
                "127.0.0.1:8000",
                "{path}"
            );
            assert_eq!(uri.path(), format!("/api{path}"));
        }
    }
}
