//! Write ownership from the stored resource. An update, patch or delete by id names the
//! resource it changes, not whose it is: judged by its body alone, `PUT Observation/[other
//! patient's id]` with the caller's own patient in `subject` overwrites someone else's
//! record. So before such a write the gateway reads the stored version from the upstream
//! (`proxy::pre_read` does the HTTP), and this module judges the answer: the stored
//! resource's patients join the request's `patients` (every policy and the audit record see
//! whose record the write changes), the policies are told through gateway-owned headers
//! that the owner was read ([`policy_headers`]), and the write is forwarded on condition
//! that the stored version is still the one read (`If-Match`, FHIR R4 http.html#concurrency),
//! so a concurrent change between the read and the write makes the upstream answer 412
//! instead of writing.
//!
//! The gateway does not decide who may write what: a launch patient does not make a token
//! patient-bound for every scope it carries (an EHR launch gives clinicians one too), so the
//! policies judge the patients; the gateway only refuses what leaves it nothing to judge (a
//! read that failed, a client precondition the stored version does not meet) or nothing to
//! do (a patch or delete of nothing, after the policies allowed it).
//!
//! This module is pure, so the fixture runner (`ehrgate policy test`) judges a case's stored
//! resource exactly as the proxy judges the upstream's.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::{Header, Interaction, Principal};
use crate::request::classify::{self, Classification};
use crate::request::{Rejection, fhir, quote};

/// Present when the gateway read the stored resource before this write: `found` or `absent`.
pub const STORED_HEADER: &str = "x-ehrgate-stored";
/// The stored resource's version id, when it was found and the upstream versions it.
pub const STORED_VERSION_HEADER: &str = "x-ehrgate-stored-version";
/// The patient ids the stored resource references, sorted, comma-separated (empty when it
/// references none); sent when it was found.
pub const STORED_PATIENTS_HEADER: &str = "x-ehrgate-stored-patients";

/// `[[routes]] verify_write_owner`: whose writes by id are preceded by a read of the stored
/// resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyWriteOwner {
    /// Tokens with a launch patient, or whose `fhirUser` is a Patient: the tokens a policy
    /// binds to one patient.
    #[default]
    PatientBound,
    /// Every token (clinicians too: the audit record then names whose record was changed).
    All,
    /// Never: writes are judged by their body, as the policies are told by the absence of
    /// the stored headers.
    Off,
}

impl VerifyWriteOwner {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyWriteOwner::PatientBound => "patient-bound",
            VerifyWriteOwner::All => "all",
            VerifyWriteOwner::Off => "off",
        }
    }
}

/// The stored resource a write would change, when the gateway reads it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTarget {
    pub interaction: Interaction,
    pub resource_type: String,
    pub id: String,
}

impl StoredTarget {
    /// The read's path below the upstream's base: `/Observation/o1`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.resource_type, self.id)
    }

    fn describe(&self) -> String {
        format!("`{}/{}`", self.resource_type, self.id)
    }
}

/// Whether a resource of `resource_type` can belong to a patient other than through its own
/// id: the compartment types, the types outside it that name a patient (Contract, Device,
/// GuidanceResponse and Task define `patient`) and Binary (`securityContext`). Patient is
/// left out: its owner is its id, which the path names.
fn names_a_patient(resource_type: &str) -> bool {
    resource_type != "Patient"
        && (fhir::is_compartment_type(resource_type)
            || fhir::defines_patient_param(resource_type)
            || resource_type == "Binary")
}

/// Whether the token is bound to one patient: a launch patient, or a `fhirUser` that is a
/// Patient (relative, or an absolute URL ending in `Patient/[id]`).
fn is_patient_bound(principal: &Principal) -> bool {
    principal.launch_patient.is_some()
        || principal
            .fhir_user
            .as_deref()
            .and_then(classify::patient_of_reference)
            .is_some()
}

/// The stored resource to read before this request, if the route reads one: an update,
/// patch or delete by id (not a Bundle entry) of a type that can belong to a patient, by a
/// token the route's `mode` covers.
pub fn target(
    mode: VerifyWriteOwner,
    classification: &Classification,
    principal: Option<&Principal>,
) -> Option<StoredTarget> {
    let principal = principal?;
    let covered = match mode {
        VerifyWriteOwner::Off => false,
        VerifyWriteOwner::All => true,
        VerifyWriteOwner::PatientBound => is_patient_bound(principal),
    };
    let is_write = matches!(
        classification.interaction,
        Interaction::Update | Interaction::Patch | Interaction::Delete
    );
    if !covered || !is_write {
        return None;
    }
    let resource_type = classification.resource_type.as_deref()?;
    let id = classification.resource_id.as_deref()?;
    names_a_patient(resource_type).then(|| StoredTarget {
        interaction: classification.interaction,
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
    })
}

