//! Tests of token extraction, verification and claim mapping, with the test-only keys in
//! `host/tests/fixtures/identity/`.

use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::engine::Param;

const ISS: &str = "https://idp.example";
const OTHER_ISS: &str = "https://other-idp.example";
const AUD: &str = "https://gateway.example/fhir";
const NOW: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------
// Helpers

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/identity")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

fn key(kid: Option<&str>, path: &str) -> KeyConfig {
    KeyConfig {
        kid: kid.map(str::to_string),
        path: path.into(),
    }
}

fn issuer(algorithms: &[&str], keys: Vec<KeyConfig>) -> IssuerConfig {
    IssuerConfig {
        issuer: ISS.into(),
        audience: vec!["urn:other-audience".into(), AUD.into()],
        algorithms: algorithms.iter().map(|alg| alg.to_string()).collect(),
        keys,
        jwks: None,
        hmac_secret_file: None,
        leeway_secs: default_leeway(),
        claims: ClaimNames::default(),
        max_lifetime_secs: None,
        allow_missing_kid: false,
    }
}

fn jwks_issuer(algorithms: &[&str]) -> IssuerConfig {
    IssuerConfig {
        jwks: Some("jwks.json".into()),
        ..issuer(algorithms, Vec::new())
    }
}

fn rsa_issuer() -> IssuerConfig {
    issuer(&["RS256"], vec![key(Some("rsa-a"), "rsa-a.pub.pem")])
}

fn verifier(issuers: Vec<IssuerConfig>) -> Verifier {
    Verifier::from_config(&issuers, &fixtures()).unwrap()
}

fn config_problems(issuers: Vec<IssuerConfig>, base_dir: &Path) -> Vec<String> {
    match Verifier::from_config(&issuers, base_dir) {
        Ok(_) => panic!("config accepted"),
        Err(problems) => problems,
    }
}

/// The claims of an ordinary SMART user token.
fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "user-1",
        "client_id": "app-1",
        "exp": NOW + 300,
        "iat": NOW - 10,
        "scope": "launch/patient patient/Observation.rs openid",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    if let Some(object) = claims.as_object_mut() {
        object.remove(name);
    }
    claims
}

