//! The `[[identity.issuers]]` configuration and its validation into a `TrustedIssuer`: the
//! allowed algorithms, the keys that verify them and the claim names to read. Validation
//! reports every problem at once, each naming the issuer and the file or key, for
//! `ehrgate check`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::keys::{self, KeySet, VerificationKey};
use super::{jwks, pem};

/// The clock skew tolerated on `exp`, `nbf` and `iat` unless an issuer sets its own.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// The largest leeway accepted: more would keep expired tokens alive for minutes.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// The longest a token may live (`exp - iat`, or `exp - now` without `iat`) when its issuer
/// sets no `max_lifetime_secs`. RFC 7519 §4.1.4 bounds nothing; a bearer token cannot be
/// revoked here, so one minted for years is a stolen credential for years. Access tokens
/// live minutes to hours; a day leaves room for long shifts.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// The serde default of [`IssuerConfig::leeway_secs`].
pub fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}

/// One trusted token issuer, from the gateway's TOML config (`[[identity.issuers]]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` of this issuer's tokens.
    pub issuer: String,
    /// `aud` must contain one of these (RFC 7519 §4.1.3).
    pub audience: Vec<String>,
    /// The algorithms this issuer signs with, for example `["RS256", "ES256", "EdDSA"]`.
    /// `none` is refused; HS256/384/512 need `hmac_secret_file` and cannot be mixed with
    /// public-key algorithms (RFC 8725 §3.1).
    pub algorithms: Vec<String>,
    /// PEM public keys (`-----BEGIN PUBLIC KEY-----`).
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// A JWKS file (RFC 7517 §5) with the issuer's public keys, selected by `kid`.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// A file whose bytes, without one trailing line break, are the shared HMAC secret (not
    /// decoded from hex or base64), for HS algorithms only. At least 32 bytes for HS256, 48
    /// for HS384, 64 for HS512 (RFC 7518 §3.2).
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`; at most 300.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Where this issuer puts the claims the principal is built from.
    #[serde(default)]
    pub claims: ClaimNames,
    /// `exp - iat` (or `exp - now` without `iat`) must not exceed it; without it, 86,400
    /// (24 hours, [`DEFAULT_MAX_LIFETIME_SECS`]). More is allowed but warned about. SMART
    /// backend services recommend at most 300.
    #[serde(default)]
    pub max_lifetime_secs: Option<u64>,
    /// Accept tokens without a `kid` header, checked with the issuer's one key for their
    /// algorithm (refused when it has several). Off by default: RFC 7515 §4.1.4 makes `kid`
    /// optional, but a token that names its key cannot be checked with a key its issuer
    /// meant for something else, and keeps working unambiguously when a second key is added
    /// for rotation.
    #[serde(default)]
    pub allow_missing_kid: bool,
}

/// A PEM public key file, optionally with the `kid` tokens name it by.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub kid: Option<String>,
    pub path: PathBuf,
}

/// The names of the claims the principal is built from. The client id falls back to `azp`
/// (OpenID Connect) and then `cid` (Okta) when the configured claim is absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimNames {
    pub scope: String,
    pub roles: String,
    pub patient: String,
    pub encounter: String,
    pub fhir_user: String,
    pub purpose_of_use: String,
    pub break_glass_reason: String,
    pub client_id: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            scope: "scope".into(),
            roles: "roles".into(),
            patient: "patient".into(),
            encounter: "encounter".into(),
            fhir_user: "fhirUser".into(),
            purpose_of_use: "purpose_of_use".into(),
            break_glass_reason: "break_glass_reason".into(),
            client_id: "client_id".into(),
        }
    }
}

/// An issuer ready to verify tokens.
#[derive(Debug)]
pub(super) struct TrustedIssuer {
    pub issuer: String,
    pub audience: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySet,
    pub leeway_secs: u64,
    pub claims: ClaimNames,
    pub max_lifetime_secs: Option<u64>,
    pub allow_missing_kid: bool,
}

const KNOWN_ALGORITHMS: &str =
    "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512";

impl IssuerConfig {
    /// Checks this issuer and loads its keys, with paths relative to `base_dir`. Problems
    /// are not prefixed with the issuer; the caller does that.
    pub(super) fn load(&self, base_dir: &Path) -> Result<TrustedIssuer, Vec<String>> {
        let mut problems = Vec::new();
        if self.audience.is_empty() {
            problems.push(
                "`audience` is empty; list the `aud` values this gateway answers to".to_string(),
            );
        }
        if self.audience.iter().any(|audience| audience.is_empty()) {
            problems.push("`audience` has an empty entry".to_string());
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            problems.push(format!(
                "`leeway_secs` is {}; at most {MAX_LEEWAY_SECS} is allowed",
                self.leeway_secs
            ));
        }
        if self.max_lifetime_secs == Some(0) {
            problems.push("`max_lifetime_secs` is 0; leave it out or set a positive limit".into());
        }
        problems.extend(self.claims.problems());

        let problems_before_keys = problems.len();
        let algorithms = self.algorithms(&mut problems);
        let keys = self.keys(&algorithms, base_dir, &mut problems);
        // Only worth saying when the algorithms and keys are otherwise in order; after a
        // key failed to load it would repeat that problem.
        if problems.len() == problems_before_keys {
            for alg in &algorithms {
                if !keys.iter().any(|key| key.fits(*alg)) {
                    problems.push(format!(
                        "algorithm `{alg:?}` is allowed but no configured key can verify it"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(TrustedIssuer {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            algorithms,
            keys: KeySet::new(keys),
            leeway_secs: self.leeway_secs,
            claims: self.claims.clone(),
            max_lifetime_secs: self.max_lifetime_secs,
            allow_missing_kid: self.allow_missing_kid,
        })
    }

    /// What is allowed but probably unintended, for `ehrgate check` and the startup log;
    /// each warning names the issuer.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(max_lifetime) = self
            .max_lifetime_secs
            .filter(|max_lifetime| *max_lifetime > DEFAULT_MAX_LIFETIME_SECS)
        {
            warnings.push(format!(
                "issuer `{}`: `max_lifetime_secs` is {max_lifetime} ({} h): its tokens stay \
                 usable for more than a day after they leak, and the gateway cannot revoke \
                 them\nhelp: leave it out for the {DEFAULT_MAX_LIFETIME_SECS} s (24 h) default, \
                 or set what the issuer actually mints",
                crate::request::quote(&self.issuer),
                max_lifetime / 3600
            ));
        }
        warnings
    }

    /// The allow-list, parsed. RFC 8725 §3.1: each issuer names its algorithms, and `none`
    /// is never among them (§3.2). HMAC and public-key algorithms never share an issuer, so
    /// a public key can never be taken for an HMAC secret (§2.1).
    fn algorithms(&self, problems: &mut Vec<String>) -> Vec<Algorithm> {
        let mut algorithms = Vec::new();
        for name in &self.algorithms {
            if name.eq_ignore_ascii_case("none") {
                problems.push(
                    "algorithms: `none` is never allowed: an unsigned token proves nothing \
                     (RFC 8725 §3.2)"
                        .into(),
                );
            } else {
                match Algorithm::from_str(name) {
                    Ok(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
                    Ok(_) => {}
                    Err(_) => problems.push(format!(
                        "algorithms: unknown algorithm `{}`; expected one of {KNOWN_ALGORITHMS}",
                        crate::request::quote(name)
                    )),
                }
            }
        }
        if self.algorithms.is_empty() {
            problems.push(
                "algorithms: the list is empty; name the algorithms this issuer signs with, \
                 for example [\"RS256\"]"
                    .into(),
            );
        }
        let (hmac, public_key): (Vec<Algorithm>, Vec<Algorithm>) = algorithms
            .iter()
            .partition(|alg| alg.family() == AlgorithmFamily::Hmac);
        if !hmac.is_empty() && !public_key.is_empty() {
            problems.push(format!(
                "algorithms: HMAC ({}) and public-key ({}) algorithms are mixed; an issuer uses \
                 either a shared secret or public keys, never both (RFC 8725 §2.1, §3.1)",
                list(&hmac),
                list(&public_key)
            ));
        }
        if !hmac.is_empty() && self.hmac_secret_file.is_none() {
            problems.push(format!(
                "algorithms: {} needs `hmac_secret_file`",
                list(&hmac)
            ));
        }
        if self.hmac_secret_file.is_some() && hmac.is_empty() {
            problems.push(
                "`hmac_secret_file` is set but no HMAC algorithm (HS256, HS384, HS512) is listed"
                    .into(),
            );
        }
        algorithms
    }

    /// Loads the secret or the public keys, whichever this issuer uses.
    fn keys(
        &self,
        algorithms: &[Algorithm],
        base_dir: &Path,
        problems: &mut Vec<String>,
    ) -> Vec<VerificationKey> {
        if let Some(secret_file) = &self.hmac_secret_file {
            if !self.keys.is_empty() || self.jwks.is_some() {
                problems.push(
                    "`hmac_secret_file` cannot be combined with `keys` or `jwks`: an issuer uses \
                     either a shared secret or public keys (RFC 8725 §2.1)"
                        .into(),
                );
            }
            let described = format!("hmac secret file `{}`", secret_file.display());
            return match read(base_dir, secret_file) {
                Ok(contents) => match keys::parse_hmac_secret(&contents, algorithms) {
                    Ok(secret) => vec![secret],
                    Err(problem) => {
                        problems.push(format!("{described}: {problem}"));
                        Vec::new()
                    }
                },
                Err(problem) => {
                    problems.push(format!("{described}: {problem}"));
                    Vec::new()
                }
            };
        }
        if self.keys.is_empty() && self.jwks.is_none() {
            problems.push("no keys: set `keys` (PEM public keys) or `jwks` (a JWKS file)".into());
        }

        let mut loaded = Vec::new();
        for key in &self.keys {
            let described = format!("key file `{}`", key.path.display());
            let parsed =
                read(base_dir, &key.path).and_then(|contents| pem::parse_public_key(&contents));
            match parsed {
                Ok((kind, decoding_key)) => {
                    let key = VerificationKey {
                        kid: key.kid.clone(),
                        kind,
                        only_algorithm: None,
                        decoding_key,
                    };
                    if !algorithms.iter().any(|alg| key.fits(*alg)) && !algorithms.is_empty() {
                        problems.push(format!(
                            "{described}: is {} and cannot verify any allowed algorithm ({})",
                            kind.describe(),
                            list(algorithms)
                        ));
                    }
                    loaded.push(key);
                }
                Err(problem) => problems.push(format!("{described}: {problem}")),
            }
        }
        if let Some(jwks_file) = &self.jwks {
            let described = format!("jwks file `{}`", jwks_file.display());
            match read(base_dir, jwks_file) {
                Ok(text) => match jwks::parse(&text) {
                    Ok(keys) => {
                        if keys.is_empty() {
                            problems.push(format!("{described}: has no signature keys"));
                        }
                        loaded.extend(keys);
                    }
                    Err(jwks_problems) => problems.extend(
                        jwks_problems
                            .into_iter()
                            .map(|problem| format!("{described}: {problem}")),
                    ),
                },
                Err(problem) => problems.push(format!("{described}: {problem}")),
            }
        }

        let mut seen = HashSet::new();
        for kid in loaded.iter().filter_map(|key| key.kid.as_deref()) {
            if !seen.insert(kid) {
                problems.push(format!(
                    "key id `{}` is used by more than one key; a `kid` must name one key",
                    crate::request::quote(kid)
                ));
            }
        }
        loaded
    }
}

impl ClaimNames {
    fn problems(&self) -> Vec<String> {
        [
            ("scope", &self.scope),
            ("roles", &self.roles),
            ("patient", &self.patient),
            ("encounter", &self.encounter),
            ("fhir_user", &self.fhir_user),
            ("purpose_of_use", &self.purpose_of_use),
            ("break_glass_reason", &self.break_glass_reason),
            ("client_id", &self.client_id),
        ]
        .into_iter()
        .filter(|(_, claim)| claim.is_empty())
        .map(|(field, _)| {
            format!("claims: `{field}` is empty; name the claim or leave it out for the default")
        })
        .collect()
    }
}

fn read(base_dir: &Path, path: &Path) -> Result<Vec<u8>, String> {
    let full_path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    };
    std::fs::read(&full_path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    })
}

fn list(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|alg| format!("`{alg:?}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
