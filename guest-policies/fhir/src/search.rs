//! The structure of chained and reverse-chained search parameter names (R4
//! search.html#chaining, search.html#has), so the gateway can tell which patients their
//! values name.

use crate::tables::is_resource_type;

/// The last link of a chained (`subject:Patient.name`) or reverse-chained
/// (`_has:Observation:patient:code`) parameter name: the parameter whose value the request
/// gives, and the type it is searched on when the name says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastLink<'a> {
    /// The type the last parameter belongs to: the `_has` type, or the type modifier of the
    /// chain link before it (`subject:Patient.`); `None` when the name does not say.
    pub resource_type: Option<&'a str>,
    /// The last parameter's name, without its modifier.
    pub parameter: &'a str,
    /// The last parameter's modifier (`:Patient`, `:exact`), if any.
    pub modifier: Option<&'a str>,
}

/// The last link of `name`; `None` for a parameter that is neither chained nor reverse
/// chained, or a `_has` that is not `_has:Type:reference:parameter`.
///
/// ```
/// use ehrgate_fhir::search::{LastLink, last_link};
///
/// assert_eq!(
///     last_link("_has:Observation:patient:_has:AuditEvent:entity:agent"),
///     Some(LastLink { resource_type: Some("AuditEvent"), parameter: "agent", modifier: None })
/// );
/// assert_eq!(
///     last_link("subject:Patient.general-practitioner:Practitioner.name"),
///     Some(LastLink { resource_type: Some("Practitioner"), parameter: "name", modifier: None })
/// );
/// assert_eq!(last_link("subject"), None);
/// ```
pub fn last_link(name: &str) -> Option<LastLink<'_>> {
    let mut rest = name;
    let mut resource_type = None;
    let mut linked = false;
    loop {
        if let Some(after) = rest.strip_prefix("_has:") {
            let mut parts = after.splitn(3, ':');
            let (Some(searched), Some(_reference), Some(inner)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            resource_type = Some(searched);
            rest = inner;
            linked = true;
        } else if let Some((link, inner)) = rest.split_once('.') {
            resource_type = link
                .split_once(':')
                .map(|(_, modifier)| modifier)
                .filter(|modifier| is_resource_type(modifier));
            rest = inner;
            linked = true;
        } else {
            break;
        }
    }
    if !linked || rest.is_empty() {
        return None;
    }
    let (parameter, modifier) = match rest.split_once(':') {
        Some((parameter, modifier)) => (parameter, Some(modifier)),
        None => (rest, None),
    };
    Some(LastLink {
        resource_type,
        parameter,
        modifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        let link = |resource_type, parameter, modifier| {
            Some(LastLink {
                resource_type,
                parameter,
                modifier,
            })
        };
        let cases: &[(&str, Option<LastLink<'_>>)] = &[
            (
                "_has:Observation:patient:code",
                link(Some("Observation"), "code", None),
            ),
            (
                "_has:Observation:subject:performer:Patient",
                link(Some("Observation"), "performer", Some("Patient")),
            ),
            (
                "_has:Group:member:member",
                link(Some("Group"), "member", None),
            ),
            ("subject.name", link(None, "name", None)),
            ("subject:Patient._id", link(Some("Patient"), "_id", None)),
            (
                "subject._has:Observation:patient:subject",
                link(Some("Observation"), "subject", None),
            ),
            ("_has:Observation:patient", None),
            ("_has:", None),
            ("subject.", None),
            ("subject", None),
            ("subject:Patient", None),
        ];
        for (name, expected) in cases {
            assert_eq!(last_link(name), *expected, "{name}");
        }
    }
}
