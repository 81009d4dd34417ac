//! The path shapes of FHIR R4 http.html below the FHIR base (`[type]/[id]/_history/[vid]`,
//! `[type]/$op`, the Patient compartment search, ...) and the interaction each method
//! performs on them.

use crate::engine::Interaction;
use crate::request::fhir::{self, TypeName};
use crate::request::{Rejection, quote};

/// The path shapes of FHIR R4 http.html, below the FHIR base. Types are resolved R4 names.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape<'a> {
    /// `[base]`
    Root,
    /// `[base]/metadata`
    Metadata,
    /// `[base]/_history`
    SystemHistory,
    /// `[base]/_search`
    SystemSearch,
    /// `[base]/$op`
    SystemOperation(&'a str),
    /// `[base]/[type]`
    Type(&'static str),
    /// `[base]/[type]/_search`
    TypeSearch(&'static str),
    /// `[base]/[type]/_history`
    TypeHistory(&'static str),
    /// `[base]/[type]/$op`
    TypeOperation(&'static str, &'a str),
    /// `[base]/[type]/[id]`
    Instance(&'static str, &'a str),
    /// `[base]/[type]/[id]/_history`
    InstanceHistory(&'static str, &'a str),
    /// `[base]/[type]/[id]/_history/[vid]`
    Version(&'static str, &'a str, &'a str),
    /// `[base]/[type]/[id]/$op`
    InstanceOperation(&'static str, &'a str, &'a str),
    /// `[base]/Patient/[id]/[type]`, or with `/_search` for POST (http.html#search, the
    /// compartment search).
    Compartment {
        patient: &'a str,
        resource_type: &'static str,
        post_search: bool,
    },
    /// Anything else, including types that are not R4 resource types.
    Unrecognized,
}

/// Reads the path shape from the segments below the FHIR base.
pub(super) fn shape(segments: &[String]) -> Result<Shape<'_>, Rejection> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let shape = match parts.as_slice() {
        [] => Shape::Root,
        ["metadata"] => Shape::Metadata,
        ["_history"] => Shape::SystemHistory,
        ["_search"] => Shape::SystemSearch,
        [first] if first.starts_with('$') => Shape::SystemOperation(operation_name(first)?),
        [first, rest @ ..] => {
            let Some(resource_type) = known_type(first)? else {
                return Ok(Shape::Unrecognized);
            };
            type_shape(resource_type, rest)?
        }
    };
    Ok(shape)
}

/// The shape of the segments after a resource type.
fn type_shape<'a>(resource_type: &'static str, rest: &[&'a str]) -> Result<Shape<'a>, Rejection> {
    let shape = match rest {
        [] => Shape::Type(resource_type),
        ["_search"] => Shape::TypeSearch(resource_type),
        ["_history"] => Shape::TypeHistory(resource_type),
        [operation] if operation.starts_with('$') => {
            Shape::TypeOperation(resource_type, operation_name(operation)?)
        }
        [id, instance_rest @ ..] => {
            let id = resource_id(id, "resource id")?;
            match instance_rest {
                [] => Shape::Instance(resource_type, id),
                ["_history"] => Shape::InstanceHistory(resource_type, id),
                ["_history", version] => {
                    Shape::Version(resource_type, id, resource_id(version, "version id")?)
                }
                [operation] if operation.starts_with('$') => {
                    Shape::InstanceOperation(resource_type, id, operation_name(operation)?)
                }
                [compartment_type, compartment_rest @ ..] if resource_type == "Patient" => {
                    let post_search = match compartment_rest {
                        [] => false,
                        ["_search"] => true,
                        _ => return Ok(Shape::Unrecognized),
                    };
                    match known_type(compartment_type)? {
                        Some(searched) => Shape::Compartment {
                            patient: id,
                            resource_type: searched,
                            post_search,
                        },
                        None => Shape::Unrecognized,
                    }
                }
                _ => Shape::Unrecognized,
            }
        }
    };
    Ok(shape)
}

/// The interaction a method performs on a shape (FHIR R4 http.html). HEAD is GET without a
/// body (RFC 9110 §9.3.2), so it classifies as GET does. Any other pairing is `Other`.
pub(super) fn interaction(method: &str, shape: Shape<'_>) -> Interaction {
    let read = matches!(method, "GET" | "HEAD");
    let post = method == "POST";
    // FHIR R4 operations.html#invoking: POST, or GET for operations without side effects.
    let invoke = read || post;
    let (interaction, allowed) = match shape {
        Shape::Root if post => (Interaction::Batch, true),
        Shape::Root => (Interaction::SearchSystem, read),
        Shape::Metadata => (Interaction::Capabilities, read),
        Shape::SystemHistory => (Interaction::HistorySystem, read),
        Shape::SystemSearch => (Interaction::SearchSystem, post),
        Shape::SystemOperation(_) | Shape::TypeOperation(..) | Shape::InstanceOperation(..) => {
            (Interaction::Operation, invoke)
        }
        Shape::Type(_) if post => (Interaction::Create, true),
        Shape::Type(_) => (Interaction::SearchType, read),
        Shape::TypeSearch(_) => (Interaction::SearchType, post),
        Shape::TypeHistory(_) => (Interaction::HistoryType, read),
        Shape::Instance(..) => match method {
            "GET" | "HEAD" => (Interaction::Read, true),
            "PUT" => (Interaction::Update, true),
            "PATCH" => (Interaction::Patch, true),
            "DELETE" => (Interaction::Delete, true),
            _ => (Interaction::Other, false),
        },
        Shape::InstanceHistory(..) => (Interaction::HistoryInstance, read),
        Shape::Version(..) => (Interaction::Vread, read),
        Shape::Compartment { post_search, .. } => (
            Interaction::SearchType,
            if post_search { post } else { read },
        ),
        Shape::Unrecognized => (Interaction::Other, false),
    };
    if allowed {
        interaction
    } else {
        Interaction::Other
    }
}

/// Resolves a resource type segment: `None` for a name that is no R4 type (classified as
/// `Other`), an error for a known type in the wrong case.
fn known_type(name: &str) -> Result<Option<&'static str>, Rejection> {
    match fhir::resource_type(name) {
        TypeName::Known(resource_type) => Ok(Some(resource_type)),
        TypeName::WrongCase(spelling) => Err(Rejection::bad_request(
            "classify.resource-type-case",
            format!(
                "resource type `{}` is spelled with the wrong case; expected `{spelling}`",
                quote(name)
            ),
        )),
        TypeName::Unknown => Ok(None),
    }
}

fn resource_id<'a>(id: &'a str, what: &str) -> Result<&'a str, Rejection> {
    if fhir::is_valid_id(id) {
        return Ok(id);
    }
    Err(Rejection::bad_request(
        "classify.bad-id",
        format!(
            "{what} `{}` is not a FHIR id; expected 1 to 64 characters of `A-Z a-z 0-9 - .`",
            quote(id)
        ),
    ))
}

fn operation_name(segment: &str) -> Result<&str, Rejection> {
    let name = segment.strip_prefix('$').unwrap_or(segment);
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if valid {
        return Ok(name);
    }
    Err(Rejection::bad_request(
        "classify.bad-operation",
        format!(
            "operation `{}` is not a FHIR operation name; expected `$` and 1 to 64 characters \
             of `A-Z a-z 0-9 - _ .`",
            quote(segment)
        ),
    ))
}
