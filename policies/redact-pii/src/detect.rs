//! Detectors: find identifiers anywhere in a string and confirm them by checksum or rule.

use std::sync::OnceLock;

use regex::Regex;

use crate::checksum::{iban_mod97, luhn, verhoeff};

/// A class of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Payment card number (Luhn-checked), 13-19 digits, spaces or dashes allowed.
    Card,
    /// India Aadhaar (Verhoeff-checked), 12 digits, spaces allowed.
    Aadhaar,
    /// US Social Security Number, `AAA-GG-SSSS` with the SSA's validity rules.
    Ssn,
    /// IBAN (mod-97-checked), compact or print form.
    Iban,
    /// India PAN, `AAAPA9999A` with a valid holder-type letter.
    Pan,
    /// Email address.
    Email,
    /// Phone number in E.164 form.
    Phone,
}

impl Kind {
    /// Every kind, in the order they are applied (longer digit runs first, so a card
    /// number is never half-taken by a shorter pattern).
    pub const ALL: [Kind; 7] = [
        Kind::Card,
        Kind::Iban,
        Kind::Aadhaar,
        Kind::Ssn,
        Kind::Pan,
        Kind::Email,
        Kind::Phone,
    ];

    /// The config name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Card => "card",
            Kind::Aadhaar => "aadhaar",
            Kind::Ssn => "ssn",
            Kind::Iban => "iban",
            Kind::Pan => "pan",
            Kind::Email => "email",
            Kind::Phone => "phone",
        }
    }

    /// Parses a config name.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn regex(self) -> &'static Regex {
        static RES: OnceLock<Vec<Regex>> = OnceLock::new();
        let all = RES.get_or_init(|| {
            Kind::ALL
                .iter()
                .map(|k| {
                    let pattern = match k {
                        Kind::Card => r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
                        Kind::Aadhaar => r"\b[2-9][0-9]{3} ?[0-9]{4} ?[0-9]{4}\b",
                        Kind::Ssn => r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
                        Kind::Iban => r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b",
                        Kind::Pan => r"\b[A-Z]{3}[ABCFGHLJPTE][A-Z][0-9]{4}[A-Z]\b",
                        Kind::Email => {
                            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
                        }
                        Kind::Phone => r"\+[1-9][0-9]{7,14}\b",
                    };
                    Regex::new(pattern).expect("built-in patterns compile")
                })
                .collect()
        });
        &all[Kind::ALL.iter().position(|k| *k == self).expect("in ALL")]
    }

    /// Whether a regex match really is this kind.
    fn confirm(self, text: &str) -> bool {
        let compact: Vec<u8> = text.bytes().filter(|b| !matches!(b, b' ' | b'-')).collect();
        match self {
            Kind::Card => (13..=19).contains(&compact.len()) && luhn(&compact),
            Kind::Aadhaar => compact.len() == 12 && verhoeff(&compact),
            Kind::Iban => iban_mod97(&compact),
            Kind::Ssn => ssn_valid(text),
            Kind::Pan | Kind::Email | Kind::Phone => true,
        }
    }
}

/// The SSA's rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn_valid(text: &str) -> bool {
    let (area, rest) = text.split_at(3);
    let (group, serial) = (&rest[1..3], &rest[4..]);
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// Replaces every confirmed finding of `kinds` in `text` with `replace(kind, value)`,
/// one kind after the other. Returns the new text and the kinds found, or `None`
/// when nothing was found.
pub fn redact_text(
    text: &str,
    kinds: &[Kind],
    replace: &mut dyn FnMut(Kind, &str) -> String,
) -> Option<(String, Vec<Kind>)> {
    let mut current: Option<String> = None;
    let mut found = Vec::new();
    for &kind in kinds {
        let source = current.as_deref().unwrap_or(text);
        let mut out = String::with_capacity(source.len());
        let mut last = 0;
        let mut hit = false;
        for m in kind.regex().find_iter(source) {
            if !kind.confirm(m.as_str()) {
                continue;
            }
            hit = true;
            out.push_str(&source[last..m.start()]);
            out.push_str(&replace(kind, m.as_str()));
            last = m.end();
        }
        if hit {
            out.push_str(&source[last..]);
            current = Some(out);
            found.push(kind);
        }
    }
    current.map(|text| (text, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Vec<Kind> {
        redact_text(text, &Kind::ALL, &mut |k, _| format!("<{}>", k.name()))
            .map(|(_, k)| k)
            .unwrap_or_default()
    }

    #[test]
    fn each_detector_fires_on_a_valid_value() {
        assert_eq!(find("card 4111 1111 1111 1111 ok"), vec![Kind::Card]);
        assert_eq!(find("card 4111-1111-1111-1111"), vec![Kind::Card]);
        assert_eq!(find("aadhaar 2341 2341 2346"), vec![Kind::Aadhaar]);
        assert_eq!(find("ssn 123-45-6789"), vec![Kind::Ssn]);
        assert_eq!(find("iban GB82 WEST 1234 5698 7654 32."), vec![Kind::Iban]);
        assert_eq!(find("iban DE89370400440532013000"), vec![Kind::Iban]);
        assert_eq!(find("pan ABCPE1234F"), vec![Kind::Pan]);
        assert_eq!(find("mail jane.doe@example.co.uk now"), vec![Kind::Email]);
        assert_eq!(find("call +14155552671"), vec![Kind::Phone]);
    }

    #[test]
    fn look_alikes_that_fail_their_check_stay() {
        assert!(find("order 4111 1111 1111 1112").is_empty());
        assert!(find("ref 2341 2341 2347").is_empty());
        assert!(find("ssn 000-12-3456 or 666-12-3456 or 912-12-3456").is_empty());
        assert!(find("iban GB82 WEST 1234 5698 7654 33").is_empty());
        assert!(find("code ABCDE1234F").is_empty());
    }

    #[test]
    fn replacement_keeps_surrounding_text() {
        let (out, _) = redact_text("a 123-45-6789 b", &Kind::ALL, &mut |_, _| "X".into()).unwrap();
        assert_eq!(out, "a X b");
    }
}
