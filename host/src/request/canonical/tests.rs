//! Cases for the canonical request-target: accepted spellings and their one canonical form,
//! rejected spellings and the rule that refuses each, and the governing-duplicate rule.

use super::*;

/// Decoded query parameters as (name, value).
type Pairs = &'static [(&'static str, &'static str)];

/// Accepted targets: raw target, decoded segments, decoded params, canonical target.
#[rustfmt::skip]
const ACCEPTED: &[(&str, &[&str], Pairs, &str)] = &[
    ("/", &[], &[], "/"),
    ("/fhir/Patient/123", &["fhir", "Patient", "123"], &[], "/fhir/Patient/123"),
    ("/fhir/Patient/", &["fhir", "Patient"], &[], "/fhir/Patient"),
    ("/fhir/Patient/123/$everything", &["fhir", "Patient", "123", "$everything"], &[], "/fhir/Patient/123/$everything"),
    ("/fhir/Patient/%24everything", &["fhir", "Patient", "$everything"], &[], "/fhir/Patient/$everything"),
    ("/fhir/%50atient", &["fhir", "Patient"], &[], "/fhir/Patient"),
    ("/a%20b", &["a b"], &[], "/a%20b"),
    ("/a+b", &["a+b"], &[], "/a%2Bb"),
    ("/caf%C3%A9", &["café"], &[], "/caf%C3%A9"),
    ("/%7e", &["~"], &[], "/~"),
    ("/a%3Fb/c%23d/e%25f", &["a?b", "c#d", "e%f"], &[], "/a%3Fb/c%23d/e%25f"),
    ("/x:y@z!'()*,=", &["x:y@z!'()*,="], &[], "/x:y@z!'()*,="),
    ("/a%2cb", &["a,b"], &[], "/a,b"),
    ("/a&b", &["a&b"], &[], "/a%26b"),
    ("/...", &["..."], &[], "/..."),
    ("/fhir/Patient?name=smith&_count=10", &["fhir", "Patient"], &[("name", "smith"), ("_count", "10")], "/fhir/Patient?name=smith&_count=10"),
    ("/p?name=john+smith", &["p"], &[("name", "john smith")], "/p?name=john%20smith"),
    ("/p?name=john%20smith", &["p"], &[("name", "john smith")], "/p?name=john%20smith"),
    ("/p?name=a%2Bb", &["p"], &[("name", "a+b")], "/p?name=a%2Bb"),
    ("/p?subject=Patient%2F123", &["p"], &[("subject", "Patient/123")], "/p?subject=Patient%2F123"),
    ("/p?subject=Patient/123", &["p"], &[("subject", "Patient/123")], "/p?subject=Patient%2F123"),
    ("/p?code=http://loinc.org|1234-5", &["p"], &[("code", "http://loinc.org|1234-5")], "/p?code=http:%2F%2Floinc.org|1234-5"),
    ("/p?_summary", &["p"], &[("_summary", "")], "/p?_summary="),
    ("/p?a=1&&b=2&", &["p"], &[("a", "1"), ("b", "2")], "/p?a=1&b=2"),
    ("/p?", &["p"], &[], "/p"),
    ("/p?value=a=b", &["p"], &[("value", "a=b")], "/p?value=a%3Db"),
    ("/p?date=ge2020-01-01T00:00:00%2B01:00", &["p"], &[("date", "ge2020-01-01T00:00:00+01:00")], "/p?date=ge2020-01-01T00:00:00%2B01:00"),
    ("/p?_has:Observation:patient:code=1234", &["p"], &[("_has:Observation:patient:code", "1234")], "/p?_has:Observation:patient:code=1234"),
    ("/p?subject:Patient.name=x", &["p"], &[("subject:Patient.name", "x")], "/p?subject:Patient.name=x"),
    ("/p?name=%C3%A9", &["p"], &[("name", "é")], "/p?name=%C3%A9"),
    ("/p?x=a%5C,b", &["p"], &[("x", "a\\,b")], "/p?x=a%5C,b"),
    ("/p?x=a\\,b", &["p"], &[("x", "a\\,b")], "/p?x=a%5C,b"),
    ("/p?x=a%2Eb&y=1%2C2", &["p"], &[("x", "a.b"), ("y", "1,2")], "/p?x=a.b&y=1,2"),
    ("/p?value-quantity=5.4|http://unitsofmeasure.org|mg", &["p"], &[("value-quantity", "5.4|http://unitsofmeasure.org|mg")], "/p?value-quantity=5.4|http:%2F%2Funitsofmeasure.org|mg"),
    ("/p?x=%24*~'", &["p"], &[("x", "$*~'")], "/p?x=$*~%27"),
    ("/p?a=1&a=2", &["p"], &[("a", "1"), ("a", "2")], "/p?a=1&a=2"),
];

