//! The audit ledger on a real SQLite file: append-only guards (catalogue 40), the
//! corruption matrix (41), signed checkpoints (42), concurrent writers and a gateway
//! killed under load (43), and a third-party re-verification in Python.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use palisade_ledger::verify::{Anomaly, Checkpoints, verify};
use palisade_ledger::{Ledger, Options, Record, Target, block, checkpoint, open_store};

use crate::support::cli::{palisade_here, serve};
use crate::support::{Config, Route};

fn record(i: u64) -> Record {
    Record {
        correlation_id: format!("req-{i}"),
        decision: "allowed".into(),
        method: "GET".into(),
        path: format!("/orders/{i}"),
        status: 200,
        tenant: "acme".into(),
        route: "orders".into(),
        time_ms: 1_700_000_000_000 + i,
        ..Record::default()
    }
}

/// A ledger with `n` request blocks after its genesis block, checkpointed at the end.
fn ledger_with(dir: &Path, n: u64) -> Target {
    let target = Target::Sqlite(dir.join("audit.db"));
    let key = dir.join("checkpoint.key");
    if !key.exists() {
        checkpoint::generate_key(&key).unwrap();
    }
    let signer = checkpoint::Signer::new(
        checkpoint::load_signing_key(&key).unwrap(),
        dir.join("checkpoints.jsonl"),
        Duration::from_secs(3600),
    );
    let ledger = Ledger::open(
        target.clone(),
        Options {
            checkpoints: Some(signer),
            ..Options::default()
        },
    )
    .unwrap();
    for i in 0..n {
        ledger.append_blocking(record(i)).unwrap();
    }
    ledger.close();
    target
}

fn checkpoints(dir: &Path) -> Checkpoints {
    Checkpoints {
        list: checkpoint::read_checkpoints(&dir.join("checkpoints.jsonl")).unwrap(),
        key: checkpoint::load_verifying_key(&dir.join("checkpoint.key.pub")).unwrap(),
    }
}

/// An attacker's own connection: no authorizer, no defensive flag, triggers dropped.
fn attacker(dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("audit.db")).unwrap();
    conn.execute_batch("DROP TRIGGER ledger_no_update; DROP TRIGGER ledger_no_delete;")
        .unwrap();
    conn
}

/// `palisade verify --db DIR/audit.db EXTRA...`: (exit code, stdout and stderr).
fn verify_cli(dir: &Path, extra: &[&str]) -> (i32, String) {
    let db = dir.join("audit.db").display().to_string();
    let mut args = vec!["verify", "--db", &db];
    args.extend_from_slice(extra);
    let (code, out, err) = palisade_here(&args);
    (code, out + &err)
}

#[test]
fn an_intact_ledger_verifies_with_the_cli_and_with_python() {
    let dir = tempfile::tempdir().unwrap();
    ledger_with(dir.path(), 10);
    let (code, out) = verify_cli(
        dir.path(),
        &[
            "--checkpoint",
            dir.path().join("checkpoints.jsonl").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("11 blocks · chain intact · 0 anomalies · verified in "),
        "{out}"
    );
    let (code, out) = verify_cli(dir.path(), &["--range", "3..7"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("5 blocks"), "{out}");

    let script = format!(
        "{}/examples/verify-ledger.py",
        palisade_test_artifacts::WORKSPACE
    );
    let py = Command::new("python3")
        .arg(&script)
        .arg(dir.path().join("audit.db"))
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "11 blocks intact"
    );
    attacker(dir.path())
        .execute(
            "UPDATE ledger SET record = replace(record, '/orders/4', '/orders/5') WHERE seq = 6",
            (),
        )
        .unwrap();
    let py = Command::new("python3")
        .arg(&script)
        .arg(dir.path().join("audit.db"))
        .output()
        .unwrap();
    assert_eq!(py.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&py.stderr).contains("block 6"));
}

#[test]
fn item40_the_gateways_connection_refuses_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let target = ledger_with(dir.path(), 3);
    let mut store = open_store(&target, true).unwrap();
    for sql in [
        "UPDATE ledger SET record = '{}' WHERE seq = 2",
        "DELETE FROM ledger WHERE seq = 2",
        "DROP TRIGGER ledger_no_update",
        "DROP TABLE ledger",
        "PRAGMA writable_schema = ON",
        "CREATE TRIGGER t AFTER INSERT ON ledger BEGIN SELECT 1; END",
        "ALTER TABLE ledger RENAME TO old",
        "ATTACH DATABASE ':memory:' AS other",
    ] {
        assert!(store.execute_unchecked(sql).is_err(), "{sql} was allowed");
    }
    // The triggers hold even for a connection without the authorizer.
    let plain = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    let e = plain
        .execute("UPDATE ledger SET record = '{}' WHERE seq = 2", ())
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    assert!(plain.execute("DELETE FROM ledger", ()).is_err());
    assert!(verify(&target, None, None).unwrap().is_intact());
}

