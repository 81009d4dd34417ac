//! One reading of a FHIR reference string (R4 references.html#literal, http.html#trules,
//! bundle.html#references), used by the gateway to list the patients a request names and by
//! policies to judge what a write points at, so the two never disagree.
//!
//! The reading is strict: a reference is literal only in the forms R4 defines, relative
//! `Type/id` (optionally `/_history/vid`) or an absolute `http(s)` URL ending in one. A
//! lenient server resolves more: HAPI-style servers take the last `Type/id` pair of
//! `x/Patient/456`, `Observation/../Patient/456` or `ftp://x/Patient/456`. Those forms
//! parse here as [`Reference::Odd`]; a policy refuses them where it must know the target,
//! and [`mentioned_ids`] lists whom a lenient server could resolve them to, so the gateway's
//! list of named patients includes them.

use crate::tables::{is_resource_type, is_valid_id};

/// The `Type/id` a literal reference resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    /// The version of a `/_history/vid` reference.
    pub version: Option<&'a str>,
}

/// What a reference string is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference<'a> {
    /// `Type/id` or `Type/id/_history/vid`, relative to the server's base.
    Relative(Target<'a>),
    /// `http(s)://authority[/path]/Type/id[/_history/vid]`: the target on the server whose
    /// base is `base` (everything before `Type`, without the trailing `/`). Whether that is
    /// this server is for the reader to decide ([`Reference::local_target`]).
    Absolute { base: &'a str, target: Target<'a> },
    /// `#id`, a resource contained in the same resource; `#` alone is the container.
    Contained(&'a str),
    /// `urn:uuid:...` or `urn:oid:...`: a Bundle entry's `fullUrl`, resolved within the
    /// Bundle.
    Placeholder(&'a str),
    /// `Type?criteria`: the server resolves it by a search when it processes the write.
    Conditional {
        resource_type: &'a str,
        criteria: &'a str,
    },
    /// Anything else; see [`Oddity`].
    Odd(Oddity),
}

/// Why a reference is none of the forms R4 defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oddity {
    Empty,
    /// Whitespace or a control character anywhere.
    Whitespace,
    /// A scheme other than `http`/`https` (or a `urn:` other than `uuid`/`oid`).
    Scheme,
    /// A rooted path (`/Patient/1`), which servers resolve differently.
    Rooted,
    /// A `.` or `..` segment, an empty segment or a percent-encoded character in the path.
    PathTrick,
    /// Segments before `Type/id` in a relative reference (`x/Patient/1`).
    ExtraSegments,
    /// A query or fragment where none belongs (`Patient/1#x`, `https://.../Patient/1?x`).
    QueryOrFragment,
    /// The type position holds no R4 resource type.
    UnknownType,
    /// The id or version breaks the R4 `id` rule.
    InvalidId,
}

impl Oddity {
    /// Why the form cannot be trusted, for refusal messages (never quoting the reference,
    /// which may carry an identifier such as a record number).
    pub fn describe(self) -> &'static str {
        match self {
            Oddity::Empty => "an empty reference",
            Oddity::Whitespace => "a reference with whitespace or control characters",
            Oddity::Scheme => "a reference with a scheme other than http or https",
            Oddity::Rooted => "a reference starting with `/`",
            Oddity::PathTrick => "a reference with `.`, `..`, empty or percent-encoded segments",
            Oddity::ExtraSegments => "a reference with segments before `Type/id`",
            Oddity::QueryOrFragment => "a reference with a query or fragment",
            Oddity::UnknownType => "a reference to something that is not an R4 resource type",
            Oddity::InvalidId => "a reference whose id breaks the R4 id rule",
        }
    }
}