/// Rejected targets and the rule that refuses each.
#[rustfmt::skip]
const REJECTED: &[(&str, &str)] = &[
    ("", "canonical.not-origin-form"),
    ("*", "canonical.not-origin-form"),
    ("http://evil.example/fhir/Patient", "canonical.not-origin-form"),
    ("fhir/Patient", "canonical.not-origin-form"),
    ("/a b", "canonical.invalid-character"),
    ("/a\tb", "canonical.invalid-character"),
    ("/caf\u{e9}", "canonical.invalid-character"),
    ("/a\u{7f}", "canonical.invalid-character"),
    ("/a\0", "canonical.invalid-character"),
    ("/p?x=a b", "canonical.invalid-character"),
    ("/a#b", "canonical.fragment"),
    ("/p?x=1#frag", "canonical.fragment"),
    ("/a\\b", "canonical.backslash"),
    ("/fhir\\..\\Patient", "canonical.backslash"),
    ("/Patient;jsessionid=1/123", "canonical.matrix-parameter"),
    ("/Patient/123;v=1", "canonical.matrix-parameter"),
    ("/a%3Bb", "canonical.matrix-parameter"),
    ("/fhir/../Patient", "canonical.dot-segment"),
    ("/fhir/./Patient", "canonical.dot-segment"),
    ("/fhir/..", "canonical.dot-segment"),
    ("/fhir/../", "canonical.dot-segment"),
    ("/fhir//Patient", "canonical.empty-segment"),
    ("//", "canonical.empty-segment"),
    ("//evil.example/x", "canonical.empty-segment"),
    ("/fhir//", "canonical.empty-segment"),
    ("/fhir%2FPatient", "canonical.encoded-separator"),
    ("/fhir%2fPatient", "canonical.encoded-separator"),
    ("/a%5Cb", "canonical.encoded-separator"),
    ("/fhir/%2e%2e/Patient", "canonical.encoded-dot"),
    ("/fhir/.%2E/Patient", "canonical.encoded-dot"),
    ("/a%2Eb", "canonical.encoded-dot"),
    ("/a%00b", "canonical.encoded-control-character"),
    ("/a%0Ab", "canonical.encoded-control-character"),
    ("/a%0d%0aX-Injected:1", "canonical.encoded-control-character"),
    ("/a%7F", "canonical.encoded-control-character"),
    ("/a%C2%85", "canonical.encoded-control-character"),
    ("/p?x=%0D%0A", "canonical.encoded-control-character"),
    ("/p?x%00=1", "canonical.encoded-control-character"),
    ("/a%zz", "canonical.bad-percent-encoding"),
    ("/a%2", "canonical.bad-percent-encoding"),
    ("/a%", "canonical.bad-percent-encoding"),
    ("/p?x=%G1", "canonical.bad-percent-encoding"),
    ("/p?x=100%", "canonical.bad-percent-encoding"),
    ("/a%FF", "canonical.invalid-utf8"),
    ("/a%C3", "canonical.invalid-utf8"),
    ("/a%ED%A0%80", "canonical.invalid-utf8"),
    ("/p?x=%C3%28", "canonical.invalid-utf8"),
    ("/p?=1", "canonical.empty-parameter-name"),
    ("/p?=", "canonical.empty-parameter-name"),
    ("/p?a=1&=2", "canonical.empty-parameter-name"),
    ("/p?_method=DELETE", "canonical.method-override"),
    ("/p?_METHOD=DELETE", "canonical.method-override"),
    ("/p?patient%20=1", "canonical.bad-parameter-name"),
    ("/p?patient+=1", "canonical.bad-parameter-name"),
    ("/p?subject%2Ename=x", "canonical.encoded-dot"),
    ("/p?a%2Fb=1", "canonical.encoded-separator"),
];

fn pairs(params: &[Param]) -> Vec<(&str, &str)> {
    params
        .iter()
        .map(|param| (param.name.as_str(), param.value.as_str()))
        .collect()
}

fn param(name: &str, value: &str) -> Param {
    Param {
        name: name.to_string(),
        value: value.to_string(),
    }
}