/// Signs `claims` with the private key in `key_file` (or, for HS algorithms, with the
/// file's bytes as the secret).
fn sign(alg: Algorithm, key_file: &str, kid: Option<&str>, claims: &Value) -> String {
    keys::install_crypto_provider();
    let pem = fixture(key_file);
    let key = match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem).unwrap(),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem).unwrap(),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&pem).unwrap(),
        AlgorithmFamily::Hmac => EncodingKey::from_secret(&pem),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa-a.key.pem", Some("rsa-a"), claims)
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut encoded = String::new();
    for chunk in bytes.chunks(3) {
        let bits = chunk.iter().enumerate().fold(0u32, |bits, (i, &byte)| {
            bits | (u32::from(byte) << (16 - 8 * i))
        });
        for i in 0..=chunk.len() {
            encoded.push(char::from(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    encoded
}

fn hand_built(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// The rule id a token is rejected with, after checking the rejection is a 401 whose
/// message quotes no part of the token.
fn rejection(verifier: &Verifier, token: &str) -> &'static str {
    rejection_at(verifier, token, NOW)
}

fn rejection_at(verifier: &Verifier, token: &str, now: u64) -> &'static str {
    match verifier.verify(token, now) {
        Ok(verified) => panic!("token accepted for `{}`", verified.principal.subject),
        Err(rejection) => {
            assert_eq!(rejection.status, 401, "{rejection}");
            for segment in token.split('.').filter(|segment| segment.len() >= 8) {
                assert!(
                    !rejection.message.contains(segment),
                    "{rejection} echoes the token"
                );
            }
            rejection.rule_id
        }
    }
}

/// A scratch directory for config files a test writes.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> ScratchDir {
        let dir =
            std::env::temp_dir().join(format!("ehrgate-identity-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Valid tokens and claim mapping

#[test]
fn rs256_token_maps_every_claim_into_the_principal() {
    let verifier = verifier(vec![rsa_issuer()]);
    let claims = json!({
        "iss": ISS,
        "aud": [AUD, "https://billing.example"],
        "sub": "practitioner-7",
        "client_id": "ward-app",
        "exp": NOW + 300,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "jti": "token-42",
        "scope": "launch/patient  patient/Observation.rs user/Practitioner.r",
        "roles": ["physician", "ward nurse"],
        "patient": 12345,
        "encounter": "enc-9.1",
        "fhirUser": "https://ehr.example/fhir/Practitioner/7",
        "purpose_of_use": ["http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG", "TREAT"],
        "break_glass_reason": "patient unconscious in ED",
    });
    let verified = verifier.verify(&rs256(&claims), NOW).unwrap();
    let principal = &verified.principal;
    assert_eq!(principal.subject, "practitioner-7");
    assert_eq!(principal.client_id, "ward-app");
    assert_eq!(principal.issuer, ISS);
    assert_eq!(
        principal.scopes,
        [
            "launch/patient",
            "patient/Observation.rs",
            "user/Practitioner.r"
        ]
    );
    assert_eq!(principal.roles, ["physician", "ward nurse"]);
    assert_eq!(principal.launch_patient.as_deref(), Some("12345"));
    assert_eq!(principal.launch_encounter.as_deref(), Some("enc-9.1"));
    assert_eq!(
        principal.fhir_user.as_deref(),
        Some("https://ehr.example/fhir/Practitioner/7")
    );
    assert_eq!(principal.purpose_of_use, ["BTG", "TREAT"]);
    assert_eq!(
        verified.break_glass_reason.as_deref(),
        Some("patient unconscious in ED")
    );
    assert_eq!(verified.expires_at, NOW + 300);
    assert_eq!(verified.token_id.as_deref(), Some("token-42"));
}

#[test]
fn es256_and_eddsa_tokens_verify_with_pem_keys() {
    let cases = [
        (
            Algorithm::ES256,
            "ES256",
            "ec-p256.key.pem",
            "ec-p256.pub.pem",
        ),
        (
            Algorithm::ES384,
            "ES384",
            "ec-p384.key.pem",
            "ec-p384.pub.pem",
        ),
        (
            Algorithm::EdDSA,
            "EdDSA",
            "ed25519.key.pem",
            "ed25519.pub.pem",
        ),
        (Algorithm::PS256, "PS256", "rsa-a.key.pem", "rsa-a.pub.pem"),
    ];
    for (alg, name, private, public) in cases {
        let verifier = verifier(vec![issuer(&[name], vec![key(Some(name), public)])]);
        let claims = with(claims(), "fhirUser", json!("Practitioner/123"));
        let verified = verifier
            .verify(&sign(alg, private, Some(name), &claims), NOW)
            .unwrap_or_else(|rejection| panic!("{name}: {rejection}"));
        let principal = verified.principal;
        assert_eq!(principal.subject, "user-1", "{name}");
        assert_eq!(principal.client_id, "app-1", "{name}");
        assert_eq!(
            principal.scopes,
            ["launch/patient", "patient/Observation.rs", "openid"],
            "{name}"
        );
        assert_eq!(
            principal.fhir_user.as_deref(),
            Some("Practitioner/123"),
            "{name}"
        );
        assert!(
            principal.roles.is_empty() && principal.purpose_of_use.is_empty(),
            "{name}"
        );
        assert_eq!(principal.launch_patient, None, "{name}");
        assert_eq!(verified.break_glass_reason, None, "{name}");
        assert_eq!(verified.token_id, None, "{name}");
    }
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let verifier = verifier(vec![jwks_issuer(&["RS256", "ES256", "EdDSA"])]);
    let cases = [
        (Algorithm::RS256, "rsa-a.key.pem", "rsa-a"),
        (Algorithm::RS256, "rsa-b.key.pem", "rsa-b"),
        (Algorithm::ES256, "ec-p256.key.pem", "ec-p256"),
        (Algorithm::EdDSA, "ed25519.key.pem", "ed25519"),
    ];
    for (alg, private, kid) in cases {
        let token = sign(alg, private, Some(kid), &claims());
        let verified = verifier
            .verify(&token, NOW)
            .unwrap_or_else(|rejection| panic!("{kid}: {rejection}"));
        assert_eq!(verified.principal.subject, "user-1");
    }
    // The kid names a key, and only that key is tried.
    let signed_by_b_named_a = sign(Algorithm::RS256, "rsa-b.key.pem", Some("rsa-a"), &claims());
    assert_eq!(
        rejection(&verifier, &signed_by_b_named_a),
        rule::BAD_SIGNATURE
    );
}

#[test]
fn a_token_without_kid_needs_allow_missing_kid_and_one_key_for_its_algorithm() {
    let es256 = sign(Algorithm::ES256, "ec-p256.key.pem", None, &claims());
    let rs256_without_kid = sign(Algorithm::RS256, "rsa-a.key.pem", None, &claims());

    // By default a token must name its key, even when only one key could verify it.
    let strict = verifier(vec![
        jwks_issuer(&["RS256", "ES256", "EdDSA"]),
        IssuerConfig {
            issuer: OTHER_ISS.into(),
            ..issuer(&["RS256"], vec![key(None, "rsa-a.pub.pem")])
        },
    ]);
    assert_eq!(rejection(&strict, &es256), rule::MISSING_KID);
    let only_key_without_kid = sign(
        Algorithm::RS256,
        "rsa-a.key.pem",
        None,
        &with(claims(), "iss", json!(OTHER_ISS)),
    );
    assert_eq!(rejection(&strict, &only_key_without_kid), rule::MISSING_KID);

    let verifier = verifier(vec![IssuerConfig {
        allow_missing_kid: true,
        ..jwks_issuer(&["RS256", "ES256", "EdDSA"])
    }]);
    // One P-256 key in the set: no kid needed.
    assert!(verifier.verify(&es256, NOW).is_ok());
    // Two RSA keys: a kid-less RS256 token is ambiguous.
    assert_eq!(rejection(&verifier, &rs256_without_kid), rule::UNKNOWN_KID);

    let two_pem_keys = IssuerConfig {
        allow_missing_kid: true,
        ..issuer(
            &["RS256"],
            vec![key(None, "rsa-a.pub.pem"), key(None, "rsa-b.pub.pem")],
        )
    };
    assert_eq!(
        rejection(&self::verifier(vec![two_pem_keys]), &rs256_without_kid),
        rule::UNKNOWN_KID
    );
}

#[test]
fn an_unknown_kid_is_refused_without_trying_other_keys() {
    let jwks = verifier(vec![jwks_issuer(&["RS256"])]);
    let token = sign(
        Algorithm::RS256,
        "rsa-a.key.pem",
        Some("retired-2023"),
        &claims(),
    );
    assert_eq!(rejection(&jwks, &token), rule::UNKNOWN_KID);

    // A PEM key configured without a kid is not named by any kid.
    let pem = verifier(vec![issuer(&["RS256"], vec![key(None, "rsa-a.pub.pem")])]);
    let token = sign(Algorithm::RS256, "rsa-a.key.pem", Some("rsa-a"), &claims());
    assert_eq!(rejection(&pem, &token), rule::UNKNOWN_KID);

    let named = verifier(vec![issuer(
        &["RS256"],
        vec![key(Some("rsa-a"), "rsa-a.pub.pem")],
    )]);
    assert!(named.verify(&token, NOW).is_ok());
}

#[test]
fn hmac_issuer_verifies_with_its_secret_only() {
    // The secret has no kid to name, so these tokens carry none.
    let hmac = IssuerConfig {
        hmac_secret_file: Some("hmac-secret.txt".into()),
        allow_missing_kid: true,
        ..issuer(&["HS256"], Vec::new())
    };
    let verifier = verifier(vec![hmac]);
    // The secret file ends in a newline, which is not part of the secret.
    let secret = fixture("hmac-secret.txt");
    let key = EncodingKey::from_secret(secret.trim_ascii_end());
    let token = encode(&Header::new(Algorithm::HS256), &claims(), &key).unwrap();
    assert!(verifier.verify(&token, NOW).is_ok());

    let with_newline = sign(Algorithm::HS256, "hmac-secret.txt", None, &claims());
    assert_eq!(rejection(&verifier, &with_newline), rule::BAD_SIGNATURE);
    assert_eq!(
        rejection(&verifier, &rs256(&claims())),
        rule::ALGORITHM_NOT_ALLOWED
    );
}

// ---------------------------------------------------------------------------------------
// Algorithms (RFC 8725 §3.1, §3.2)

#[test]
fn unsigned_tokens_are_refused() {
    let verifier = verifier(vec![rsa_issuer()]);
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        for signature in ["", "c2lnbmF0dXJl"] {
            let token = hand_built(&header, &claims(), signature);
            assert_eq!(
                rejection(&verifier, &token),
                rule::ALGORITHM_NOT_ALLOWED,
                "{alg}"
            );
        }
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: the attacker uses the public key PEM as an HMAC secret,
    // hoping the verifier feeds the same bytes to HMAC.
    let verifier = verifier(vec![rsa_issuer()]);
    let forged = sign(Algorithm::HS256, "rsa-a.pub.pem", None, &claims());
    assert_eq!(rejection(&verifier, &forged), rule::ALGORITHM_NOT_ALLOWED);
    let forged_with_kid = sign(Algorithm::HS256, "rsa-a.pub.pem", Some("rsa-a"), &claims());
    let jwks = self::verifier(vec![jwks_issuer(&["RS256"])]);
    assert_eq!(
        rejection(&jwks, &forged_with_kid),
        rule::ALGORITHM_NOT_ALLOWED
    );
}

#[test]
fn an_algorithm_outside_the_allow_list_or_the_key_type_is_refused() {
    // The header says RS256 but the issuer signs with ES256 only.
    let es256_only = verifier(vec![issuer(&["ES256"], vec![key(None, "ec-p256.pub.pem")])]);
    assert_eq!(
        rejection(&es256_only, &rs256(&claims())),
        rule::ALGORITHM_NOT_ALLOWED
    );

    // RS256 is allowed, but the kid names an EC key.
    let jwks = verifier(vec![jwks_issuer(&["RS256", "ES256"])]);
    let token = sign(
        Algorithm::RS256,
        "rsa-a.key.pem",
        Some("ec-p256"),
        &claims(),
    );
    assert_eq!(rejection(&jwks, &token), rule::ALGORITHM_NOT_ALLOWED);

    // ES256 is allowed, but the kid names a P-384 key.
    let curves = verifier(vec![issuer(
        &["ES256", "ES384"],
        vec![
            key(Some("p256"), "ec-p256.pub.pem"),
            key(Some("p384"), "ec-p384.pub.pem"),
        ],
    )]);
    let token = sign(Algorithm::ES256, "ec-p256.key.pem", Some("p384"), &claims());
    assert_eq!(rejection(&curves, &token), rule::ALGORITHM_NOT_ALLOWED);

    // The JWK names RS256 as its only algorithm.
    let token = sign(Algorithm::RS384, "rsa-a.key.pem", Some("rsa-a"), &claims());
    let rs384 = verifier(vec![jwks_issuer(&["RS256", "RS384"])]);
    assert_eq!(rejection(&rs384, &token), rule::ALGORITHM_NOT_ALLOWED);

    // An algorithm nobody supports.
    let token = hand_built(&json!({"alg": "HS1"}), &claims(), "c2ln");
    assert_eq!(rejection(&es256_only, &token), rule::ALGORITHM_NOT_ALLOWED);
}

// ---------------------------------------------------------------------------------------
// Registered claims (RFC 7519 §4.1)

#[test]
fn claim_problems_are_refused_with_their_rule() {
    let verifier = verifier(vec![rsa_issuer()]);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("missing aud", without(claims(), "aud"), rule::MISSING_CLAIM),
        ("missing iss", without(claims(), "iss"), rule::MISSING_CLAIM),
        ("missing sub", without(claims(), "sub"), rule::MISSING_CLAIM),
        ("missing exp", without(claims(), "exp"), rule::MISSING_CLAIM),
        (
            "null exp",
            with(claims(), "exp", Value::Null),
            rule::MISSING_CLAIM,
        ),
        (
            "no client",
            without(claims(), "client_id"),
            rule::MISSING_CLAIM,
        ),
        (
            "empty client",
            with(claims(), "client_id", json!("")),
            rule::MISSING_CLAIM,
        ),
        (
            "wrong aud",
            with(claims(), "aud", json!("https://elsewhere.example")),
            rule::WRONG_AUDIENCE,
        ),
        (
            "wrong aud array",
            with(claims(), "aud", json!(["a", "b"])),
            rule::WRONG_AUDIENCE,
        ),
        (
            "empty aud array",
            with(claims(), "aud", json!([])),
            rule::WRONG_AUDIENCE,
        ),
        (
            "wrong iss",
            with(claims(), "iss", json!(OTHER_ISS)),
            rule::UNKNOWN_ISSUER,
        ),
        (
            "iss differs in case",
            with(claims(), "iss", json!("https://IDP.example")),
            rule::UNKNOWN_ISSUER,
        ),
        (
            "iss not a string",
            with(claims(), "iss", json!(["https://idp.example"])),
            rule::BAD_CLAIM,
        ),
        (
            "aud a number",
            with(claims(), "aud", json!(7)),
            rule::BAD_CLAIM,
        ),
        (
            "aud array of numbers",
            with(claims(), "aud", json!([AUD, 7])),
            rule::BAD_CLAIM,
        ),
        (
            "exp a string",
            with(claims(), "exp", json!("1700000300")),
            rule::BAD_CLAIM,
        ),
        (
            "exp negative",
            with(claims(), "exp", json!(-1)),
            rule::BAD_CLAIM,
        ),
        (
            "nbf a string",
            with(claims(), "nbf", json!("soon")),
            rule::BAD_CLAIM,
        ),
        (
            "sub empty",
            with(claims(), "sub", json!("")),
            rule::BAD_CLAIM,
        ),
        (
            "sub a number",
            with(claims(), "sub", json!(7)),
            rule::BAD_CLAIM,
        ),
        // The upstream gets the subject in a header: what cannot travel there unchanged is
        // refused, so the upstream and the audit log name the same caller.
        (
            "sub with a line break",
            with(claims(), "sub", json!("a\r\nx-evil: 1")),
            rule::BAD_CLAIM,
        ),
        (
            "sub with a leading space",
            with(claims(), "sub", json!(" dr-adams")),
            rule::BAD_CLAIM,
        ),
        (
            "sub over 255 bytes",
            with(claims(), "sub", json!("s".repeat(256))),
            rule::BAD_CLAIM,
        ),
        (
            "sub not ASCII",
            with(claims(), "sub", json!("dr-müller")),
            rule::BAD_CLAIM,
        ),
        (
            "client_id with a trailing space",
            with(claims(), "client_id", json!("ward-app ")),
            rule::BAD_CLAIM,
        ),
        (
            "jti a number",
            with(claims(), "jti", json!(7)),
            rule::BAD_CLAIM,
        ),
        (
            "client_id a number",
            with(claims(), "client_id", json!(7)),
            rule::BAD_CLAIM,
        ),
        (
            "scope a number",
            with(claims(), "scope", json!(7)),
            rule::BAD_CLAIM,
        ),
        (
            "scope with a quote",
            with(claims(), "scope", json!("patient/\"x\".rs")),
            rule::BAD_CLAIM,
        ),
        (
            "scope array with a space",
            with(claims(), "scope", json!(["a b"])),
            rule::BAD_CLAIM,
        ),
        (
            "roles an object",
            with(claims(), "roles", json!({"admin": true})),
            rule::BAD_CLAIM,
        ),
        (
            "roles with a number",
            with(claims(), "roles", json!(["admin", 1])),
            rule::BAD_CLAIM,
        ),
        (
            "patient a path",
            with(claims(), "patient", json!("1/../2")),
            rule::BAD_CLAIM,
        ),
        (
            "patient empty",
            with(claims(), "patient", json!("")),
            rule::BAD_CLAIM,
        ),
        (
            "patient a float",
            with(claims(), "patient", json!(1.5)),
            rule::BAD_CLAIM,
        ),
        (
            "encounter an array",
            with(claims(), "encounter", json!(["e1"])),
            rule::BAD_CLAIM,
        ),
        (
            "fhirUser a number",
            with(claims(), "fhirUser", json!(7)),
            rule::BAD_CLAIM,
        ),
        (
            "purpose an object",
            with(claims(), "purpose_of_use", json!({"code": "BTG"})),
            rule::BAD_CLAIM,
        ),
        (
            "reason a number",
            with(claims(), "break_glass_reason", json!(1)),
            rule::BAD_CLAIM,
        ),
        (
            "reason too long",
            with(claims(), "break_glass_reason", json!("x".repeat(1025))),
            rule::BAD_CLAIM,
        ),
    ];
    for (case, claims, expected) in cases {
        assert_eq!(rejection(&verifier, &rs256(&claims)), expected, "{case}");
    }
}

#[test]
fn accepted_claim_shapes() {
    let verifier = verifier(vec![rsa_issuer()]);
    let cases: Vec<(&str, Value)> = vec![
        (
            "aud array with ours",
            with(claims(), "aud", json!(["a", AUD])),
        ),
        (
            "fractional exp",
            with(claims(), "exp", json!(NOW as f64 + 0.5)),
        ),
        (
            "scope array",
            with(claims(), "scope", json!(["launch", "patient/*.rs"])),
        ),
        (
            "client from azp",
            with(without(claims(), "client_id"), "azp", json!("from-azp")),
        ),
        (
            "client from cid",
            with(without(claims(), "client_id"), "cid", json!("from-cid")),
        ),
        (
            "null optional claims",
            with(with(claims(), "patient", Value::Null), "roles", Value::Null),
        ),
    ];
    for (case, claims) in cases {
        assert!(verifier.verify(&rs256(&claims), NOW).is_ok(), "{case}");
    }
    let azp = with(without(claims(), "client_id"), "azp", json!("from-azp"));
    let azp = with(azp, "cid", json!("from-cid"));
    assert_eq!(
        verifier
            .verify(&rs256(&azp), NOW)
            .unwrap()
            .principal
            .client_id,
        "from-azp"
    );
}

#[test]
fn configured_claim_names_are_read() {
    let names = ClaimNames {
        scope: "scp".into(),
        roles: "groups".into(),
        patient: "smart_patient".into(),
        client_id: "appid".into(),
        ..ClaimNames::default()
    };
    let verifier = verifier(vec![IssuerConfig {
        claims: names,
        ..rsa_issuer()
    }]);
    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "s", "exp": NOW + 60,
        "appid": "configured-app", "client_id": "ignored",
        "scp": ["user/Patient.rs"], "scope": "ignored",
        "groups": "clinician auditor", "smart_patient": "p-1",
    });
    let principal = verifier.verify(&rs256(&claims), NOW).unwrap().principal;
    assert_eq!(principal.client_id, "configured-app");
    assert_eq!(principal.scopes, ["user/Patient.rs"]);
    assert_eq!(principal.roles, ["clinician", "auditor"]);
    assert_eq!(principal.launch_patient.as_deref(), Some("p-1"));
}

#[test]
fn purpose_of_use_codes_are_normalized_only_from_act_reason() {
    let verifier = verifier(vec![rsa_issuer()]);
    let cases: [(Value, &[&str]); 6] = [
        (json!("BTG"), &["BTG"]),
        (json!("TREAT HPAYMT"), &["TREAT", "HPAYMT"]),
        (
            json!(["http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG"]),
            &["BTG"],
        ),
        (
            json!("http://terminology.hl7.org/CodeSystem/v3-ActReason|ETREAT"),
            &["ETREAT"],
        ),
        (json!(["urn:oid:2.16.840.1.113883.5.8#BTG"]), &["BTG"]),
        // Another system's `BTG` must not pass for break-the-glass.
        (
            json!(["http://vendor.example/reasons#BTG"]),
            &["http://vendor.example/reasons#BTG"],
        ),
    ];
    for (claim, expected) in cases {
        let token = rs256(&with(claims(), "purpose_of_use", claim.clone()));
        let principal = verifier.verify(&token, NOW).unwrap().principal;
        assert_eq!(principal.purpose_of_use, expected, "{claim}");
    }
}

#[test]
fn list_claims_are_capped() {
    let verifier = verifier(vec![rsa_issuer()]);
    let scopes = |count: usize| {
        (0..count)
            .map(|i| format!("user/T{i}.rs"))
            .collect::<Vec<_>>()
    };
    let accepted = with(claims(), "scope", json!(scopes(100).join(" ")));
    assert_eq!(
        verifier
            .verify(&rs256(&accepted), NOW)
            .unwrap()
            .principal
            .scopes
            .len(),
        100
    );
    let cases = [
        with(claims(), "scope", json!(scopes(101).join(" "))),
        with(claims(), "roles", json!(vec!["r"; 101])),
        with(claims(), "scope", json!("s".repeat(257))),
        with(claims(), "roles", json!(["r".repeat(257)])),
    ];
    for claims in cases {
        assert_eq!(rejection(&verifier, &rs256(&claims)), rule::BAD_CLAIM);
    }
    assert!(
        verifier
            .verify(
                &rs256(&with(claims(), "roles", json!(["r".repeat(256)]))),
                NOW
            )
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------
// Time (RFC 7519 §4.1.4 to §4.1.6), with the default 30 s leeway

#[test]
fn expiry_and_not_before_allow_the_leeway_and_no_more() {
    let verifier = verifier(vec![rsa_issuer()]);
    let leeway = DEFAULT_LEEWAY_SECS;
    let accepted = [
        ("exp ahead", with(claims(), "exp", json!(NOW + 1))),
        (
            "exp just within leeway",
            with(claims(), "exp", json!(NOW - leeway + 1)),
        ),
        ("nbf now", with(claims(), "nbf", json!(NOW))),
        (
            "nbf within leeway",
            with(claims(), "nbf", json!(NOW + leeway)),
        ),
        (
            "iat within leeway",
            with(claims(), "iat", json!(NOW + leeway)),
        ),
    ];
    for (case, claims) in accepted {
        assert!(verifier.verify(&rs256(&claims), NOW).is_ok(), "{case}");
    }
    let refused = [
        (
            "exp just past leeway",
            with(claims(), "exp", json!(NOW - leeway)),
            rule::EXPIRED,
        ),
        (
            "exp long past",
            with(claims(), "exp", json!(NOW - 3600)),
            rule::EXPIRED,
        ),
        (
            "nbf past leeway",
            with(claims(), "nbf", json!(NOW + leeway + 1)),
            rule::NOT_YET_VALID,
        ),
        (
            "iat past leeway",
            with(claims(), "iat", json!(NOW + leeway + 1)),
            rule::NOT_YET_VALID,
        ),
    ];
    for (case, claims, expected) in refused {
        assert_eq!(rejection(&verifier, &rs256(&claims)), expected, "{case}");
    }
    // The clock is the caller's: the same token expires later on.
    let token = rs256(&claims());
    assert_eq!(rejection_at(&verifier, &token, NOW + 330), rule::EXPIRED);
}

#[test]
fn max_lifetime_bounds_exp_minus_iat_or_the_remaining_lifetime() {
    let verifier = verifier(vec![IssuerConfig {
        max_lifetime_secs: Some(300),
        ..rsa_issuer()
    }]);
    let lifetime = |iat: Option<u64>, exp: u64| {
        let claims = with(claims(), "exp", json!(exp));
        match iat {
            Some(iat) => with(claims, "iat", json!(iat)),
            None => without(claims, "iat"),
        }
    };
    assert!(
        verifier
            .verify(&rs256(&lifetime(Some(NOW), NOW + 300)), NOW)
            .is_ok()
    );
    assert!(
        verifier
            .verify(&rs256(&lifetime(None, NOW + 330)), NOW)
            .is_ok()
    );
    let refused = [
        lifetime(Some(NOW), NOW + 301),
        lifetime(Some(NOW - 600), NOW + 10),
        lifetime(None, NOW + 331),
    ];
    for claims in refused {
        assert_eq!(
            rejection(&verifier, &rs256(&claims)),
            rule::LIFETIME_TOO_LONG,
            "{claims}"
        );
    }
}

#[test]
fn without_max_lifetime_a_token_lives_at_most_a_day() {
    const DAY: u64 = 86_400;
    const YEAR_2100: u64 = 4_102_444_800;
    let default = verifier(vec![rsa_issuer()]);
    let week = verifier(vec![IssuerConfig {
        max_lifetime_secs: Some(7 * DAY),
        ..rsa_issuer()
    }]);
    let lifetime = |iat: Option<u64>, exp: u64| {
        let claims = with(claims(), "exp", json!(exp));
        match iat {
            Some(iat) => with(claims, "iat", json!(iat)),
            None => without(claims, "iat"),
        }
    };
    // (claims, accepted by default, accepted with a week allowed)
    let cases = [
        (lifetime(Some(NOW), NOW + DAY), true, true),
        (lifetime(None, NOW + DAY + 30), true, true),
        (lifetime(Some(NOW), NOW + DAY + 1), false, true),
        (lifetime(None, NOW + DAY + 31), false, true),
        (lifetime(Some(NOW - 2 * DAY), NOW + 10), false, true),
        (lifetime(Some(NOW), NOW + 7 * DAY + 1), false, false),
        (lifetime(Some(NOW), YEAR_2100), false, false),
        (lifetime(None, YEAR_2100), false, false),
    ];
    for (claims, by_default, with_a_week) in cases {
        let token = rs256(&claims);
        for (verifier, accepted) in [(&default, by_default), (&week, with_a_week)] {
            if accepted {
                assert!(verifier.verify(&token, NOW).is_ok(), "{claims}");
            } else {
                assert_eq!(
                    rejection(verifier, &token),
                    rule::LIFETIME_TOO_LONG,
                    "{claims}"
                );
            }
        }
    }
    let message = default
        .verify(&rs256(&lifetime(Some(NOW), YEAR_2100)), NOW)
        .unwrap_err()
        .message;
    assert!(
        message.contains("86400 s")
            && message.contains("help: ")
            && message.contains("`max_lifetime_secs`"),
        "{message}"
    );
}

#[test]
fn a_max_lifetime_over_a_day_is_allowed_with_a_warning() {
    let with_max = |max_lifetime_secs| IssuerConfig {
        max_lifetime_secs,
        ..rsa_issuer()
    };
    assert!(with_max(None).warnings().is_empty());
    assert!(with_max(Some(300)).warnings().is_empty());
    assert!(
        with_max(Some(DEFAULT_MAX_LIFETIME_SECS))
            .warnings()
            .is_empty()
    );

    let week = with_max(Some(7 * 86_400));
    let warnings = week.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!(
            "issuer `{ISS}`: `max_lifetime_secs` is 604800 (168 h)"
        )) && warnings[0].contains("\nhelp: "),
        "{}",
        warnings[0]
    );
    // A warning, not a problem: the issuer loads.
    assert_eq!(verifier(vec![week]).issuers().count(), 1);
}

// ---------------------------------------------------------------------------------------
// Signatures and malformed tokens

#[test]
fn tampered_tokens_fail_the_signature() {
    let verifier = verifier(vec![rsa_issuer()]);
    let token = rs256(&claims());
    let [header, _, signature] = token.split('.').collect::<Vec<_>>()[..] else {
        panic!("not a JWT");
    };
    let elevated = with(claims(), "scope", json!("system/*.cruds"));
    let tampered_payload = format!(
        "{header}.{}.{signature}",
        b64url(elevated.to_string().as_bytes())
    );
    assert_eq!(rejection(&verifier, &tampered_payload), rule::BAD_SIGNATURE);

    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let tampered_signature = String::from_utf8(flipped).unwrap();
    assert_eq!(
        rejection(&verifier, &tampered_signature),
        rule::BAD_SIGNATURE
    );

    let truncated_signature = &token[..token.len() - 10];
    assert_eq!(
        rejection(&verifier, truncated_signature),
        rule::BAD_SIGNATURE
    );

    let no_signature = format!("{header}.{}.", token.split('.').nth(1).unwrap());
    assert_eq!(rejection(&verifier, &no_signature), rule::BAD_SIGNATURE);
}

#[test]
fn a_token_claiming_another_trusted_issuer_fails_the_signature() {
    let other = IssuerConfig {
        issuer: OTHER_ISS.into(),
        // The same kid at both issuers (ids such as `key-1` do collide): the key is found,
        // and only the signature can tell.
        ..issuer(&["RS256"], vec![key(Some("rsa-a"), "rsa-b.pub.pem")])
    };
    let verifier = verifier(vec![rsa_issuer(), other]);
    // Signed by the first issuer's key, claiming to come from the second.
    let token = rs256(&with(claims(), "iss", json!(OTHER_ISS)));
    assert_eq!(rejection(&verifier, &token), rule::BAD_SIGNATURE);
}

#[test]
fn malformed_tokens_are_refused() {
    let verifier = verifier(vec![rsa_issuer()]);
    let token = rs256(&claims());
    // Cut inside the payload; a cut inside the signature is a bad signature (see above).
    let truncated = &token[..token.find('.').unwrap() + 20];
    let two_segments = token.rsplit_once('.').unwrap().0.to_string();
    let cases: Vec<(&str, String)> = vec![
        ("truncated", truncated.to_string()),
        ("two segments", two_segments),
        ("empty", String::new()),
        ("garbage", "this is not a token".into()),
        ("dots", "..".into()),
        ("not json", "a.b.c".into()),
        ("padding", format!("{token}==")),
        ("jwe", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".into()),
        (
            "header array",
            hand_built(&json!(["RS256"]), &claims(), "c2ln"),
        ),
        (
            "payload array",
            hand_built(&json!({"alg": "RS256"}), &json!([1]), "c2ln"),
        ),
        (
            "no alg",
            hand_built(&json!({"typ": "JWT"}), &claims(), "c2ln"),
        ),
        (
            "kid number",
            hand_built(&json!({"alg": "RS256", "kid": 1}), &claims(), "c2ln"),
        ),
        (
            "crit",
            hand_built(&json!({"alg": "RS256", "crit": ["exp"]}), &claims(), "c2ln"),
        ),
    ];
    for (case, token) in cases {
        assert_eq!(
            rejection(&verifier, &token),
            rule::MALFORMED_TOKEN,
            "{case}"
        );
    }
}

/// A token signed with `rsa-a` over exactly these header and payload texts, which
/// `jsonwebtoken::encode` (serializing a `Value`) could not produce with repeated members.
fn signed_text(header: &str, payload: &str) -> String {
    keys::install_crypto_provider();
    let signing_input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let key = EncodingKey::from_rsa_pem(&fixture("rsa-a.key.pem")).unwrap();
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{signing_input}.{signature}")
}

/// `claims()` as JSON text with `extra` members appended.
fn claims_text_with(extra: &str) -> String {
    let text = claims().to_string();
    format!("{},{extra}}}", &text[..text.len() - 1])
}

#[test]
fn repeated_members_in_a_signed_token_are_refused() {
    const HEADER: &str = r#"{"alg":"RS256","kid":"rsa-a","typ":"JWT"}"#;
    let verifier = verifier(vec![rsa_issuer()]);
    // The same construction without a repeat verifies, so the refusals below are the
    // repeats' and not the signing's.
    let plain = signed_text(HEADER, &claims_text_with(r#""patient":"p-1""#));
    let verified = verifier.verify(&plain, NOW).unwrap();
    assert_eq!(verified.principal.launch_patient.as_deref(), Some("p-1"));

    #[rustfmt::skip]
    let cases: &[(&str, &str, String, &str)] = &[
        ("patient twice", HEADER, claims_text_with(r#""patient":"p-1","patient":"p-2""#), "`patient`"),
        ("sub twice", HEADER, claims_text_with(r#""sub":"admin""#), "`sub`"),
        ("sub twice, escaped", HEADER, claims_text_with(r#""s\u0075b":"admin""#), "`sub`"),
        ("nested in an object claim", HEADER, claims_text_with(r#""cnf":{"jkt":"a","jkt":"b"}"#), "`jkt`"),
        ("in an object inside an array", HEADER, claims_text_with(r#""authorization_details":[{"type":"a","type":"b"}]"#), "`type`"),
        ("alg twice", r#"{"alg":"RS256","kid":"rsa-a","alg":"none"}"#, claims().to_string(), "`alg`"),
        ("kid twice", r#"{"alg":"RS256","kid":"rsa-b","kid":"rsa-a"}"#, claims().to_string(), "`kid`"),
    ];
    for (case, header, payload, member) in cases {
        let token = signed_text(header, payload);
        assert_eq!(
            rejection(&verifier, &token),
            rule::DUPLICATE_JSON_KEY,
            "{case}"
        );
        let message = verifier.verify(&token, NOW).unwrap_err().message;
        let part = if *header == HEADER {
            "payload"
        } else {
            "header"
        };
        assert!(
            message.contains(member) && message.contains(part),
            "{case}: {message}"
        );
    }
}

#[test]
fn repeated_member_check_walks_every_json_shape() {
    let unique: &[&str] = &[
        r#"{}"#,
        r#"{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}]}"#,
        r#"{"a":[1,-2,3.5,true,null,"x",[]]}"#,
        r#"{"A":1,"a":2}"#,
    ];
    for text in unique {
        assert_eq!(
            json::check_unique_members(text.as_bytes()),
            Ok(()),
            "{text}"
        );
    }
    let repeated: &[&str] = &[
        r#"{"a":1,"a":1}"#,
        r#"{"a":{"b":[[{"c":1,"c":2}]]}}"#,
        r#"{"a":1,"\u0061":2}"#,
    ];
    for text in repeated {
        assert!(
            matches!(
                json::check_unique_members(text.as_bytes()),
                Err(json::JsonError::DuplicateMember(_))
            ),
            "{text}"
        );
    }
    for text in [r#"{"a":1"#, r#"{"a":1} x"#, ""] {
        assert_eq!(
            json::check_unique_members(text.as_bytes()),
            Err(json::JsonError::Syntax),
            "{text}"
        );
    }
}

#[test]
fn oversize_tokens_are_refused_before_parsing() {
    let verifier = verifier(vec![rsa_issuer()]);
    assert_eq!(
        rejection(&verifier, &"a".repeat(16 * 1024 + 1)),
        rule::TOKEN_TOO_LARGE
    );
    let big = with(claims(), "padding", json!("x".repeat(16 * 1024)));
    assert_eq!(rejection(&verifier, &rs256(&big)), rule::TOKEN_TOO_LARGE);
}

#[test]
fn base64url_is_strict() {
    assert_eq!(base64url::decode("").as_deref(), Some(&b""[..]));
    assert_eq!(base64url::decode("TWFu").as_deref(), Some(&b"Man"[..]));
    assert_eq!(base64url::decode("TWE").as_deref(), Some(&b"Ma"[..]));
    assert_eq!(base64url::decode("TQ").as_deref(), Some(&b"M"[..]));
    assert_eq!(base64url::decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
    for bad in ["T", "TWE=", "TQ==", "TR", "TWF+", "TWF/", "TW u"] {
        assert_eq!(base64url::decode(bad), None, "{bad}");
    }
    assert_eq!(b64url(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw");
}

// ---------------------------------------------------------------------------------------
// Configuration

#[test]
fn config_problems_are_all_listed_at_once() {
    let scratch = ScratchDir::new("config-problems");
    scratch.write(
        "bad.pem",
        "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
    );
    scratch.write("rsa.pem", fixture("rsa-a.pub.pem"));
    let issuers = vec![
        IssuerConfig {
            issuer: "https://missing.example".into(),
            ..issuer(&["RS256"], vec![key(None, "keys/idp.pem")])
        },
        IssuerConfig {
            issuer: "https://bad-pem.example".into(),
            ..issuer(&["RS256"], vec![key(None, "bad.pem")])
        },
        IssuerConfig {
            issuer: "https://none.example".into(),
            ..issuer(&["none", "RS256"], vec![key(None, "rsa.pem")])
        },
        IssuerConfig {
            issuer: "https://mixed.example".into(),
            ..issuer(&["HS256", "RS256"], vec![key(None, "rsa.pem")])
        },
        IssuerConfig {
            issuer: "https://leeway.example".into(),
            leeway_secs: 301,
            ..issuer(&["RS256"], vec![key(None, "rsa.pem")])
        },
    ];
    let problems = config_problems(issuers, &scratch.0);
    let expected = [
        "issuer `https://missing.example`: key file `keys/idp.pem`: no such file",
        "issuer `https://bad-pem.example`: key file `bad.pem`: is not a supported public key",
        "issuer `https://none.example`: algorithms: `none` is never allowed",
        "issuer `https://mixed.example`: algorithms: HMAC (`HS256`) and public-key (`RS256`) algorithms are mixed",
        "issuer `https://mixed.example`: algorithms: `HS256` needs `hmac_secret_file`",
        "issuer `https://leeway.example`: `leeway_secs` is 301; at most 300 is allowed",
    ];
    for expected in expected {
        assert!(
            problems.iter().any(|problem| problem.starts_with(expected)),
            "missing `{expected}` in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn key_and_issuer_config_mistakes_are_explained() {
    let scratch = ScratchDir::new("config-mistakes");
    let fixtures = fixtures();
    let fixture_path = |name: &str| fixtures.join(name).display().to_string();
    scratch.write("short-secret", "too short\n");
    scratch.write(
        "two.pem",
        [fixture("rsa-a.pub.pem"), fixture("rsa-b.pub.pem")].concat(),
    );
    scratch.write(
        "oct.json",
        json!({"keys": [{"kty": "oct", "kid": "shared", "k": "c2VjcmV0"}]}).to_string(),
    );
    let mut private_jwk: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    private_jwk["keys"][2]["d"] = json!("c2VjcmV0");
    scratch.write("private.json", private_jwk.to_string());
    scratch.write("bad-point.json", json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bad", "x": b64url(&[1; 32]), "y": b64url(&[2; 32])}]}).to_string());

    let cases: Vec<(IssuerConfig, &str)> = vec![
        (
            issuer(&["RS256"], vec![key(None, &fixture_path("rsa-a.key.pem"))]),
            "is a private key (`PRIVATE KEY`)",
        ),
        (
            issuer(
                &["RS256"],
                vec![key(None, &fixture_path("rsa-1024.pub.pem"))],
            ),
            "is a 1024-bit RSA key; at least 2048 bits are required",
        ),
        (
            issuer(&["ES256"], vec![key(None, &fixture_path("rsa-a.pub.pem"))]),
            "is an RSA key and cannot verify any allowed algorithm (`ES256`)",
        ),
        (
            issuer(
                &["ES256"],
                vec![key(None, &fixture_path("ec-p384.pub.pem"))],
            ),
            "is an EC P-384 key and cannot verify any allowed algorithm",
        ),
        (
            issuer(&["RS256"], vec![key(None, &fixture_path("jwks.json"))]),
            "is not a PEM file",
        ),
        (
            issuer(&["RS256"], vec![key(None, "two.pem")]),
            "holds more than one PEM block",
        ),
        (
            issuer(
                &["RS256", "ES256"],
                vec![key(None, &fixture_path("rsa-a.pub.pem"))],
            ),
            "algorithm `ES256` is allowed but no configured key can verify it",
        ),
        (issuer(&["RS256"], Vec::new()), "no keys: set `keys`"),
        (
            issuer(&["RS265"], vec![key(None, &fixture_path("rsa-a.pub.pem"))]),
            "unknown algorithm `RS265`",
        ),
        (
            issuer(&[], vec![key(None, &fixture_path("rsa-a.pub.pem"))]),
            "algorithms: the list is empty",
        ),
        (
            IssuerConfig {
                audience: Vec::new(),
                ..rsa_issuer_at(&fixtures)
            },
            "`audience` is empty",
        ),
        (
            IssuerConfig {
                max_lifetime_secs: Some(0),
                ..rsa_issuer_at(&fixtures)
            },
            "`max_lifetime_secs` is 0",
        ),
        (
            IssuerConfig {
                claims: ClaimNames {
                    scope: String::new(),
                    ..ClaimNames::default()
                },
                ..rsa_issuer_at(&fixtures)
            },
            "claims: `scope` is empty",
        ),
        (
            IssuerConfig {
                hmac_secret_file: Some("short-secret".into()),
                ..issuer(&["HS256"], Vec::new())
            },
            "hmac secret file `short-secret`: the secret has 9 bytes; `HS256` needs at least 32",
        ),
        (
            IssuerConfig {
                hmac_secret_file: Some(fixtures.join("hmac-secret.txt")),
                ..rsa_issuer_at(&fixtures)
            },
            "`hmac_secret_file` is set but no HMAC algorithm",
        ),
        (
            IssuerConfig {
                hmac_secret_file: Some(fixtures.join("hmac-secret.txt")),
                ..issuer(&["HS256"], vec![key(None, &fixture_path("rsa-a.pub.pem"))])
            },
            "`hmac_secret_file` cannot be combined with `keys` or `jwks`",
        ),
        (
            IssuerConfig {
                jwks: Some("oct.json".into()),
                ..issuer(&["RS256"], Vec::new())
            },
            "jwks file `oct.json`: key `shared`: is a symmetric (`oct`) key",
        ),
        (
            IssuerConfig {
                jwks: Some("private.json".into()),
                ..issuer(&["RS256"], Vec::new())
            },
            "jwks file `private.json`: key `ec-p256`: holds private key material (`d`)",
        ),
        (
            IssuerConfig {
                jwks: Some("bad-point.json".into()),
                ..issuer(&["ES256"], Vec::new())
            },
            "jwks file `bad-point.json`: key `bad`: is not usable as an EC P-256 key",
        ),
        (
            IssuerConfig {
                jwks: Some(fixtures.join("jwks.json")),
                ..issuer(
                    &["RS256"],
                    vec![key(Some("rsa-a"), &fixture_path("rsa-a.pub.pem"))],
                )
            },
            "key id `rsa-a` is used by more than one key",
        ),
    ];
    for (config, expected) in cases {
        let problems = config_problems(vec![config], &scratch.0);
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with(&format!("issuer `{ISS}`: "))
                    && problem.contains(expected)),
            "missing `{expected}` in {problems:#?}"
        );
    }

    let twice = config_problems(
        vec![rsa_issuer_at(&fixtures), rsa_issuer_at(&fixtures)],
        &scratch.0,
    );
    assert_eq!(
        twice,
        [format!("issuer `{ISS}`: is configured more than once")]
    );
    let unnamed = config_problems(
        vec![IssuerConfig {
            issuer: String::new(),
            ..rsa_issuer_at(&fixtures)
        }],
        &scratch.0,
    );
    assert!(
        unnamed[0].starts_with("issuer #1: `issuer` is empty"),
        "{unnamed:?}"
    );
}

/// The RSA issuer with an absolute key path, for configs loaded from a scratch directory.
fn rsa_issuer_at(fixtures: &Path) -> IssuerConfig {
    issuer(
        &["RS256"],
        vec![key(
            None,
            &fixtures.join("rsa-a.pub.pem").display().to_string(),
        )],
    )
}

#[test]
fn issuer_config_reads_from_toml_with_defaults() {
    let config: IssuerConfig = toml::from_str(
        r#"
            issuer = "https://idp.example"
            audience = ["https://gateway.example/fhir"]
            algorithms = ["RS256"]
            keys = [{ kid = "rsa-a", path = "rsa-a.pub.pem" }]
            claims = { roles = "groups" }
        "#,
    )
    .unwrap();
    assert_eq!(config.leeway_secs, 30);
    assert_eq!(config.claims.roles, "groups");
    assert_eq!(config.claims.fhir_user, "fhirUser");
    assert_eq!(config.max_lifetime_secs, None);
    assert!(!config.allow_missing_kid);
    let verifier = verifier(vec![config]);

    let lenient: IssuerConfig = toml::from_str(
        "issuer = \"i\"\naudience = [\"a\"]\nalgorithms = [\"RS256\"]\nallow_missing_kid = true\n",
    )
    .unwrap();
    assert!(lenient.allow_missing_kid);
    assert_eq!(verifier.issuers().collect::<Vec<_>>(), [ISS]);

    let unknown_field = toml::from_str::<IssuerConfig>(
        "issuer = \"i\"\naudience = [\"a\"]\nalgorithms = [\"RS256\"]\nleeway = 10\n",
    );
    assert!(unknown_field.is_err());
    let unknown_claim = toml::from_str::<IssuerConfig>(
        "issuer = \"i\"\naudience = [\"a\"]\nalgorithms = [\"RS256\"]\nclaims = { role = \"x\" }\n",
    );
    assert!(unknown_claim.is_err());
}

// ---------------------------------------------------------------------------------------
// Finding the token (RFC 6750 §2)

/// `Authorization` header values, in order.
type Authorizations = &'static [&'static str];
/// Query or form parameters, in order.
type Params = &'static [(&'static str, &'static str)];

fn headers(authorizations: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in authorizations {
        headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    }
    headers
}

fn params(pairs: &[(&str, &str)]) -> Vec<Param> {
    pairs
        .iter()
        .map(|(name, value)| Param {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect()
}

#[test]
fn extract_token_finds_one_token_in_one_place() {
    let found: [(Authorizations, Params, Option<&str>); 7] = [
        (&[], &[], None),
        (&[], &[("_count", "10")], None),
        (&["Bearer abc.def.ghi"], &[], Some("abc.def.ghi")),
        (&["bearer   abc.def.ghi "], &[], Some("abc.def.ghi")),
        (&["BEARER mF_9.B5f-4.1JqM"], &[], Some("mF_9.B5f-4.1JqM")),
        (&["Bearer abc+/=="], &[], Some("abc+/==")),
        (
            &[],
            &[("patient", "1"), ("access_token", "abc.def.ghi")],
            Some("abc.def.ghi"),
        ),
    ];
    for (authorizations, query, expected) in found {
        let token = extract_token(&headers(authorizations), &params(query)).unwrap();
        assert_eq!(token.as_deref(), expected, "{authorizations:?} {query:?}");
    }
}

#[test]
fn extract_token_refuses_ambiguous_or_malformed_credentials() {
    let refused: [(Authorizations, Params, &str); 11] = [
        (
            &["Bearer a.b.c"],
            &[("access_token", "a.b.c")],
            rule::TOKEN_IN_MANY_PLACES,
        ),
        (
            &["Bearer a.b.c", "Bearer a.b.c"],
            &[],
            rule::TOKEN_IN_MANY_PLACES,
        ),
        (
            &["Bearer a.b.c", "Basic dXNlcjpwYXNz"],
            &[],
            rule::TOKEN_IN_MANY_PLACES,
        ),
        (
            &[],
            &[("access_token", "a"), ("access_token", "b")],
            rule::TOKEN_IN_MANY_PLACES,
        ),
        (&["Basic dXNlcjpwYXNz"], &[], rule::BAD_AUTHORIZATION),
        (&["DPoP a.b.c"], &[], rule::BAD_AUTHORIZATION),
        (&["Bearer"], &[], rule::BAD_AUTHORIZATION),
        (&["Bearer   "], &[], rule::BAD_AUTHORIZATION),
        (&["Bearer a.b c"], &[], rule::BAD_AUTHORIZATION),
        (
            &["eyJhbGciOiJSUzI1NiJ9.e30.c2ln"],
            &[],
            rule::BAD_AUTHORIZATION,
        ),
        (&[], &[("access_token", "")], rule::BAD_AUTHORIZATION),
    ];
    for (authorizations, query, expected) in refused {
        let rejection = extract_token(&headers(authorizations), &params(query)).unwrap_err();
        assert_eq!(
            (rejection.status, rejection.rule_id),
            (401, expected),
            "{authorizations:?} {query:?}"
        );
        assert!(
            !rejection.message.contains("eyJ"),
            "{rejection} echoes the token"
        );
    }
    let mut opaque = HeaderMap::new();
    opaque.insert(
        AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
    );
    assert_eq!(
        extract_token(&opaque, &[]).unwrap_err().rule_id,
        rule::BAD_AUTHORIZATION
    );
}