#[test]
fn item41_every_corruption_is_detected_and_the_first_bad_block_named() {
    type Corrupt = fn(&rusqlite::Connection);
    let cases: [(&str, Corrupt, Anomaly, &str); 6] = [
        (
            "flipped bit",
            |c| {
                c.execute("UPDATE ledger SET record = replace(record, 'orders/3', 'orders/2') WHERE seq = 5", ()).unwrap();
            },
            Anomaly::HashMismatch { seq: 5 },
            "block 5: contents do not match its hash",
        ),
        (
            "deleted middle row",
            |c| {
                c.execute("DELETE FROM ledger WHERE seq = 5", ()).unwrap();
            },
            Anomaly::Gap {
                expected: 5,
                found: 6,
            },
            "block 5: missing",
        ),
        (
            "swapped rows",
            |c| {
                c.execute_batch(
                    "UPDATE ledger SET seq = -5 WHERE seq = 5; UPDATE ledger SET seq = 5 WHERE seq = 6; UPDATE ledger SET seq = 6 WHERE seq = -5;",
                )
                .unwrap();
            },
            Anomaly::BrokenLink { seq: 5 },
            "block 5: prev does not match",
        ),
        (
            "edited field",
            |c| {
                c.execute("UPDATE ledger SET record = replace(record, '\"status\":200', '\"status\":201') WHERE seq = 7", ()).unwrap();
            },
            Anomaly::HashMismatch { seq: 7 },
            "block 7",
        ),
        (
            "bad hex",
            |c| {
                c.execute(
                    "UPDATE ledger SET hash = 'zz' || substr(hash, 3) WHERE seq = 4",
                    (),
                )
                .unwrap();
            },
            Anomaly::Malformed {
                seq: 4,
                field: "hash",
            },
            "block 4: malformed hash",
        ),
        (
            "empty ledger",
            |c| {
                c.execute("DELETE FROM ledger", ()).unwrap();
            },
            Anomaly::Empty,
            "the ledger is empty",
        ),
    ];
    for (name, corrupt, anomaly, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let target = ledger_with(dir.path(), 10);
        corrupt(&attacker(dir.path()));
        let report = verify(&target, None, None).unwrap();
        assert_eq!(report.first.as_ref(), Some(&anomaly), "{name}: {report}");
        let (code, out) = verify_cli(dir.path(), &[]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(message), "{name}: {out}");
    }
}

