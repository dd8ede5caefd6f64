//! Admission checks that run before anything is compiled: size cap, structure,
//! compile bounds, declared memory and table sizes (against the engine's default
//! limits; per-policy limits are enforced again at instantiation), the import
//! allowlist and the contract version.

use std::borrow::Cow;

use wasmparser::{Encoding, Operator, Parser, Payload};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::host::HOST_INTERFACE;

/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The package name of the contract.
pub(crate) const CONTRACT_PACKAGE: &str = "palisade:policy";
/// The interface of shared types, imported (types only) by every policy.
pub(crate) const TYPES_INTERFACE: &str = "palisade:policy/types@0.1.0";
/// The exported interface of the request phase.
pub(crate) const REQUEST_PHASE: &str = "palisade:policy/request-phase@0.1.0";
/// The exported interface of the response phase.
pub(crate) const RESPONSE_PHASE: &str = "palisade:policy/response-phase@0.1.0";

/// What admission learned about a module.
#[derive(Debug, Clone)]
pub(crate) struct Admitted {
    /// The component's top-level imports.
    pub(crate) imports: Vec<String>,
    /// The component's top-level exports.
    pub(crate) exports: Vec<String>,
    /// Whether the component imports WASI interfaces.
    pub(crate) uses_wasi: bool,
}

/// Checks `bytes` against the engine's admission rules and returns a component
/// (a core module carrying a WIT type section is componentized first).
pub(crate) fn admit<'a>(bytes: &'a [u8], config: &Config) -> Result<(Cow<'a, [u8]>, Admitted)> {
    if bytes.len() as u64 > config.max_module_size {
        return Err(Error::ModuleTooLarge {
            size: bytes.len() as u64,
            limit: config.max_module_size,
        });
    }
    if !bytes.starts_with(b"\0asm") || bytes.len() < 8 {
        return Err(Error::InvalidModule(
            "not a WebAssembly binary (bad magic)".into(),
        ));
    }
    let component: Cow<'a, [u8]> = if wasmparser::Parser::is_core_wasm(bytes) {
        Cow::Owned(componentize(bytes, config)?)
    } else {
        Cow::Borrowed(bytes)
    };
    let admitted = scan(&component, config)?;
    Ok((component, admitted))
}

/// Turns a core module that carries a `component-type` section (what `wit-bindgen`
/// emits) into a component.
fn componentize(bytes: &[u8], config: &Config) -> Result<Vec<u8>> {
    // Bound the work before handing the module to wit-component.
    bound_core(bytes, config)?;
    wit_component::ComponentEncoder::default()
        .module(bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| {
            Error::InvalidModule(format!(
                "core module could not be componentized (does it carry the WIT type section?): {e:#}"
            ))
        })
}

fn bound_core(bytes: &[u8], config: &Config) -> Result<()> {
    let mut counter = Bounds::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(invalid)?;
        counter.visit(&payload, config)?;
    }
    Ok(())
}

#[derive(Default)]
struct Bounds {
    functions: u64,
}

