//! The request path against hostile tenant policies and hostile callers (issue 17; catalogue
//! items 49, 53, 55, 58-62): over real sockets, with real Lua policies steering the request,
//! a real upstream that echoes what it receives, and a second listener that must never be
//! reached.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::support::{Config, Harness, Reply, Route, read_until_close, send, start_with};

/// A request policy that does what the caller's `x-do-*` headers say: the path, method,
/// query, headers and status the attacker wants a policy to produce.
const STEER: &str = r#"
function on_request(req, ctx)
  local h = req.headers
  if h["x-do-respond"] then
    return palisade.respond(tonumber(h["x-do-respond"]), h["x-do-body"])
  end
  if h["x-do-path"] then req.path = string.gsub(h["x-do-path"], "<CRLF>", "\r\n") end
  if h["x-do-method"] then req.method = string.gsub(h["x-do-method"], "<CRLF>", "\r\n") end
  if h["x-do-query"] then req.query = h["x-do-query"] end
  if h["x-do-header"] then req.headers[h["x-do-header"]] = "forged" end
  return req
end

function on_response(res, ctx)
  local wanted = ctx.request.headers["x-do-response-status"]
  if wanted then
    res.status = tonumber(wanted)
  end
  return res
end
"#;

async fn gateway() -> Harness {
    start_with(|up, dir| {
        std::fs::write(dir.join("steer.lua"), STEER).unwrap();
        std::fs::write(
            dir.join("deny.lua"),
            "function on_request(req, ctx) return palisade.deny(418, 'closed route') end",
        )
        .unwrap();
        Config::new(up)
            .route(
                Route::new("steered")
                    .path("/steer")
                    .methods(&["GET", "POST"])
                    .request("steer.lua")
                    .response("steer.lua"),
            )
            .route(Route::new("open").path("/pub"))
            .route(Route::new("closed").path("/priv").request("deny.lua"))
            .route(Route::new("slow").path("/s").keys("strip_prefix = true"))
    })
    .await
}