impl<'a> Reference<'a> {
    /// Reads `reference`.
    ///
    /// ```
    /// use ehrgate_fhir::reference::{Oddity, Reference, Target};
    ///
    /// let target = Target { resource_type: "Patient", id: "123", version: None };
    /// assert_eq!(Reference::parse("Patient/123"), Reference::Relative(target));
    /// assert_eq!(
    ///     Reference::parse("https://ehr.example/fhir/Patient/123"),
    ///     Reference::Absolute { base: "https://ehr.example/fhir", target }
    /// );
    /// assert_eq!(Reference::parse("x/Patient/456"), Reference::Odd(Oddity::ExtraSegments));
    /// assert_eq!(Reference::parse("ftp://x/Patient/456"), Reference::Odd(Oddity::Scheme));
    /// ```
    pub fn parse(reference: &'a str) -> Self {
        if reference.is_empty() {
            return Reference::Odd(Oddity::Empty);
        }
        if reference
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        {
            return Reference::Odd(Oddity::Whitespace);
        }
        if let Some(id) = reference.strip_prefix('#') {
            return if id.is_empty() || is_valid_id(id) {
                Reference::Contained(id)
            } else {
                Reference::Odd(Oddity::InvalidId)
            };
        }
        if let Some(rest) = strip_prefix_ignore_case(reference, "urn:") {
            let placeholder = strip_prefix_ignore_case(rest, "uuid:")
                .or_else(|| strip_prefix_ignore_case(rest, "oid:"))
                .is_some_and(|value| !value.is_empty());
            return if placeholder {
                Reference::Placeholder(reference)
            } else {
                Reference::Odd(Oddity::Scheme)
            };
        }
        if let Some((scheme, rest)) = reference.split_once("://") {
            return absolute(reference, scheme, rest);
        }
        if let Some((resource_type, criteria)) = reference.split_once('?') {
            // The criteria are a query string, `:` included (`identifier=urn:oid:1.2|9`).
            return if is_resource_type(resource_type) {
                Reference::Conditional {
                    resource_type,
                    criteria,
                }
            } else if resource_type.starts_with('/') {
                Reference::Odd(Oddity::Rooted)
            } else {
                Reference::Odd(Oddity::QueryOrFragment)
            };
        }
        if reference.contains(':') {
            // `mailto:`, `ftp:x`, `Patient:1`: a scheme or nothing FHIR defines.
            return Reference::Odd(Oddity::Scheme);
        }
        if reference.starts_with('/') {
            return Reference::Odd(Oddity::Rooted);
        }
        if reference.contains('#') {
            return Reference::Odd(Oddity::QueryOrFragment);
        }
        let segments: Vec<&str> = reference.split('/').collect();
        if let Some(oddity) = path_trick(&segments) {
            return Reference::Odd(oddity);
        }
        match target(&segments) {
            Ok(target) => Reference::Relative(target),
            Err(oddity) => Reference::Odd(oddity),
        }
    }

    /// The target of a literal reference: relative, or absolute on one of `own_bases` (this
    /// server's base URLs, compared without a trailing `/`, scheme and host in any case).
    /// `None` for every other form, absolute references to other servers included.
    ///
    /// ```
    /// use ehrgate_fhir::reference::Reference;
    ///
    /// let own = ["https://ehr.example/fhir/"];
    /// let local = |text| Reference::parse(text).local_target(&own).map(|t| t.id);
    /// assert_eq!(local("Patient/1"), Some("1"));
    /// assert_eq!(local("HTTPS://EHR.example/fhir/Patient/1"), Some("1"));
    /// assert_eq!(local("https://elsewhere.example/fhir/Patient/1"), None);
    /// ```
    pub fn local_target(&self, own_bases: &[impl AsRef<str>]) -> Option<Target<'a>> {
        match *self {
            Reference::Relative(target) => Some(target),
            Reference::Absolute { base, target } => own_bases
                .iter()
                .any(|own| same_base(base, own.as_ref()))
                .then_some(target),
            _ => None,
        }
    }

    /// The target of a literal reference, relative or absolute on any server.
    pub fn target(&self) -> Option<Target<'a>> {
        match *self {
            Reference::Relative(target) | Reference::Absolute { target, .. } => Some(target),
            _ => None,
        }
    }
}

/// Every id that follows a `resource_type` segment in `reference`: the resources of that
/// type a lenient server could resolve the string to, whatever its form
/// (`x/Patient/456`, `Observation/../Patient/456`, `ftp://x/Patient/456`,
/// `https://ehr/fhir/Patient/456/_history/1`). An id ends at `/`, `?` or `#`; one that
/// breaks the id rule is skipped.
///
/// ```
/// use ehrgate_fhir::reference::mentioned_ids;
///
/// let ids = |text| mentioned_ids(text, "Patient").collect::<Vec<_>>();
/// assert_eq!(ids("Observation/../Patient/456"), ["456"]);
/// assert_eq!(ids("Patient/1/x/Patient/2?y"), ["1", "2"]);
/// assert!(ids("Practitioner/1").is_empty());
/// ```
pub fn mentioned_ids<'a>(
    reference: &'a str,
    resource_type: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    let mut segments = reference.split('/').peekable();
    std::iter::from_fn(move || {
        while let Some(segment) = segments.next() {
            if segment != resource_type {
                continue;
            }
            let next = segments.peek()?;
            let id = next.split(['?', '#']).next().unwrap_or_default();
            if is_valid_id(id) {
                return Some(id);
            }
        }
        None
    })
}