impl Bounds {
    fn visit(&mut self, payload: &Payload<'_>, config: &Config) -> Result<()> {
        match payload {
            Payload::FunctionSection(reader) => {
                self.functions += u64::from(reader.count());
                if self.functions > u64::from(config.max_functions) {
                    return Err(Error::CompileBound(format!(
                        "more than {} functions",
                        config.max_functions
                    )));
                }
            }
            Payload::TableSection(reader) => {
                let limit = config.default_limits.table_element_limit();
                for table in reader.clone() {
                    let initial = table.map_err(invalid)?.ty.initial;
                    if initial > limit {
                        return Err(Error::ResourceLimit {
                            what: format!("table of {initial} elements declared (limit {limit})"),
                        });
                    }
                }
            }
            Payload::MemorySection(reader) => {
                let limit = config.default_limits.memory_limit();
                for memory in reader.clone() {
                    let memory = memory.map_err(invalid)?;
                    let bytes = memory
                        .initial
                        .saturating_mul(1u64 << memory.page_size_log2.unwrap_or(16));
                    if bytes > limit {
                        return Err(Error::MemoryLimit {
                            requested: bytes,
                            limit,
                        });
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > config.max_function_size as usize {
                    return Err(Error::CompileBound(format!(
                        "a function body of {size} bytes (limit {})",
                        config.max_function_size
                    )));
                }
                let mut depth: u32 = 0;
                let mut ops = body.get_operators_reader().map_err(invalid)?;
                while !ops.eof() {
                    match ops.read().map_err(invalid)? {
                        Operator::Block { .. }
                        | Operator::Loop { .. }
                        | Operator::If { .. }
                        | Operator::TryTable { .. }
                        | Operator::Try { .. } => {
                            depth += 1;
                            if depth > config.max_nesting {
                                return Err(Error::CompileBound(format!(
                                    "blocks nested deeper than {}",
                                    config.max_nesting
                                )));
                            }
                        }
                        Operator::End => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::InvalidModule(e.to_string())
}

/// Walks the component: compile bounds on every nested core module, and the names
/// of the top-level imports and exports checked against the allowlist and contract.
fn scan(bytes: &[u8], config: &Config) -> Result<Admitted> {
    let mut bounds = Bounds::default();
    let mut depth = 0usize;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(invalid)?;
        match &payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && *encoding != Encoding::Component {
                    return Err(Error::InvalidModule("not a component".into()));
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader.clone() {
                    imports.push(import.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader.clone() {
                    exports.push(export.map_err(invalid)?.name.name.to_string());
                }
            }
            _ => {}
        }
        bounds.visit(&payload, config)?;
    }

    let mut uses_wasi = false;
    for name in &imports {
        if name == HOST_INTERFACE || name == TYPES_INTERFACE {
            continue;
        }
        check_contract_version(name)?;
        if config.wasi && is_wasi_02(name) {
            uses_wasi = true;
            continue;
        }
        return Err(Error::ForbiddenImport(name.clone()));
    }
    for name in &exports {
        check_contract_version(name)?;
    }
    if !exports
        .iter()
        .any(|e| e == REQUEST_PHASE || e == RESPONSE_PHASE)
    {
        return Err(Error::InvalidModule(format!(
            "exports neither `{REQUEST_PHASE}` nor `{RESPONSE_PHASE}`"
        )));
    }
    Ok(Admitted {
        imports,
        exports,
        uses_wasi,
    })
}

/// A name in the contract's package must carry exactly the version this host
/// implements: a newer patch could use additions this host does not know, and for a 0.x
/// contract any other minor is breaking (docs/abi.md, "Versioning rules").
fn check_contract_version(name: &str) -> Result<()> {
    let Some(rest) = name.strip_prefix(CONTRACT_PACKAGE) else {
        return Ok(());
    };
    match rest.rsplit_once('@') {
        Some((_, version)) if version == CONTRACT_VERSION => Ok(()),
        _ => Err(Error::ContractVersion {
            found: name.to_string(),
            supported: CONTRACT_VERSION.to_string(),
        }),
    }
}

/// WASI 0.2 interfaces (`wasi:filesystem/types@0.2.3`, ...), which run deny-all.
fn is_wasi_02(name: &str) -> bool {
    name.starts_with("wasi:")
        && name
            .rsplit_once('@')
            .is_some_and(|(_, v)| v.starts_with("0.2."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions() {
        assert!(check_contract_version("palisade:policy/host@0.1.0").is_ok());
        assert!(check_contract_version("palisade:policy/host@0.1.1").is_err());
        assert!(check_contract_version("palisade:policy/host@0.2.0").is_err());
        assert!(check_contract_version("palisade:policy/host@1.1.0").is_err());
        assert!(check_contract_version("palisade:policy/host").is_err());
        assert!(check_contract_version("wasi:cli/environment@0.2.0").is_ok());
    }

    #[test]
    fn wasi_names() {
        assert!(is_wasi_02("wasi:filesystem/preopens@0.2.3"));
        assert!(!is_wasi_02("wasi:filesystem/preopens@0.3.0"));
        assert!(!is_wasi_02("evil:wasi/x@0.2.0"));
    }
}
