//! The claims of a token whose signature has verified: the registered claims of RFC 7519
//! §4.1 checked against the issuer's settings and the clock, then the SMART and
//! RFC 9068 claims mapped into the principal policies see.

use serde_json::{Map, Value};

use super::config::{DEFAULT_MAX_LIFETIME_SECS, TrustedIssuer};
use super::verifier::Verified;
use super::{Rejection, rule, unauthorized};
use crate::engine::Principal;

/// At most this many scopes, roles or purpose-of-use codes.
pub(super) const MAX_LIST_ENTRIES: usize = 100;
/// At most this many bytes per scope, role or purpose-of-use code.
pub(super) const MAX_ENTRY_BYTES: usize = 256;
/// At most this many bytes of break-the-glass reason, which every audit record repeats.
pub(super) const MAX_REASON_BYTES: usize = 1024;

/// The v3-ActReason code system under its URL, its OID and its FHIR R3 URL: a code from it
/// is kept bare (`BTG`); codes of other systems keep their system, so they never pass for
/// a v3 code.
const ACT_REASON_SYSTEMS: [&str; 3] = [
    "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "urn:oid:2.16.840.1.113883.5.8",
    "http://hl7.org/fhir/v3/ActReason",
];

type Claims = Map<String, Value>;

/// A claim, with JSON `null` read as absent.
fn get<'a>(claims: &'a Claims, name: &str) -> Option<&'a Value> {
    claims.get(name).filter(|value| !value.is_null())
}

/// The unverified `iss`, used only to choose the issuer whose keys check the signature.
pub(super) fn issuer(claims: &Claims) -> Result<&str, Rejection> {
    match get(claims, "iss") {
        None => Err(missing("iss")),
        Some(Value::String(iss)) if !iss.is_empty() => Ok(iss),
        Some(_) => Err(bad("iss", "must be a non-empty string (RFC 7519 §4.1.1)")),
    }
}

/// Checks the verified claims of `issuer`'s token at `now` and builds the principal.
pub(super) fn verified(
    claims: &Claims,
    issuer: &TrustedIssuer,
    now: u64,
) -> Result<Verified, Rejection> {
    let expires_at = numeric_date(claims, "exp")?.ok_or_else(|| missing("exp"))?;
    let audience = audience(claims)?;
    let subject = match get(claims, "sub") {
        None => return Err(missing("sub")),
        Some(Value::String(sub)) if is_identifier(sub) => sub.clone(),
        Some(_) => {
            return Err(bad(
                "sub",
                "must be 1 to 255 printable ASCII characters without leading or trailing \
                 spaces (OpenID Connect Core §2)",
            ));
        }
    };
    let not_before = numeric_date(claims, "nbf")?;
    let issued_at = numeric_date(claims, "iat")?;

    check_times(issuer, now, expires_at, not_before, issued_at)?;

    // RFC 7519 §4.1.3, RFC 8725 §3.9: a token for another service must not open this one.
    if !audience
        .iter()
        .any(|audience| issuer.audience.iter().any(|ours| ours == audience))
    {
        return Err(unauthorized(
            rule::WRONG_AUDIENCE,
            "the token is not meant for this gateway (`aud`)",
        ));
    }

    let names = &issuer.claims;
    let principal = Principal {
        subject,
        client_id: client_id(claims, &names.client_id)?,
        // The key that verified the signature belongs to this issuer, whose `iss` the
        // token's equals exactly (it was found by it).
        issuer: issuer.issuer.clone(),
        roles: word_list(claims, &names.roles, WordSyntax::Role)?,
        scopes: word_list(claims, &names.scope, WordSyntax::Scope)?,
        launch_patient: fhir_id(claims, &names.patient)?,
        launch_encounter: fhir_id(claims, &names.encounter)?,
        fhir_user: non_empty_string(claims, &names.fhir_user)?,
        purpose_of_use: word_list(claims, &names.purpose_of_use, WordSyntax::Role)?
            .into_iter()
            .map(bare_act_reason)
            .collect(),
    };
    let break_glass_reason = non_empty_string(claims, &names.break_glass_reason)?
        .filter(|reason| !reason.trim().is_empty());
    if break_glass_reason
        .as_ref()
        .is_some_and(|reason| reason.len() > MAX_REASON_BYTES)
    {
        return Err(bad(
            &names.break_glass_reason,
            &format!("is longer than {MAX_REASON_BYTES} bytes"),
        ));
    }
    let token_id = match get(claims, "jti") {
        None => None,
        Some(Value::String(jti)) => Some(jti.clone()),
        Some(_) => return Err(bad("jti", "must be a string (RFC 7519 §4.1.7)")),
    };
    Ok(Verified {
        principal,
        break_glass_reason,
        expires_at,
        token_id,
    })
}