/// What the upstream answered to the read.
#[derive(Debug, Clone, Copy)]
pub struct StoredResponse<'a> {
    pub status: u16,
    pub etag: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The current version: its version id (from `ETag`, else `meta.versionId`; none when
    /// the upstream gives neither) and the patient ids it references, sorted and unique.
    Found {
        version: Option<String>,
        patients: Vec<String>,
    },
    /// Nothing is stored under the id (404, or 410 for a deleted resource): an update
    /// creates it.
    Absent,
}

impl Stored {
    pub fn patients(&self) -> &[String] {
        match self {
            Stored::Found { patients, .. } => patients,
            Stored::Absent => &[],
        }
    }

    pub fn version(&self) -> Option<&str> {
        match self {
            Stored::Found { version, .. } => version.as_deref(),
            Stored::Absent => None,
        }
    }
}

/// Judges the upstream's answer to the read. Anything but the resource itself (of the
/// path's type and id) or its absence fails closed: the owner cannot be known.
pub fn judge(target: &StoredTarget, response: StoredResponse<'_>) -> Result<Stored, Rejection> {
    match response.status {
        200 => found(target, response),
        // R4 http.html#read: 410 for a deleted resource, 404 for an unknown one.
        404 | 410 => Ok(Stored::Absent),
        401 | 403 => Err(Rejection::new(
            403,
            "preread.refused",
            format!(
                "the upstream did not let the gateway read {} (status {}), so whose it is \
                 cannot be verified before the {}",
                target.describe(),
                response.status,
                verb(target.interaction)
            ),
        )),
        status => Err(failed(
            target,
            &format!("the upstream answered the read with status {status}"),
        )),
    }
}

/// A patch or delete of nothing, once the policies allowed it, is answered 404 here and not
/// forwarded: there is nothing to change, and forwarded, the write would change whatever
/// someone stored under the id after the read, unchecked. (After the policies, so that a
/// caller they refuse learns nothing about which ids exist.) An update of nothing creates.
pub fn nothing_to_change(target: &StoredTarget, stored: &Stored) -> Option<Rejection> {
    let changes = matches!(target.interaction, Interaction::Patch | Interaction::Delete);
    (changes && *stored == Stored::Absent).then(|| {
        Rejection::new(
            404,
            "preread.not-found",
            format!(
                "{} does not exist, so there is nothing to {}",
                target.describe(),
                verb(target.interaction)
            ),
        )
    })
}

fn found(target: &StoredTarget, response: StoredResponse<'_>) -> Result<Stored, Rejection> {
    let resource: Value = serde_json::from_slice(response.body)
        .map_err(|_| failed(target, "the upstream's answer is not JSON"))?;
    let resource_type = resource.get("resourceType").and_then(Value::as_str);
    let id = resource.get("id").and_then(Value::as_str);
    if resource_type != Some(target.resource_type.as_str()) || id != Some(target.id.as_str()) {
        return Err(failed(
            target,
            "the upstream answered with another resource than the one read",
        ));
    }
    let meta_version = resource
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .filter(|version| fhir::is_valid_id(version));
    let version = response
        .etag
        .and_then(version_of_etag)
        .or(meta_version)
        .map(str::to_owned);
    Ok(Stored::Found {
        version,
        patients: classify::stored_patients(&target.resource_type, &resource),
    })
}

fn failed(target: &StoredTarget, why: &str) -> Rejection {
    Rejection::new(
        502,
        "preread.failed",
        format!(
            "the gateway reads {} before the {} to learn whose it is, and could not: {why}",
            target.describe(),
            verb(target.interaction)
        ),
    )
}

fn verb(interaction: Interaction) -> &'static str {
    match interaction {
        Interaction::Patch => "patch",
        Interaction::Delete => "delete",
        _ => "update",
    }
}

/// The version id in an entity tag: `W/"3"` or `"3"` (R4 http.html#versioning: the ETag is
/// the version id, weak). Anything else names no version.
fn version_of_etag(etag: &str) -> Option<&str> {
    let etag = etag.trim();
    let quoted = etag.strip_prefix("W/").unwrap_or(etag);
    let version = quoted.strip_prefix('"')?.strip_suffix('"')?;
    fhir::is_valid_id(version).then_some(version)
}

/// The conditions the gateway puts on the forwarded write, in place of the client's own
/// `If-Match` and `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `If-Match: W/"[version]"`: write only if the stored version is still the one read.
    IfMatch(String),
    /// `If-None-Match: *` (RFC 9110 §13.1.2): create only if nothing was stored meanwhile.
    IfNoneMatchAny,
}

