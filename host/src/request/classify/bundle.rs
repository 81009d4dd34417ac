//! Batch and transaction Bundles (FHIR R4 http.html#transaction): every entry is a request of
//! its own, canonicalized and classified through the same code as a top-level request, so
//! that a Bundle cannot carry a request the policies would refuse on its own.

use serde_json::Value;

use crate::engine::{Entry, Interaction};
use crate::request::canonical::{canonicalize_target, check_governing_duplicates};
use crate::request::{Rejection, quote};

use super::{Body, Level, classify_request};

/// R4 Bundle.request.method (value set http-verb).
const ENTRY_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];

/// Classifies a batch or transaction Bundle: its interaction and its entries in order.
pub(super) fn classify_bundle(
    bundle: &Value,
    max_entries: usize,
) -> Result<(Interaction, Vec<Entry>), Rejection> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Rejection::bad_request(
            "classify.bad-bundle",
            "body of a POST to the FHIR base is not a Bundle; expected a Bundle of type \
             `batch` or `transaction`",
        ));
    }
    let interaction = match bundle.get("type").and_then(Value::as_str) {
        Some("batch") => Interaction::Batch,
        Some("transaction") => Interaction::Transaction,
        found => {
            return Err(Rejection::bad_request(
                "classify.bad-bundle",
                format!(
                    "the Bundle has type `{}`; expected `batch` or `transaction`",
                    quote(found.unwrap_or("(none)"))
                ),
            ));
        }
    };
    let entries = match bundle.get("entry") {
        None => &[][..],
        Some(Value::Array(entries)) => entries.as_slice(),
        Some(_) => {
            return Err(Rejection::bad_request(
                "classify.bad-bundle",
                "the Bundle's `entry` is not an array; expected a list of entries",
            ));
        }
    };
    // Checked before any entry is looked at, so an oversized Bundle costs nothing more.
    if entries.len() > max_entries {
        return Err(Rejection::new(
            413,
            "classify.too-many-entries",
            format!(
                "the Bundle has {} entries; expected at most {max_entries}",
                entries.len()
            ),
        ));
    }
    let classified = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| classify_entry(entry).map_err(|error| in_entry(index, error)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((interaction, classified))
}

fn classify_entry(entry: &Value) -> Result<Entry, Rejection> {
    let Some(request) = entry.get("request").filter(|request| request.is_object()) else {
        return Err(bad_entry("`request` is missing"));
    };
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return Err(bad_entry("`request.method` is missing"));
    };
    if !ENTRY_METHODS.contains(&method) {
        return Err(bad_entry(&format!(
            "`request.method` is `{}`",
            quote(method)
        )));
    }
    let Some(url) = request.get("url").and_then(Value::as_str) else {
        return Err(bad_entry("`request.url` is missing"));
    };
    check_entry_url(url)?;
    if request.get("ifNoneExist").is_some() {
        // As the `If-None-Exist` header (see `request/headers.rs`): a search no policy sees.
        return Err(bad_entry(
            "`request.ifNoneExist` (conditional create) searches with criteria no policy checks",
        ));
    }
    let target = canonicalize_target(&format!("/{url}"))?;
    check_governing_duplicates(&target.params)?;
    let body = entry.get("resource").map_or(Body::Absent, Body::Parsed);
    let classification = classify_request(
        method,
        &target.segments,
        &target.params,
        body,
        Level::BundleEntry,
    )?;
    check_entry_resource(entry, classification.interaction)?;
    check_full_url(entry, method, &target.path)?;
    Ok(Entry {
        method: method.to_string(),
        path: target.path,
        interaction: classification.interaction,
        resource_type: classification.resource_type,
        resource_id: classification.resource_id,
        operation: classification.operation,
        params: target.params,
        patients: classification.patients,
    })
}

/// Only entries that write a resource may carry one: a server that executes a POST entry
/// with a `resource` as a create would otherwise store what the gateway classified as a
/// search (`POST Observation/_search`) and never judged as a write.
fn check_entry_resource(entry: &Value, interaction: Interaction) -> Result<(), Rejection> {
    let writes = matches!(
        interaction,
        Interaction::Create | Interaction::Update | Interaction::Patch | Interaction::Operation
    );
    if entry.get("resource").is_none() || writes {
        return Ok(());
    }
    Err(bad_entry(
        "the entry carries a `resource` but its request does not write one",
    ))
}

/// R4 bundle.html#references: a transaction resolves references to an entry's `fullUrl` to
/// whatever that entry creates or matches. A POST entry's `fullUrl` must therefore be a
/// placeholder (`urn:uuid:` or `urn:oid:`); one that looks like `Patient/123` would make
/// references the gateway read as patient 123 point at another resource. Other entries
/// may name themselves (a URL ending in their own path) or use a placeholder.
fn check_full_url(entry: &Value, method: &str, path: &str) -> Result<(), Rejection> {
    let Some(full_url) = entry.get("fullUrl") else {
        return Ok(());
    };
    let Some(full_url) = full_url.as_str() else {
        return Err(bad_entry("`fullUrl` is not a string"));
    };
    let placeholder = full_url.starts_with("urn:uuid:") || full_url.starts_with("urn:oid:");
    let names_itself =
        method != "POST" && !path.is_empty() && full_url.ends_with(path) && !full_url.contains('?');
    if placeholder || names_itself {
        return Ok(());
    }
    Err(bad_entry(&format!(
        "`fullUrl` `{}` is neither a `urn:uuid:`/`urn:oid:` placeholder nor the entry's own \
         URL (a POST entry needs a placeholder)",
        quote(full_url)
    )))
}

/// R4 http.html#transaction: `request.url` is relative to the base. An absolute URL could
/// name another server, and `/` or `..` could climb out of the route's FHIR base.
fn check_entry_url(url: &str) -> Result<(), Rejection> {
    // RFC 3986 §4.2: a relative reference has no `:` in its first segment; one that does is
    // an absolute URI (`https:`, `urn:`).
    let first_segment = url.split(['/', '?']).next().unwrap_or_default();
    let problem = if url.starts_with('/') {
        Some("starts with `/`")
    } else if first_segment.contains(':') {
        Some("is absolute")
    } else if url.contains("..") {
        Some("contains `..`")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(Rejection::bad_request(
            "classify.bad-entry-url",
            format!(
                "`request.url` `{}` {problem}; expected a URL relative to the FHIR base such \
                 as `Patient/123` or `Observation?patient=123`",
                quote(url)
            ),
        )),
    }
}

fn bad_entry(problem: &str) -> Rejection {
    Rejection::bad_request(
        "classify.bad-bundle-entry",
        format!(
            "{problem}; expected `request.method` (GET, HEAD, POST, PUT, DELETE or PATCH), \
             `request.url`, and a `resource` only on entries that write one"
        ),
    )
}

/// Names the entry in a rejection raised while reading it.
fn in_entry(index: usize, rejection: Rejection) -> Rejection {
    Rejection {
        message: format!("bundle entry {index}: {}", rejection.message),
        ..rejection
    }
}