fn check_times(
    issuer: &TrustedIssuer,
    now: u64,
    expires_at: u64,
    not_before: Option<u64>,
    issued_at: Option<u64>,
) -> Result<(), Rejection> {
    let leeway = issuer.leeway_secs;
    // RFC 7519 §4.1.4: the current time MUST be before `exp`; the leeway absorbs clock skew.
    if now >= expires_at.saturating_add(leeway) {
        return Err(unauthorized(rule::EXPIRED, "the token has expired (`exp`)"));
    }
    // RFC 7519 §4.1.5: the current time MUST be at or after `nbf`.
    if not_before.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(unauthorized(
            rule::NOT_YET_VALID,
            "the token is not valid yet (`nbf`)",
        ));
    }
    // A token issued in the future (`iat`, RFC 7519 §4.1.6) comes from a wrong clock or was
    // minted ahead of time; either way it is not accepted yet.
    if issued_at.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(unauthorized(
            rule::NOT_YET_VALID,
            "the token was issued in the future (`iat`)",
        ));
    }
    // RFC 7519 §4.1.4 sets no upper bound on `exp`; without one, a token minted to expire
    // in 2100 would be a credential nobody can revoke. Without `iat` the remaining lifetime
    // is what can be checked; the leeway covers the skew between the issuer's clock and ours.
    let lifetime = match issued_at {
        Some(iat) => expires_at.saturating_sub(iat),
        None => expires_at.saturating_sub(now).saturating_sub(leeway),
    };
    match issuer.max_lifetime_secs {
        Some(max_lifetime) if lifetime > max_lifetime => Err(unauthorized(
            rule::LIFETIME_TOO_LONG,
            format!("the token lives {lifetime} s; its issuer allows at most {max_lifetime} s"),
        )),
        None if lifetime > DEFAULT_MAX_LIFETIME_SECS => Err(unauthorized(
            rule::LIFETIME_TOO_LONG,
            format!(
                "the token lives {lifetime} s; expected at most {DEFAULT_MAX_LIFETIME_SECS} s \
                 (24 h)\nhelp: an issuer that mints longer tokens needs `max_lifetime_secs` \
                 in its `[[identity.issuers]]` entry"
            ),
        )),
        _ => Ok(()),
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<u64>, Rejection> {
    let Some(value) = get(claims, name) else {
        return Ok(None);
    };
    let seconds = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(|seconds| seconds.floor() as u64)
    });
    match seconds {
        Some(seconds) => Ok(Some(seconds)),
        None => Err(bad(
            name,
            "must be a NumericDate: non-negative seconds since the epoch (RFC 7519 §2)",
        )),
    }
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
fn audience(claims: &Claims) -> Result<Vec<&str>, Rejection> {
    let wrong_type = || {
        bad(
            "aud",
            "must be a string or an array of strings (RFC 7519 §4.1.3)",
        )
    };
    match get(claims, "aud") {
        None => Err(missing("aud")),
        Some(Value::String(audience)) => Ok(vec![audience.as_str()]),
        Some(Value::Array(audiences)) => audiences
            .iter()
            .map(|audience| audience.as_str().ok_or_else(wrong_type))
            .collect(),
        Some(_) => Err(wrong_type()),
    }
}

/// The OAuth client: the configured claim (RFC 9068 §2.2 `client_id`), else `azp`, else
/// `cid`. Every principal names its client, so rate limits and audit can key on it.
fn client_id(claims: &Claims, configured: &str) -> Result<String, Rejection> {
    for name in [configured, "azp", "cid"] {
        match get(claims, name) {
            None => continue,
            Some(Value::String(client)) if client.is_empty() => continue,
            Some(Value::String(client)) if is_identifier(client) => return Ok(client.clone()),
            Some(_) => {
                return Err(bad(
                    name,
                    "must be a string of printable ASCII characters without leading or \
                     trailing spaces (RFC 6749 §2.2: client_id is VSCHAR)",
                ));
            }
        }
    }
    Err(unauthorized(
        rule::MISSING_CLAIM,
        format!("the token names no client (`{configured}`, `azp` or `cid`)"),
    ))
}

