//! Audit export (`[[audit.export]]`) against real receivers on loopback: an HTTP server
//! that plays Splunk HEC or Elastic `_bulk` (down for a while, slow, or refusing), a
//! syslog TCP server, JSON-lines files; the real `palisade serve` killed with SIGKILL
//! mid-export; two gateways on one PostgreSQL. Every receiver checks continuity with
//! `export::Continuity`, as a SIEM-side script would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_gateway::export::{Accepted, Break, Continuity};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::support::cli::{palisade, palisade_env, serve};
use crate::support::{Config, Harness, Route, get, start_with};

/// One request an HTTP receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    authorization: Option<String>,
    body: String,
    /// The status it answered.
    status: u16,
    /// Whether the answer was sent (a receiver killed, or a client gone, before that
    /// never acknowledged the request).
    answered: bool,
}

type Log = Arc<Mutex<Vec<Got>>>;

/// An HTTP receiver: `answer(n, body)` (n counts requests from 0) is the status, the body and
/// how long to wait before answering. Every request is recorded when it arrives.
async fn receiver(
    answer: impl Fn(usize, &str) -> (u16, &'static str, Duration) + Send + Sync + 'static,
) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let answer = Arc::new(answer);
    let kept = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (log, answer) = (kept.clone(), answer.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (log, answer) = (log.clone(), answer.clone());
                    async move {
                        let path = req.uri().to_string();
                        let authorization = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let body = String::from_utf8(body.to_vec()).unwrap();
                        let (n, status, text, delay) = {
                            let mut log = log.lock().unwrap();
                            let n = log.len();
                            let (status, text, delay) = answer(n, &body);
                            log.push(Got {
                                path,
                                authorization,
                                body,
                                status,
                                answered: false,
                            });
                            (n, status, text, delay)
                        };
                        tokio::time::sleep(delay).await;
                        log.lock().unwrap()[n].answered = true;
                        let mut res = hyper::Response::new(Full::new(Bytes::from(text)));
                        *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, log)
}

const HEC_OK: &str = r#"{"text":"Success","code":0}"#;

/// The exported objects in a HEC body (each event's `event`).
fn hec_objects(body: &str) -> Vec<String> {
    body.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].to_string())
        .collect()
}

fn seq_of(object: &str) -> u64 {
    serde_json::from_str::<Value>(object).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

fn is_block(object: &str) -> bool {
    serde_json::from_str::<Value>(object).unwrap()["type"] == "block"
}

/// Waits up to `secs` for `done`.
async fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The seqs of the blocks among the objects the answered (2xx) requests carried.
fn acknowledged(log: &Log, objects: fn(&str) -> Vec<String>) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|g| g.status == 200)
        .flat_map(|g| objects(&g.body))
        .collect()
}

/// Every object passes the receiver's continuity check; returns the block seqs.
fn continuous(objects: &[String]) -> Vec<u64> {
    let mut chain = Continuity::new();
    objects
        .iter()
        .filter_map(|o| match chain.accept(o) {
            Ok(Accepted::Block(seq)) => Some(seq),
            Ok(_) => None,
            Err(e) => panic!("{e}: {o}"),
        })
        .collect()
}

/// The `(seq, hash)` of a sink's cursor in a SQLite ledger.
fn cursor(db: &Path, sink: &str) -> Option<(u64, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(
        "SELECT seq, hash FROM palisade_export_cursor WHERE sink = ?1",
        [sink],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
    )
    .ok()
}

fn head(db: &Path) -> u64 {
    crate::support::blocks(db).len() as u64
}

