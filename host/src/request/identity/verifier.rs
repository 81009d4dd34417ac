//! The token verifier: built once from the configured issuers, then asked for every
//! request. Its order follows RFC 8725 §3.1 and RFC 7519 §7.2: the header's algorithm is
//! checked against the issuer's allow-list and the key's type before the signature, and no
//! claim but `iss` (to find the issuer) is read before the signature verifies.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::Algorithm;

use super::config::{IssuerConfig, TrustedIssuer};
use super::{Rejection, claims, compact, keys, rule, unauthorized};
use crate::engine::Principal;

/// Verifies bearer tokens against the configured issuers.
#[derive(Debug)]
pub struct Verifier {
    issuers: HashMap<String, TrustedIssuer>,
}

/// What a verified token says about the caller.
#[derive(Debug, Clone)]
pub struct Verified {
    pub principal: Principal,
    /// The break-the-glass reason, when the token carries a non-blank one.
    pub break_glass_reason: Option<String>,
    /// `exp`, in Unix seconds.
    pub expires_at: u64,
    /// `jti`, for replay detection (SMART backend services refuse a reused `jti`).
    pub token_id: Option<String>,
}

impl Verifier {
    /// Loads every issuer's keys (paths relative to `base_dir` unless absolute). Returns
    /// every problem found, each naming the issuer and the file or key, for `ehrgate check`.
    pub fn from_config(issuers: &[IssuerConfig], base_dir: &Path) -> Result<Verifier, Vec<String>> {
        keys::install_crypto_provider();
        let mut trusted = HashMap::new();
        let mut problems = Vec::new();
        for (index, config) in issuers.iter().enumerate() {
            let name = if config.issuer.is_empty() {
                problems.push(format!(
                    "issuer #{}: `issuer` is empty; set the exact `iss` of its tokens",
                    index + 1
                ));
                format!("issuer #{}", index + 1)
            } else {
                format!("issuer `{}`", config.issuer)
            };
            if issuers[..index]
                .iter()
                .any(|earlier| earlier.issuer == config.issuer)
            {
                problems.push(format!("{name}: is configured more than once"));
                continue;
            }
            match config.load(base_dir) {
                Ok(issuer) => {
                    trusted.insert(config.issuer.clone(), issuer);
                }
                Err(issuer_problems) => problems.extend(
                    issuer_problems
                        .into_iter()
                        .map(|problem| format!("{name}: {problem}")),
                ),
            }
        }
        if problems.is_empty() {
            Ok(Verifier { issuers: trusted })
        } else {
            Err(problems)
        }
    }

    /// Verifies `token` at time `now_secs` (Unix seconds).
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Verified, Rejection> {
        let token = compact::parse(token)?;

        // RFC 8725 §3.2: an unsigned token is never accepted, whatever the configuration.
        if token.alg.eq_ignore_ascii_case("none") {
            return Err(unauthorized(
                rule::ALGORITHM_NOT_ALLOWED,
                "unsigned tokens (`alg: none`) are never accepted (RFC 8725 §3.2)",
            ));
        }
        let Ok(alg) = Algorithm::from_str(&token.alg) else {
            return Err(unauthorized(
                rule::ALGORITHM_NOT_ALLOWED,
                "the token's `alg` is not a signature algorithm the gateway supports",
            ));
        };

        // The unverified `iss` only chooses whose keys to try; a token claiming another
        // issuer than the one that signed it fails the signature check below.
        let iss = claims::issuer(&token.claims)?;
        let Some(issuer) = self.issuers.get(iss) else {
            tracing::debug!(iss = %crate::request::quote(iss), "token from an unknown issuer");
            return Err(unauthorized(
                rule::UNKNOWN_ISSUER,
                "the token's issuer (`iss`) is not trusted",
            ));
        };

        // RFC 8725 §3.1: the algorithm must be one this issuer uses, and the key one of the
        // matching type (checked by `select`).
        if !issuer.algorithms.contains(&alg) {
            return Err(unauthorized(
                rule::ALGORITHM_NOT_ALLOWED,
                format!(
                    "algorithm `{alg:?}` is not allowed for the token's issuer (RFC 8725 §3.1)"
                ),
            ));
        }
        let key = issuer.keys.select(token.kid.as_deref(), alg)?;
        let signature_verifies = jsonwebtoken::crypto::verify(
            token.signature,
            token.signing_input.as_bytes(),
            &key.decoding_key,
            alg,
        );
        if !matches!(signature_verifies, Ok(true)) {
            return Err(unauthorized(
                rule::BAD_SIGNATURE,
                "the token's signature does not verify",
            ));
        }

        claims::verified(&token.claims, issuer, now_secs)
    }

    /// The configured issuers' `iss` values, for `ehrgate check` and the startup log.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }
}
