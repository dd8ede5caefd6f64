//! `palisade new`: a policy project in any directory, ready for `palisade test` and
//! `palisade build`.
//!
//! Rust: a crate depending on `palisade-sdk` (by path to a checkout, or by git), the
//! template policy with its native unit tests, a case file. Lua, JavaScript, TypeScript:
//! the same policy as a script (with the JS SDK, `palisade.js` and its types, beside a JS
//! or TS one), and the same case file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};

/// The template policy (tags requests, masks one response field) and its case file; the
/// Rust and Lua versions pass the same cases.
const RUST_TEMPLATE: &str = include_str!("../../sdk/template/src/lib.rs");
const LUA_TEMPLATE: &str = include_str!("../../sdk/template/policy.lua");
const CASES_TEMPLATE: &str = include_str!("../../sdk/template/cases.json");
const JS_TEMPLATE: &str = include_str!("../../sdk/js/template.js");
const TS_TEMPLATE: &str = include_str!("../../sdk/js/template.ts");
const JS_SDK: &str = include_str!("../../sdk/js/palisade.js");
const JS_SDK_TYPES: &str = include_str!("../../sdk/js/palisade.d.ts");
/// The checkout this binary was built from: its SDK is the default dependency.
const CHECKOUT: &str = env!("CARGO_MANIFEST_DIR");

/// The language of a new policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    /// A Rust crate built into a Wasm component.
    Rust,
    /// A Luau script.
    Lua,
    /// A JavaScript module (built into a Wasm component with a JS engine inside).
    Js,
    /// A TypeScript module (type-checked, compiled to JavaScript, then as `js`).
    Ts,
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The project's directory (created; must not exist or be empty). Its last component
    /// is the policy's name: lowercase letters, digits, `-` and `_`, starting with a letter.
    path: PathBuf,
    /// The policy's language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Depend on the SDK in this checkout of Palisade (its `sdk/` directory or the
    /// checkout's root). Default: the checkout this `palisade` was built from.
    #[arg(long, value_name = "DIR", conflicts_with = "sdk_git")]
    sdk_path: Option<PathBuf>,
    /// Depend on the SDK from this git repository instead (cargo fetches it).
    #[arg(long, value_name = "URL")]
    sdk_git: Option<String>,
    /// With `--sdk-git`: the tag, branch or commit to pin.
    #[arg(long, value_name = "REV", requires = "sdk_git")]
    sdk_rev: Option<String>,
}