impl Condition {
    pub fn header(&self) -> (&'static str, String) {
        match self {
            Condition::IfMatch(version) => ("if-match", format!("W/\"{version}\"")),
            Condition::IfNoneMatchAny => ("if-none-match", "*".to_owned()),
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, value) = self.header();
        let name = match name {
            "if-match" => "If-Match",
            _ => "If-None-Match",
        };
        write!(f, "{name}: {value}")
    }
}

/// Judges the client's own `If-Match` / `If-None-Match` against what was read (RFC 9110
/// §13.2.2: the server evaluates them against the current representation; FHIR compares
/// version ids, weak tags included, R4 http.html#concurrency), and returns the condition
/// the gateway forwards instead. A client precondition that fails is answered 412 here; one
/// that holds is kept by the gateway's own, which pins the very version it was judged on.
/// When the upstream gave no version, nothing is pinned and the client's headers go on as
/// they are: the owner was still checked, but a concurrent change is not caught.
///
/// A patch or delete of nothing gets no condition: it is not forwarded
/// ([`nothing_to_change`]), and its 404 wins over any precondition (RFC 9110 §13.2.1).
pub fn condition(
    target: &StoredTarget,
    stored: &Stored,
    client: &HeaderMap,
) -> Result<Option<Condition>, Rejection> {
    if nothing_to_change(target, stored).is_some() {
        return Ok(None);
    }
    let if_match = header_values(client, "if-match");
    let if_none_match = header_values(client, "if-none-match");
    match stored {
        Stored::Found { version: None, .. } => Ok(None),
        Stored::Found {
            version: Some(version),
            ..
        } => {
            if !if_match.is_empty() && !tags_match(&if_match, Some(version)) {
                return Err(precondition_failed("`If-Match` names another version"));
            }
            if !if_none_match.is_empty() && tags_match(&if_none_match, Some(version)) {
                return Err(precondition_failed(
                    "`If-None-Match` names the stored version",
                ));
            }
            Ok(Some(Condition::IfMatch(version.clone())))
        }
        Stored::Absent => {
            // RFC 9110 §13.1.1: `If-Match` fails when there is no current representation.
            if !if_match.is_empty() {
                return Err(precondition_failed(
                    "`If-Match` names a resource that does not exist",
                ));
            }
            Ok(Some(Condition::IfNoneMatchAny))
        }
    }
}

/// Every entity tag (or `*`) of every instance of a header.
fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .flat_map(|value| {
            value
                .split(',')
                .map(|tag| tag.trim().to_owned())
                .filter(|tag| !tag.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether one of `tags` is `*` (any current version) or names `version`.
fn tags_match(tags: &[String], version: Option<&str>) -> bool {
    tags.iter()
        .any(|tag| tag == "*" || (version.is_some() && version_of_etag(tag) == version))
}

fn precondition_failed(why: &str) -> Rejection {
    Rejection::new(
        412,
        "preread.precondition-failed",
        format!("the stored resource does not meet the request's precondition: {why}"),
    )
}

/// The headers that tell policies what the read found. Clients cannot send `x-ehrgate-*`
/// headers (they are refused), so a policy can trust them; they are added to the request's
/// `headers` whatever the route's `policy_headers` lists.
pub fn policy_headers(stored: &Stored) -> Vec<Header> {
    let header = |name: &str, value: String| Header {
        name: name.to_owned(),
        value,
    };
    match stored {
        Stored::Absent => vec![header(STORED_HEADER, "absent".to_owned())],
        Stored::Found { version, patients } => {
            let mut headers = vec![
                header(STORED_HEADER, "found".to_owned()),
                header(STORED_PATIENTS_HEADER, patients.join(",")),
            ];
            if let Some(version) = version {
                headers.push(header(STORED_VERSION_HEADER, version.clone()));
            }
            headers
        }
    }
}

/// The request's patients with the stored resource's, sorted and unique.
pub fn merge_patients(patients: &[String], stored: &Stored) -> Vec<String> {
    let mut merged: Vec<String> = patients.iter().chain(stored.patients()).cloned().collect();
    merged.sort_unstable();
    merged.dedup();
    merged
}

/// A short account of the read for messages (`found version 3, patients p1`).
pub fn describe(stored: &Stored) -> String {
    match stored {
        Stored::Absent => "absent".to_owned(),
        Stored::Found { version, patients } => format!(
            "found{}, {}",
            version.as_deref().map_or_else(
                || " (no version)".to_owned(),
                |v| format!(" version {}", quote(v))
            ),
            if patients.is_empty() {
                "no patient".to_owned()
            } else {
                format!("patients {}", patients.join(" "))
            }
        ),
    }
}

#[cfg(test)]
mod tests;
