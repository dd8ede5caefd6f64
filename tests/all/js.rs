//! JavaScript and TypeScript policies, built from source with `palisade build` (node,
//! componentize-js): the shared cases, `palisade run`, a gateway route, and hostile JS
//! (docs/security.md, items 66-70).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use palisade_runtime::{Config, Decision, Engine, Limits, WasmPolicy};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::cli::palisade_env;
use crate::support::{send, start};

fn root() -> &'static Path {
    Path::new(palisade_test_artifacts::WORKSPACE)
}

/// Where compiled modules are kept: the gateway harness uses the same directory, so a
/// 12 MB JS component is compiled once per test run, not per test.
fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("palisade-test-cache")
}

/// `palisade ARGS` in the workspace, with the shared module cache: (code, stdout, stderr).
fn palisade(args: &[&str], extra: &[(&str, &OsStr)]) -> (i32, String, String) {
    let cache = cache_dir();
    let mut envs: Vec<(&str, &OsStr)> = vec![("PALISADE_CACHE_DIR", cache.as_os_str())];
    envs.extend_from_slice(extra);
    palisade_env(root(), &envs, args, None)
}

/// Builds `source` (relative to the workspace) once per content: the component's name
/// carries a hash of everything the build reads, so an unchanged policy is not rebuilt.
pub(crate) fn built(source: &str) -> PathBuf {
    static BUILDS: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let src = root().join(source);
    let mut hash = Sha256::new();
    let dir = src.parent().unwrap();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    inputs.extend(
        [
            "js/build.mjs",
            "js/package-lock.json",
            "sdk/wit/policy.wit",
            "sdk/js/palisade.js",
        ]
        .map(|p| root().join(p)),
    );
    inputs.sort();
    for input in &inputs {
        hash.update(input.to_string_lossy().as_bytes());
        hash.update(std::fs::read(input).unwrap_or_default());
    }
    let stem = src.file_stem().unwrap().to_str().unwrap();
    let out = root().join("target/js-policies").join(format!(
        "{}/{stem}.wasm",
        &hex::encode(hash.finalize())[..16]
    ));
    if !out.is_file() {
        let (code, _, err) = palisade(
            &["build", src.to_str().unwrap(), "-o", out.to_str().unwrap()],
            &[],
        );
        assert_eq!(code, 0, "building {source}: {err}");
    }
    out
}

fn json_out(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `palisade run MODULE` on a GET of `path` with extra flags: the JSON report.
fn run(module: &Path, path: &str, flags: &[&str]) -> (i32, Value) {
    let input = std::env::temp_dir().join(format!(
        "palisade-js-input-{}-{}.json",
        std::process::id(),
        path.trim_start_matches('/')
    ));
    std::fs::write(&input, json!({"path": path}).to_string()).unwrap();
    let mut args = vec![
        "run",
        module.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    let (code, out, err) = palisade(&args, &[]);
    let _ = std::fs::remove_file(&input);
    assert!(!out.is_empty(), "{err}");
    (code, json_out(&out))
}

fn hostile() -> PathBuf {
    built("tests/js/hostile.js")
}

/// The hostile module loaded once in this process, as the gateway holds a policy: the
/// invocations below share it, so state kept between them would show.
fn hostile_in_process() -> &'static WasmPolicy {
    static POLICY: OnceLock<WasmPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let engine = Engine::new(&Config::new().pool(16, 4 << 30).cache_dir(cache_dir())).unwrap();
        WasmPolicy::from_file(&engine, hostile()).unwrap()
    })
}

/// `on_request` of `path` on the in-process hostile module with `limits`.
fn invoke(path: &str, limits: Limits) -> palisade_runtime::Invocation<palisade_runtime::Request> {
    hostile_in_process()
        .with_limits(limits)
        .on_request(&crate::fixtures::ctx("t"), crate::fixtures::get(path))
}