pub(crate) fn main(args: NewArgs) -> ExitCode {
    match create(&args) {
        Ok(made) => {
            for file in &made {
                println!("created {}", file.display());
            }
            if args.lang == Lang::Rust
                && let Some(root) = enclosing_workspace(&args.path)
            {
                eprintln!(
                    "palisade: note: {} is inside the cargo workspace of {}; if that \
                     workspace's `members` include it, cargo refuses both (two workspace \
                     roots): keep policies outside it, or add the directory to its `exclude`",
                    args.path.display(),
                    root.display()
                );
            }
            println!(
                "next: palisade test {0}  (then: palisade build {0})",
                args.path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn create(args: &NewArgs) -> Result<Vec<PathBuf>> {
    let name = policy_name(&args.path)?;
    if matches!(args.lang, Lang::Js | Lang::Ts) && name == "palisade" {
        bail!("`palisade` is the JS SDK's module name: choose another name for the policy");
    }
    if args.lang != Lang::Rust && (args.sdk_path.is_some() || args.sdk_git.is_some()) {
        bail!(
            "--sdk-path and --sdk-git are for Rust policies (the JS SDK is copied into the project)"
        );
    }
    if args.path.exists()
        && std::fs::read_dir(&args.path)
            .with_context(|| format!("reading {}", args.path.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", args.path.display());
    }
    let files: Vec<(PathBuf, String)> = match args.lang {
        Lang::Lua => vec![
            (format!("{name}.lua").into(), LUA_TEMPLATE.to_string()),
            ("cases.json".into(), CASES_TEMPLATE.to_string()),
        ],
        Lang::Js | Lang::Ts => {
            let (ext, source) = match args.lang {
                Lang::Ts => ("ts", TS_TEMPLATE),
                _ => ("js", JS_TEMPLATE),
            };
            vec![
                (format!("{name}.{ext}").into(), source.to_string()),
                ("palisade.js".into(), JS_SDK.to_string()),
                ("palisade.d.ts".into(), JS_SDK_TYPES.to_string()),
                ("cases.json".into(), CASES_TEMPLATE.to_string()),
                (".gitignore".into(), "/target\n".to_string()),
            ]
        }
        Lang::Rust => {
            let sdk = sdk_dependency(args)?;
            let mut files = vec![
                ("Cargo.toml".into(), manifest(&name, &sdk.toml)),
                (
                    "src/lib.rs".into(),
                    RUST_TEMPLATE.replace("MyPolicy", &type_name(&name)),
                ),
                ("cases.json".into(), CASES_TEMPLATE.to_string()),
                (".gitignore".into(), "/target\n".to_string()),
            ];
            // The checkout's lock file pins the SDK's dependencies to the versions it was
            // tested with; cargo drops what the policy does not use at its first build.
            if let Some(lock) = sdk.lock {
                files.push(("Cargo.lock".into(), lock));
            }
            files
        }
    };
    let mut made = Vec::new();
    for (rel, text) in files {
        let path = args.path.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        made.push(path);
    }
    Ok(made)
}

/// The policy's name from its directory: what cargo accepts as a package name and the
/// gateway shows in metrics and the ledger.
fn policy_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not end in a directory name", path.display()))?;
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` is not a policy name: lowercase letters, digits, `-` and `_`, starting \
             with a letter, at most 64 characters"
        );
    }
    Ok(name.to_string())
}

/// The nearest directory above `path` whose `Cargo.toml` declares a `[workspace]`.
fn enclosing_workspace(path: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(path).ok()?;
    start.ancestors().skip(1).find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        let doc: toml::Table = text.parse().ok()?;
        doc.contains_key("workspace").then(|| dir.to_path_buf())
    })
}

/// `mask-tokens` -> `MaskTokens`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

struct Sdk {
    /// The dependency's TOML value.
    toml: String,
    /// The checkout's `Cargo.lock`, for a path dependency.
    lock: Option<String>,
}

fn sdk_dependency(args: &NewArgs) -> Result<Sdk> {
    if let Some(url) = &args.sdk_git {
        let rev = args
            .sdk_rev
            .as_ref()
            .map(|r| format!(", rev = {}", toml_string(r)))
            .unwrap_or_default();
        return Ok(Sdk {
            toml: format!("{{ git = {}{rev} }}", toml_string(url)),
            lock: None,
        });
    }
    let given = args.sdk_path.is_some();
    let dir = args
        .sdk_path
        .clone()
        .unwrap_or_else(|| Path::new(CHECKOUT).to_path_buf());
    let dir = if dir.join("sdk").join("Cargo.toml").is_file() {
        dir.join("sdk")
    } else {
        dir
    };
    if !dir.join("Cargo.toml").is_file() || !dir.join("wit").is_dir() {
        if given {
            bail!(
                "{} is not Palisade's SDK (no Cargo.toml and wit/)",
                dir.display()
            );
        }
        bail!(
            "the checkout this palisade was built from ({CHECKOUT}) is gone: give \
             --sdk-path DIR (a checkout of Palisade) or --sdk-git URL [--sdk-rev REV]"
        );
    }
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    let lock = dir
        .parent()
        .and_then(|root| std::fs::read_to_string(root.join("Cargo.lock")).ok());
    Ok(Sdk {
        toml: format!("{{ path = {} }}", toml_string(&dir.display().to_string())),
        lock,
    })
}

fn manifest(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the Wasm component (`palisade build`); rlib: native unit tests (`cargo test`).
crate-type = ["cdylib", "rlib"]

[dependencies]
palisade-sdk = {sdk}
serde_json = "1"

# Its own workspace, wherever it lives.
[workspace]
"#
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            policy_name(Path::new("/tmp/x/mask-tokens")).unwrap(),
            "mask-tokens"
        );
        for bad in ["Mask", "1abc", "a b", "a.b", "../", ""] {
            assert!(policy_name(Path::new(bad)).is_err(), "{bad}");
        }
        assert_eq!(type_name("mask-tokens_v2"), "MaskTokensV2");
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
