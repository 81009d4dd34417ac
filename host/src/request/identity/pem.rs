//! PEM public key files (RFC 7468): SubjectPublicKeyInfo (`PUBLIC KEY`) holding an RSA,
//! EC P-256/P-384 or Ed25519 key, or a PKCS#1 `RSA PUBLIC KEY`.

use jsonwebtoken::DecodingKey;

use super::keys::{KeyKind, check_rsa_bits, check_usable, unsigned_bits};
use crate::request::quote;

/// Reads one PEM public key. Refuses private keys and certificates so that a secret never
/// sits in the gateway's config by mistake and the key is exactly the one meant.
pub(super) fn parse_public_key(pem: &[u8]) -> Result<(KeyKind, DecodingKey), String> {
    let text = std::str::from_utf8(pem).map_err(|_| not_pem())?;
    let mut labels = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("-----BEGIN "))
        .map(|rest| rest.trim_end_matches('-'));
    let label = match (labels.next(), labels.next()) {
        (Some(label), None) => label,
        (None, _) => return Err(not_pem()),
        (Some(_), Some(_)) => {
            return Err("holds more than one PEM block; expected one public key per file".into());
        }
    };
    if label.contains("PRIVATE KEY") {
        return Err(format!(
            "is a private key (`{label}`); give the gateway only the public key \
             (`openssl pkey -in KEY -pubout`)"
        ));
    }
    let candidates: &[KeyKind] = match label {
        "PUBLIC KEY" => &[KeyKind::Rsa, KeyKind::EcP256, KeyKind::Ed25519],
        "RSA PUBLIC KEY" => &[KeyKind::Rsa],
        "CERTIFICATE" => {
            return Err("is a certificate; extract its public key with \
                 `openssl x509 -in CERT -pubkey -noout`"
                .into());
        }
        other => {
            return Err(format!(
                "holds a `{}` PEM block; expected `PUBLIC KEY`",
                quote(other)
            ));
        }
    };
    for candidate in candidates {
        let decoded = match candidate {
            KeyKind::Rsa => DecodingKey::from_rsa_pem(pem),
            KeyKind::Ed25519 => DecodingKey::from_ed_pem(pem),
            _ => DecodingKey::from_ec_pem(pem),
        };
        if let Ok(decoding_key) = decoded {
            let kind = check_public_key(&decoding_key, *candidate)?;
            return Ok((kind, decoding_key));
        }
    }
    Err("is not a supported public key; expected RSA, EC P-256, EC P-384 or Ed25519".into())
}

fn not_pem() -> String {
    "is not a PEM file; expected `-----BEGIN PUBLIC KEY-----`".into()
}

/// Checks the key material jsonwebtoken extracted from a PEM file and tells P-256 from
/// P-384 (both arrive as EC keys).
fn check_public_key(key: &DecodingKey, kind: KeyKind) -> Result<KeyKind, String> {
    let bytes = key
        .try_get_as_bytes()
        .map_err(|_| "is malformed".to_string())?;
    let kind = match kind {
        KeyKind::Rsa => {
            let bits = rsa_modulus_bits(bytes).ok_or("is a malformed RSA key")?;
            check_rsa_bits(bits)?;
            KeyKind::Rsa
        }
        // An EC point is 04||x||y (or 02/03||x when compressed), SEC 1 §2.3.3.
        KeyKind::EcP256 | KeyKind::EcP384 => match bytes.len() {
            65 | 33 => KeyKind::EcP256,
            97 | 49 => KeyKind::EcP384,
            _ => return Err("is an EC key on a curve other than P-256 or P-384".into()),
        },
        // The Ed25519 verifier slices the first 32 bytes, so the length is checked first.
        KeyKind::Ed25519 if bytes.len() != 32 => {
            return Err("is a malformed Ed25519 key".into());
        }
        other => other,
    };
    check_usable(key, kind)?;
    Ok(kind)
}

/// The modulus size of a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER,
/// publicExponent INTEGER }` (RFC 8017 §A.1.1).
fn rsa_modulus_bits(pkcs1_der: &[u8]) -> Option<usize> {
    let (sequence, _) = der_element(pkcs1_der, 0x30)?;
    let (modulus, rest) = der_element(sequence, 0x02)?;
    der_element(rest, 0x02)?;
    Some(unsigned_bits(modulus))
}

/// One DER element with `tag`: its contents and the bytes after it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found_tag, rest) = input.split_first()?;
    if found_tag != tag {
        return None;
    }
    let (&first_length_byte, rest) = rest.split_first()?;
    let (length, rest) = if first_length_byte < 0x80 {
        (usize::from(first_length_byte), rest)
    } else {
        let length_bytes = usize::from(first_length_byte & 0x7f);
        if length_bytes == 0 || length_bytes > 4 {
            return None;
        }
        let (length, rest) = rest.split_at_checked(length_bytes)?;
        let length = length
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    rest.split_at_checked(length)
}
