//! The module registry over real sockets: uploads through the admin API and the
//! `palisade module` CLI, signatures made by `palisade keygen` / `module sign`, every
//! refusal, tenant isolation, and hot swap under load with zero failed requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::support::cli::{palisade, palisade_env};
use crate::support::{Config, Harness, Route, send, start_with};

/// A Lua policy that tags the request with `tag`.
fn tagger(tag: &str) -> String {
    format!(
        "function on_request(req, ctx)\n  req.headers[\"x-module\"] = \"{tag}\"\n  return req\nend\n"
    )
}

/// The base config with a registry (modules up to 400 000 bytes), API keys and one
/// plain route.
fn config(up: std::net::SocketAddr) -> Config {
    Config::new(up)
        .section("registry", "dir = \"registry\"\nmax_module_bytes = 400000")
        .section("auth", "api_keys = \"apikeys.json\"")
        .route(Route::new("plain").path("/plain"))
}

/// A route of `tenant` to the active version of registry module `tag`.
fn tagged(name: &str, tenant: &str) -> Route {
    Route::new(name)
        .tenant(tenant)
        .path(&format!("/{name}"))
        .request("registry:tag")
}

fn new_key(h: &Harness, args: &[&str]) -> String {
    let mut all = vec!["apikey", "create", "--config", "palisade.toml"];
    all.extend_from_slice(args);
    let (code, key, err) = palisade(h.dir.path(), &all, None);
    assert_eq!(code, 0, "{err}");
    key.trim().to_string()
}

struct Admin {
    url: String,
    dir: PathBuf,
}

impl Admin {
    fn new(h: &Harness) -> Self {
        Admin {
            url: format!("http://{}", h.running.admin_addr().unwrap()),
            dir: h.dir.path().to_path_buf(),
        }
    }