/// A subject or client id the gateway can pass on as it was audited: 1 to 255 printable
/// ASCII characters (space allowed inside), no leading or trailing space. The upstream gets
/// it as `x-ehrgate-subject` / `x-ehrgate-client-id`; anything else would be dropped or
/// trimmed on the way, so the upstream's view of the caller would differ from the audit's.
fn is_identifier(value: &str) -> bool {
    (1..=255).contains(&value.len())
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

#[derive(Clone, Copy)]
enum WordSyntax {
    /// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
    Scope,
    /// Anything printable; array entries may hold spaces.
    Role,
}

/// A space-separated string (RFC 9068 §2.2.3, RFC 8693 §4.2) or an array of strings, as
/// issuers write scopes, roles and purpose-of-use codes.
fn word_list(claims: &Claims, name: &str, syntax: WordSyntax) -> Result<Vec<String>, Rejection> {
    let words: Vec<&str> = match get(claims, name) {
        None => return Ok(Vec::new()),
        Some(Value::String(words)) => words.split(' ').filter(|word| !word.is_empty()).collect(),
        Some(Value::Array(words)) => words
            .iter()
            .map(|word| match word.as_str() {
                Some(word) if !word.is_empty() => Ok(word),
                _ => Err(bad(name, "must hold only non-empty strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                name,
                "must be a space-separated string or an array of strings",
            ));
        }
    };
    if words.len() > MAX_LIST_ENTRIES {
        return Err(bad(
            name,
            &format!(
                "has {} entries; at most {MAX_LIST_ENTRIES} are accepted",
                words.len()
            ),
        ));
    }
    for word in &words {
        if word.len() > MAX_ENTRY_BYTES {
            return Err(bad(
                name,
                &format!("has an entry longer than {MAX_ENTRY_BYTES} bytes"),
            ));
        }
        let well_formed = match syntax {
            WordSyntax::Scope => word
                .bytes()
                .all(|byte| matches!(byte, 0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
            WordSyntax::Role => !word.chars().any(char::is_control),
        };
        if !well_formed {
            return Err(bad(
                name,
                match syntax {
                    WordSyntax::Scope => {
                        "has an entry with characters RFC 6749 §3.3 does not allow"
                    }
                    WordSyntax::Role => "has an entry with control characters",
                },
            ));
        }
    }
    Ok(words.into_iter().map(str::to_string).collect())
}

/// A SMART launch context id (`patient`, `encounter`): a FHIR id (R4 `id` datatype,
/// `[A-Za-z0-9\-\.]{1,64}`), written as a string or a number. Checking the syntax here
/// means no policy can be handed a path such as `1/../2` as a patient.
fn fhir_id(claims: &Claims, name: &str) -> Result<Option<String>, Rejection> {
    let id = match get(claims, name) {
        None => return Ok(None),
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(number)) if number.is_u64() => number.to_string(),
        Some(_) => return Err(bad(name, "must be a string (a FHIR id)")),
    };
    let is_fhir_id = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.');
    if !is_fhir_id {
        return Err(bad(name, "must be a FHIR id: 1 to 64 of `A-Za-z0-9-.`"));
    }
    Ok(Some(id))
}

fn non_empty_string(claims: &Claims, name: &str) -> Result<Option<String>, Rejection> {
    match get(claims, name) {
        None => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(bad(name, "must be a string")),
    }
}

/// `http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG` (or `|BTG`) becomes `BTG`.
fn bare_act_reason(code: String) -> String {
    let split = code.rsplit_once('#').or_else(|| code.rsplit_once('|'));
    match split {
        Some((system, bare)) if !bare.is_empty() && ACT_REASON_SYSTEMS.contains(&system) => {
            bare.to_string()
        }
        _ => code,
    }
}

fn missing(name: &str) -> Rejection {
    unauthorized(
        rule::MISSING_CLAIM,
        format!("the token has no `{name}` claim"),
    )
}

fn bad(name: &str, problem: &str) -> Rejection {
    unauthorized(rule::BAD_CLAIM, format!("claim `{name}` {problem}"))
}
