//! Detectors: find identifiers anywhere in a string and confirm them by checksum or rule.
//!
//! Each detector is a linear scanner, not a regular expression: a fresh instance per
//! invocation would otherwise compile its patterns on every request. Word boundaries
//! are ASCII (`[A-Za-z0-9_]` are word characters), as in the Lua version of the policy.

use crate::checksum::{iban_mod97, luhn, verhoeff};

/// A class of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Payment card number (Luhn-checked), 13-19 digits, single spaces or dashes allowed.
    Card,
    /// India Aadhaar (Verhoeff-checked), 12 digits, first 2-9, spaces allowed.
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

    /// The end (exclusive) of a candidate starting at `i`, before confirmation.
    fn candidate(self, s: &[u8], i: usize) -> Option<usize> {
        match self {
            Kind::Card => (s[i].is_ascii_digit() && boundary_before(s, i))
                .then(|| run_end(s, i, 1, |c| c.is_ascii_digit(), b" -", 12, 18))
                .flatten(),
            Kind::Iban => (boundary_before(s, i)
                && s.len() >= i + 4
                && s[i].is_ascii_uppercase()
                && s[i + 1].is_ascii_uppercase()
                && s[i + 2].is_ascii_digit()
                && s[i + 3].is_ascii_digit())
            .then(|| {
                run_end(
                    s,
                    i,
                    4,
                    |c| c.is_ascii_uppercase() || c.is_ascii_digit(),
                    b" ",
                    11,
                    30,
                )
            })
            .flatten(),
            Kind::Aadhaar => boundary_before(s, i).then(|| aadhaar_end(s, i)).flatten(),
            Kind::Ssn => (boundary_before(s, i)
                && fixed(s, i, &[D, D, D, b'-', D, D, b'-', D, D, D, D]))
            .then_some(i + 11)
            .filter(|&e| boundary_after(s, e)),
            Kind::Pan => (boundary_before(s, i)
                && s.len() >= i + 10
                && s[i..i + 3].iter().all(u8::is_ascii_uppercase)
                && b"ABCFGHLJPTE".contains(&s[i + 3])
                && s[i + 4].is_ascii_uppercase()
                && s[i + 5..i + 9].iter().all(u8::is_ascii_digit)
                && s[i + 9].is_ascii_uppercase())
            .then_some(i + 10)
            .filter(|&e| boundary_after(s, e)),
            Kind::Phone => (s[i] == b'+'
                && s.get(i + 1).is_some_and(|c| (b'1'..=b'9').contains(c)))
            .then(|| run_end(s, i, 2, |c| c.is_ascii_digit(), b"", 7, 14))
            .flatten(),
            Kind::Email => None,
        }
    }

    /// Whether a candidate really is this kind.
    fn confirm(self, text: &[u8]) -> bool {
        let compact: Vec<u8> = text
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'-'))
            .collect();
        match self {
            Kind::Card => (13..=19).contains(&compact.len()) && luhn(&compact),
            Kind::Aadhaar => compact.len() == 12 && verhoeff(&compact),
            Kind::Iban => iban_mod97(&compact),
            Kind::Ssn => ssn_valid(text),
            Kind::Pan | Kind::Email | Kind::Phone => true,
        }
    }

    /// Confirmed matches as byte ranges, left to right, not overlapping.
    fn find_all(self, s: &[u8]) -> Vec<(usize, usize)> {
        if self == Kind::Email {
            return emails(s);
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            match self.candidate(s, i) {
                Some(end) => {
                    if self.confirm(&s[i..end]) {
                        out.push((i, end));
                    }
                    i = end;
                }
                None => i += 1,
            }
        }
        out
    }
}

/// A digit placeholder in [`fixed`].
const D: u8 = 0;

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn boundary_before(s: &[u8], i: usize) -> bool {
    i == 0 || !is_word(s[i - 1])
}

fn boundary_after(s: &[u8], end: usize) -> bool {
    end >= s.len() || !is_word(s[end])
}

/// Whether `s[i..]` starts with `shape`, where [`D`] stands for any ASCII digit.
fn fixed(s: &[u8], i: usize, shape: &[u8]) -> bool {
    s.len() >= i + shape.len()
        && shape.iter().zip(&s[i..]).all(|(&want, &c)| {
            if want == D {
                c.is_ascii_digit()
            } else {
                c == want
            }
        })
}

