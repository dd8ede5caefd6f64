//! Whether a JSON body reads one way only: no object with the same key twice. JSON parsers
//! disagree on duplicates (the last wins here and in JavaScript, the first in others), so
//! a body a schema passed could mean something else to a policy or an upstream.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Whether `body` is one JSON document (nested at most as deep as `serde_json` reads)
/// whose objects have no repeated key.
pub(super) fn unambiguous(body: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(body);
    Check.deserialize(&mut de).is_ok() && de.end().is_ok()
}

/// Walks a value, keeping each object's keys, nothing else.
#[derive(Clone, Copy)]
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_at_any_depth_are_ambiguous() {
        for ok in [
            &br#"{"a": 1, "b": {"a": 2}}"#[..],
            b"[1, 2, {\"x\": [{}]}]",
            b"\"text\"",
            b" 12 ",
        ] {
            assert!(unambiguous(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &br#"{"qty": -5, "qty": 1}"#[..],
            br#"[{"a": {"k": 1, "k": 2}}]"#,
            br#"{"a": 1, "\u0061": 2}"#,
            b"{\"a\": 1} {\"b\": 2}",
            b"{\"a\": ",
        ] {
            assert!(!unambiguous(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
