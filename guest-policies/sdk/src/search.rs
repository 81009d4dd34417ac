//! FHIR R4 search syntax (hl7.org/fhir/R4/search.html): parameter names with modifiers, and
//! parameter values with their `,` `|` `$` separators and `\` escapes.
//!
//! The gateway hands a policy each parameter as written (percent-decoded, modifiers kept), so
//! a policy that judges values must split them the way the FHIR server will: on separators
//! that are not escaped. Splitting on every `,` would let `a\,b` (one value, `a,b`) pass as
//! two, and the server and the policy would disagree about what was asked.
//!
//! [`Request::param_values`](crate::Request::param_values) and
//! [`Request::params_any_modifier`](crate::Request::params_any_modifier) use these.

use std::borrow::Cow;

/// Splits a parameter value on every `separator` not escaped with `\` (search.html#escaping).
/// The parts keep their escapes, so a part can be split again on another separator (`,` for
/// OR, then `|` for a token's system and code, or `$` for a composite); [`unescape`] a part
/// once it is final. An empty value yields one empty part.
///
/// ```
/// use ehrgate_sdk::search::{split_unescaped, unescape};
///
/// // Two codes, OR-ed: a hemoglobin or a hematocrit.
/// let value = "http://loinc.org|718-7,http://loinc.org|4544-3";
/// let codes: Vec<&str> = split_unescaped(value, ',').collect();
/// assert_eq!(codes, ["http://loinc.org|718-7", "http://loinc.org|4544-3"]);
///
/// // One name that contains a comma.
/// let names: Vec<&str> = split_unescaped(r"Smith\, Jr.,Doe", ',').collect();
/// assert_eq!(names, [r"Smith\, Jr.", "Doe"]);
/// assert_eq!(unescape(names[0]), "Smith, Jr.");
///
/// // An escaped backslash does not escape the comma after it.
/// assert_eq!(split_unescaped(r"a\\,b", ',').count(), 2);
/// ```
pub fn split_unescaped(value: &str, separator: char) -> impl Iterator<Item = &str> {
    // `str::split` calls the predicate once per character, front to back; returning
    // `impl Iterator` hides `next_back`, which would walk the other way and break the state.
    let mut escaped = false;
    value.split(move |character: char| {
        if escaped {
            escaped = false;
            false
        } else if character == '\\' {
            escaped = true;
            false
        } else {
            character == separator
        }
    })
}

/// Removes the search escapes `\,` `\|` `\$` and `\\` (search.html#escaping). A `\` before
/// any other character, or at the end, is kept as written. Borrows when there is nothing to
/// remove.
///
/// ```
/// use ehrgate_sdk::search::unescape;
///
/// assert_eq!(unescape(r"2\$5 mg\|day"), "2$5 mg|day");
/// assert_eq!(unescape(r"C:\\ward\3"), r"C:\ward\3");
/// ```
pub fn unescape(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut unescaped = String::with_capacity(value.len());
    let mut characters = value.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            unescaped.push(character);
            continue;
        }
        match characters.next() {
            Some(next @ (',' | '|' | '$' | '\\')) => unescaped.push(next),
            Some(other) => {
                unescaped.push('\\');
                unescaped.push(other);
            }
            None => unescaped.push('\\'),
        }
    }
    Cow::Owned(unescaped)
}

/// Splits a parameter name at its first `:` into the name and the modifier (search.html
/// #modifiers): `code:not` is `("code", Some("not"))`, `subject:Patient` is
/// `("subject", Some("Patient"))`. A name without `:` has no modifier; a chain
/// (`subject.name`) is left whole, because its values are not values of `subject`.
/// Everything after the first `:` is the modifier, so `_has:Observation:patient:code` is
/// `("_has", Some("Observation:patient:code"))`.
///
/// ```
/// use ehrgate_sdk::search::split_modifier;
///
/// assert_eq!(split_modifier("code:not"), ("code", Some("not")));
/// assert_eq!(split_modifier("patient"), ("patient", None));
/// assert_eq!(split_modifier("subject.name"), ("subject.name", None));
/// ```
pub fn split_modifier(name: &str) -> (&str, Option<&str>) {
    match name.split_once(':') {
        Some((base, modifier)) => (base, Some(modifier)),
        None => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_on_unescaped_separators_only() {
        let cases: &[(&str, char, &[&str])] = &[
            ("123", ',', &["123"]),
            ("", ',', &[""]),
            ("1,2,3", ',', &["1", "2", "3"]),
            ("1,,3", ',', &["1", "", "3"]),
            ("1,", ',', &["1", ""]),
            (r"a\,b", ',', &[r"a\,b"]),
            (r"a\\,b", ',', &[r"a\\", "b"]),
            (r"a\\\,b", ',', &[r"a\\\,b"]),
            (r"a\", ',', &[r"a\"]),
            (r"\,", ',', &[r"\,"]),
            ("é,ü", ',', &["é", "ü"]),
            (
                "http://loinc.org|718-7",
                '|',
                &["http://loinc.org", "718-7"],
            ),
            (r"sys|a\|b", '|', &["sys", r"a\|b"]),
            (r"code$value\$x", '$', &["code", r"value\$x"]),
        ];
        for (value, separator, expected) in cases {
            let parts: Vec<&str> = split_unescaped(value, *separator).collect();
            assert_eq!(parts, *expected, "{value:?} on {separator:?}");
        }
    }

    #[test]
    fn unescape_removes_only_the_four_escapes() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            (r"a\,b", "a,b"),
            (r"a\|b", "a|b"),
            (r"a\$b", "a$b"),
            (r"a\\b", r"a\b"),
            (r"a\\\,b", r"a\,b"),
            (r"a\nb", r"a\nb"),
            (r"end\", r"end\"),
            (r"\é", r"\é"),
        ];
        for (value, expected) in cases {
            assert_eq!(unescape(value), *expected, "{value:?}");
        }
        assert!(matches!(unescape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn modifiers_split_at_the_first_colon() {
        let cases: &[(&str, (&str, Option<&str>))] = &[
            ("code", ("code", None)),
            ("code:not", ("code", Some("not"))),
            ("name:exact", ("name", Some("exact"))),
            ("subject:Patient", ("subject", Some("Patient"))),
            ("subject:Patient.name", ("subject", Some("Patient.name"))),
            ("subject.name", ("subject.name", None)),
            (
                "_has:Observation:patient:code",
                ("_has", Some("Observation:patient:code")),
            ),
            ("code:", ("code", Some(""))),
            (":x", ("", Some("x"))),
        ];
        for (name, expected) in cases {
            assert_eq!(split_modifier(name), *expected, "{name}");
        }
    }
}