fn block_cause(h: &Harness, r: &Reply) -> Value {
    h.block_for(r)["cause"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item49_a_policy_cannot_steer_the_request_to_another_authority() {
    let h = gateway().await;
    // A listener that counts connections: a policy's path must never reach it.
    let (other, reached) = crate::auth::counting_listener().await;
    let port = other.port().to_string();
    let hostile_paths = [
        format!("@127.0.0.1:{port}/x"),
        // Extends the upstream's port when pasted after it.
        format!("{}/x", &port[port.len() - 1..]),
        format!("http://127.0.0.1:{port}/x"),
        format!("//127.0.0.1:{port}/x"),
        "/steer/../priv/x".to_string(),
        "/a/%2e%2e/b".to_string(),
        "/x#frag".to_string(),
        "/x<CRLF>Host: evil".to_string(),
        "/x y".to_string(),
        "x".to_string(),
    ];
    for path in &hostile_paths {
        let hits = h.upstream.hits();
        let r = send(
            h.addr(),
            "GET",
            "/steer/a",
            &[("x-do-path", path.as_str())],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 500, "{path:?}: {}", r.text());
        assert_eq!(r.json()["error"], "policy_failed", "{path:?}");
        assert_eq!(block_cause(&h, &r), "policy_invalid_output", "{path:?}");
        assert_eq!(h.upstream.hits(), hits, "{path:?} reached the upstream");
    }
    for (method, query) in [
        ("GET /x HTTP/1.1<CRLF>Host: evil", ""),
        ("DELETE", ""), // a method the route does not allow
        ("GET", "a=1#x"),
        ("GET", "a=1 2"),
    ] {
        let r = send(
            h.addr(),
            "GET",
            "/steer/a",
            &[("x-do-method", method), ("x-do-query", query)],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 500, "{method:?} {query:?}: {}", r.text());
        assert_eq!(block_cause(&h, &r), "policy_invalid_output");
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "a policy reached another listener"
    );
    // The caller's own query passes a policy untouched, brackets and escapes included.
    let r = send(
        h.addr(),
        "GET",
        "/steer/a?ids[]=1&q={x}&p=%zz",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["query"], "ids[]=1&q={x}&p=%zz");
    // What a policy may do still works: another path and method within the route.
    let r = send(
        h.addr(),
        "GET",
        "/steer/a",
        &[
            ("x-do-path", "/steer/b"),
            ("x-do-method", "POST"),
            ("x-do-query", "q=%20x"),
        ],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(
        (echo["method"].as_str(), echo["path"].as_str()),
        (Some("POST"), Some("/steer/b"))
    );
    assert_eq!(echo["query"], "q=%20x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item53_reserved_and_forwarding_headers_are_set_only_by_the_gateway() {
    let h = gateway().await;
    for name in [
        "x-palisade-identity",
        "x-palisade-tenant",
        "x_palisade_tenant",
        "x-tenant",
        "x-tenant-id",
        "x_tenant_id",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "x-http-method-override",
        "x_correlation_id",
    ] {
        // From the policy...
        let r = send(
            h.addr(),
            "GET",
            "/steer/h",
            &[("x-do-header", name)],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let seen = &r.json()["headers"];
        assert_ne!(
            seen[name], "forged",
            "{name} from a policy reached the upstream"
        );
        // ...and from the caller, directly.
        let r = send(h.addr(), "GET", "/pub/h", &[(name, "forged")], Bytes::new()).await;
        let seen = &r.json()["headers"];
        assert_ne!(
            seen[name], "forged",
            "{name} from the caller reached the upstream"
        );
        assert_eq!(seen["x-palisade-tenant"], "acme");
        assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
        assert!(
            seen.get("x-palisade-identity").is_none(),
            "an anonymous route has no identity"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item55_a_policy_answers_with_a_final_status_only() {
    let h = gateway().await;
    for (status, body) in [
        ("101", ""),
        ("100", ""),
        ("199", ""),
        ("204", "body"),
        ("304", "x"),
    ] {
        let r = send(
            h.addr(),
            "GET",
            "/steer/s",
            &[("x-do-respond", status), ("x-do-body", body)],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 500, "{status}: {}", r.text());
        assert_eq!(block_cause(&h, &r), "policy_invalid_output");
    }
    let r = send(
        h.addr(),
        "GET",
        "/steer/s",
        &[("x-do-respond", "204")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 204, "{}", h.block_for(&r));
    // A response policy that sets an interim status fails closed (502), the policy's fault.
    let r = send(
        h.addr(),
        "GET",
        "/steer/s",
        &[("x-do-response-status", "101")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(block_cause(&h, &r), "policy_invalid_output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item59_paths_are_normalized_before_routing_or_refused() {
    let h = gateway().await;
    // Dot segments resolve: the closed route decides, and what it forwards is what it routed.
    for path in [
        "/pub/../priv/secret",
        "/pub/./../priv/secret",
        "/pub/x/../../priv/secret",
    ] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 418, "{path}: {}", r.text());
        assert_eq!(h.block_for(&r)["route"], "closed");
        assert_eq!(h.block_for(&r)["path"], "/priv/secret");
    }
    let r = send(h.addr(), "GET", "/pub/a/../b/%7Ec", &[], Bytes::new()).await;
    assert_eq!(r.json()["path"], "/pub/b/~c", "forwarded exactly as routed");
    // Encoded dots and slashes, backslashes, `..;`: refused before any route runs.
    let hits = h.upstream.hits();
    for path in [
        "/pub/%2e%2e/priv/secret",
        "/pub/%2E%2e/priv/secret",
        "/pub/.%2e/priv/secret",
        "/pub/..%2fpriv/secret",
        "/pub/..%2Fpriv%2fsecret",
        "/pub/..%5cpriv",
        "/pub/..;/priv/secret",
        "/pub/%00/x",
    ] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "bad_path");
        assert_eq!(block_cause(&h, &r), "bad_path");
    }
    // `;` path parameters (Java servers strip them before routing), overlong and
    // double-encoded escapes: refused too.
    for path in [
        "/pub;x/../priv/secret",
        "/priv;x/secret",
        "/pub/%C0%AE%C0%AE/priv",
        "/pub/%252e%252e/priv",
    ] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    // Runs of `/` are one separator: `//priv` is the closed route, not a path under `/`.
    let r = send(h.addr(), "GET", "//priv//secret", &[], Bytes::new()).await;
    assert_eq!(r.status, 418, "{}", r.text());
    assert_eq!(h.block_for(&r)["path"], "/priv/secret");
    // TRACE is not a method a route takes unless it lists it.
    let r = send(h.addr(), "TRACE", "/pub/x", &[], Bytes::new()).await;
    assert_eq!(r.status, 404, "{}", r.text());
    // A host named twice, differently: refused before routing.
    let mut tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(
        b"GET http://a.example/pub/x HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let (reply, _) = read_until_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("ambiguous_host"), "{reply}");
    // A raw backslash, which hyper's client will not send.
    let mut tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"GET /pub\\..\\priv\\secret HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (reply, _) = read_until_close(&mut tcp, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(
        h.upstream.hits(),
        hits,
        "a refused path reached the upstream"
    );

    // HTTP/2 (h2c, prior knowledge): the same normalization.
    let tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    for (path, status) in [
        ("/pub/../priv/secret", 418),
        ("/pub/%2e%2e/priv/secret", 400),
    ] {
        let req = http::Request::builder()
            .uri(format!("http://{}{path}", h.addr()))
            .body(())
            .unwrap();
        let mut ready = client.clone().ready().await.unwrap();
        let (res, _) = ready.send_request(req, true).unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), res)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "h2 {path}");
    }
    assert_eq!(h.upstream.hits(), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item60_gateway_credentials_stay_with_the_gateway() {
    let h = start_with(|up, _| {
        Config::new(up)
            .section("auth", r#"api_keys = "apikeys.json""#)
            .route(
                Route::new("keyed")
                    .path("/keyed")
                    .auth(r#"schemes = ["api_key"]"#),
            )
            .route(Route::new("open").path("/open"))
    })
    .await;
    let key = crate::support::cli::apikey(&h.config_path(), "create", &["--tenant", "acme"]).1;
    assert!(key.starts_with("pal_"), "{key}");
    // The gateway notices the new key file within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for headers in [
        vec![("x-api-key", key.as_str())],
        vec![("authorization", &*format!("ApiKey {key}"))],
    ] {
        let r = send(h.addr(), "GET", "/keyed/x", &headers, Bytes::new()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert!(
            !text.contains(&key[..20]),
            "the API key reached the upstream: {text}"
        );
        let seen = &r.json()["headers"];
        assert!(seen.get("authorization").is_none() && seen.get("x-api-key").is_none());
        assert!(
            seen["x-palisade-identity"]
                .as_str()
                .unwrap()
                .starts_with("apikey:")
        );
    }
    // Palisade API keys never leave, even on a route without `auth`; other keys do.
    let r = send(
        h.addr(),
        "GET",
        "/open/x",
        &[("x-api-key", key.as_str())],
        Bytes::new(),
    )
    .await;
    assert!(
        r.json()["headers"].get("x-api-key").is_none(),
        "{}",
        r.text()
    );
    let apikey_auth = format!("ApiKey {key}");
    let r = send(
        h.addr(),
        "GET",
        "/open/x",
        &[("authorization", apikey_auth.as_str())],
        Bytes::new(),
    )
    .await;
    assert!(
        r.json()["headers"].get("authorization").is_none(),
        "{}",
        r.text()
    );
    let r = send(
        h.addr(),
        "GET",
        "/open/x",
        &[("x-api-key", "upstream-own-key")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.json()["headers"]["x-api-key"], "upstream-own-key");
    // A bare query part is a value: it never reaches the ledger.
    let r = send(
        h.addr(),
        "GET",
        &format!("/keyed/x?{key}"),
        &[("x-api-key", &key)],
        Bytes::new(),
    )
    .await;
    assert_eq!(h.block_for(&r)["path"], "/keyed/x?_");
    let ledger = std::fs::read(h.ledger_path()).unwrap();
    assert!(
        !String::from_utf8_lossy(&ledger).contains(&key[4..]),
        "the key is in the ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item61_forwarding_headers_are_believed_only_from_trusted_proxies() {
    for (trusted, expect_for, expect_proto) in [
        ("", "127.0.0.1", None),
        (
            "trusted_proxies = [\"127.0.0.0/8\"]",
            "203.0.113.9, 127.0.0.1",
            Some("https"),
        ),
    ] {
        let h = start_with(|up, _| {
            Config::new(up)
                .server(trusted)
                .route(Route::new("open").path("/pub"))
        })
        .await;
        let r = send(
            h.addr(),
            "GET",
            "/pub/x",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
                ("forwarded", "for=203.0.113.9"),
                ("x-real-ip", "203.0.113.9"),
                ("x-http-method-override", "DELETE"),
                ("host", "api.example"),
            ],
            Bytes::new(),
        )
        .await;
        let seen = &r.json()["headers"];
        assert_eq!(seen["x-forwarded-for"], expect_for, "{trusted}");
        assert_eq!(
            seen["x-forwarded-proto"].as_str(),
            expect_proto,
            "{trusted}"
        );
        assert_eq!(seen["x-forwarded-host"], "api.example");
        for gone in ["forwarded", "x-real-ip", "x-http-method-override"] {
            assert!(seen.get(gone).is_none(), "{gone} passed ({trusted})");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item62_ranges_never_reach_an_upstream_whose_answer_is_redacted() {
    let h = start_with(|up, _| {
        Config::new(up)
            .route(
                Route::new("redacted")
                    .path("/r")
                    .keys("strip_prefix = true\nredact = [{ path = \"$..ssn\" }]"),
            )
            .route(Route::new("plain").path("/p").keys("strip_prefix = true"))
    })
    .await;
    let ranged = [("range", "bytes=16-32"), ("if-range", "\"x\"")];
    let r = send(h.addr(), "GET", "/r/echo", &ranged, Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &r.json()["headers"];
    assert!(
        seen.get("range").is_none() && seen.get("if-range").is_none(),
        "{seen}"
    );
    // A route that does not read the response passes ranges through.
    let r = send(h.addr(), "GET", "/p/echo", &ranged, Bytes::new()).await;
    assert_eq!(r.json()["headers"]["range"], "bytes=16-32");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item58_a_request_the_client_abandons_still_gets_one_block() {
    let h = gateway().await;
    let mut tcp = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    tcp.write_all(b"GET /s/slow/1500 HTTP/1.1\r\nhost: x\r\nx-correlation-id: abandoned-1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tcp); // the client leaves while the upstream works
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let block = loop {
        let found: Vec<Value> = h
            .blocks()
            .into_iter()
            .filter(|b| b["correlation_id"] == "abandoned-1")
            .collect();
        if !found.is_empty() || tokio::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(block.len(), 1, "exactly one block: {block:?}");
    assert_eq!(block[0]["decision"], "client_closed");
    assert_eq!(block[0]["status"], 499);
    assert_eq!(block[0]["route"], "slow");
    assert_eq!(block[0]["tenant"], "acme");
    // And it stays one: the handler never appends a second.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let again = h
        .blocks()
        .into_iter()
        .filter(|b| b["correlation_id"] == "abandoned-1")
        .count();
    assert_eq!(again, 1);
}

/// An upstream that answers with PII where redactors tend not to look.
async fn pii_upstream() -> SocketAddr {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let utf16le = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let deep = format!("{}\"536-22-8145\"{}", "[".repeat(200), "]".repeat(200));
                let (ctype, body): (&str, Vec<u8>) = match req.uri().path() {
                    "/utf16" => ("text/plain; charset=utf-16le", utf16le("ssn 536-22-8145")),
                    "/utf16-unlabeled" => ("text/plain", utf16le("ssn 536-22-8145")),
                    "/ndjson" => (
                        "application/x-ndjson",
                        b"{\"ssn\":\"536-22-8145\"}\n{\"n\":\"536\\u002d22\\u002d8145\"}\n"
                            .to_vec(),
                    ),
                    "/escaped" => ("text/plain", b"ssn 536\\u002d22\\u002d8145".to_vec()),
                    "/deep" => ("text/plain", deep.into_bytes()),
                    "/key" => (
                        "application/json",
                        br#"{"by_ssn":{"536-22-8145":{"n":1}},"by_mail":{"ada@example.com":2}}"#
                            .to_vec(),
                    ),
                    "/dup" => (
                        "application/json",
                        br#"{"note":"536-22-8145","note":"fine"}"#.to_vec(),
                    ),
                    "/utf16-ambiguous" => {
                        ("text/plain; charset=utf-16", utf16le("ssn 536-22-8145 "))
                    }
                    "/entities" => ("text/html", b"<p>536&#x2d;22&#45;8145</p>".to_vec()),
                    _ => ("application/json", b"{\"ok\":true}".to_vec()),
                };
                let partial = req.uri().path() == "/partial";
                let encoded = req.uri().path() == "/encoded";
                let request_range = req.headers().contains_key("request-range");
                let mut res = hyper::Response::new(Full::new(Bytes::from(body)));
                let h = res.headers_mut();
                h.insert("content-type", ctype.parse().unwrap());
                h.append(
                    "set-cookie",
                    "session=1; email=ada@example.com".parse().unwrap(),
                );
                h.append("set-cookie", "ssn=536-22-8145".parse().unwrap());
                h.insert("location", "/users/ada@example.com".parse().unwrap());
                h.insert("x-user-email", "ada@example.com".parse().unwrap());
                if partial || request_range {
                    *res.status_mut() = hyper::StatusCode::PARTIAL_CONTENT;
                    res.headers_mut()
                        .insert("content-range", "bytes 0-5/20".parse().unwrap());
                }
                if encoded {
                    res.headers_mut()
                        .insert("content-encoding", "br".parse().unwrap());
                }
                async move { Ok::<_, std::convert::Infallible>(res) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items63_64_65_redaction_reads_bodies_as_clients_do_and_covers_keys_and_headers() {
    let pii = pii_upstream().await;
    let h = start_with(|up, _| {
        Config::new(up)
            .upstream("pii", &format!("http://{pii}"), "")
            .route(Route::new("redacted").upstream("pii").path("/").keys(
                r#"redact = [
  { regex = "[0-9]{3}-[0-9]{2}-[0-9]{4}" },
  { regex = "[a-z]+@example\\.com" },
  { header = "set-cookie", action = "remove" },
  { header = "Location" },
  { header = "x-user-email" },
]"#,
            ))
            .route(
                Route::new("wasm")
                    .upstream("pii")
                    .path("/w")
                    .keys("strip_prefix = true")
                    .response("@REDACT_PII"),
            )
    })
    .await;
    let leaks = |r: &Reply| -> Vec<String> {
        let mut all = r.text();
        for (n, v) in &r.headers {
            all.push_str(&format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        ["536-22-8145", "ada@example.com", "536\\u002d22"]
            .iter()
            .filter(|needle| all.contains(*needle))
            .map(|s| s.to_string())
            .collect()
    };
    for path in ["/cookie", "/utf16", "/ndjson", "/key", "/dup"] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(
            leaks(&r),
            Vec::<String>::new(),
            "{path}: {:?} {}",
            r.headers,
            r.text()
        );
        assert!(r.headers.get("set-cookie").is_none(), "{path}");
        assert_eq!(r.header("location").as_deref(), Some("[REDACTED]"));
        let block = h.block_for(&r);
        let recorded = block["redacted"].to_string();
        assert!(
            !recorded.contains("536-22") && !recorded.contains("ada@"),
            "{recorded}"
        );
        assert!(recorded.contains("header:set-cookie"), "{recorded}");
    }
    // UTF-16 comes back as UTF-16, redacted.
    let r = send(h.addr(), "GET", "/utf16", &[], Bytes::new()).await;
    let units: Vec<u16> = r
        .body
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).unwrap(), "ssn [REDACTED]");
    // What cannot be read unambiguously fails closed.
    // `Request-Range` never reaches the upstream (it would answer 206 here).
    let r = send(
        h.addr(),
        "GET",
        "/cookie",
        &[("request-range", "bytes=0-5")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for (path, cause) in [
        ("/partial", "response_not_whole"),
        ("/encoded", "response_not_whole"),
        ("/utf16-ambiguous", "redaction_not_utf8"),
        ("/entities", "redaction_escaped_text"),
        ("/utf16-unlabeled", "redaction_not_utf8"),
        ("/escaped", "redaction_escaped_text"),
        ("/deep", "redaction_not_json"),
    ] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(leaks(&r), Vec::<String>::new(), "{path}");
        assert_eq!(block_cause(&h, &r), cause, "{path}");
    }
    // The redact-pii policy (a Wasm guest built from source) reads bodies the same way.
    for path in ["/w/utf16", "/w/ndjson", "/w/key"] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(
            !r.text().contains("536-22-8145") && !r.text().contains("ada@example"),
            "{path}: {}",
            r.text()
        );
        let recorded = h.block_for(&r)["redacted"].to_string();
        assert!(
            !recorded.contains("536-22") && !recorded.contains("ada@"),
            "{recorded}"
        );
    }
    for path in ["/w/utf16-unlabeled", "/w/escaped", "/w/deep"] {
        let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert!(!r.text().contains("8145"));
    }
    let ledger = String::from_utf8_lossy(&std::fs::read(h.ledger_path()).unwrap()).into_owned();
    assert!(!ledger.contains("536-22-8145") && !ledger.contains("ada@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item65_a_tenant_can_require_header_redaction() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    let route = Route::new("r").path("/");
    let config =
        Config::new("127.0.0.1:9".parse()?).tenant("acme", "mandatory_headers = [\"set-cookie\"]");
    std::fs::write(&path, config.clone().route(route.clone()).to_string())?;
    let err = palisade_gateway::Gateway::from_file(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mandatory header `set-cookie`"), "{err}");
    let fixed = route.keys(r#"redact = [{ header = "Set-Cookie", action = "remove" }]"#);
    std::fs::write(&path, config.route(fixed).to_string())?;
    palisade_gateway::Gateway::from_file(&path)?;
    Ok(())
}
