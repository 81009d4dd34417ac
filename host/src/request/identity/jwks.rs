//! JWKS files (RFC 7517 §5): an issuer's published public keys, each named by its `kid`.

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::base64url;
use super::keys::{KeyKind, VerificationKey, check_rsa_bits, check_usable, unsigned_bits};
use crate::request::quote;

/// Reads a JWKS file (RFC 7517 §5). Keys meant for encryption, or of a type or curve the
/// gateway does not verify with, are left out; a key that is meant for signatures but is
/// malformed, a symmetric key, or private key material is a problem to fix.
pub(super) fn parse(text: &[u8]) -> Result<Vec<VerificationKey>, Vec<String>> {
    #[derive(serde::Deserialize)]
    struct RawJwks {
        keys: Vec<Value>,
    }
    let raw: RawJwks = serde_json::from_slice(text).map_err(|error| {
        vec![format!(
            "is not a JWKS document (`{{\"keys\": [...]}}`): {error}"
        )]
    })?;
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for (index, value) in raw.keys.iter().enumerate() {
        let name = match value.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("key `{}`", quote(kid)),
            None => format!("key #{}", index + 1),
        };
        match jwk_to_key(value) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {
                tracing::debug!(key = %name, "JWKS key left out: not a signature key we use")
            }
            Err(problem) => problems.push(format!("{name}: {problem}")),
        }
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(problems)
    }
}

fn jwk_to_key(value: &Value) -> Result<Option<VerificationKey>, String> {
    // RFC 7518 §6.2.2, §6.3.2 and RFC 8037 §2: `d` (and the RSA CRT members) are private.
    if value.get("d").is_some() {
        return Err("holds private key material (`d`); publish only public keys".into());
    }
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|error| error.to_string())?;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Ok(None);
    }
    let only_algorithm = match &jwk.common.key_algorithm {
        None => None,
        // Encryption algorithms (`RSA-OAEP`...) and unknown ones mark keys not for us.
        Some(named) => match Algorithm::from_str(&named.to_string()) {
            Ok(alg) => Some(alg),
            Err(_) => return Ok(None),
        },
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = base64url::decode(&rsa.n).ok_or("`n` is not base64url")?;
            base64url::decode(&rsa.e).ok_or("`e` is not base64url")?;
            check_rsa_bits(unsigned_bits(&modulus))?;
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (kind, coordinate_len) = match ec.curve {
                EllipticCurve::P256 => (KeyKind::EcP256, 32),
                EllipticCurve::P384 => (KeyKind::EcP384, 48),
                _ => return Ok(None),
            };
            for (member, coordinate) in [("x", &ec.x), ("y", &ec.y)] {
                let decoded = base64url::decode(coordinate)
                    .ok_or_else(|| format!("`{member}` is not base64url"))?;
                if decoded.len() != coordinate_len {
                    return Err(format!(
                        "`{member}` has {} bytes; the curve needs {coordinate_len}",
                        decoded.len()
                    ));
                }
            }
            kind
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Ok(None);
            }
            let public = base64url::decode(&okp.x).ok_or("`x` is not base64url")?;
            if public.len() != 32 {
                return Err(format!("`x` has {} bytes; Ed25519 needs 32", public.len()));
            }
            KeyKind::Ed25519
        }
        // RFC 8725 §2.1: a shared secret among public keys invites algorithm confusion.
        AlgorithmParameters::OctetKey(_) => {
            return Err(
                "is a symmetric (`oct`) key; HMAC secrets belong in `hmac_secret_file`".into(),
            );
        }
        _ => return Ok(None),
    };
    if let Some(alg) = only_algorithm
        && !kind.fits(alg)
    {
        return Err(format!("is {} but names `alg` `{alg:?}`", kind.describe()));
    }
    let decoding_key = DecodingKey::from_jwk(&jwk).map_err(|error| error.to_string())?;
    check_usable(&decoding_key, kind)?;
    Ok(Some(VerificationKey {
        kid: jwk.common.key_id.clone(),
        kind,
        only_algorithm,
        decoding_key,
    }))
}
