//! Between Envoy's header maps and the pipeline's: what Envoy sent, as an HTTP head,
//! and what the phases made of it, as the mutation Envoy applies.

use std::collections::HashMap;
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::{
    HeaderMap, HeaderValue, HeaderValueOption, Metadata, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::service::ext_proc::v3::HeaderMutation;
use envoy_types::pb::google::protobuf::{Struct, value::Kind};
use http::header::{HeaderName, HeaderValue as HttpValue};
use http::{HeaderMap as HttpHeaders, Method, Request};

use crate::pipeline::forward::FORWARDING_NAMES;

/// The metadata namespace a route name is read from: `filter_metadata.palisade.route`,
/// set on Envoy's own route (and forwarded to ext_proc with `metadata_options`).
pub(crate) const NAMESPACE: &str = "palisade";

/// Headers neither side changes through a mutation: Envoy routes on them, sets them
/// itself (`content-length` follows a body mutation) or forbids changing them.
fn envoy_owned(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "te"
            | "upgrade"
            | "keep-alive"
            | "proxy-connection"
    ) || name.starts_with(':')
}

/// Why Envoy's message cannot be a request: the stream is answered with
/// `INVALID_ARGUMENT` (Envoy's fault, not the client's).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(pub(crate) &'static str);

/// A header pair as Envoy sends it: `raw_value` (Envoy 1.27 on) or `value`.
fn value_of(h: &HeaderValue) -> &[u8] {
    if h.raw_value.is_empty() {
        h.value.as_bytes()
    } else {
        &h.raw_value
    }
}

/// The request head Envoy's `:method`, `:scheme`, `:authority`, `:path` and headers
/// describe. A header that is not valid HTTP is refused, not dropped.
pub(crate) fn request_of<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<Request<()>, Malformed> {
    let mut method = None;
    let mut scheme = "http".to_string();
    let mut authority = None;
    let mut path = None;
    let mut headers = HttpHeaders::new();
    for (name, value) in pairs {
        let text =
            || std::str::from_utf8(value).map_err(|_| Malformed("a pseudo-header is not UTF-8"));
        match name {
            ":method" => {
                method = Some(Method::from_bytes(value).map_err(|_| Malformed("bad :method"))?)
            }
            ":scheme" => scheme = text()?.to_string(),
            ":authority" => authority = Some(text()?.to_string()),
            ":path" => path = Some(text()?.to_string()),
            n if n.starts_with(':') => {}
            n => {
                let name = HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| Malformed("a header name is not valid HTTP"))?;
                let value = HttpValue::from_bytes(value)
                    .map_err(|_| Malformed("a header value is not valid HTTP"))?;
                headers.append(name, value);
            }
        }
    }
    let method = method.ok_or(Malformed("no :method"))?;
    let path = path.ok_or(Malformed("no :path"))?;
    let mut uri = http::Uri::builder().path_and_query(path.as_str());
    if let Some(a) = &authority {
        uri = uri.scheme(scheme.as_str()).authority(a.as_str());
    }
    let uri = uri
        .build()
        .map_err(|_| Malformed("bad :path or :authority"))?;
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .map_err(|_| Malformed("not a request"))?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Envoy's `HeaderMap` as pairs.
pub(crate) fn pairs(map: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    map.headers.iter().map(|h| (h.key.as_str(), value_of(h)))
}

/// The response head Envoy sent: its `:status` and headers.
pub(crate) fn response_of(map: &HeaderMap) -> Result<(u16, Vec<(String, String)>), Malformed> {
    let mut status = None;
    let mut headers = Vec::new();
    for (name, value) in pairs(map) {
        let value =
            std::str::from_utf8(value).map_err(|_| Malformed("a response header is not UTF-8"))?;
        match name {
            ":status" => {
                status = Some(
                    value
                        .parse::<u16>()
                        .ok()
                        .filter(|s| (100..=999).contains(s))
                        .ok_or(Malformed("bad :status"))?,
                );
            }
            n if n.starts_with(':') => {}
            n => headers.push((n.to_string(), value.to_string())),
        }
    }
    Ok((status.ok_or(Malformed("no :status"))?, headers))
}

/// The changes that make `before` into `after`: every header whose values differ is
/// set (the first value overwrites, the rest append), every header gone is removed.
/// Headers Envoy owns ([`envoy_owned`]) are left alone; `:path`, `:method` and
/// `:status` are compared by the caller and passed in `pseudo`.
pub(crate) fn mutation(
    before: &HttpHeaders,
    after: &HttpHeaders,
    pseudo: &[(&str, String)],
) -> Option<HeaderMutation> {
    let mut m = HeaderMutation::default();
    for (name, value) in pseudo {
        m.set_headers.push(option(
            name,
            value.as_bytes(),
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ));
    }
    for name in after.keys() {
        if envoy_owned(name.as_str()) {
            continue;
        }
        let new: Vec<&HttpValue> = after.get_all(name).iter().collect();
        let old: Vec<&HttpValue> = before.get_all(name).iter().collect();
        if new == old {
            continue;
        }
        for (i, v) in new.iter().enumerate() {
            let action = if i == 0 {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            } else {
                HeaderAppendAction::AppendIfExistsOrAdd
            };
            m.set_headers
                .push(option(name.as_str(), v.as_bytes(), action));
        }
    }
    for name in before.keys() {
        if !envoy_owned(name.as_str()) && !after.contains_key(name) {
            m.remove_headers.push(name.as_str().to_string());
        }
    }
    (!m.set_headers.is_empty() || !m.remove_headers.is_empty()).then_some(m)
}

