//! Verification keys: what a key is, the checks every key passes at startup, HMAC
//! secrets, and choosing the one key a token may be checked with. PEM files are read in
//! `pem`, JWKS files in `jwks`.
//!
//! Every key records its type, and a key only ever verifies algorithms of that type
//! (RFC 8725 §3.1). That, and keeping HMAC secrets and public keys in separate issuers, is
//! what stops an RSA public key from being used as an HMAC secret (RFC 8725 §2.1).

use std::sync::Once;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::{Rejection, rule, unauthorized};
use crate::request::quote;

/// RFC 7518 §3.3: RSA keys of 2048 bits or more MUST be used.
const MIN_RSA_BITS: usize = 2048;

/// What a key is, which decides the only algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    HmacSecret,
}

impl KeyKind {
    pub(super) fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::EcP256, ES256)
                | (KeyKind::EcP384, ES384)
                | (KeyKind::Ed25519, EdDSA)
                | (KeyKind::HmacSecret, HS256 | HS384 | HS512)
        )
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
            KeyKind::HmacSecret => "an HMAC secret",
        }
    }
}

/// One key an issuer's tokens may be verified with.
#[derive(Debug)]
pub(super) struct VerificationKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's `alg`, when it names one: the key then verifies only that (RFC 7517 §4.4).
    pub only_algorithm: Option<Algorithm>,
    pub decoding_key: DecodingKey,
}

impl VerificationKey {
    pub(super) fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.only_algorithm.is_none_or(|only| only == alg)
    }
}

/// An issuer's keys.
#[derive(Debug)]
pub(super) struct KeySet {
    keys: Vec<VerificationKey>,
}

impl KeySet {
    pub(super) fn new(keys: Vec<VerificationKey>) -> KeySet {
        KeySet { keys }
    }

    /// The one key `kid` and `alg` allow. A `kid` is looked up and nothing else is tried,
    /// so a token cannot make the gateway search for a key that happens to verify it. An
    /// issuer whose only key is an HMAC secret (which carries no kid) uses it whatever the
    /// token's `kid`.
    pub(super) fn select(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<&VerificationKey, Rejection> {
        let only_secret = match self.keys.as_slice() {
            [key] if key.kind == KeyKind::HmacSecret => Some(key),
            _ => None,
        };
        let key = match (kid, only_secret) {
            (_, Some(secret)) => secret,
            (Some(kid), None) => self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .ok_or_else(|| {
                    tracing::debug!(kid = %quote(kid), "token names an unknown key id");
                    unauthorized(
                        rule::UNKNOWN_KID,
                        "the token's `kid` names no key of its issuer",
                    )
                })?,
            (None, None) => {
                let mut usable = self.keys.iter().filter(|key| key.fits(alg));
                match (usable.next(), usable.next()) {
                    (Some(key), None) => key,
                    (None, _) => return Err(no_key_for(alg)),
                    (Some(_), Some(_)) => {
                        return Err(unauthorized(
                            rule::UNKNOWN_KID,
                            format!(
                                "the token has no `kid` and its issuer has several keys for `{alg:?}`"
                            ),
                        ));
                    }
                }
            }
        };
        if !key.fits(alg) {
            return Err(no_key_for(alg));
        }
        Ok(key)
    }
}

fn no_key_for(alg: Algorithm) -> Rejection {
    unauthorized(
        rule::ALGORITHM_NOT_ALLOWED,
        format!("the token's key cannot verify `{alg:?}` (RFC 8725 §3.1)"),
    )
}

/// jsonwebtoken picks its crypto backend at run time. Installing the RustCrypto one
/// explicitly keeps verification working even if feature unification ever enables a
/// second backend, which would leave the crate without a default.
pub(super) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
        if jsonwebtoken::crypto::CryptoProvider::install_default(provider).is_err() {
            tracing::debug!("a jsonwebtoken crypto provider was already installed");
        }
    });
}

/// Lets the crypto backend parse the key once at startup: verifying an empty signature
/// fails (`Ok(false)`) for a good key and errors for a key it cannot use, such as a point
/// that is not on the curve.
pub(super) fn check_usable(key: &DecodingKey, kind: KeyKind) -> Result<(), String> {
    let probe = match kind {
        KeyKind::EcP256 => Algorithm::ES256,
        KeyKind::EcP384 => Algorithm::ES384,
        KeyKind::Ed25519 => Algorithm::EdDSA,
        // RSA keys are parsed on every verification; `pem` and `jwks` read their modulus
        // size when loading them.
        KeyKind::Rsa | KeyKind::HmacSecret => return Ok(()),
    };
    match jsonwebtoken::crypto::verify("", b"", key, probe) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("is not usable as {}", kind.describe())),
    }
}

pub(super) fn check_rsa_bits(bits: usize) -> Result<(), String> {
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required (RFC 7518 §3.3)"
        ));
    }
    Ok(())
}

/// The bit length of a big-endian unsigned integer.
pub(super) fn unsigned_bits(big_endian: &[u8]) -> usize {
    let significant = match big_endian.iter().position(|&byte| byte != 0) {
        Some(start) => &big_endian[start..],
        None => return 0,
    };
    let leading_zeros = significant
        .first()
        .map_or(0, |byte| byte.leading_zeros() as usize);
    significant.len() * 8 - leading_zeros
}

/// Reads an HMAC secret file. One trailing line break is dropped, since editors add it.
/// The secret must be at least as long as the longest listed hash output (RFC 7518 §3.2,
/// RFC 8725 §3.5).
pub(super) fn parse_hmac_secret(
    contents: &[u8],
    algorithms: &[Algorithm],
) -> Result<VerificationKey, String> {
    let secret = contents
        .strip_suffix(b"\r\n")
        .or_else(|| contents.strip_suffix(b"\n"))
        .unwrap_or(contents);
    for alg in algorithms {
        let needed = match alg {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => continue,
        };
        if secret.len() < needed {
            return Err(format!(
                "the secret has {} bytes; `{alg:?}` needs at least {needed} (RFC 7518 §3.2)",
                secret.len()
            ));
        }
    }
    Ok(VerificationKey {
        kid: None,
        kind: KeyKind::HmacSecret,
        only_algorithm: None,
        decoding_key: DecodingKey::from_secret(secret),
    })
}
