//! A `redact` rule as the config writes it (`{ path | regex | header = "...", action =
//! "mask" | "remove" | "hash" }`), lowered into a [`Rule`].

use serde::Deserialize;

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
}

/// `action` as written; `mask` by default.
#[derive(Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WrittenAction {
    #[default]
    Mask,
    Remove,
    Hash,
}

impl TryFrom<Written> for Rule {
    type Error = &'static str;

    fn try_from(w: Written) -> Result<Self, &'static str> {
        let action = match w.action {
            WrittenAction::Mask => Action::Mask,
            WrittenAction::Remove => Action::Remove,
            WrittenAction::Hash => Action::Hash,
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
    }
}
