//! A check that a token's decoded header or payload repeats no member name, at any depth.
//! `serde_json::Value` keeps the last of repeated names silently, so a signed payload with
//! `patient` twice would be read as whichever came last, while another reader of the same
//! token (the issuer's own introspection, an upstream that decodes it) may take the first.
//! RFC 7519 §4 and RFC 7515 §5.2 let a recipient either reject such a token or take the
//! last name; rejecting is the choice that cannot be turned against a reader that differs.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why a part of a token failed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JsonError {
    /// Not one JSON value; the caller already reports this as a malformed token.
    Syntax,
    /// An object repeats a member name; holds serde_json's description, which names the
    /// member and its position in the decoded JSON.
    DuplicateMember(String),
}

/// Checks that `bytes` is one JSON value whose objects, at any depth, each name every
/// member once. Names are compared after JSON unescaping, so `"pat\u0069ent"` repeats
/// `patient`. Nesting is bounded by serde_json's recursion limit (128).
pub(super) fn check_unique_members(bytes: &[u8]) -> Result<(), JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let checked = UniqueMembers::deserialize(&mut deserializer).and_then(|_| deserializer.end());
    match checked {
        Ok(()) => Ok(()),
        // Only the visitor below raises data errors; malformed input is a syntax or
        // end-of-input error.
        Err(error) if error.is_data() => Err(JsonError::DuplicateMember(error.to_string())),
        Err(_) => Err(JsonError::Syntax),
    }
}

/// A JSON value that is only walked, never kept: the parse that keeps it stays the plain
/// `serde_json` one the rest of the module reads.
struct UniqueMembers;

impl<'de> Deserialize<'de> for UniqueMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueMembersVisitor)
    }
}

struct UniqueMembersVisitor;

impl<'de> Visitor<'de> for UniqueMembersVisitor {
    type Value = UniqueMembers;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_unit<E>(self) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueMembers, A::Error> {
        while seq.next_element::<UniqueMembers>()?.is_some() {}
        Ok(UniqueMembers)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMembers, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom(format_args!(
                    "member `{}` appears twice",
                    crate::request::quote(&name)
                )));
            }
            map.next_value::<UniqueMembers>()?;
            seen.insert(name);
        }
        Ok(UniqueMembers)
    }
}