fn assert_message_style(rejection: &Rejection, input: &str) {
    let message = &rejection.message;
    let first = message.chars().next().unwrap_or('?');
    assert!(
        first.is_lowercase(),
        "{input}: message starts lowercase: {message}"
    );
    assert!(
        !message.ends_with('.'),
        "{input}: no final period: {message}"
    );
    assert!(
        message.contains("expected"),
        "{input}: says what was expected: {message}"
    );
    assert_eq!(rejection.status, 400, "{input}");
}

#[test]
fn accepted_targets_canonicalize_to_one_spelling() {
    for (raw, segments, params, target) in ACCEPTED {
        let canonical = canonicalize_target(raw).unwrap_or_else(|error| panic!("{raw}: {error}"));
        assert_eq!(canonical.segments, *segments, "{raw}");
        assert_eq!(pairs(&canonical.params), *params, "{raw}");
        assert_eq!(canonical.target(), *target, "{raw}");
        let expected_path = target.split('?').next().unwrap_or_default();
        assert_eq!(canonical.path, expected_path, "{raw}");
    }
}

#[test]
fn canonical_targets_round_trip_and_parse_as_uris() {
    for (raw, _, _, _) in ACCEPTED {
        let canonical = canonicalize_target(raw).unwrap();
        let again = canonicalize_target(&canonical.target())
            .unwrap_or_else(|error| panic!("{raw}: canonical form refused: {error}"));
        assert_eq!(again.segments, canonical.segments, "{raw}");
        assert_eq!(pairs(&again.params), pairs(&canonical.params), "{raw}");
        assert_eq!(again.target(), canonical.target(), "{raw}");
        // The forwarder builds an `http::Uri` from the target.
        let uri: http::Uri = canonical.target().parse().unwrap_or_else(|error| {
            panic!("{raw}: `{}` is not a URI: {error}", canonical.target())
        });
        assert_eq!(uri.path(), canonical.path, "{raw}");
    }
}

#[test]
fn rejected_targets_name_their_rule() {
    for (raw, rule_id) in REJECTED {
        match canonicalize_target(raw) {
            Ok(canonical) => panic!("{raw:?}: accepted as {}", canonical.target()),
            Err(rejection) => {
                assert_eq!(
                    rejection.rule_id, *rule_id,
                    "{raw:?}: {}",
                    rejection.message
                );
                assert_message_style(&rejection, raw);
            }
        }
    }
}

#[test]
fn rejection_messages_quote_the_input() {
    let rejection = canonicalize_target("/fhir/../Patient").unwrap_err();
    assert_eq!(
        rejection.message,
        "path `/fhir/../Patient` contains the dot segment `..`; expected a path without `.` \
         or `..` segments"
    );
    let long = format!("/{}%2F", "a".repeat(300));
    let rejection = canonicalize_target(&long).unwrap_err();
    assert!(rejection.message.len() < 300, "{}", rejection.message);
    assert!(rejection.message.contains('…'));
}

#[test]
fn query_encoding_keeps_fhir_characters_and_encodes_the_rest() {
    let target = CanonicalTarget::from_parts(
        vec!["Observation".to_string()],
        vec![
            param("code", "a b+c&d=e/f?g#h|i,j:k$l*m~n"),
            param("name", "é%"),
            param("subject:Patient", "1"),
        ],
    );
    assert_eq!(
        target.query(),
        "code=a%20b%2Bc%26d%3De%2Ff%3Fg%23h|i,j:k$l*m~n&name=%C3%A9%25&subject:Patient=1"
    );
    assert_eq!(target.target(), format!("/Observation?{}", target.query()));
    let empty = CanonicalTarget::from_parts(Vec::new(), Vec::new());
    assert_eq!(empty.query(), "");
    assert_eq!(empty.target(), "/");
}

#[test]
fn path_encoding_keeps_operation_and_sub_delimiters() {
    let target = CanonicalTarget::from_parts(
        vec!["Patient".into(), "$everything".into(), "a b;c/d+e".into()],
        Vec::new(),
    );
    assert_eq!(target.path, "/Patient/$everything/a%20b%3Bc%2Fd%2Be");
}

#[test]
fn strip_prefix_is_segment_wise() {
    #[rustfmt::skip]
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        ("/fhir/Patient/1?x=1", &["fhir"], Some("/Patient/1?x=1")),
        ("/fhirx/Patient", &["fhir"], None),
        ("/fhir", &["fhir"], Some("/")),
        ("/api/fhir/Patient", &["api", "fhir"], Some("/Patient")),
        ("/api/fhir/Patient", &["fhir"], None),
        ("/Patient", &[], Some("/Patient")),
        ("/fhir", &["fhir", "r4"], None),
        ("/fhir/a%20b", &["fhir"], Some("/a%20b")),
    ];
    for (raw, prefix, expected) in cases {
        let prefix: Vec<String> = prefix.iter().map(|segment| segment.to_string()).collect();
        let stripped = canonicalize_target(raw).unwrap().strip_prefix(&prefix);
        assert_eq!(
            stripped.as_ref().map(CanonicalTarget::target).as_deref(),
            *expected,
            "{raw}"
        );
    }
}