/// Names only the gateway may send upstream, removed from every request Palisade
/// passes even when Envoy did not show them (its `forward_rules` or ext_authz
/// `allowed_headers` can hide headers from Palisade, not from the upstream), with
/// [`FORWARDING_NAMES`]. The prefixes (`x-palisade-*`, `x-tenant*`, `x-forwarded-*`)
/// cannot be listed whole: docs/envoy.md forbids hiding them.
pub(crate) const RESERVED: [&str; 10] = [
    "x-palisade-tenant",
    "x-palisade-identity",
    "x-palisade-route",
    "x-tenant",
    "x-tenant-id",
    "x-correlation-id",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
];

/// Adds every [`RESERVED`] name the request will not carry (`after`) to the removals.
pub(crate) fn strip_reserved(m: &mut HeaderMutation, after: &HttpHeaders) {
    for name in RESERVED.into_iter().chain(FORWARDING_NAMES) {
        if !after.contains_key(name) && !m.remove_headers.iter().any(|r| r == name) {
            m.remove_headers.push(name.to_string());
        }
    }
}

/// The same options as ext_authz reads them: Envoy's ext_authz takes `value` only (and
/// replaces by default), so a value goes there; one that is not UTF-8 cannot be carried
/// and is refused.
pub(crate) fn for_authz(
    options: Vec<HeaderValueOption>,
) -> Result<Vec<HeaderValueOption>, Malformed> {
    options
        .into_iter()
        .map(|mut o| {
            if let Some(h) = o.header.as_mut() {
                let raw = std::mem::take(&mut h.raw_value);
                h.value =
                    String::from_utf8(raw).map_err(|_| Malformed("a header value is not UTF-8"))?;
            }
            // ext_authz reads the deprecated `append` flag: false replaces.
            #[allow(deprecated)]
            {
                o.append = Some(envoy_types::pb::google::protobuf::BoolValue {
                    value: o.append_action == HeaderAppendAction::AppendIfExistsOrAdd as i32,
                });
            }
            Ok(o)
        })
        .collect()
}

fn option(name: &str, value: &[u8], action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            raw_value: value.to_vec(),
            ..HeaderValue::default()
        }),
        append_action: action as i32,
        keep_empty_value: true,
        ..HeaderValueOption::default()
    }
}

/// The route name Envoy's route metadata gives, if any.
pub(crate) fn route_name(metadata: Option<&Metadata>) -> Option<String> {
    let ns = metadata?.filter_metadata.get(NAMESPACE)?;
    string_field(ns, "route")
}

fn string_field(s: &Struct, name: &str) -> Option<String> {
    match s.fields.get(name)?.kind.as_ref()? {
        Kind::StringValue(v) => Some(v.clone()),
        _ => None,
    }
}

/// The client's address Envoy reports (`source.address` among ext_proc's attributes),
/// `ip:port` or a bare IP.
pub(crate) fn source_address(attributes: &HashMap<String, Struct>) -> Option<SocketAddr> {
    attributes.values().find_map(|s| {
        let v = string_field(s, "source.address")?;
        v.parse::<SocketAddr>().ok().or_else(|| {
            v.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 0))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HttpHeaders {
        let mut m = HttpHeaders::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn a_mutation_sets_what_changed_and_removes_what_is_gone_but_not_what_envoy_owns() {
        let before = map(&[
            ("a", "1"),
            ("b", "2"),
            ("host", "x"),
            ("content-length", "3"),
            ("v", "1"),
        ]);
        let after = map(&[("a", "1"), ("c", "3"), ("v", "1"), ("v", "2")]);
        let m = mutation(&before, &after, &[(":path", "/p".into())]).unwrap();
        let set: Vec<(String, Vec<u8>, i32)> = m
            .set_headers
            .iter()
            .map(|o| {
                let h = o.header.as_ref().unwrap();
                (h.key.clone(), h.raw_value.clone(), o.append_action)
            })
            .collect();
        let over = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
        let append = HeaderAppendAction::AppendIfExistsOrAdd as i32;
        assert_eq!(
            set,
            [
                (":path".into(), b"/p".to_vec(), over),
                ("c".into(), b"3".to_vec(), over),
                ("v".into(), b"1".to_vec(), over),
                ("v".into(), b"2".to_vec(), append),
            ]
        );
        assert_eq!(m.remove_headers, ["b"]);
        assert!(mutation(&before, &before, &[]).is_none());
    }

    #[test]
    fn envoy_headers_become_a_request_or_are_refused() {
        let ok = request_of(
            [
                (":method", &b"POST"[..]),
                (":path", b"/a?b=1"),
                (":authority", b"h:8080"),
                ("x", b"1"),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(ok.uri().path(), "/a");
        assert_eq!(ok.uri().authority().unwrap().as_str(), "h:8080");
        assert_eq!(ok.headers()["x"], "1");
        assert!(request_of([(":path", &b"/"[..])].into_iter()).is_err());
        assert!(
            request_of([(":method", &b"GET"[..]), (":path", b"/"), ("x", b"a\nb")].into_iter())
                .is_err()
        );
    }
}
