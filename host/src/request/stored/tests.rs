//! The pre-read's judgement: which writes are read first, what an answer means, which
//! condition the write goes with, and what policies are told.

use http::{HeaderMap, HeaderValue, Method};

use super::*;
use crate::request::canonical::canonicalize_target;

fn classified(method: Method, target: &str, body: Option<&str>) -> Classification {
    let target = canonicalize_target(target).unwrap();
    classify::classify(&method, &target, body.map(str::as_bytes), 100).unwrap()
}

fn principal(launch_patient: Option<&str>, fhir_user: Option<&str>) -> Principal {
    Principal {
        subject: "user-1".into(),
        client_id: "app".into(),
        issuer: "https://idp.example".into(),
        roles: vec![],
        scopes: vec![],
        launch_patient: launch_patient.map(str::to_owned),
        launch_encounter: None,
        fhir_user: fhir_user.map(str::to_owned),
        purpose_of_use: vec![],
    }
}

fn update() -> StoredTarget {
    observation_target(Interaction::Update)
}

fn observation_target(interaction: Interaction) -> StoredTarget {
    StoredTarget {
        interaction,
        resource_type: "Observation".into(),
        id: "o1".into(),
    }
}

#[test]
fn writes_by_id_of_types_that_name_a_patient_are_read_first_for_patient_bound_tokens() {
    let patient_app = principal(Some("p1"), None);
    let patient_user = principal(None, Some("https://ehr.example/fhir/Patient/p1"));
    let clinician = principal(None, Some("Practitioner/dr-a"));
    let body =
        r#"{"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}}"#;
    let update = classified(Method::PUT, "/Observation/o1", Some(body));
    let patch = classified(Method::PATCH, "/Observation/o1", Some("[]"));
    let delete = classified(Method::DELETE, "/Task/t1", None);
    let mode = VerifyWriteOwner::PatientBound;
    assert_eq!(
        target(mode, &update, Some(&patient_app)),
        Some(observation_target(Interaction::Update))
    );
    assert_eq!(
        target(mode, &update, Some(&patient_user)).map(|t| t.path()),
        Some("/Observation/o1".into())
    );
    assert_eq!(
        target(mode, &patch, Some(&patient_app)).map(|t| t.interaction),
        Some(Interaction::Patch)
    );
    assert_eq!(
        target(mode, &delete, Some(&patient_app)).map(|t| t.path()),
        Some("/Task/t1".into())
    );
    // A clinician's write is read only when the route asks for every token.
    assert_eq!(target(mode, &update, Some(&clinician)), None);
    assert!(target(VerifyWriteOwner::All, &update, Some(&clinician)).is_some());
    assert_eq!(
        target(VerifyWriteOwner::Off, &update, Some(&patient_app)),
        None
    );
    assert_eq!(target(mode, &update, None), None);
}

