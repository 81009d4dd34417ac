//! Request bodies as the classifier reads them: the Bundle of a batch or transaction, and
//! the resource (or patch document) of a write, parsed strictly and checked against the
//! path.

use std::borrow::Cow;

use serde_json::Value;

use super::json;
use crate::request::{Rejection, quote};

/// A request body as the classifier sees it: raw bytes from the wire, or a resource already
/// parsed out of a Bundle entry.
#[derive(Debug, Clone, Copy)]
pub(super) enum Body<'a> {
    Absent,
    Raw(&'a [u8]),
    Parsed(&'a Value),
}

/// The Bundle posted to the FHIR base, parsed.
pub(super) fn bundle_body(body: Body<'_>) -> Result<Cow<'_, Value>, Rejection> {
    match body {
        Body::Absent => Err(Rejection::bad_request(
            "classify.bad-bundle",
            "a POST to the FHIR base has no body; expected a JSON Bundle of type `batch` or \
             `transaction`",
        )),
        Body::Parsed(value) => Ok(Cow::Borrowed(value)),
        Body::Raw(bytes) => json::parse(bytes)
            .map(Cow::Owned)
            .map_err(|error| match error {
                json::JsonError::DuplicateKey(detail) => duplicate_key(&detail),
                json::JsonError::Syntax(detail) => Rejection::bad_request(
                    "classify.bad-bundle",
                    format!(
                        "body of a POST to the FHIR base is not JSON ({detail}); expected a \
                         JSON Bundle of type `batch` or `transaction`"
                    ),
                ),
            }),
    }
}

/// The resource (or patch document) in a write's body, parsed; `None` when there is no body
/// or the type's bodies are not FHIR JSON.
pub(super) fn resource_body<'a>(
    resource_type: &str,
    body: Body<'a>,
) -> Result<Option<Cow<'a, Value>>, Rejection> {
    // FHIR R4 http.html#binary: a Binary is written as raw content of any media type.
    if resource_type == "Binary" {
        return Ok(None);
    }
    match body {
        Body::Absent => Ok(None),
        Body::Parsed(value) => Ok(Some(Cow::Borrowed(value))),
        Body::Raw(bytes) => match json::parse(bytes) {
            Ok(value) => Ok(Some(Cow::Owned(value))),
            Err(json::JsonError::DuplicateKey(detail)) => Err(duplicate_key(&detail)),
            // The patients a write touches are read from its body; a body the gateway cannot
            // read (XML, or not FHIR at all) would let a write reach any patient unseen.
            Err(json::JsonError::Syntax(detail)) => Err(Rejection::new(
                415,
                "classify.unsupported-body",
                format!("body is not JSON ({detail}); expected a FHIR JSON resource"),
            )),
        },
    }
}

fn duplicate_key(detail: &str) -> Rejection {
    // RFC 8259 §4: with repeated names "the behavior of software that receives such an object
    // is unpredictable"; the gateway could read one `subject` and the server store another.
    Rejection::bad_request(
        "classify.duplicate-json-key",
        format!("body repeats a JSON member ({detail}); expected each member once"),
    )
}

/// FHIR R4 http.html#create and #update: the body's `resourceType` must be the path's type,
/// or the server stores something other than what the policies judged.
pub(super) fn check_resource_type(resource: &Value, resource_type: &str) -> Result<(), Rejection> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(found) if found == resource_type => Ok(()),
        Some(found) => Err(Rejection::bad_request(
            "classify.body-type-mismatch",
            format!(
                "body is a `{}` but the path names `{resource_type}`; expected a `{resource_type}`",
                quote(found)
            ),
        )),
        None => Err(Rejection::bad_request(
            "classify.body-type-mismatch",
            format!("body has no `resourceType`; expected a JSON `{resource_type}` resource"),
        )),
    }
}

/// FHIR R4 http.html#update: the server SHALL reject an update whose body id differs from
/// the id in the URL; the gateway does so first so that policies never judge the wrong one.
pub(super) fn check_resource_id(resource: &Value, id: &str) -> Result<(), Rejection> {
    match resource.get("id") {
        None => Ok(()),
        Some(Value::String(found)) if found == id => Ok(()),
        Some(found) => Err(Rejection::bad_request(
            "classify.body-id-mismatch",
            format!(
                "body has id `{}` but the path names `{id}`; expected the same id",
                quote(&found.to_string())
            ),
        )),
    }
}
