//! A `redact` rule as the config writes it (`{ path | regex | header = "...", action =
//! "mask" | "remove" | "hash" | "encrypt", deterministic = bool }`), lowered into a
//! [`Rule`].

use serde::Deserialize;

use super::encrypt::Mode;
use super::{Action, Rule};

/// A rule as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Written {
    path: Option<String>,
    regex: Option<String>,
    header: Option<String>,
    #[serde(default)]
    action: WrittenAction,
    /// With `encrypt`: equal values give equal tokens (AES-SIV), so the field stays
    /// joinable. By default `false` (AES-256-GCM, a fresh nonce per value).
    #[serde(default)]
    deterministic: bool,
}

/// `action` as written; `mask` by default.
#[derive(Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WrittenAction {
    #[default]
    Mask,
    Remove,
    Hash,
    Encrypt,
}

impl TryFrom<Written> for Rule {
    type Error = &'static str;

    fn try_from(w: Written) -> Result<Self, &'static str> {
        let action = match (w.action, w.deterministic) {
            (WrittenAction::Encrypt, false) => Action::Encrypt(Mode::Randomized),
            (WrittenAction::Encrypt, true) => Action::Encrypt(Mode::Deterministic),
            (_, true) => return Err("`deterministic` goes with `action = \"encrypt\"` only"),
            (WrittenAction::Mask, _) => Action::Mask,
            (WrittenAction::Remove, _) => Action::Remove,
            (WrittenAction::Hash, _) => Action::Hash,
        };
        match (w.path, w.regex, w.header) {
            (Some(p), None, None) => Ok(Rule::path(&p, action)),
            (None, Some(x), None) => Ok(Rule::regex(&x, action)),
            (None, None, Some(h)) => Ok(Rule::header(&h, action)),
            _ => Err("set exactly one of `path`, `regex` and `header`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redaction::Selector;

    #[derive(Debug, Deserialize)]
    struct Doc {
        redact: Vec<Rule>,
    }

    #[test]
    fn a_written_rule_is_one_selector_and_an_action() {
        let doc: Doc = toml::from_str(
            r#"redact = [{ path = "$.ssn" }, { regex = "\\d+", action = "remove" }, { header = "Set-Cookie", action = "hash" }]"#,
        )
        .unwrap();
        assert_eq!(
            doc.redact,
            [
                Rule::path("$.ssn", Action::Mask),
                Rule::regex("\\d+", Action::Remove),
                Rule::header("set-cookie", Action::Hash),
            ]
        );
        assert_eq!(
            doc.redact[2].selector,
            Selector::Header("set-cookie".into())
        );
        for bad in [
            r#"redact = [{ path = "$.a", regex = "b" }]"#,
            r#"redact = [{ action = "mask" }]"#,
        ] {
            let e = toml::from_str::<Doc>(bad).unwrap_err();
            assert_eq!(
                e.message(),
                "set exactly one of `path`, `regex` and `header`",
                "{bad}"
            );
        }
        assert!(toml::from_str::<Doc>(r#"redact = [{ path = "$.a", action = "burn" }]"#).is_err());
        let doc: Doc = toml::from_str(
            r#"redact = [{ path = "$.a", action = "encrypt" }, { path = "$.b", action = "encrypt", deterministic = true }]"#,
        )
        .unwrap();
        assert_eq!(doc.redact[0].action, Action::Encrypt(Mode::Randomized));
        assert_eq!(doc.redact[1].action, Action::Encrypt(Mode::Deterministic));
        let e = toml::from_str::<Doc>(r#"redact = [{ path = "$.a", deterministic = true }]"#)
            .unwrap_err();
        assert!(e.message().contains("deterministic"), "{}", e.message());
    }
}