#[test]
fn item42_signed_checkpoints_catch_truncation_old_copies_and_recomputed_chains() {
    // Tail truncation.
    let dir = tempfile::tempdir().unwrap();
    let target = ledger_with(dir.path(), 10);
    attacker(dir.path())
        .execute("DELETE FROM ledger WHERE seq > 8", ())
        .unwrap();
    assert!(
        verify(&target, None, None).unwrap().is_intact(),
        "a chain alone cannot see truncation"
    );
    let report = verify(&target, None, Some(&checkpoints(dir.path()))).unwrap();
    assert_eq!(
        report.first,
        Some(Anomaly::Truncated {
            checkpoint: 11,
            head: 8
        })
    );
    let cp = dir.path().join("checkpoints.jsonl");
    let (code, out) = verify_cli(dir.path(), &["--checkpoint", cp.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("block 9: missing, the ledger ends at 8"),
        "{out}"
    );

    // An older copy of the file put back.
    let dir = tempfile::tempdir().unwrap();
    let target = ledger_with(dir.path(), 4);
    std::fs::copy(dir.path().join("audit.db"), dir.path().join("old.db")).unwrap();
    ledger_with(dir.path(), 4);
    std::fs::copy(dir.path().join("old.db"), dir.path().join("audit.db")).unwrap();
    assert!(verify(&target, None, None).unwrap().is_intact());
    let report = verify(&target, None, Some(&checkpoints(dir.path()))).unwrap();
    assert_eq!(
        report.first,
        Some(Anomaly::Truncated {
            checkpoint: 9,
            head: 5
        })
    );

    // An edit with every later hash recomputed.
    let dir = tempfile::tempdir().unwrap();
    let target = ledger_with(dir.path(), 10);
    let conn = attacker(dir.path());
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT seq, record FROM ledger ORDER BY seq")
        .unwrap()
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = block::GENESIS_PREV;
    for (seq, mut rec) in rows {
        if seq == 5 {
            rec = rec.replace("\"status\":200", "\"status\":204");
        }
        let hash = block::hash(seq as u64, &prev, rec.as_bytes());
        conn.execute(
            "UPDATE ledger SET record = ?1, prev = ?2, hash = ?3 WHERE seq = ?4",
            (&rec, hex::encode(prev), hex::encode(hash), seq),
        )
        .unwrap();
        prev = hash;
    }
    assert!(
        verify(&target, None, None).unwrap().is_intact(),
        "a recomputed chain is self-consistent"
    );
    let report = verify(&target, None, Some(&checkpoints(dir.path()))).unwrap();
    assert_eq!(report.first, Some(Anomaly::CheckpointMismatch { seq: 11 }));

    // A forged checkpoint does not verify.
    let text = std::fs::read_to_string(&cp).unwrap();
    std::fs::write(&cp, text.replacen("\"seq\":11", "\"seq\":12", 1)).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = verify_cli(empty.path(), &[]);
    assert_eq!(
        code, 2,
        "a missing ledger is an error, not a verdict: {out}"
    );
    let list = checkpoint::read_checkpoints(&cp).unwrap();
    let key = checkpoint::load_verifying_key(&cp.with_file_name("checkpoint.key.pub")).unwrap();
    let forged: Vec<_> = list
        .iter()
        .filter(|c| c.verified_hash(&key).is_none())
        .map(|c| c.seq)
        .collect();
    assert_eq!(forged, [12]);
    let (code, out) = verify_cli(
        cp.parent().unwrap(),
        &["--checkpoint", cp.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("checkpoint for block 12: signature does not verify"),
        "{out}"
    );
}

#[test]
fn item43_concurrent_writers_on_one_file_make_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let target = ledger_with(dir.path(), 0);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let target = target.clone();
            std::thread::spawn(move || {
                // Each writer is its own connection, as separate gateway processes are.
                let ledger = Ledger::open(target, Options::default()).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let appends: Vec<_> = (0..100)
                        .map(|i| ledger.append(record(t * 1000 + i)))
                        .collect();
                    for a in futures_join(appends).await {
                        a.unwrap();
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = verify(&target, None, None).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.blocks, 401);
}

#[test]
fn group_commit_waits_for_company_only_under_concurrent_load() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Sqlite(dir.path().join("audit.db"));
    // A lone client's blocks commit at once even with an absurd delay: if they waited
    // for company, twenty appends would take ten minutes.
    let open = |commit_delay| {
        Ledger::open(
            target.clone(),
            Options {
                commit_delay,
                ..Options::default()
            },
        )
        .unwrap()
    };
    let lone = open(Duration::from_secs(30));
    let (done, finished) = std::sync::mpsc::channel();
    let appender = std::thread::spawn(move || {
        for i in 0..20 {
            lone.append_blocking(record(i)).unwrap();
        }
        done.send(()).unwrap();
        lone
    });
    finished
        .recv_timeout(Duration::from_secs(25))
        .expect("a lone client's appends never wait for company");
    appender.join().unwrap().close();

    // Concurrent appends share delayed commits: every one acknowledged with its own
    // sequence number, one intact chain.
    let busy = open(Duration::from_millis(20));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut seqs: Vec<u64> = rt.block_on(async {
        let mut all = Vec::new();
        for round in 0..4 {
            let appends: Vec<_> = (0..50)
                .map(|i| busy.append(record(100 + round * 50 + i)))
                .collect();
            all.extend(
                futures_join(appends)
                    .await
                    .into_iter()
                    .map(|r| r.unwrap().unwrap()),
            );
        }
        all
    });
    busy.close();
    seqs.sort_unstable();
    let report = verify(&target, None, None).unwrap();
    assert!(report.is_intact(), "{report}");
    // Genesis is block 1, the lone client's 2-21: these are 22-221.
    assert_eq!(seqs, (22..=221).collect::<Vec<_>>());
    assert_eq!(report.blocks, 221, "{report}");
}

async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    // Poll them together so they land in shared batches.
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    for d in done {
        set.push(d.unwrap());
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item43_a_gateway_killed_under_load_leaves_an_intact_chain_with_every_answered_request()
-> anyhow::Result<()> {
    let up = crate::support::upstream().await;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    Config::new(up.addr)
        .route(Route::new("r").path("/"))
        .write(&path)?;
    let mut serving = serve(&path);
    let addr = serving.addr;

    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let answered = answered.clone();
            tokio::spawn(async move {
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<http_body_util::Full<bytes::Bytes>>();
                for i in 0.. {
                    let cid = format!("w{w}-{i}");
                    let req = http::Request::builder()
                        .uri(format!("http://{addr}/x"))
                        .header("x-correlation-id", &cid)
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                    match client.request(req).await {
                        Ok(res) if res.status() == 200 => answered.lock().unwrap().push(cid),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    serving.child.kill()?; // SIGKILL, mid-append
    serving.child.wait()?;
    for w in workers {
        let _ = w.await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 50,
        "only {} requests answered",
        answered.len()
    );
    let target = Target::Sqlite(dir.path().join("audit.db"));
    let report = verify(&target, None, None)?;
    assert!(report.is_intact(), "{report}");
    let recorded: std::collections::HashSet<String> =
        crate::support::blocks(&dir.path().join("audit.db"))
            .into_iter()
            .filter_map(|b| b["correlation_id"].as_str().map(String::from))
            .collect();
    let missing: Vec<_> = answered.iter().filter(|c| !recorded.contains(*c)).collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no block: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    Ok(())
}
