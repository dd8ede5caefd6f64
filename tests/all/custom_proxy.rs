//! `examples/custom_proxy.rs` as its reader runs it: its own `proxy` and `serve` between
//! a real client and a real upstream on loopback, with a real ledger.

use palisade_ledger::{Ledger, Options, Target};

use crate::custom_proxy_example::{proxy, serve};
use crate::fixtures::engine;
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_proxy_example_runs_the_gateway_phases_and_audits_each_request() {
    // The example loads the guest from target/policies, where this builds it.
    assert!(std::path::Path::new(palisade_test_artifacts::BLOCK_PATTERNS).is_file());
    let upstream = support::upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let ledger = Ledger::open(Target::Sqlite(db.clone()), Options::default()).unwrap();
    let proxy = proxy(engine(), &format!("http://{}/", upstream.addr), ledger).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, proxy));

    let forged = [
        ("x-palisade-tenant", "other"),
        ("x-forwarded-for", "10.0.0.1"),
    ];
    let ok = support::send(addr, "POST", "/orders/7?q=1", &forged, "hello").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let echo = ok.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/orders/7");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["headers"]["x-palisade-tenant"], "demo", "{echo}");
    assert!(echo["headers"].get("x-forwarded-for").is_none(), "{echo}");

    let blocked = support::get(addr, "/search?q=%27%20OR%201=1--").await;
    assert_eq!(blocked.status, 400, "{}", blocked.text());
    let refused = support::get(addr, "/pub/%2e%2e/admin").await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "bad_path");
    assert_eq!(
        upstream.hits(),
        1,
        "only the allowed request reached the upstream"
    );

    let mut decisions = Vec::new();
    for reply in [&ok, &blocked, &refused] {
        let cid = reply.header("x-correlation-id").expect("x-correlation-id");
        let block = support::blocks(&db)
            .into_iter()
            .find(|b| b["correlation_id"] == cid.as_str())
            .unwrap_or_else(|| panic!("no block for {cid}"));
        assert_eq!(block["status"], reply.status);
        assert_eq!(block["tenant"], "demo");
        decisions.push(block["decision"].as_str().unwrap().to_string());
    }
    assert_eq!(decisions, ["allowed", "denied", "refused"]);
    assert!(
        support::blocks(&db)
            .iter()
            .all(|b| !b.to_string().contains("OR 1=1")),
        "query values never reach the ledger"
    );
}