fn continues(path: &str) -> palisade_runtime::Request {
    match invoke(path, Limits::default()).result {
        Ok(Decision::Continue(req)) => req,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn item66_loops_in_the_body_a_promise_a_finally_or_eval_are_stopped() {
    let m = hostile();
    for path in ["/loop", "/promise-loop", "/finally-loop", "/eval"] {
        // The deadline, with fuel off...
        let (code, v) = run(&m, path, &["--fuel", "unlimited", "--timeout", "100"]);
        assert_eq!(
            (code, &v["error"]["kind"]),
            (3, &json!("deadline")),
            "{path}: {v}"
        );
        // ... and the fuel budget, with a long deadline.
        let (code, v) = run(&m, path, &["--fuel", "50000000", "--timeout", "60000"]);
        assert_eq!(
            (code, &v["error"]["kind"]),
            (3, &json!("fuel_exhausted")),
            "{path}: {v}"
        );
    }
    // In one process, as the gateway runs it: the deadline stops the loop, and the same
    // policy answers the next request.
    let inv = invoke(
        "/promise-loop",
        Limits::default()
            .unlimited_fuel()
            .timeout(Duration::from_millis(100)),
    );
    assert!(
        matches!(inv.result, Err(palisade_runtime::Error::Deadline(_))),
        "{:?}",
        inv.result
    );
    continues("/ok");
}

#[test]
fn item67_allocation_bombs_and_a_100_mb_string_hit_the_memory_limit() {
    let m = hostile();
    for path in ["/alloc", "/big-string"] {
        let (code, v) = run(
            &m,
            path,
            &[
                "--fuel",
                "unlimited",
                "--timeout",
                "60000",
                "--memory",
                "64M",
            ],
        );
        assert_eq!(code, 3, "{path}: {v}");
        assert_eq!(v["error"]["kind"], "memory_limit", "{path}: {v}");
    }
}

#[test]
fn deep_recursion_is_an_error_not_an_abort() {
    // SpiderMonkey's own recursion limit (an uncaught "too much recursion": a trap in a
    // component without stdio) or Wasm's stack limit; the host goes on.
    let err = invoke("/recurse", Limits::default()).result.unwrap_err();
    assert!(matches!(err.kind(), "trap" | "stack_overflow"), "{err:?}");
    continues("/ok");
}

#[test]
fn function_and_eval_run_inside_the_sandbox() {
    let (code, v) = run(&hostile(), "/function", &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["request"]["headers"]["x-sum"], "5");
}

#[test]
fn item68_no_ambient_clock_or_entropy() {
    let m = hostile();
    let (_, first) = run(&m, "/clock", &[]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (_, second) = run(&m, "/clock", &[]);
    let headers = |v: &Value| v["request"]["headers"].clone();
    assert_eq!(first["action"], "continue", "{first}");
    // Frozen when the module was built: the same "time" and the same "random" number on
    // every invocation.
    assert_eq!(headers(&first), headers(&second));
    let now: u64 = headers(&first)["x-now"].as_str().unwrap().parse().unwrap();
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now < real, "{now} is not in the past");
    // The clocks that would measure time are not there: `performance.now()` traps.
    let (code, v) = run(&m, "/perf", &[]);
    assert_eq!((code, &v["error"]["kind"]), (4, &json!("trap")), "{v}");
}

#[test]
fn item69_prototype_pollution_does_not_survive_into_the_next_invocation() {
    // The same policy, one invocation after the other.
    continues("/pollute");
    let seen = continues("/check").headers;
    assert_eq!(
        seen,
        [
            ("x-object".to_string(), "undefined".to_string()),
            ("x-json".into(), "undefined".into()),
            ("x-global".into(), "undefined".into()),
        ]
    );
}

#[test]
fn item66_a_top_level_that_never_returns_fails_the_build_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("forever.js");
    std::fs::write(
        &src,
        "while (true) {}\nexport const requestPhase = { onRequest(ctx, req) { return undefined; } };\n",
    )
    .unwrap();
    let out = dir.path().join("forever.wasm");
    let (code, _, err) = palisade(
        &["build", src.to_str().unwrap(), "-o", out.to_str().unwrap()],
        &[("PALISADE_JS_BUILD_TIMEOUT", OsStr::new("20"))],
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("did not build within 20 s"), "{err}");
    assert!(!out.exists());
}

#[test]
fn item70_a_module_importing_outside_the_contract_is_refused_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("thief.js");
    std::fs::write(
        &src,
        "import { steal } from 'evil:steal/secrets@1.0.0';\n\
         export const requestPhase = { onRequest(ctx, req) { steal(); return undefined; } };\n",
    )
    .unwrap();
    let (code, _, err) = palisade(&["build", src.to_str().unwrap()], &[]);
    assert_eq!(code, 6, "{err}");
    // Refused for the import, named: the module resolves nothing outside the contract.
    assert!(
        err.contains(r#"Error loading module "evil:steal/secrets@1.0.0""#)
            && err.contains("JavaScript build failed"),
        "{err}"
    );
}

/// The JS ports of the shipped policies pass the same case files as the Rust and Lua
/// versions (`authoring::every_shipped_policy_passes_its_cases_in_every_language` runs
/// those two).
#[test]
fn js_policies_pass_the_shared_cases() {
    for name in ["inject-headers", "reshape-json", "redact-pii"] {
        let module = built(&format!("policies/js/{name}.js"));
        let cases = root().join("policies").join(name).join("cases.json");
        let (code, out, err) = palisade(
            &[
                "test",
                module.to_str().unwrap(),
                "--cases",
                cases.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(out.contains(" passed, 0 failed"), "{out}");
    }
}

/// `palisade new --lang js` and `--lang ts` outside the repository: the template passes
/// its cases; the TypeScript one also runs in `palisade run` and, with the JavaScript
/// redact-pii, in a gateway route.
#[tokio::test(flavor = "multi_thread")]
async fn js_and_ts_policies_go_from_palisade_new_to_a_gateway_route() {
    let tmp = tempfile::tempdir().unwrap();
    for lang in ["js", "ts"] {
        let dir = tmp.path().join(format!("tag-{lang}"));
        let (code, out, err) = palisade(&["new", dir.to_str().unwrap(), "--lang", lang], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(&format!("tag-{lang}.{lang}")) && out.contains("palisade.js"),
            "{out}"
        );
        let (code, out, err) = palisade(&["test", dir.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "{lang}: {out}{err}");
        assert!(out.contains("4 case(s): 4 passed, 0 failed"), "{out}");
    }
    // A type error stops the TypeScript build with the compiler's message.
    let ts = tmp.path().join("tag-ts/tag-ts.ts");
    let source = std::fs::read_to_string(&ts).unwrap();
    std::fs::write(&ts, format!("{source}\nconst wrong: number = 'text';\n")).unwrap();
    let (code, _, err) = palisade(&["build", ts.to_str().unwrap()], &[]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("TS2322") && err.contains("does not type-check"),
        "{err}"
    );
    std::fs::write(&ts, source).unwrap();

    let wasm = tmp.path().join("tag-ts/target/palisade/tag-ts.wasm");
    let (code, out, err) = palisade(
        &["run", wasm.to_str().unwrap(), "--config", "team=ops"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_out(&out)["request"]["headers"]["x-team"], "ops");

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
module = "{}"
config = {{ team = "payments" }}

[[route.response]]
module = "{}"
config = {{ mask = "method" }}

[[route.response]]
module = "{}"
"#,
            wasm.display(),
            wasm.display(),
            built("policies/js/redact-pii.js").display()
        ),
    )
    .await;
    let r = send(
        h.addr(),
        "POST",
        "/orders",
        &[("content-type", "application/json")],
        r#"{"note": "call 123-45-6789"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["headers"]["x-team"], "payments", "{body}");
    // The TypeScript response policy masked the echo's `method` field; the JavaScript
    // redact-pii masked the SSN the upstream echoed.
    assert_eq!(body["method"], "***", "{body}");
    assert!(!r.text().contains("123-45-6789"), "{body}");
    let block = h.block_for(&r);
    let names: Vec<&str> = block["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tag-ts", "tag-ts", "redact-pii"]);
}

/// The JS SDK's declarations of the raw contract (`sdk/js/palisade.d.ts`, `...Raw`) name
/// exactly the WIT's records, fields, variant cases, enum values and functions, in the
/// names componentize-js gives them (camelCase): a change to the contract that the SDK
/// does not follow fails here.
#[test]
fn the_js_sdk_types_match_the_wit() {
    use wit_parser::{Resolve, TypeDefKind};
    let dts = std::fs::read_to_string(root().join("sdk/js/palisade.d.ts")).unwrap();
    let mut resolve = Resolve::default();
    resolve.push_dir(root().join("sdk/wit")).unwrap();
    let camel = |s: &str| {
        let mut out = String::new();
        let mut up = false;
        for c in s.chars() {
            if c == '-' {
                up = true;
            } else if up {
                out.push(c.to_ascii_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    let pascal = |s: &str| {
        let c = camel(s);
        c[..1].to_ascii_uppercase() + &c[1..]
    };
    // The members declared in `export interface NAME {` ... `}` (or a type alias's text).
    let block = |name: &str| -> String {
        let (start, close) = match dts.find(&format!("export interface {name} {{")) {
            Some(start) => (start, "\n}"),
            None => (
                dts.find(&format!("export type {name} ="))
                    .unwrap_or_else(|| panic!("palisade.d.ts does not declare {name}")),
                ";\n",
            ),
        };
        let rest = &dts[start..];
        rest[..rest.find(close).unwrap()].to_string()
    };
    let members = |text: &str| -> Vec<String> {
        text.lines()
            .skip(1)
            .filter_map(|l| {
                let l = l.trim();
                let name: String = l
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                (!name.is_empty() && (l[name.len()..].starts_with([':', '?', '(']))).then_some(name)
            })
            .collect()
    };
    let mut checked = 0;
    for (_, iface) in &resolve.interfaces {
        for (name, id) in &iface.types {
            match &resolve.types[*id].kind {
                TypeDefKind::Record(r) => {
                    let text = block(&format!("{}Raw", pascal(name)));
                    let want: Vec<String> = r.fields.iter().map(|f| camel(&f.name)).collect();
                    assert_eq!(members(&text), want, "record {name}");
                    checked += 1;
                }
                TypeDefKind::Variant(v) => {
                    let text = block(&format!("{}Raw", pascal(name)));
                    for case in &v.cases {
                        assert!(
                            text.contains(&format!("tag: '{}'", case.name)),
                            "variant {name}: {}",
                            case.name
                        );
                    }
                    assert_eq!(
                        text.matches("tag: '").count(),
                        v.cases.len(),
                        "variant {name}"
                    );
                    checked += 1;
                }
                TypeDefKind::Enum(e) => {
                    let text = block(&pascal(name));
                    for case in &e.cases {
                        assert!(
                            text.contains(&format!("'{}'", case.name)),
                            "enum {name}: {}",
                            case.name
                        );
                    }
                    assert_eq!(text.matches('\'').count(), 2 * e.cases.len(), "enum {name}");
                    checked += 1;
                }
                _ => {}
            }
        }
        let Some(iface_name) = &iface.name else {
            continue;
        };
        if iface.functions.is_empty() {
            continue;
        }
        let text = block(&format!("{}Raw", pascal(iface_name)));
        let want: Vec<String> = iface.functions.keys().map(|f| camel(f)).collect();
        assert_eq!(members(&text), want, "interface {iface_name}");
        for (fname, f) in &iface.functions {
            let line = text
                .lines()
                .find(|l| l.trim().starts_with(&format!("{}(", camel(fname))))
                .unwrap();
            let params = line.split('(').nth(1).unwrap().split(')').next().unwrap();
            let count = if params.trim().is_empty() {
                0
            } else {
                params.split(',').count()
            };
            assert_eq!(count, f.params.len(), "{iface_name}.{fname}");
        }
        checked += 1;
    }
    assert!(checked >= 12, "{checked} declarations checked");
}

/// A JS component goes through the module registry like any other module: uploaded with
/// `palisade module push` (validated and precompiled), activated, hot-swapped by
/// activating another version, without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_module_is_uploaded_activated_and_hot_swapped_through_the_registry() {
    use crate::support::{Config, Route, start_with};
    let v1 = built("sdk/js/template.js");
    let v2 = built("policies/js/inject-headers.js");
    let config = |up, routed: bool| {
        let c = Config::new(up)
            .section("registry", "dir = \"registry\"")
            .section("auth", "api_keys = \"apikeys.json\"")
            .route(Route::new("plain").path("/plain"));
        if routed {
            // The template reads `team`; inject-headers reads `request.set.*`.
            c.route(
                Route::new("tagged")
                    .tenant("acme")
                    .path("/tagged")
                    .request_with(
                        "registry:tag",
                        r#"config = { team = "v1", "request.set.x-team" = "v2" }"#,
                    ),
            )
        } else {
            c
        }
    };
    let h = start_with(|up, _| config(up, false)).await;
    let (code, key, err) = palisade_env(
        h.dir.path(),
        &[],
        &[
            "apikey",
            "create",
            "--config",
            "palisade.toml",
            "--tenant",
            "acme",
            "--roles",
            "tenant-admin",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let admin = format!("http://{}", h.running.admin_addr().unwrap());
    let module = |args: &[&str]| {
        let mut all = vec!["module"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--admin", &admin, "--tenant", "acme"]);
        palisade_env(
            h.dir.path(),
            &[("PALISADE_API_KEY", key.as_ref())],
            &all,
            None,
        )
    };
    for (version, file) in [("1.0.0", &v1), ("2.0.0", &v2)] {
        let (code, out, err) = module(&[
            "push",
            "--name",
            "tag",
            "--version",
            version,
            file.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        let shown = json_out(&out);
        assert_eq!(
            (shown["kind"].as_str(), shown["contract_version"].as_str()),
            (Some("wasm"), Some("0.1.0"))
        );
    }
    assert_eq!(module(&["activate", "tag", "1.0.0"]).0, 0);
    config(h.upstream.addr, true)
        .write(&h.config_path())
        .unwrap();
    h.running.reload().unwrap();
    let seen = || async {
        let r = send(h.addr(), "GET", "/tagged", &[], "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["headers"]["x-team"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    };
    assert_eq!(seen().await, "v1");
    assert_eq!(module(&["activate", "tag", "2.0.0"]).0, 0);
    assert_eq!(seen().await, "v2");
}

/// A project's link to a file outside it is not followed into the build (its text would
/// reach the component or an error message); a link to the SDK is.
#[test]
fn the_js_build_follows_no_link_out_of_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside.json");
    std::fs::write(&outside, r#"{"token": "s3cr3t-outside"}"#).unwrap();
    let project = tmp.path().join("p");
    std::fs::create_dir(&project).unwrap();
    std::os::unix::fs::symlink(&outside, project.join("creds.json")).unwrap();
    std::fs::write(
        project.join("p.js"),
        "import creds from './creds.json';\nexport const requestPhase = { onRequest(ctx, req) { return undefined; } };\n",
    )
    .unwrap();
    let (code, out, err) = palisade(&["build", project.join("p.js").to_str().unwrap()], &[]);
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        err.contains("creds.json is a link out of the project"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-outside") && !out.contains("s3cr3t-outside"));
}