    /// `palisade module ARGS... --admin URL --tenant T` with `key`.
    fn module(&self, key: &str, tenant: &str, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["module"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--admin", &self.url, "--tenant", tenant]);
        palisade_env(&self.dir, &[("PALISADE_API_KEY", key.as_ref())], &all, None)
    }

    fn push(
        &self,
        key: &str,
        tenant: &str,
        name: &str,
        version: &str,
        file: &Path,
    ) -> (i32, String, String) {
        self.module(
            key,
            tenant,
            &[
                "push",
                "--name",
                name,
                "--version",
                version,
                file.to_str().unwrap(),
            ],
        )
    }
}

async fn seen_module(h: &Harness, path: &str) -> (u16, String) {
    let r = send(h.addr(), "GET", path, &[], Bytes::new()).await;
    let tag = if r.status == 200 {
        r.json()["headers"]["x-module"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    } else {
        r.text()
    };
    (r.status, tag)
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn registry_blocks(h: &Harness) -> Vec<Value> {
    h.blocks()
        .into_iter()
        .filter(|b| b["kind"] == "registry")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_activate_rollback_and_delete_end_to_end() -> anyhow::Result<()> {
    let h = start_with(|up, _| config(up)).await;
    let admin = Admin::new(&h);
    let key = new_key(&h, &["--tenant", "acme", "--roles", "tenant-admin"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v1 = write(h.dir.path(), "v1.lua", tagger("v1"));
    let v2 = write(h.dir.path(), "v2.lua", tagger("v2"));
    let wasm = Path::new(palisade_test_artifacts::INJECT_HEADERS);

    let (code, out, err) = admin.push(&key, "acme", "tag", "1.0.0", &v1);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["kind"], "lua");
    assert_eq!(shown["active"], false);
    assert_eq!(shown["exports"], serde_json::json!(["request"]));
    assert_eq!(admin.push(&key, "acme", "tag", "2.0.0", &v2).0, 0);
    let (code, out, _) = admin.push(&key, "acme", "headers", "1.0.0", wasm);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["kind"], "wasm");
    assert_eq!(shown["contract_version"], "0.1.0");
    assert_eq!(shown["digest"].as_str().unwrap().len(), 64);

    // Versions are immutable.
    let (code, _, err) = admin.push(&key, "acme", "tag", "1.0.0", &v2);
    assert_eq!(code, 1);
    assert!(
        err.contains("409") && err.contains("version_exists"),
        "{err}"
    );

    // Inspect and list.
    let (code, out, _) = admin.module(&key, "acme", &["inspect", "tag", "1.0.0"]);
    assert_eq!(code, 0);
    let inspected: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["uploaded_by"], format!("apikey:{}", &key[4..20]));
    assert!(inspected["limits"]["fuel"].as_u64().unwrap() > 0);
    let (_, out, _) = admin.module(&key, "acme", &["list", "--format", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["modules"].as_array().unwrap().len(), 3);

    // Activate v1, then route to it (a route naming an inactive module is refused).
    assert_eq!(
        admin.module(&key, "acme", &["activate", "tag", "1.0.0"]).0,
        0
    );
    config(h.upstream.addr)
        .route(tagged("tagged", "acme"))
        .write(&h.config_path())?;
    h.running.reload()?;
    assert_eq!(seen_module(&h, "/tagged").await, (200, "v1".into()));
    let r = send(h.addr(), "GET", "/tagged", &[], Bytes::new()).await;
    let modules = &h.block_for(&r)["modules"];
    assert_eq!(modules[0]["name"], "tag");
    assert_eq!(modules[0]["version"], "1.0.0");

    // Activate v2: the route switches without a reload. Roll back: v1 again.
    assert_eq!(
        admin.module(&key, "acme", &["activate", "tag", "2.0.0"]).0,
        0
    );
    assert_eq!(seen_module(&h, "/tagged").await, (200, "v2".into()));
    assert_eq!(admin.module(&key, "acme", &["rollback", "tag"]).0, 0);
    assert_eq!(seen_module(&h, "/tagged").await, (200, "v1".into()));

    // The active version cannot be deleted; another can.
    let (code, _, err) = admin.module(&key, "acme", &["delete", "tag", "1.0.0"]);
    assert_eq!(code, 1);
    assert!(err.contains("version_in_use"), "{err}");
    assert_eq!(admin.module(&key, "acme", &["delete", "tag", "2.0.0"]).0, 0);
    let (code, _, err) = admin.module(&key, "acme", &["rollback", "tag"]);
    assert_eq!(code, 1, "{err}");

    // Every change is a registry block: who, what, digest.
    let blocks = registry_blocks(&h);
    let changes: Vec<(&str, &str)> = blocks
        .iter()
        .filter(|b| b["decision"] == "allowed")
        .map(|b| (b["method"].as_str().unwrap(), b["path"].as_str().unwrap()))
        .collect();
    assert_eq!(changes.len(), 7, "{changes:?}");
    for b in blocks.iter().filter(|b| b["decision"] == "allowed") {
        assert_eq!(b["identity"], format!("apikey:{}", &key[4..20]));
        assert_eq!(b["tenant"], "acme");
        assert_eq!(b["modules"][0]["digest"].as_str().unwrap().len(), 64);
    }
    assert_eq!(
        h.blocks()
            .iter()
            .filter(|b| b["kind"] == "registry" && b["cause"] == "version_exists")
            .count(),
        1
    );
    // Bytes are stored by digest under the registry directory only.
    let stored: Vec<String> = std::fs::read_dir(h.dir.path().join("registry/modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        stored
            .iter()
            .all(|n| n.len() > 64 && n[..64].bytes().all(|b| b.is_ascii_hexdigit())),
        "{stored:?}"
    );
    assert_eq!(stored.len(), 2, "v2's bytes went with it: {stored:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_modules_are_refused_with_their_exact_cause() {
    let dir = tempfile::tempdir().unwrap();
    // Keys: acme trusts `acme.key`; `other.key` is not trusted.
    for k in ["acme.key", "other.key"] {
        let (code, _, err) = palisade(dir.path(), &["keygen", "--out", k], None);
        assert_eq!(code, 0, "{err}");
    }
    let trusted = dir.path().join("acme.key.pub");
    let h = start_with(|up, _| {
        config(up).tenant(
            "acme",
            &format!(
                "module_keys = [{:?}]\nrequire_signed_modules = true",
                trusted.display().to_string()
            ),
        )
    })
    .await;
    let admin = Admin::new(&h);
    let key = new_key(&h, &["--tenant", "acme", "--roles", "tenant-admin"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let work = dir.path();

    // Unsigned.
    let good = write(work, "good.lua", tagger("good"));
    let (code, _, err) = admin.push(&key, "acme", "m", "1", &good);
    assert_eq!(code, 1);
    assert!(
        err.contains("422") && err.contains("signature_required"),
        "{err}"
    );
    // Signed with an untrusted key.
    let (code, _, e) = palisade(
        work,
        &["module", "sign", "--key", "other.key", "good.lua"],
        None,
    );
    assert_eq!(code, 0, "{e}");
    let (_, _, err) = admin.push(&key, "acme", "m", "1", &good);
    assert!(err.contains("signature_invalid"), "{err}");
    // Signed properly: accepted.
    assert_eq!(
        palisade(
            work,
            &["module", "sign", "--key", "acme.key", "good.lua"],
            None
        )
        .0,
        0
    );
    let (code, out, err) = admin.push(&key, "acme", "m", "1", &good);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let public = palisade_ledger::checkpoint::load_verifying_key(&trusted).unwrap();
    assert_eq!(v["signer"], hex::encode(public.to_bytes()));
    // Tampered after signing: the CLI sees the `.sig` is for other bytes; sent anyway
    // (the bare signature), the registry finds it does not cover them.
    let sig = std::fs::read_to_string(work.join("good.lua.sig")).unwrap();
    std::fs::write(&good, tagger("evil")).unwrap();
    let (code, _, err) = admin.push(&key, "acme", "m", "2", &good);
    assert!(code == 2 && err.contains("stale"), "{err}");
    let bare = write(work, "bare.sig", sig.split_whitespace().last().unwrap());
    let (_, _, err) = admin.module(
        &key,
        "acme",
        &[
            "push",
            "--name",
            "m",
            "--version",
            "2",
            "--signature",
            bare.to_str().unwrap(),
            good.to_str().unwrap(),
        ],
    );
    assert!(err.contains("signature_invalid"), "{err}");

    // Each remaining refusal, signed so that only the module itself is at fault.
    let sign_and_push = |name: &str, bytes: Vec<u8>| {
        let f = write(work, name, bytes);
        assert_eq!(
            palisade(work, &["module", "sign", "--key", "acme.key", name], None).0,
            0
        );
        admin.push(&key, "acme", "bad", name, &f)
    };
    let evil = "package evil:steal@1.0.0; interface secrets { steal: func() -> string; }";
    let world = "package test:fixtures; world thief { include palisade:policy/request-policy@0.1.0; import evil:steal/secrets@1.0.0; }";
    let thief = crate::fixtures::component_with(
        &crate::fixtures::core_module(
            r#"(import "evil:steal/secrets@1.0.0" "steal" (func $steal (param i32)))"#,
            "(call $steal (i32.const 0)) unreachable",
        ),
        "thief",
        &[evil, world],
        None,
    );
    let newer_wit = std::fs::read_to_string(crate::fixtures::wit_dir().join("policy.wit"))
        .unwrap()
        .replace("@0.1.0", "@0.2.0");
    let newer = crate::fixtures::component_with(
        &crate::fixtures::core_module("", "unreachable").replace("@0.1.0#", "@0.2.0#"),
        "request-policy",
        &[],
        Some(newer_wit),
    );
    let trap = crate::fixtures::request_component("", "unreachable");
    let spin = b"function on_request(req, ctx)\n  while true do end\nend\n".to_vec();
    let mut junk = b"\0asm".to_vec();
    junk.extend_from_slice(&[0xff; 64]);
    for (name, bytes, status, cause) in [
        ("thief.wasm", thief, "422", "forbidden_import"),
        ("newer.wasm", newer, "422", "contract_version"),
        ("trap.wasm", trap, "422", "trap"),
        ("spin.lua", spin, "422", "deadline"),
        ("junk.wasm", junk, "422", "invalid_module"),
        ("huge.lua", vec![b'-'; 500_000], "413", "module_too_large"),
    ] {
        let (code, _, err) = sign_and_push(name, bytes);
        assert_eq!(code, 1, "{name}");
        assert!(err.contains(status) && err.contains(cause), "{name}: {err}");
    }
    let refused: Vec<String> = registry_blocks(&h)
        .iter()
        .filter(|b| b["decision"] == "refused")
        .map(|b| b["cause"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused.len(), 9, "{refused:?}");
    let (_, out, _) = admin.module(&key, "acme", &["list", "--format", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        list["modules"].as_array().unwrap().len(),
        1,
        "only the good one is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_use_or_overwrite_each_others_modules() -> anyhow::Result<()> {
    let h = start_with(|up, _| config(up)).await;
    let admin = Admin::new(&h);
    let acme = new_key(&h, &["--tenant", "acme", "--roles", "tenant-admin"]);
    let globex = new_key(&h, &["--tenant", "globex", "--roles", "tenant-admin"]);
    let service = new_key(&h, &["--tenant", "acme", "--roles", "service"]);
    let auditor = new_key(&h, &["--roles", "auditor"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v1 = write(h.dir.path(), "a.lua", tagger("acme"));
    let g1 = write(h.dir.path(), "g.lua", tagger("globex"));
    assert_eq!(admin.push(&acme, "acme", "tag", "1", &v1).0, 0);
    assert_eq!(admin.module(&acme, "acme", &["activate", "tag", "1"]).0, 0);

    // globex's admin: no listing, inspecting, uploading, activating or deleting acme's.
    for args in [
        vec!["list"],
        vec!["inspect", "tag", "1"],
        vec!["activate", "tag", "1"],
        vec!["rollback", "tag"],
        vec!["delete", "tag", "1"],
    ] {
        let (code, _, err) = admin.module(&globex, "acme", &args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("403"), "{args:?}: {err}");
    }
    let (code, _, err) = admin.push(&globex, "acme", "tag", "2", &g1);
    assert!(code == 1 && err.contains("403"), "{err}");
    // A service principal of acme cannot manage modules either; an auditor can read.
    let (code, _, _) = admin.push(&service, "acme", "tag", "3", &v1);
    assert_eq!(code, 1);
    assert_eq!(admin.module(&auditor, "acme", &["list"]).0, 0);
    assert_eq!(
        admin.module(&auditor, "acme", &["activate", "tag", "1"]).0,
        1
    );

    // globex's own "tag" is another module; acme's stays as it was.
    assert_eq!(admin.push(&globex, "globex", "tag", "1", &g1).0, 0);
    let (_, out, _) = admin.module(&acme, "acme", &["inspect", "tag", "1"]);
    let a: Value = serde_json::from_str(&out).unwrap();
    let (_, out, _) = admin.module(&globex, "globex", &["inspect", "tag", "1"]);
    let g: Value = serde_json::from_str(&out).unwrap();
    assert_ne!(a["digest"], g["digest"]);
    assert_eq!(a["active"], true);
    assert_eq!(g["active"], false);

    // A globex route cannot use acme's active module: it resolves in globex's namespace.
    config(h.upstream.addr)
        .route(tagged("steal", "globex"))
        .write(&h.config_path())?;
    let err = h.running.reload().unwrap_err().to_string();
    assert!(
        err.contains("tenant \"globex\" has no active version of module \"tag\""),
        "{err}"
    );
    assert_eq!(
        send(h.addr(), "GET", "/steal", &[], Bytes::new())
            .await
            .status,
        404
    );
    // Names that could be paths are refused before anything is stored: by the CLI
    // before it sends anything, and by the registry.
    let (code, _, err) = admin.push(&acme, "acme", "..", "1", &v1);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad_module_name"), "{err}");
    let r = send(
        h.running.admin_addr().unwrap(),
        "PUT",
        "/v1/tenants/acme/modules/.hidden/1",
        &[("x-api-key", acme.as_str())],
        std::fs::read(&v1).unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, "bad_module_name".into()),
        "{}",
        r.text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_fails_no_request() -> anyhow::Result<()> {
    let h = start_with(|up, _| config(up)).await;
    let admin = Admin::new(&h);
    let key = new_key(&h, &["--tenant", "acme", "--roles", "tenant-admin"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for v in ["1", "2"] {
        let f = write(h.dir.path(), &format!("{v}.lua"), tagger(&format!("v{v}")));
        assert_eq!(admin.push(&key, "acme", "tag", v, &f).0, 0);
    }
    assert_eq!(admin.module(&key, "acme", &["activate", "tag", "1"]).0, 0);
    config(h.upstream.addr)
        .route(tagged("tagged", "acme"))
        .write(&h.config_path())?;
    h.running.reload()?;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, v2_seen) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let addr = h.addr();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, v2_seen) =
            (stop.clone(), ok.clone(), failed.clone(), v2_seen.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = send(addr, "GET", "/tagged", &[], Bytes::new()).await;
                let tag = r.json()["headers"]["x-module"].as_str().map(str::to_string);
                match (r.status, tag.as_deref()) {
                    (200, Some("v1")) => ok.fetch_add(1, Ordering::Relaxed),
                    (200, Some("v2")) => {
                        v2_seen.fetch_add(1, Ordering::Relaxed);
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let args: &[&str] = if i % 2 == 0 {
            &["activate", "tag", "2"]
        } else {
            &["rollback", "tag"]
        };
        let admin_call = {
            let (url, dir, key) = (admin.url.clone(), admin.dir.clone(), key.clone());
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            tokio::task::spawn_blocking(move || {
                let a = Admin { url, dir };
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                a.module(&key, "acme", &args)
            })
        };
        let (code, _, err) = admin_call.await.unwrap();
        assert_eq!(code, 0, "{err}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > 50,
        "{}",
        ok.load(Ordering::Relaxed)
    );
    assert!(v2_seen.load(Ordering::Relaxed) > 0);
    Ok(())
}