/// After a head of `head` bytes at `i`: a greedy run of up to `max` items, each an
/// `item` byte optionally preceded by one byte of `seps`. Returns the end of the longest
/// run of at least `min` items that sits on a word boundary.
fn run_end(
    s: &[u8],
    i: usize,
    head: usize,
    item: impl Fn(u8) -> bool,
    seps: &[u8],
    min: usize,
    max: usize,
) -> Option<usize> {
    let mut ends = Vec::with_capacity(max);
    let mut j = i + head;
    while ends.len() < max {
        match (s.get(j), s.get(j + 1)) {
            (Some(&c), _) if item(c) => j += 1,
            (Some(c), Some(&n)) if seps.contains(c) && item(n) => j += 2,
            _ => break,
        }
        ends.push(j);
    }
    (min..=ends.len())
        .rev()
        .map(|k| ends[k - 1])
        .find(|&e| boundary_after(s, e))
}

/// `[2-9]ddd ?dddd ?dddd` on a boundary. The three groups are fixed; each gap is a
/// space or nothing, so at most one arrangement fits at `i`.
fn aadhaar_end(s: &[u8], i: usize) -> Option<usize> {
    if !s.get(i).is_some_and(|c| (b'2'..=b'9').contains(c)) {
        return None;
    }
    let digits = |at: usize, n: usize| {
        s.get(at..at + n)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let mut j = i;
    for group in 0..3 {
        if group > 0 && s.get(j) == Some(&b' ') {
            j += 1;
        }
        if !digits(j, 4) {
            return None;
        }
        j += 4;
    }
    boundary_after(s, j).then_some(j)
}

/// The SSA's rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn_valid(text: &[u8]) -> bool {
    let (area, group, serial) = (&text[0..3], &text[4..6], &text[7..11]);
    area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000"
}

fn local_char(c: u8) -> bool {
    is_word(c) || matches!(c, b'.' | b'%' | b'+' | b'-')
}

fn domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.')
}

fn valid_domain(d: &[u8]) -> bool {
    let labels: Vec<&[u8]> = d.split(|&c| c == b'.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic))
}

/// Emails: every `@` with a local part to its left and the longest valid domain to its
/// right that ends on a boundary.
fn emails(s: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = s[from..].iter().position(|&c| c == b'@').map(|p| p + from) {
        let mut start = at;
        while start > from && local_char(s[start - 1]) {
            start -= 1;
        }
        while start < at && !is_word(s[start]) {
            start += 1;
        }
        let mut stop = at + 1;
        while stop < s.len() && domain_char(s[stop]) {
            stop += 1;
        }
        let found = (start < at)
            .then(|| {
                (at + 2..=stop)
                    .rev()
                    .find(|&e| boundary_after(s, e) && valid_domain(&s[at + 1..e]))
            })
            .flatten();
        match found {
            Some(end) => {
                out.push((start, end));
                from = end;
            }
            None => from = at + 1,
        }
    }
    out
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
        let matches = kind.find_all(source.as_bytes());
        if matches.is_empty() {
            continue;
        }
        let mut out = String::with_capacity(source.len());
        let mut last = 0;
        for (start, end) in matches {
            // Matches start and end on ASCII bytes, so they are char boundaries.
            out.push_str(&source[last..start]);
            out.push_str(&replace(kind, &source[start..end]));
            last = end;
        }
        out.push_str(&source[last..]);
        current = Some(out);
        found.push(kind);
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
        assert_eq!(find("aadhaar 234123412346"), vec![Kind::Aadhaar]);
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
        assert!(find("id x4111111111111111 and 4111111111111111x").is_empty());
        assert!(find("not a phone +1415555267112345678").is_empty());
    }

    #[test]
    fn boundaries_and_longest_runs() {
        let (out, _) = redact_text("a 123-45-6789 b", &Kind::ALL, &mut |_, _| "X".into()).unwrap();
        assert_eq!(out, "a X b");
        // A card followed by more digits after a space: the longest run on a boundary wins.
        let (out, _) = redact_text("4111 1111 1111 1111 22", &[Kind::Card], &mut |_, _| {
            "X".into()
        })
        .unwrap_or_default();
        assert_eq!(
            out, "",
            "19 digits on a boundary fail Luhn, so nothing is replaced"
        );
        let (out, _) = redact_text("mail ops@example.org.", &[Kind::Email], &mut |_, _| {
            "X".into()
        })
        .unwrap();
        assert_eq!(out, "mail X.");
        let (out, _) = redact_text("é 4111111111111111 é", &[Kind::Card], &mut |_, _| {
            "X".into()
        })
        .unwrap();
        assert_eq!(out, "é X é");
    }
}
