//! Reading FHIR JSON response bodies into only what the checks look at. A search set of a
//! few hundred kilobytes must be judged within the sandbox's deadline of a few milliseconds, and building a `serde_json::Value` (an owned string for every
//! member name and value, a map per object) costs several times what the checks do. So the
//! document becomes a [`Node`] tree that borrows its strings from the body, names members
//! by `&'static str`, and keeps only the members in [`KEPT_MEMBERS`]. A member missing from
//! the list can only make a resource look unreferenced, which the checks refuse: the
//! pruning fails closed.

use std::borrow::Cow;
use std::fmt;

use ehrgate_sdk::fhir::JsonTree;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A pruned JSON value. Numbers, booleans and null are kept only as [`Node::Scalar`]: no
/// check reads them.
#[derive(Debug, PartialEq)]
pub enum Node<'a> {
    Scalar,
    Text(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(&'static str, Node<'a>)>),
}

impl JsonTree for Node<'_> {
    fn member(&self, name: &str) -> Option<&Self> {
        match self {
            Node::Object(members) => members
                .iter()
                .rev()
                .find(|(member, _)| *member == name)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Node::Text(text) => Some(text),
            _ => None,
        }
    }

    fn items(&self) -> Option<&[Self]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// The member names the checks read, at any depth, sorted (byte order) for binary search:
/// Bundle and Parameters structure, `meta.security` labels, `contained` resources, the
/// segments of every compartment reference path (`ehrgate_sdk::fhir::patient_reference_paths`)
/// and of the patient elements of types outside the compartment
/// (`ehrgate_sdk::fhir::patient_link_paths`), and the token elements granular scopes are
/// checked against (`ehrgate_sdk::scope::token_element`).
const KEPT_MEMBERS: &[&str] = &[
    "action",
    "activity",
    "actor",
    "agent",
    "asserter",
    "attester",
    "author",
    "beneficiary",
    "candidate",
    "category",
    "class",
    "clinicalStatus",
    "code",
    "coding",
    "contained",
    "deliverTo",
    "detail",
    "entity",
    "entry",
    "for",
    "id",
    "individual",
    "link",
    "member",
    "meta",
    "mode",
    "other",
    "parameter",
    "part",
    "participant",
    "party",
    "patient",
    "payee",
    "payor",
    "performer",
    "policyHolder",
    "receiver",
    "recipient",
    "recorder",
    "reference",
    "requester",
    "resource",
    "resourceType",
    "search",
    "security",
    "securityContext",
    "sender",
    "source",
    "status",
    "subject",
    "subscriber",
    "system",
    "target",
    "type",
    "verificationStatus",
    "what",
    "who",
];

/// Parses FHIR JSON, keeping only [`KEPT_MEMBERS`]. Repeated members keep the last, as
/// `serde_json` does (the host refuses repeated members in request bodies).
pub fn parse(text: &str) -> Result<Node<'_>, serde_json::Error> {
    serde_json::from_str::<Pruned<'_>>(text).map(|pruned| pruned.0)
}

struct Pruned<'a>(Node<'a>);

impl<'de> Deserialize<'de> for Pruned<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PrunedVisitor).map(Pruned)
    }
}

struct PrunedVisitor;

impl<'de> Visitor<'de> for PrunedVisitor {
    type Value = Node<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Node::Scalar)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Node::Scalar)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Scalar)
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Node::Text(Cow::Borrowed(text)))
    }

    /// Strings with escapes cannot be borrowed from the body.
    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Node::Text(Cow::Owned(text.to_string())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Pruned(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(kept) = map.next_key_seed(MemberName)? {
            match kept {
                Some(name) => {
                    let Pruned(value) = map.next_value()?;
                    members.push((name, value));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Node::Object(members))
    }
}

/// Reads a member name without allocating: the kept name it matches, or `None`.
struct MemberName;

impl<'de> DeserializeSeed<'de> for MemberName {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for MemberName {
    type Value = Option<&'static str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(KEPT_MEMBERS
            .binary_search(&name)
            .ok()
            .and_then(|index| KEPT_MEMBERS.get(index).copied()))
    }
}

#[cfg(test)]
mod tests {
    use ehrgate_sdk::fhir;
    use ehrgate_sdk::scope::token_element;

    use super::*;

    #[test]
    fn kept_members_are_sorted_and_cover_every_path_the_checks_read() {
        assert!(KEPT_MEMBERS.windows(2).all(|pair| pair[0] < pair[1]));
        for resource_type in fhir::RESOURCE_TYPES {
            let paths = fhir::patient_reference_paths(resource_type)
                .iter()
                .chain(fhir::patient_link_paths(resource_type));
            for path in paths {
                for segment in path.split('.') {
                    assert!(KEPT_MEMBERS.contains(&segment), "{resource_type}.{path}");
                }
            }
        }
        for param in [
            "category",
            "code",
            "status",
            "type",
            "class",
            "clinical-status",
            "verification-status",
        ] {
            let element = token_element(param).unwrap_or_default();
            assert!(KEPT_MEMBERS.contains(&element), "{param}");
        }
    }

    #[test]
    fn pruning_keeps_what_the_checks_read() {
        let text = r#"{"resourceType": "Bundle", "total": 1, "entry": [{"fullUrl": "x",
            "resource": {"resourceType": "Procedure", "id": "p1", "text": {"div": "<div/>"},
              "subject": {"reference": "Patient/1", "display": "a name"},
              "performer": [{"actor": {"reference": "Patient/2"}, "function": {"text": "x"}}],
              "meta": {"versionId": "3", "security": [{"system": "s", "code": "R\u0041"}]},
              "status": "completed", "valueQuantity": {"value": 5.4}},
            "search": {"mode": "include", "score": 1}}]}"#;
        let Ok(parsed) = parse(text) else {
            panic!("{text} did not parse");
        };
        let text = |node: &'static str| Node::Text(Cow::Borrowed(node));
        let expected = Node::Object(vec![
            ("resourceType", text("Bundle")),
            (
                "entry",
                Node::Array(vec![Node::Object(vec![
                    (
                        "resource",
                        Node::Object(vec![
                            ("resourceType", text("Procedure")),
                            ("id", text("p1")),
                            (
                                "subject",
                                Node::Object(vec![("reference", text("Patient/1"))]),
                            ),
                            (
                                "performer",
                                Node::Array(vec![Node::Object(vec![(
                                    "actor",
                                    Node::Object(vec![("reference", text("Patient/2"))]),
                                )])]),
                            ),
                            (
                                "meta",
                                Node::Object(vec![(
                                    "security",
                                    Node::Array(vec![Node::Object(vec![
                                        ("system", text("s")),
                                        ("code", Node::Text(Cow::Owned("RA".to_string()))),
                                    ])]),
                                )]),
                            ),
                            ("status", text("completed")),
                        ]),
                    ),
                    ("search", Node::Object(vec![("mode", text("include"))])),
                ])]),
            ),
        ]);
        assert_eq!(parsed, expected);
        assert_eq!(
            parsed
                .member("entry")
                .and_then(JsonTree::items)
                .map(<[Node<'_>]>::len),
            Some(1)
        );
        assert!(parse("{\"resourceType\": ").is_err());
        assert!(
            matches!(parse("[1, 2.5, true, null, \"x\"]"), Ok(Node::Array(items)) if items.len() == 5)
        );
    }
}