#[test]
fn reads_creates_patient_writes_and_types_outside_the_compartment_are_not_read_first() {
    let patient_app = principal(Some("p1"), None);
    let mode = VerifyWriteOwner::All;
    for (method, path, body) in [
        (Method::GET, "/Observation/o1", None),
        (
            Method::POST,
            "/Observation",
            Some(r#"{"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}"#),
        ),
        (
            Method::PUT,
            "/Patient/p1",
            Some(r#"{"resourceType": "Patient", "id": "p1"}"#),
        ),
        (
            Method::PUT,
            "/Practitioner/dr-a",
            Some(r#"{"resourceType": "Practitioner", "id": "dr-a"}"#),
        ),
        (Method::DELETE, "/Organization/org-1", None),
    ] {
        let classification = classified(method.clone(), path, body);
        assert_eq!(
            target(mode, &classification, Some(&patient_app)),
            None,
            "{method} {path}"
        );
    }
}

#[test]
fn a_found_resource_gives_its_version_and_every_patient_it_references() {
    let body = br#"{"resourceType": "Observation", "id": "o1", "meta": {"versionId": "7"},
        "subject": {"reference": "Patient/p2"}, "performer": [{"reference": "Patient/p1"}]}"#;
    let judged = |etag: Option<&str>| {
        judge(
            &observation_target(Interaction::Update),
            StoredResponse {
                status: 200,
                etag,
                body,
            },
        )
        .unwrap()
    };
    let patients = vec!["p1".to_owned(), "p2".to_owned()];
    assert_eq!(
        judged(Some("W/\"8\"")),
        Stored::Found {
            version: Some("8".into()),
            patients: patients.clone()
        }
    );
    assert_eq!(judged(Some("\"9\"")).version(), Some("9"));
    // Without a usable ETag, `meta.versionId`.
    assert_eq!(judged(None).version(), Some("7"));
    assert_eq!(judged(Some("W/unquoted")).version(), Some("7"));
    assert_eq!(judged(None).patients(), patients.as_slice());
    let unversioned = judge(
        &observation_target(Interaction::Delete),
        StoredResponse {
            status: 200,
            etag: None,
            body: br#"{"resourceType": "Observation", "id": "o1"}"#,
        },
    )
    .unwrap();
    assert_eq!(
        unversioned,
        Stored::Found {
            version: None,
            patients: vec![]
        }
    );
}

#[test]
fn absence_lets_an_update_create_and_leaves_a_patch_or_delete_nothing_to_change() {
    for status in [404, 410] {
        let response = StoredResponse {
            status,
            etag: None,
            body: b"{}",
        };
        let update = observation_target(Interaction::Update);
        assert_eq!(judge(&update, response), Ok(Stored::Absent));
        assert_eq!(nothing_to_change(&update, &Stored::Absent), None);
        for interaction in [Interaction::Patch, Interaction::Delete] {
            let target = observation_target(interaction);
            assert_eq!(judge(&target, response), Ok(Stored::Absent));
            let refused = nothing_to_change(&target, &Stored::Absent).unwrap();
            assert_eq!(
                (refused.status, refused.rule_id),
                (404, "preread.not-found")
            );
            // The 404 wins over the client's preconditions.
            assert_eq!(
                condition(
                    &target,
                    &Stored::Absent,
                    &client(&[("if-match", "W/\"1\"")])
                ),
                Ok(None)
            );
        }
    }
    let found = Stored::Found {
        version: None,
        patients: vec![],
    };
    assert_eq!(
        nothing_to_change(&observation_target(Interaction::Delete), &found),
        None
    );
}

#[test]
fn anything_else_fails_closed() {
    let target = observation_target(Interaction::Update);
    let refused = |status: u16, body: &[u8]| {
        let rejection = judge(
            &target,
            StoredResponse {
                status,
                etag: Some("W/\"1\""),
                body,
            },
        )
        .unwrap_err();
        (rejection.status, rejection.rule_id)
    };
    assert_eq!(refused(401, b""), (403, "preread.refused"));
    assert_eq!(refused(403, b""), (403, "preread.refused"));
    for status in [500, 503, 302, 400, 412] {
        assert_eq!(refused(status, b""), (502, "preread.failed"), "{status}");
    }
    assert_eq!(refused(200, b"<Observation/>"), (502, "preread.failed"));
    assert_eq!(
        refused(200, br#"{"resourceType": "Observation", "id": "o2"}"#),
        (502, "preread.failed")
    );
    assert_eq!(
        refused(200, br#"{"resourceType": "Condition", "id": "o1"}"#),
        (502, "preread.failed")
    );
    assert_eq!(
        refused(200, br#"{"resourceType": "OperationOutcome"}"#),
        (502, "preread.failed")
    );
}

fn client(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn the_write_is_pinned_to_the_version_read_and_client_preconditions_are_judged_on_it() {
    let found = Stored::Found {
        version: Some("3".into()),
        patients: vec!["p1".into()],
    };
    let pinned = Ok(Some(Condition::IfMatch("3".into())));
    assert_eq!(condition(&update(), &found, &client(&[])), pinned);
    assert_eq!(
        condition(&update(), &found, &client(&[("if-match", "W/\"3\"")])),
        pinned
    );
    assert_eq!(
        condition(&update(), &found, &client(&[("if-match", "\"2\", \"3\"")])),
        pinned
    );
    assert_eq!(
        condition(&update(), &found, &client(&[("if-match", "*")])),
        pinned
    );
    assert_eq!(
        condition(&update(), &found, &client(&[("if-none-match", "W/\"2\"")])),
        pinned
    );
    for refused in [
        client(&[("if-match", "W/\"2\"")]),
        client(&[("if-none-match", "*")]),
        client(&[("if-none-match", "W/\"3\"")]),
    ] {
        let rejection = condition(&update(), &found, &refused).unwrap_err();
        assert_eq!(
            (rejection.status, rejection.rule_id),
            (412, "preread.precondition-failed")
        );
    }
    assert_eq!(
        Condition::IfMatch("3".into()).header(),
        ("if-match", "W/\"3\"".to_owned())
    );
    assert_eq!(
        Condition::IfMatch("3".into()).to_string(),
        "If-Match: W/\"3\""
    );
}

#[test]
fn a_create_by_update_is_pinned_to_absence_and_an_unversioned_upstream_gets_no_condition() {
    assert_eq!(
        condition(&update(), &Stored::Absent, &client(&[])),
        Ok(Some(Condition::IfNoneMatchAny))
    );
    assert_eq!(
        condition(
            &update(),
            &Stored::Absent,
            &client(&[("if-none-match", "*")])
        ),
        Ok(Some(Condition::IfNoneMatchAny))
    );
    let rejection =
        condition(&update(), &Stored::Absent, &client(&[("if-match", "*")])).unwrap_err();
    assert_eq!(rejection.status, 412);
    let unversioned = Stored::Found {
        version: None,
        patients: vec![],
    };
    assert_eq!(
        condition(&update(), &unversioned, &client(&[("if-match", "W/\"2\"")])),
        Ok(None)
    );
}

#[test]
fn policies_are_told_what_was_read_and_the_patients_join_the_request() {
    let found = Stored::Found {
        version: Some("3".into()),
        patients: vec!["p1".into(), "p2".into()],
    };
    let shown: Vec<(String, String)> = policy_headers(&found)
        .into_iter()
        .map(|h| (h.name, h.value))
        .collect();
    assert_eq!(
        shown,
        [
            ("x-ehrgate-stored".to_owned(), "found".to_owned()),
            ("x-ehrgate-stored-patients".to_owned(), "p1,p2".to_owned()),
            ("x-ehrgate-stored-version".to_owned(), "3".to_owned()),
        ]
    );
    let absent: Vec<String> = policy_headers(&Stored::Absent)
        .into_iter()
        .map(|h| format!("{}: {}", h.name, h.value))
        .collect();
    assert_eq!(absent, ["x-ehrgate-stored: absent"]);
    assert_eq!(
        merge_patients(&["p3".into(), "p1".into()], &found),
        ["p1", "p2", "p3"]
    );
    assert_eq!(describe(&found), "found version 3, patients p1 p2");
    assert_eq!(describe(&Stored::Absent), "absent");
}
