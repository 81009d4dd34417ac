//! Bearer tokens for gateway tests, signed with the test-only keys in
//! `host/tests/fixtures/identity/` (never trusted anywhere else).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.hospital.test";
pub const AUDIENCE: &str = "https://gateway.hospital.test/fhir";

/// The directory of the test keys.
pub fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/identity")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `[identity]` section trusting the test issuer's RSA key `rsa-a`.
pub fn identity_toml() -> String {
    format!(
        r#"
[[identity.issuers]]
issuer = "{ISSUER}"
audience = ["{AUDIENCE}"]
algorithms = ["RS256"]
keys = [{{ kid = "rsa-a", path = "{}" }}]
"#,
        keys_dir().join("rsa-a.pub.pem").display()
    )
}

/// A clinician's claims: launched for patient `pat-123`.
pub fn clinician_claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "dr-adams",
        "client_id": "ward-app",
        "scope": "launch/patient patient/Observation.rs patient/Patient.r",
        "roles": ["clinician"],
        "patient": "pat-123",
        "fhirUser": "Practitioner/dr-adams",
        "iat": now,
        "exp": now + 300,
    })
}

/// Signs `claims` with `rsa-a` (RS256, kid `rsa-a`).
pub fn sign(claims: &Value) -> String {
    sign_with(claims, Algorithm::RS256, Some("rsa-a"), "rsa-a.key.pem")
}

pub fn sign_with(
    claims: &Value,
    algorithm: Algorithm,
    kid: Option<&str>,
    key_file: &str,
) -> String {
    let pem = std::fs::read(keys_dir().join(key_file)).expect("key file");
    let key = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => EncodingKey::from_secret(&pem),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem).expect("ec key"),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).expect("ed key"),
        _ => EncodingKey::from_rsa_pem(&pem).expect("rsa key"),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key).expect("sign")
}

/// A token with `alg: none` and no signature.
pub fn unsigned(claims: &Value) -> String {
    use base64_like::encode_url;
    let header = encode_url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = encode_url(claims.to_string().as_bytes());
    format!("{header}.{payload}.")
}

/// Unpadded base64url, enough to hand-build a token.
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode_url(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