fn absolute<'a>(reference: &'a str, scheme: &str, rest: &'a str) -> Reference<'a> {
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Reference::Odd(Oddity::Scheme);
    }
    if rest.contains(['?', '#']) {
        return Reference::Odd(Oddity::QueryOrFragment);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if let Some(oddity) = path_trick(&segments) {
        return Reference::Odd(oddity);
    }
    let tail_len = if segments.len() >= 5 && segments.iter().rev().nth(1) == Some(&"_history") {
        4
    } else {
        2
    };
    // The authority, then at least `Type/id`.
    let Some(base_len) = segments.len().checked_sub(tail_len).filter(|len| *len >= 1) else {
        return Reference::Odd(Oddity::ExtraSegments);
    };
    let Some(tail) = segments.get(base_len..) else {
        return Reference::Odd(Oddity::ExtraSegments);
    };
    let target = match target(tail) {
        Ok(target) => target,
        Err(oddity) => return Reference::Odd(oddity),
    };
    let tail_chars: usize = tail.iter().map(|segment| segment.len() + 1).sum();
    let base = reference
        .get(..reference.len() - tail_chars)
        .unwrap_or_default();
    Reference::Absolute { base, target }
}

/// `Type/id` or `Type/id/_history/vid`, exactly.
fn target<'a>(segments: &[&'a str]) -> Result<Target<'a>, Oddity> {
    let (resource_type, id, version) = match *segments {
        [resource_type, id] => (resource_type, id, None),
        [resource_type, id, "_history", version] => (resource_type, id, Some(version)),
        [_, _, _, ..] => return Err(Oddity::ExtraSegments),
        _ => return Err(Oddity::InvalidId),
    };
    if !is_resource_type(resource_type) {
        return Err(Oddity::UnknownType);
    }
    if !is_valid_id(id) || version.is_some_and(|version| !is_valid_id(version)) {
        return Err(Oddity::InvalidId);
    }
    Ok(Target {
        resource_type,
        id,
        version,
    })
}

fn path_trick(segments: &[&str]) -> Option<Oddity> {
    segments
        .iter()
        .any(|segment| {
            segment.is_empty() || matches!(*segment, "." | "..") || segment.contains('%')
        })
        .then_some(Oddity::PathTrick)
}