#[test]
fn governing_parameters_must_not_repeat() {
    #[rustfmt::skip]
    let cases: &[(&str, bool)] = &[
        ("patient=1", true),
        ("patient=1,2", true),
        ("patient=1&subject=Patient/2", true),
        ("code=1&code=2", true),
        ("date=ge2020&date=le2021", true),
        ("_has:Observation:patient:code=1&_has:Observation:patient:code=2", true),
        ("patient=1&patient=2", false),
        ("patient=1&patient:Patient=2", false),
        ("patient=1&patient=1", false),
        ("subject=Patient/1&subject.name=smith", false),
        ("subject:Patient=1&subject:Group=2", false),
        ("_id=1&_id=2", false),
        ("identifier=a&identifier:text=b", false),
        ("beneficiary=1&beneficiary=2", false),
        ("Patient=1&patient=2", false),
    ];
    for (query, allowed) in cases {
        let target = canonicalize_target(&format!("/Observation?{query}")).unwrap();
        let result = check_governing_duplicates(&target.params);
        match (result, allowed) {
            (Ok(()), true) => {}
            (Err(rejection), false) => {
                assert_eq!(rejection.rule_id, "canonical.duplicate-governing-parameter");
                assert_message_style(&rejection, query);
            }
            (result, _) => panic!("{query}: unexpected {result:?}"),
        }
    }
}

#[test]
fn form_bodies_follow_query_rules() {
    #[rustfmt::skip]
    let cases: &[(&[u8], Result<Pairs, &str>)] = &[
        (b"name=john+smith&_count=10", Ok(&[("name", "john smith"), ("_count", "10")])),
        (b"patient=Patient%2F1", Ok(&[("patient", "Patient/1")])),
        (b"", Ok(&[])),
        (b"a=1&&", Ok(&[("a", "1")])),
        (b"a=1\n", Err("canonical.invalid-character")),
        (b"a=\xff", Err("canonical.invalid-character")),
        (b"_method=GET", Err("canonical.method-override")),
        (b"=x", Err("canonical.empty-parameter-name")),
        (b"a=%FF", Err("canonical.invalid-utf8")),
        (b"a=%0A", Err("canonical.encoded-control-character")),
    ];
    for (body, expected) in cases {
        let shown = String::from_utf8_lossy(body);
        match (parse_form(body), expected) {
            (Ok(params), Ok(expected)) => assert_eq!(pairs(&params), *expected, "{shown}"),
            (Err(rejection), Err(rule_id)) => assert_eq!(rejection.rule_id, *rule_id, "{shown}"),
            (result, _) => panic!("{shown}: unexpected {result:?}"),
        }
    }
}

#[test]
fn base_names_drop_modifiers_and_chains() {
    let cases = [
        ("patient", "patient"),
        ("subject:Patient", "subject"),
        ("subject.name", "subject"),
        ("subject:Patient.name", "subject"),
        ("_has:Observation:patient:code", "_has"),
    ];
    for (name, base) in cases {
        assert_eq!(base_name(name), base);
    }
}

#[test]
fn access_token_is_spelled_one_way() {
    #[rustfmt::skip]
    let cases: &[(&str, bool)] = &[
        ("access_token=a", true),
        ("access%5Ftoken=a", true),
        ("patient=1&access_token=a", true),
        ("access-token=a", true),
        ("ACCESS_TOKEN=a", false),
        ("Access_Token=a", false),
        ("patient=1&access_TOKEN=a", false),
        ("ACCESS%5FTOKEN=a", false),
        ("%41ccess_token=a", false),
    ];
    for (query, allowed) in cases {
        let target = canonicalize_target(&format!("/Observation?{query}")).unwrap();
        match (check_access_token_spelling(&target.params), allowed) {
            (Ok(()), true) => {}
            (Err(rejection), false) => {
                assert_eq!(rejection.rule_id, "canonical.access-token-spelling");
                assert_message_style(&rejection, query);
            }
            (result, _) => panic!("{query}: unexpected {result:?}"),
        }
    }
}
