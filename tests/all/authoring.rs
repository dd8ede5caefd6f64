//! Writing policies outside this repository: `palisade new`, `test`, `build`, then the
//! built module in `palisade run` and in a gateway route. And the shipped policies'
//! case files, run against every version of each policy.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::cli::palisade_env;
use crate::support::{send, start};

/// Guest builds share the workspace's guest target directory, so a new policy compiles
/// only itself (its dependencies are the workspace's guests' dependencies).
fn shared_target() -> PathBuf {
    Path::new(palisade_test_artifacts::WORKSPACE).join("target/guests")
}

/// `palisade ARGS` in `dir`, sharing the guest build: (exit code, stdout, stderr).
fn palisade(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let target = shared_target();
    palisade_env(dir, &[("CARGO_TARGET_DIR", target.as_os_str())], args, None)
}

/// A directory outside the repository.
fn outside() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let workspace = std::fs::canonicalize(palisade_test_artifacts::WORKSPACE).unwrap();
    assert!(!dir.path().starts_with(workspace));
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

fn json_out(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_policy_goes_from_palisade_new_to_a_gateway_route() {
    let tmp = outside();
    let dir = tmp.path().join("tag-team");
    let dir_arg = dir.to_str().unwrap();
    let (code, out, err) = palisade(tmp.path(), &["new", dir_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Cargo.toml") && out.contains("cases.json"),
        "{out}"
    );
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk =
        std::fs::canonicalize(Path::new(palisade_test_artifacts::WORKSPACE).join("sdk")).unwrap();
    assert!(
        manifest.contains(&format!("path = \"{}\"", sdk.display())),
        "{manifest}"
    );
    // Again into the same, now non-empty, directory: refused.
    let (code, _, err) = palisade(tmp.path(), &["new", dir_arg]);
    assert_eq!(code, 2);
    assert!(err.contains("not empty"), "{err}");

    // A case the template does not pass yet: a request without a team is "nobody's".
    edit(
        &dir.join("cases.json"),
        r#""expect": {"action": "continue", "headers": {"x-team": "unknown"}}"#,
        r#""expect": {"action": "continue", "headers": {"x-team": "nobody"}}"#,
    );
    let (code, out, err) = palisade(&dir, &["test"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL  tags requests without a team as unknown")
            && out.contains(r#"header x-team: expected ["nobody"], got ["unknown"]"#)
            && out.contains("4 case(s): 3 passed, 1 failed"),
        "{out}"
    );
    // The policy changes; the same command passes, and says so in JSON for CI.
    edit(
        &dir.join("src/lib.rs"),
        r#"unwrap_or("unknown")"#,
        r#"unwrap_or("nobody")"#,
    );
    let (code, out, err) = palisade(&dir, &["test", "--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json_out(&out);
    assert_eq!(
        (report["passed"].as_u64(), report["failed"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(report["kind"], "wasm");
    assert!(report["cases"][0]["result"]["stats"]["fuel"].as_u64() > Some(0));

    // `palisade build` says what it made.
    let (code, out, err) = palisade(&dir, &["build", ".", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let built = json_out(&out);
    let wasm = dir.join("target/palisade/tag-team.wasm");
    assert!(wasm.is_file());
    assert_eq!(built["path"], "./target/palisade/tag-team.wasm");
    assert_eq!(built["contract"], "palisade:policy@0.1.0");
    assert_eq!(built["phases"], json!(["request", "response"]));
    assert!(
        built["imports"]
            .as_array()
            .unwrap()
            .contains(&json!("palisade:policy/host@0.1.0")),
        "{built}"
    );
    assert_eq!(built["limits"]["memory_bytes"], 64 << 20);
    assert!(built["size"].as_u64().unwrap() > 10_000);
    let (code, text, _) = palisade(&dir, &["build"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("phases   request, response") && text.contains("limits   fuel 1000000000"),
        "{text}"
    );

    // The module runs in `palisade run` ...
    let wasm_arg = wasm.to_str().unwrap();
    let (code, out, err) = palisade(tmp.path(), &["run", wasm_arg, "--config", "team=ops"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_out(&out)["request"]["headers"]["x-team"], "ops");

    // ... and in a gateway route, with the route's config.
    let h = start(
        "",
        &format!(
            r#"
[[route]]
name = "orders"
tenant = "acme"
upstream = "up"
path = "/"

[[route.request]]
module = "{wasm_arg}"
config = {{ team = "payments" }}
"#
        ),
    )
    .await;
    let r = send(h.addr(), "GET", "/orders", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-team"], "payments");
    let block = h.block_for(&r);
    assert_eq!(block["modules"][0]["name"], "tag-team");
}

#[test]
fn the_template_s_native_unit_tests_pass() {
    let tmp = outside();
    let dir = tmp.path().join("native-check");
    let (code, _, err) = palisade(tmp.path(), &["new", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // A target directory of its own: the one of this test run may be locked by it.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["test", "--quiet", "--offline"])
        .current_dir(&dir)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(palisade_test_artifacts::WORKSPACE).join("target/authoring-native"),
        )
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 passed"), "{text}");
}

#[test]
fn a_lua_policy_is_created_tested_checked_and_run() {
    let tmp = outside();
    let dir = tmp.path().join("lua-tags");
    let (code, out, err) = palisade(tmp.path(), &["new", dir.to_str().unwrap(), "--lang", "lua"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("lua-tags.lua"), "{out}");
    // The Lua template passes the same cases as the Rust one.
    let rust_cases = include_str!("../../sdk/template/cases.json");
    assert_eq!(
        std::fs::read_to_string(dir.join("cases.json")).unwrap(),
        rust_cases
    );
    let (code, out, err) = palisade(&dir, &["test"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 case(s): 4 passed, 0 failed"), "{out}");
    let (code, out, err) = palisade(&dir, &["build", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let built = json_out(&out);
    assert_eq!(
        (built["kind"].as_str(), built["name"].as_str()),
        (Some("lua"), Some("lua-tags"))
    );
    // A script that does not compile is rejected with exit 5.
    std::fs::write(
        dir.join("lua-tags.lua"),
        "function on_request(req) return req",
    )
    .unwrap();
    let (code, _, err) = palisade(&dir, &["build"]);
    assert_eq!(code, 5, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn palisade_build_names_what_is_wrong_with_a_project() {
    let tmp = outside();
    // Not a policy crate: no cdylib, then no SDK.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(plain.join("src")).unwrap();
    std::fs::write(plain.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        plain.join("Cargo.toml"),
        "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    let (code, _, err) = palisade(tmp.path(), &["build", "plain"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("not a policy crate") && err.contains("cdylib"),
        "{err}"
    );
    edit(
        &plain.join("Cargo.toml"),
        "edition = \"2024\"\n",
        "edition = \"2024\"\n[lib]\ncrate-type = [\"cdylib\"]\n",
    );
    let (code, _, err) = palisade(tmp.path(), &["build", "plain"]);
    assert_eq!(code, 2);
    assert!(err.contains("does not depend on palisade-sdk"), "{err}");
    let (code, _, err) = palisade(tmp.path(), &["build", "missing"]);
    assert_eq!((code, err.contains("not found")), (2, true), "{err}");

    // A component of another contract version, or importing outside the contract.
    let newer = std::fs::read_to_string(crate::fixtures::wit_dir().join("policy.wit"))
        .unwrap()
        .replace("@0.1.0", "@0.2.0");
    let core = crate::fixtures::core_module("", "unreachable").replace("@0.1.0#", "@0.2.0#");
    let bytes = crate::fixtures::component_with(&core, "request-policy", &[], Some(newer));
    std::fs::write(tmp.path().join("newer.wasm"), bytes).unwrap();
    let (code, _, err) = palisade(tmp.path(), &["build", "newer.wasm"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("0.2.0") && err.contains("0.1.0"), "{err}");

    // A Rust policy that imports a function the contract does not offer: cargo builds
    // it, and the component step refuses it, naming the import.
    let dir = tmp.path().join("thief");
    let (code, _, err) = palisade(tmp.path(), &["new", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    edit(
        &dir.join("src/lib.rs"),
        "palisade_sdk::export!(Thief);",
        r#"palisade_sdk::export!(Thief);

#[cfg(target_family = "wasm")]
#[link(wasm_import_module = "evil:steal/secrets@1.0.0")]
unsafe extern "C" {
    fn steal() -> i32;
}"#,
    );
    edit(
        &dir.join("src/lib.rs"),
        "        let team = ctx",
        "        #[cfg(target_family = \"wasm\")]\n        let _ = unsafe { steal() };\n        let team = ctx",
    );
    let (code, _, err) = palisade(&dir, &["build"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("evil:steal/secrets@1.0.0"), "{err}");
}

#[test]
fn palisade_test_refuses_a_bad_case_file_and_new_a_bad_name() {
    let tmp = outside();
    let lua = tmp.path().join("p.lua");
    std::fs::write(&lua, "function on_request(req) return req end").unwrap();
    for (cases, want) in [
        (r#"{"cases": []}"#, "no cases"),
        (
            r#"{"cases": [{"name": "x", "expekt": {}}]}"#,
            "unknown field `expekt`",
        ),
        (
            r#"{"cases": [{"name": "x", "expect": {"json": {"$[": 1}}}]}"#,
            "not a JSONPath",
        ),
        ("not json", "not a valid case file"),
    ] {
        std::fs::write(tmp.path().join("cases.json"), cases).unwrap();
        let (code, _, err) = palisade(tmp.path(), &["test", "p.lua"]);
        assert_eq!(code, 2, "{cases}: {err}");
        assert!(err.contains(want), "{cases}: {err}");
    }
    // A limit case: the policy's failure is what the case expects.
    std::fs::write(
        tmp.path().join("cases.json"),
        r#"{"cases": [
            {"name": "spins", "input": {"path": "/spin"}, "limits": {"fuel": 1000},
             "expect": {"exit_code": 3, "error": {"kind": "fuel_exhausted"}}},
            {"name": "passes", "expect": {"action": "continue", "path": "/"}}
        ]}"#,
    )
    .unwrap();
    std::fs::write(
        &lua,
        "function on_request(req) if req.path == '/spin' then while true do end end return req end",
    )
    .unwrap();
    let (code, out, err) = palisade(tmp.path(), &["test", "p.lua"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok    spins") && out.contains("ok    passes"),
        "{out}"
    );

    for bad in ["Caps", "9lives", "a.b"] {
        let (code, _, err) = palisade(tmp.path(), &["new", bad]);
        assert_eq!(code, 2, "{bad}");
        assert!(err.contains("not a policy name"), "{err}");
    }
}

/// The shipped policies' case files, run against the Rust (Wasm) build and the Lua port
/// of each: the same file, both must pass every case.
#[test]
fn every_shipped_policy_passes_its_cases_in_every_language() {
    let root = Path::new(palisade_test_artifacts::WORKSPACE);
    let mut ran = 0;
    for (name, wasm) in palisade_test_artifacts::ALL {
        let cases = root.join("policies").join(name).join("cases.json");
        if !cases.is_file() {
            continue;
        }
        let lua = root.join("policies/lua").join(format!("{name}.lua"));
        let mut modules = vec![PathBuf::from(wasm)];
        if lua.is_file() {
            modules.push(lua);
        }
        for module in modules {
            let (code, out, err) = palisade_env(
                root,
                &[] as &[(&str, &OsStr)],
                &[
                    "test",
                    module.to_str().unwrap(),
                    "--cases",
                    cases.to_str().unwrap(),
                    "--format",
                    "json",
                ],
                None,
            );
            assert_eq!(code, 0, "{}: {out}{err}", module.display());
            let report = json_out(&out);
            assert!(report["passed"].as_u64() >= Some(2), "{report}");
            ran += 1;
        }
    }
    assert!(ran >= 8, "{ran} policy versions tested");
}