async fn metric(h: &Harness, name_and_labels: &str) -> f64 {
    h.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn sink(lines: &str) -> String {
    format!(
        "\n[[audit.export]]\nbackoff_ms = 50\nbackoff_max_ms = 200\npoll_ms = 50\ntimeout_ms = 5000\n{lines}\n"
    )
}

/// A gateway exporting to the HEC at `hec` in batches of `batch`, after 12 requests:
/// the ledger's head is the last block to export.
async fn hec_gateway(hec: SocketAddr, batch: usize) -> (crate::support::Harness, u64) {
    let h = start_with(|up, dir| {
        std::fs::write(dir.join("hec.token"), "hec-s3cr3t-token\n").unwrap();
        Config::new(up)
            .route(Route::new("r").path("/"))
            .text(&sink(&format!(
                "name = \"hec\"\nkind = \"splunk\"\nurl = \"http://{hec}/services/collector/event\"\ntoken_file = \"hec.token\"\nbatch = {batch}"
            )))
    })
    .await;
    for i in 0..12 {
        assert_eq!(get(h.addr(), &format!("/o/{i}")).await.status, 200);
    }
    let last = head(&h.ledger_path());
    (h, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_for_a_while_then_up_receives_every_block_in_order_without_a_gap() {
    let (hec, log) = receiver(|n, _| match n {
        0..4 => (503, "down", Duration::ZERO),
        _ => (200, HEC_OK, Duration::ZERO),
    })
    .await;
    let (h, last) = hec_gateway(hec, 4).await;
    assert_eq!(last, 13);
    wait_for(20, "every block acknowledged", || {
        acknowledged(&log, hec_objects)
            .last()
            .is_some_and(|o| seq_of(o) == last)
    })
    .await;
    let got = log.lock().unwrap().clone();
    assert!(got.iter().filter(|g| g.status == 503).count() >= 4);
    // What the sink acknowledged is the chain from block 1, each block once, in order.
    let objects = acknowledged(&log, hec_objects);
    let blocks: Vec<String> = objects.iter().filter(|o| is_block(o)).cloned().collect();
    assert_eq!(continuous(&blocks), (1..=last).collect::<Vec<_>>());
    for g in &got {
        assert_eq!(g.path, "/services/collector/event");
        assert_eq!(g.authorization.as_deref(), Some("Splunk hec-s3cr3t-token"));
    }
    assert_eq!(cursor(&h.ledger_path(), "hec").unwrap().0, last);
    assert!(
        metric(
            &h,
            "palisade_export_errors_total{sink=\"hec\",kind=\"sink\"}"
        )
        .await
            >= 4.0
    );
    assert_eq!(
        metric(&h, "palisade_export_blocks_total{sink=\"hec\"}").await,
        last as f64
    );
    assert_eq!(
        metric(&h, "palisade_export_lag_blocks{sink=\"hec\"}").await,
        0.0
    );
    let log_text = crate::support::log_text();
    assert!(
        log_text.contains("audit export failing"),
        "no warning logged"
    );
    assert!(
        log_text.contains("audit export recovered"),
        "no recovery logged"
    );
    assert!(
        !log_text.contains("hec-s3cr3t-token"),
        "the token reached the log"
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_refuses_large_batches_gets_smaller_ones_and_every_block() {
    // A HEC that takes at most two objects per request, as a `max_content_length` would,
    // down for its first answer (so the blocks pile up past two).
    let (hec, log) = receiver(|n, body| {
        if n == 0 {
            (503, "down", Duration::ZERO)
        } else if hec_objects(body).len() > 2 {
            (413, "too large", Duration::ZERO)
        } else {
            (200, HEC_OK, Duration::ZERO)
        }
    })
    .await;
    let (h, last) = hec_gateway(hec, 8).await;
    wait_for(20, "every block acknowledged", || {
        acknowledged(&log, hec_objects)
            .last()
            .is_some_and(|o| seq_of(o) == last)
    })
    .await;
    let blocks: Vec<String> = acknowledged(&log, hec_objects)
        .into_iter()
        .filter(|o| is_block(o))
        .collect();
    assert_eq!(continuous(&blocks), (1..=last).collect::<Vec<_>>());
    let got = log.lock().unwrap().clone();
    assert!(got.iter().any(|g| g.status == 413), "{got:?}");
    assert!(
        metric(
            &h,
            "palisade_export_errors_total{sink=\"hec\",kind=\"too_large\"}"
        )
        .await
            >= 1.0
    );
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elastic_bulk_with_errors_is_resent_and_documents_are_named_by_seq() {
    let (es, log) = receiver(|n, _| match n {
        0 => (
            200,
            r#"{"errors":true,"items":[{"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}}]}"#,
            Duration::ZERO,
        ),
        _ => (200, r#"{"errors":false}"#, Duration::ZERO),
    })
    .await;
    let h = start_with(|up, dir| {
        std::fs::write(dir.join("es.key"), "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==").unwrap();
        Config::new(up)
            .route(Route::new("r").path("/"))
            .text(&sink(&format!(
                "name = \"es\"\nkind = \"elastic\"\nurl = \"http://{es}/\"\nindex = \"palisade-audit\"\napi_key_file = \"es.key\""
            )))
    })
    .await;
    wait_for(10, "a first, refused, bulk", || {
        !log.lock().unwrap().is_empty()
    })
    .await;
    for i in 0..5 {
        get(h.addr(), &format!("/e/{i}")).await;
    }
    let last = head(&h.ledger_path());
    let docs = |body: &str| -> Vec<String> {
        let lines: Vec<&str> = body.lines().collect();
        lines
            .chunks(2)
            .map(|pair| {
                let action: Value = serde_json::from_str(pair[0]).unwrap();
                let doc = pair[1].to_string();
                let kind = serde_json::from_str::<Value>(&doc).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert_eq!(action["create"]["_index"], "palisade-audit");
                assert_eq!(action["create"]["_id"], format!("{kind}-{}", seq_of(&doc)));
                doc
            })
            .collect()
    };
    wait_for(20, "every block acknowledged", || {
        log.lock().unwrap()[1..]
            .iter()
            .flat_map(|g| docs(&g.body))
            .any(|d| seq_of(&d) == last)
    })
    .await;
    let got = log.lock().unwrap().clone();
    // `"errors": true` is no acknowledgement: the same blocks came again (and more).
    assert!(got[1].body.starts_with(&got[0].body));
    for g in &got {
        assert_eq!(
            g.path,
            "/_bulk?filter_path=errors,items.*.status,items.*.error.type"
        );
        assert!(
            g.authorization
                .as_deref()
                .unwrap()
                .starts_with("ApiKey VnVhQ2Z")
        );
    }
    let objects: Vec<String> = got[1..].iter().flat_map(|g| docs(&g.body)).collect();
    assert_eq!(continuous(&objects), (1..=last).collect::<Vec<_>>());
    h.running.shutdown().await;
}

/// Octet-counted frames (RFC 6587 3.4.1) in `bytes`.
fn frames(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let len: usize = std::str::from_utf8(&rest[..space])
            .unwrap()
            .parse()
            .unwrap();
        if rest.len() < space + 1 + len {
            break;
        }
        out.push(String::from_utf8(rest[space + 1..space + 1 + len].to_vec()).unwrap());
        rest = &rest[space + 1 + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_gets_rfc5424_frames_and_a_receiver_restart_loses_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bytes: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let kept = bytes.clone();
    tokio::spawn(async move {
        for n in 0.. {
            let (mut tcp, _) = listener.accept().await.unwrap();
            kept.lock().unwrap().push(Vec::new());
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                loop {
                    // The first connection goes away once it has a frame and nothing
                    // more is coming: a receiver restarting between two batches.
                    let read = if n == 0 && !frames(&kept.lock().unwrap()[0]).is_empty() {
                        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => return,
                        }
                    } else {
                        tcp.read(&mut buf).await
                    };
                    match read {
                        Ok(0) | Err(_) => return,
                        Ok(k) => kept.lock().unwrap()[n].extend_from_slice(&buf[..k]),
                    }
                }
            });
        }
    });
    let h = start_with(|up, _| {
        Config::new(up)
            .append("audit", "instance = \"gw-test\"")
            .route(Route::new("r").path("/"))
            .text(&sink(&format!(
                "name = \"syslog\"\nkind = \"syslog\"\naddress = \"{addr}\"\napp_name = \"palisade-audit\""
            )))
    })
    .await;
    wait_for(10, "the first connection to close", || {
        let conns = bytes.lock().unwrap();
        !conns.is_empty() && !frames(&conns[0]).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    for i in 0..5 {
        get(h.addr(), &format!("/s/{i}")).await;
    }
    let last = head(&h.ledger_path());
    let messages = || -> Vec<String> {
        bytes
            .lock()
            .unwrap()
            .iter()
            .flat_map(|c| frames(c))
            .collect()
    };
    wait_for(20, "every block", || {
        messages()
            .iter()
            .any(|m| m.contains(&format!("\"type\":\"block\",\"seq\":{last},")))
    })
    .await;
    assert!(bytes.lock().unwrap().len() >= 2, "the exporter reconnected");
    let mut objects = Vec::new();
    for m in messages() {
        let parts: Vec<&str> = m.splitn(8, ' ').collect();
        assert_eq!(parts[0], "<110>1", "{m}");
        assert!(
            parts[1].len() == 24 && parts[1].ends_with('Z') && parts[1].as_bytes()[10] == b'T',
            "{m}"
        );
        assert_eq!(&parts[2..5], ["gw-test", "palisade-audit", "-"], "{m}");
        assert!(["block", "checkpoint"].contains(&parts[5]), "{m}");
        assert_eq!(parts[6], "-");
        assert_eq!(
            serde_json::from_str::<Value>(parts[7]).unwrap()["type"],
            parts[5]
        );
        objects.push(parts[7].to_string());
    }
    assert_eq!(continuous(&objects), (1..=last).collect::<Vec<_>>());
    h.running.shutdown().await;
}

/// The lines of a rotated JSON-lines export, oldest first.
fn jsonl_lines(path: &Path) -> (usize, Vec<String>) {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    let lines = files
        .iter()
        .flat_map(|f| {
            assert!(
                std::fs::metadata(f).unwrap().len() <= 8192,
                "{}",
                f.display()
            );
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    (files.len(), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_export_rotates_carries_the_signed_checkpoint_and_a_dropped_line_is_detected() {
    let h = start_with(|up, _| {
        Config::new(up)
            .append("audit", "checkpoint = \"checkpoints.jsonl\"\ncheckpoint_interval_ms = 100")
            .route(Route::new("r").path("/"))
            .text(&sink("name = \"file\"\nkind = \"jsonl\"\npath = \"export/audit.jsonl\"\nmax_bytes = 8192\nkeep = 100"))
    })
    .await;
    for i in 0..40 {
        get(h.addr(), &format!("/j/{i}?token=secret-value")).await;
    }
    let last = head(&h.ledger_path());
    let path = h.dir.path().join("export/audit.jsonl");
    wait_for(20, "the head's checkpoint exported", || {
        path.exists()
            && jsonl_lines(&path).1.iter().any(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["type"] == "checkpoint" && v["seq"] == last
            })
    })
    .await;
    let (files, lines) = jsonl_lines(&path);
    assert!(files >= 3, "{files} files: no rotation");
    let key =
        palisade_ledger::checkpoint::load_verifying_key(&h.dir.path().join("checkpoint.key.pub"))
            .unwrap();
    let mut chain = Continuity::new().with_key(key);
    let mut checkpoints = 0;
    for l in &lines {
        if let Accepted::Checkpoint(_) = chain.accept(l).unwrap_or_else(|e| panic!("{e}")) {
            checkpoints += 1;
        }
    }
    assert_eq!(chain.head().0, last);
    assert!(checkpoints >= 1);
    // Records hold what the ledger holds: paths without query values.
    assert!(!lines.iter().any(|l| l.contains("secret-value")));
    // A receiver notices a block that never arrived.
    let mut dropped = lines.clone();
    let gone = dropped
        .iter()
        .position(|l| l.contains("\"seq\":20,"))
        .unwrap();
    dropped.remove(gone);
    let mut chain = Continuity::new();
    let broke = dropped.iter().find_map(|l| chain.accept(l).err());
    assert!(
        matches!(broke, Some(Break::Gap { expected: 20, .. })),
        "{broke:?}"
    );
    // A forged checkpoint is refused by the key.
    let forged = lines
        .iter()
        .find(|l| l.contains("\"type\":\"checkpoint\""))
        .unwrap()
        .replace("\"signature\":\"", "\"signature\":\"00");
    let mut chain = Continuity::new().with_key(key);
    for l in lines.iter().filter(|l| is_block(l)) {
        chain.accept(l).unwrap();
    }
    assert!(matches!(
        chain.accept(&forged),
        Err(Break::BadSignature(_) | Break::Malformed(_))
    ));
    h.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_export_resumes_from_its_cursor() -> anyhow::Result<()> {
    // A slow receiver: each batch takes 300 ms to be acknowledged.
    let (hec, log) = receiver(|_, _| (200, HEC_OK, Duration::from_millis(300))).await;
    let up = crate::support::upstream().await;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("palisade.toml");
    std::fs::write(dir.path().join("hec.token"), "t0ken")?;
    Config::new(up.addr)
        .route(Route::new("r").path("/"))
        .text(&sink(&format!(
            "name = \"hec\"\nkind = \"splunk\"\nurl = \"http://{hec}/services/collector/event\"\ntoken_file = \"hec.token\"\nbatch = 3"
        )))
        .write(&path)?;
    let db = dir.path().join("audit.db");
    let mut serving = serve(&path);
    for i in 0..20 {
        assert_eq!(get(serving.addr, &format!("/k/{i}")).await.status, 200);
    }
    let last = head(&db);
    wait_for(20, "two batches acknowledged", || {
        cursor(&db, "hec").is_some_and(|(seq, _)| seq >= 6)
    })
    .await;
    serving.child.kill()?; // SIGKILL, mid-export
    serving.child.wait()?;
    let (at_kill, _) = cursor(&db, "hec").unwrap();
    assert!(at_kill < last, "the export finished before the kill");
    // The cursor never passed what the receiver had answered.
    let answered = log
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.answered)
        .flat_map(|g| hec_objects(&g.body))
        .map(|o| seq_of(&o))
        .max()
        .unwrap();
    assert!(
        at_kill <= answered,
        "cursor at {at_kill}, but only {answered} acknowledged"
    );
    let before = log.lock().unwrap().len();
    let _serving = serve(&path);
    wait_for(30, "every block after the restart", || {
        cursor(&db, "hec").is_some_and(|(seq, _)| seq == last)
    })
    .await;
    let got = log.lock().unwrap().clone();
    // The restarted gateway resends exactly what was not acknowledged: from the cursor.
    let first_after = hec_objects(&got[before].body);
    assert_eq!(seq_of(&first_after[0]), at_kill + 1);
    // Everything received, in the order received: one chain; duplicates (a batch the
    // receiver got but whose acknowledgement died with the process) only as repeats.
    let objects: Vec<String> = got.iter().flat_map(|g| hec_objects(&g.body)).collect();
    let blocks: Vec<String> = objects.into_iter().filter(|o| is_block(o)).collect();
    assert_eq!(continuous(&blocks), (1..=last).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_no_longer_matches_the_ledger_stops_the_export() -> anyhow::Result<()> {
    let h = start_with(|up, _| {
        Config::new(up).route(Route::new("r").path("/")).text(&sink(
            "name = \"file\"\nkind = \"jsonl\"\npath = \"audit.jsonl\"",
        ))
    })
    .await;
    for i in 0..3 {
        get(h.addr(), &format!("/m/{i}")).await;
    }
    let db = h.ledger_path();
    let last = head(&db);
    wait_for(10, "the export", || {
        cursor(&db, "file").is_some_and(|(s, _)| s == last)
    })
    .await;
    let Harness {
        running,
        dir,
        upstream: _up,
    } = h;
    running.shutdown().await;
    // The block the cursor names is not the one the sink acknowledged (as after the
    // chain was recomputed, or the database swapped under the cursor).
    rusqlite::Connection::open(&db)?.execute(
        "UPDATE palisade_export_cursor SET hash = ?1 WHERE sink = 'file'",
        [&"ab".repeat(32)],
    )?;
    let exported = std::fs::read_to_string(dir.path().join("audit.jsonl"))?;
    let running = palisade_gateway::Gateway::from_file(&dir.path().join("palisade.toml"))?
        .start()
        .await?;
    get(running.proxy_addr(), "/m/after").await;
    let admin = running.admin_addr().unwrap();
    let mismatch = "palisade_export_errors_total{sink=\"file\",kind=\"cursor_mismatch\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = get(admin, "/metrics").await.text();
        if text.lines().any(|l| l.starts_with(mismatch)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cursor_mismatch error: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("audit.jsonl"))?,
        exported
    );
    assert!(crate::support::log_text().contains("the chain was rewritten or truncated"));
    running.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_since_backfills_without_moving_the_cursor() -> anyhow::Result<()> {
    let h = start_with(|up, _| {
        Config::new(up).route(Route::new("r").path("/")).text(&sink(
            "name = \"file\"\nkind = \"jsonl\"\npath = \"audit.jsonl\"",
        ))
    })
    .await;
    for i in 0..6 {
        get(h.addr(), &format!("/b/{i}")).await;
    }
    let db = h.ledger_path();
    let last = head(&db);
    wait_for(10, "the export", || {
        cursor(&db, "file").is_some_and(|(s, _)| s == last)
    })
    .await;
    let Harness {
        running,
        dir,
        upstream: _up,
    } = h;
    running.shutdown().await;
    let config = dir.path().join("palisade.toml").display().to_string();
    let stored = cursor(&db, "file");

    let (code, out, err) = palisade(
        dir.path(),
        &["audit", "export", "--since", "3", "--config", &config],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "{} block(s) sent to stdout (through block {last})",
            last - 2
        )),
        "{err}"
    );
    let lines: Vec<String> = out.lines().map(String::from).collect();
    // A receiver that has blocks 1 and 2 resumes after block 2.
    let two: String = rusqlite::Connection::open(&db)?.query_row(
        "SELECT hash FROM ledger WHERE seq = 2",
        [],
        |r| r.get(0),
    )?;
    let mut chain = Continuity::after(2, palisade_ledger::block::parse_hex(&two).unwrap());
    for l in &lines {
        chain.accept(l).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(chain.head().0, last);
    assert_eq!(seq_of(&lines[0]), 3);

    let before = std::fs::read_to_string(dir.path().join("audit.jsonl"))?
        .lines()
        .count();
    let (code, _, err) = palisade(
        dir.path(),
        &[
            "audit", "export", "--since", "5", "--sink", "file", "--config", &config,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let after = std::fs::read_to_string(dir.path().join("audit.jsonl"))?
        .lines()
        .count() as u64;
    assert_eq!(after, before as u64 + last - 4);
    assert_eq!(cursor(&db, "file"), stored, "a back-fill moved the cursor");

    let (code, _, err) = palisade(
        dir.path(),
        &[
            "audit", "export", "--since", "1", "--sink", "nope", "--config", &config,
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("no export sink is named \"nope\""), "{err}");
    Ok(())
}

#[test]
fn check_config_reports_bad_sinks_and_missing_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("palisade.toml");
    Config::new("127.0.0.1:1".parse().unwrap())
        .text("\n[[audit.export]]\nname = \"hec\"\nkind = \"splunk\"\nurl = \"https://splunk.example/services/collector/event\"\ntoken_env = \"PALISADE_TEST_UNSET_HEC_TOKEN\"\n")
        .write(&path)
        .unwrap();
    let config = path.display().to_string();
    let (code, _, err) = palisade(dir.path(), &["check-config", "--offline", &config], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("export sink \"hec\": token: environment variable PALISADE_TEST_UNSET_HEC_TOKEN is not set"), "{err}");
    let (code, out, err) = palisade_env(
        dir.path(),
        &[("PALISADE_TEST_UNSET_HEC_TOKEN", "x".as_ref())],
        &["check-config", "--offline", &config],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");

    std::fs::write(
        &path,
        format!(
            "{}\n[[audit.export]]\nname = \"bad\"\nkind = \"jsonl\"\npath = \"a.jsonl\"\nurl = \"http://x\"\n",
            Config::new("127.0.0.1:1".parse().unwrap())
        ),
    )
    .unwrap();
    let (code, _, err) = palisade(dir.path(), &["check-config", "--offline", &config], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("export sink \"bad\": `url` is not a key of a `jsonl` sink"),
        "{err}"
    );

    // A URL that carries a credential and is wrong in another way: the error names the
    // URL without the credential (nor the query, where tokens also hide).
    for url in [
        "ftp://elastic:s3cr3t-pw@siem.example/_bulk",
        "https://elastic:s3cr3t-pw@siem example/_bulk",
        "https://siem.example/_bulk?api_key=s3cr3t-pw",
    ] {
        std::fs::write(
            &path,
            format!(
                "{}\n[[audit.export]]\nname = \"siem\"\nkind = \"elastic\"\nurl = \"{url}\"\n",
                Config::new("127.0.0.1:1".parse().unwrap())
            ),
        )
        .unwrap();
        let (code, out, err) = palisade(dir.path(), &["check-config", "--offline", &config], None);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("export sink \"siem\": url"), "{url}: {err}");
        assert!(!format!("{out}{err}").contains("s3cr3t-pw"), "{url}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_postgres_export_a_sink_once_and_the_standby_takes_over()
-> anyhow::Result<()> {
    let (_, writer) = tokio::task::spawn_blocking(crate::postgres::database).await?;
    let up = crate::support::upstream().await;
    let config = Config::new(up.addr)
        .section("audit", &format!("postgres = \"{writer}\""))
        .route(Route::new("r").path("/"))
        .text(&sink(
            "name = \"archive\"\nkind = \"jsonl\"\npath = \"archive.jsonl\"",
        ));
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("palisade.toml");
        config.write(&path)?;
        let running = palisade_gateway::Gateway::from_file(&path)?.start().await?;
        gateways.push((running, dir));
    }
    for i in 0..10 {
        for (g, _) in &gateways {
            get(g.proxy_addr(), &format!("/pg/{i}")).await;
        }
    }
    let w = writer.clone();
    let pg_state = move || {
        let w = w.clone();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&w, postgres::NoTls).unwrap();
            let head: i64 = c
                .query_one("SELECT MAX(seq) FROM palisade_ledger", &[])
                .unwrap()
                .get(0);
            let cursor = c
                .query_opt(
                    "SELECT seq, hash FROM palisade_export_cursor WHERE sink = 'archive'",
                    &[],
                )
                .unwrap()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)));
            (head as u64, cursor)
        })
        .join()
        .unwrap()
    };
    let last = pg_state().0;
    assert_eq!(last, 21);
    wait_for(20, "the export", || {
        pg_state().1.is_some_and(|(s, _)| s == last)
    })
    .await;
    let lines = |dir: &tempfile::TempDir| -> Vec<String> {
        std::fs::read_to_string(dir.path().join("archive.jsonl"))
            .map(|t| t.lines().map(String::from).collect())
            .unwrap_or_default()
    };
    let leader = gateways
        .iter()
        .position(|(_, d)| !lines(d).is_empty())
        .unwrap();
    let standby = 1 - leader;
    // One gateway exported every block, once; the other none.
    let exported = lines(&gateways[leader].1);
    assert_eq!(continuous(&exported), (1..=last).collect::<Vec<_>>());
    assert!(lines(&gateways[standby].1).is_empty());

    // The leader stops; the standby takes over from the cursor.
    let (running, _dir) = gateways.remove(leader);
    running.shutdown().await;
    let (running, dir) = gateways.pop().unwrap();
    for i in 0..5 {
        get(running.proxy_addr(), &format!("/pg/after/{i}")).await;
    }
    let (now, _) = pg_state();
    wait_for(20, "the standby's export", || {
        pg_state().1.is_some_and(|(s, _)| s == now)
    })
    .await;
    let taken = lines(&dir);
    let hash = palisade_ledger::block::parse_hex(
        serde_json::from_str::<Value>(exported.last().unwrap())?["hash"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(seq_of(&taken[0]), last + 1);
    let mut chain = Continuity::after(last, hash);
    for l in &taken {
        chain.accept(l).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(chain.head().0, now);
    running.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_verifies_the_receivers_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "syslog test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["syslog.test".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let kept = received.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, kept) = (acceptor.clone(), kept.clone());
            tokio::spawn(async move {
                // Only what arrives over a completed handshake counts.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 65536];
                while let Ok(k @ 1..) = tls.read(&mut buf).await {
                    kept.lock().unwrap().extend_from_slice(&buf[..k]);
                }
            });
        }
    });
    let h = start_with(|up, dir| {
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let tls_sink = |name: &str, ca: &str| {
            sink(&format!(
                "name = \"{name}\"\nkind = \"syslog\"\naddress = \"{addr}\"\ntls = true\nserver_name = \"syslog.test\"\napp_name = \"pal-{name}\"\n{ca}"
            ))
        };
        Config::new(up)
            .route(Route::new("r").path("/"))
            .text(&tls_sink("trusted", "ca = \"ca.pem\""))
            .text(&tls_sink("untrusted", ""))
    })
    .await;
    for i in 0..4 {
        get(h.addr(), &format!("/t/{i}")).await;
    }
    let last = head(&h.ledger_path());
    let objects = || -> Vec<(String, String)> {
        frames(&received.lock().unwrap())
            .into_iter()
            .map(|m| {
                let parts: Vec<&str> = m.splitn(8, ' ').collect();
                (parts[3].to_string(), parts[7].to_string())
            })
            .collect()
    };
    wait_for(20, "every block over TLS", || {
        objects()
            .iter()
            .any(|(_, o)| is_block(o) && seq_of(o) == last)
    })
    .await;
    let failed = "palisade_export_errors_total{sink=\"untrusted\",kind=\"sink\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&h, failed).await < 1.0 {
        assert!(Instant::now() < deadline, "the untrusted sink never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = objects();
    assert!(
        got.iter().all(|(app, _)| app == "pal-trusted"),
        "a sink that does not trust the CA sent anyway"
    );
    let trusted: Vec<String> = got.into_iter().map(|(_, o)| o).collect();
    assert_eq!(continuous(&trusted), (1..=last).collect::<Vec<_>>());
    assert!(metric(&h, "palisade_export_lag_blocks{sink=\"untrusted\"}").await > 0.0);
    assert!(
        crate::support::log_text().contains("UnknownIssuer"),
        "the TLS failure is not named"
    );
    h.running.shutdown().await;
}
