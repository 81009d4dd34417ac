//! The token verifier: built once from the configured issuers, then asked for every
//! request. Its order follows RFC 8725 §3.1 and RFC 7519 §7.2: the header's algorithm is
//! checked against the issuer's allow-list and the key's type before the signature, and no
//! claim but `iss` (to find the issuer) is read before the signature verifies.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use jsonwebtoken::Algorithm;
use lru::LruCache;
use sha2::{Digest, Sha256};

use super::config::{IssuerConfig, TrustedIssuer};
use super::{Rejection, claims, compact, keys, rule, unauthorized};
use crate::engine::Principal;

/// Signatures remembered as good. A clinician's app sends the same token for minutes, and
/// an RSA-2048 verification costs far more than the rest of a request; the claims (time
/// windows included) are still checked on every request.
const VERIFIED_SIGNATURES: usize = 16_384;

/// Verifies bearer tokens against the configured issuers.
pub struct Verifier {
    issuers: HashMap<String, TrustedIssuer>,
    /// SHA-256 of whole tokens whose header, issuer, key and signature checks passed. The
    /// verifier is rebuilt on every config reload, so a remembered token never outlives the
    /// keys and algorithms it was checked against.
    verified_signatures: Mutex<LruCache<[u8; 32], ()>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
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
            let capacity = NonZeroUsize::new(VERIFIED_SIGNATURES).unwrap_or(NonZeroUsize::MIN);
            Ok(Verifier {
                issuers: trusted,
                verified_signatures: Mutex::new(LruCache::new(capacity)),
            })
        } else {
            Err(problems)
        }
    }

    /// Verifies `token` at time `now_secs` (Unix seconds).
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Verified, Rejection> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let token = compact::parse(token)?;
        if self.signature_known_good(&digest) {
            let iss = claims::issuer(&token.claims)?;
            if let Some(issuer) = self.issuers.get(iss) {
                return claims::verified(&token.claims, issuer, now_secs);
            }
        }

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
        // RFC 7515 §4.1.4 makes `kid` optional, but a token that names no key is checked
        // with whichever key fits its algorithm, and a token meant for one key (or minted
        // before a rotation) can then pass with another. Only issuers configured for it get
        // that fallback.
        if token.kid.is_none() && !issuer.allow_missing_kid {
            return Err(unauthorized(
                rule::MISSING_KID,
                "the token has no `kid` header; expected the id of one of its issuer's keys \
                 (RFC 7515 §4.1.4)",
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
        self.remember_signature(digest);

        claims::verified(&token.claims, issuer, now_secs)
    }

    fn signature_known_good(&self, digest: &[u8; 32]) -> bool {
        match self.verified_signatures.lock() {
            Ok(mut known) => known.get(digest).is_some(),
            Err(_) => false,
        }
    }

    fn remember_signature(&self, digest: [u8; 32]) {
        if let Ok(mut known) = self.verified_signatures.lock() {
            known.put(digest, ());
        }
    }

    /// The configured issuers' `iss` values, for `ehrgate check` and the startup log.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }
}