/// Whether two base URLs name the same server base: scheme and authority in any case, the
/// path exactly, a trailing `/` ignored.
fn same_base(found: &str, own: &str) -> bool {
    let split = |url: &str| -> Option<(String, String)> {
        let url = url.trim_end_matches('/');
        let (scheme, rest) = url.split_once("://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        Some((
            format!(
                "{}://{}",
                scheme.to_ascii_lowercase(),
                authority.to_ascii_lowercase()
            ),
            path.to_string(),
        ))
    };
    matches!((split(found), split(own)), (Some(a), Some(b)) if a == b)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relative(resource_type: &'static str, id: &'static str) -> Reference<'static> {
        Reference::Relative(Target {
            resource_type,
            id,
            version: None,
        })
    }

    /// Every form the security review sent, and the ones R4 defines.
    #[test]
    fn forms() {
        let cases: &[(&str, Reference<'_>)] = &[
            ("Patient/123", relative("Patient", "123")),
            (
                "Patient/123/_history/2",
                Reference::Relative(Target {
                    resource_type: "Patient",
                    id: "123",
                    version: Some("2"),
                }),
            ),
            (
                "https://ehr.example/fhir/Observation/o1/_history/2",
                Reference::Absolute {
                    base: "https://ehr.example/fhir",
                    target: Target {
                        resource_type: "Observation",
                        id: "o1",
                        version: Some("2"),
                    },
                },
            ),
            (
                "HTTP://ehr.example/Patient/7",
                Reference::Absolute {
                    base: "HTTP://ehr.example",
                    target: Target {
                        resource_type: "Patient",
                        id: "7",
                        version: None,
                    },
                },
            ),
            ("#p1", Reference::Contained("p1")),
            ("#", Reference::Contained("")),
            (
                "urn:uuid:9b3c0d6e-1111-4c1a-9d61-7a3c54a2a0f1",
                Reference::Placeholder("urn:uuid:9b3c0d6e-1111-4c1a-9d61-7a3c54a2a0f1"),
            ),
            ("urn:oid:1.2.3", Reference::Placeholder("urn:oid:1.2.3")),
            (
                "Patient?identifier=mrn|456",
                Reference::Conditional {
                    resource_type: "Patient",
                    criteria: "identifier=mrn|456",
                },
            ),
            ("", Reference::Odd(Oddity::Empty)),
            ("Patient/456 ", Reference::Odd(Oddity::Whitespace)),
            ("Patient/4\u{0}56", Reference::Odd(Oddity::Whitespace)),
            ("x/Patient/456", Reference::Odd(Oddity::ExtraSegments)),
            ("a/b/Patient/456", Reference::Odd(Oddity::ExtraSegments)),
            (
                "Observation/../Patient/456",
                Reference::Odd(Oddity::PathTrick),
            ),
            ("./Patient/456", Reference::Odd(Oddity::PathTrick)),
            ("Patient//456", Reference::Odd(Oddity::PathTrick)),
            ("Patient/%34%35%36", Reference::Odd(Oddity::PathTrick)),
            ("ftp://x/Patient/456", Reference::Odd(Oddity::Scheme)),
            ("mailto:x@example.org", Reference::Odd(Oddity::Scheme)),
            ("urn:isbn:123", Reference::Odd(Oddity::Scheme)),
            ("urn:uuid:", Reference::Odd(Oddity::Scheme)),
            ("/Patient/456", Reference::Odd(Oddity::Rooted)),
            ("Patient/456#x", Reference::Odd(Oddity::QueryOrFragment)),
            (
                "https://ehr.example/fhir/Patient/456?x=1",
                Reference::Odd(Oddity::QueryOrFragment),
            ),
            (
                "https://ehr.example/Patient/123/../456",
                Reference::Odd(Oddity::PathTrick),
            ),
            (
                "https://ehr.example//Patient/123",
                Reference::Odd(Oddity::PathTrick),
            ),
            ("https://Patient/123", Reference::Odd(Oddity::ExtraSegments)),
            (
                "https://ehr.example/Patient/123/_history",
                Reference::Odd(Oddity::UnknownType),
            ),
            ("patient/456", Reference::Odd(Oddity::UnknownType)),
            ("Foo?x=1", Reference::Odd(Oddity::QueryOrFragment)),
            (
                "Patient?identifier=urn:oid:1.2|9",
                Reference::Conditional {
                    resource_type: "Patient",
                    criteria: "identifier=urn:oid:1.2|9",
                },
            ),
            ("/Patient?x=1", Reference::Odd(Oddity::Rooted)),
            ("Patient/a_b", Reference::Odd(Oddity::InvalidId)),
            ("Patient/", Reference::Odd(Oddity::PathTrick)),
            ("456", Reference::Odd(Oddity::InvalidId)),
            ("Patient/1/_history/", Reference::Odd(Oddity::PathTrick)),
            ("Patient/1/history/2", Reference::Odd(Oddity::ExtraSegments)),
        ];
        for (text, expected) in cases {
            assert_eq!(Reference::parse(text), *expected, "{text}");
        }
        let longest = "7".repeat(64);
        let text = format!("Patient/{longest}");
        assert_eq!(
            Reference::parse(&text).target().map(|target| target.id),
            Some(longest.as_str())
        );
        assert_eq!(
            Reference::parse(&format!("{text}7")),
            Reference::Odd(Oddity::InvalidId)
        );
    }

    #[test]
    fn own_bases() {
        let own = ["https://ehr.example/fhir", "http://127.0.0.1:8080/fhir/"];
        let local = |text: &'static str| Reference::parse(text).local_target(&own);
        assert!(local("Patient/1").is_some());
        assert!(local("https://ehr.example/fhir/Patient/1").is_some());
        assert!(local("https://EHR.EXAMPLE/fhir/Patient/1").is_some());
        assert!(local("http://127.0.0.1:8080/fhir/Patient/1/_history/3").is_some());
        assert!(local("https://ehr.example/FHIR/Patient/1").is_none());
        assert!(local("https://ehr.example/fhir/x/Patient/1").is_none());
        assert!(local("https://ehr.example.evil/fhir/Patient/1").is_none());
        assert!(local("http://ehr.example/fhir/Patient/1").is_none());
        assert!(local("#p1").is_none());
        assert!(local("x/Patient/1").is_none());
        let none: [&str; 0] = [];
        assert!(
            Reference::parse("https://ehr.example/fhir/Patient/1")
                .local_target(&none)
                .is_none()
        );
    }

    #[test]
    fn mentions_cover_every_form_a_lenient_server_resolves() {
        for text in [
            "Patient/456",
            "x/Patient/456",
            "a/b/Patient/456",
            "Observation/../Patient/456",
            "ftp://x/Patient/456",
            "https://elsewhere.example/Patient/456/_history/1",
            "Patient/456#x",
            "/Patient/456",
        ] {
            assert_eq!(
                mentioned_ids(text, "Patient").collect::<Vec<_>>(),
                ["456"],
                "{text}"
            );
        }
        assert_eq!(mentioned_ids("Patient/a_b", "Patient").count(), 0);
        assert_eq!(mentioned_ids("Patient", "Patient").count(), 0);
        assert_eq!(mentioned_ids("Group/Patient", "Patient").count(), 0);
    }
}
