//! Guests built for WASI run with a deny-all context (catalogue item 10).

use palisade_runtime::Decision;
use palisade_test_artifacts::WASI_PROBE;
use serde_json::Value;

use crate::fixtures::{ctx, get, guest};

#[test]
fn wasi_guest_gets_no_files_env_network_clock_or_entropy() {
    let policy = guest(WASI_PROBE);
    assert!(policy.uses_wasi());
    assert!(
        policy
            .imports()
            .iter()
            .any(|i| i.starts_with("wasi:filesystem/preopens@0.2"))
    );
    let inv = policy.on_request(&ctx("t"), get("/"));
    let Ok(Decision::Respond(res)) = inv.result else {
        panic!("{:?}", inv.result)
    };
    let report: Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(report["preopens"], 0, "{report}");
    assert_eq!(report["opened"], false);
    assert_eq!(report["env"], 0);
    assert_eq!(report["args"], 0);
    let socket = report["socket"].as_str().unwrap();
    assert!(
        socket.contains("refused") && socket.contains("access-denied"),
        "{socket}"
    );
    let lookup = report["lookup"].as_str().unwrap();
    assert!(lookup.contains("refused"), "{lookup}");
    assert_eq!(report["wall_clock"], 0);
    assert_eq!(report["monotonic"], 0);

    // A second run draws the same "random" number: there is no entropy to leak.
    let again = policy.on_request(&ctx("t"), get("/"));
    let Ok(Decision::Respond(res2)) = again.result else {
        panic!()
    };
    let report2: Value = serde_json::from_slice(&res2.body).unwrap();
    assert_eq!(report["random"], report2["random"]);

    // Stdout went into the bounded invocation log.
    assert!(
        inv.logs
            .iter()
            .any(|l| l.message == "hello from wasi stdout"),
        "{:?}",
        inv.logs
    );
}
