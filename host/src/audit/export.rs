//! Export to FHIR R4 `AuditEvent` (hl7.org/fhir/R4/auditevent.html), mapped as in
//! `reference/healthcare.md`, in the style of IHE Basic Audit Log Patterns: one AuditEvent
//! per patient a request touched (each with that one patient entity), and one without a
//! patient entity for a request that touched none. A protocol refusal (a connection or
//! request refused below the request handler) is one security-alert AuditEvent, whose agent
//! is the unauthenticated peer. Output is NDJSON (one resource a line, as FHIR Bulk Data
//! writes it) or a Bundle of type `collection`, streamed either way.

use std::io::{self, Write};
use std::path::Path;

use serde_json::{Value, json};

use super::reader::{BadRecord, LineKind, LogReader};
use super::record::{AuditDecision, AuditRecord};
use super::refusal::{RefusalRecord, is_refusal_line};
use super::time;

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
/// The gateway's own codes for the causes of protocol refusals (`http1-malformed`, ...); the
/// R4 binding of `AuditEvent.subtype` is extensible.
const REFUSAL_CAUSE: &str = "urn:ehrgate:protocol-refusal-cause";

/// The two output forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One AuditEvent per line.
    Ndjson,
    /// One Bundle (type `collection`) holding every AuditEvent.
    Bundle,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the log or write the export: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    BadRecord(#[from] BadRecord),
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub records: u64,
    pub events: u64,
}

/// Exports every record in `dir` to `out`.
pub fn export(
    dir: &Path,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<ExportStats, ExportError> {
    let mut stats = ExportStats::default();
    let mut reader = LogReader::open(dir)?;
    if format == ExportFormat::Bundle {
        write!(
            out,
            "{{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"timestamp\":\"{}\",\"entry\":[",
            time::format_millis(time::now_millis())
        )?;
    }
    while let Some(line) = reader.next_line()? {
        if line.kind != LineKind::Record {
            continue;
        }
        stats.records += 1;
        let events = if is_refusal_line(line.bytes) {
            let record: RefusalRecord = line.parse()?;
            vec![refusal_event(&record)]
        } else {
            let record: AuditRecord = line.parse()?;
            audit_events(&record)
        };
        for event in events {
            match format {
                ExportFormat::Ndjson => {
                    serde_json::to_writer(&mut *out, &event).map_err(io::Error::other)?;
                    out.write_all(b"\n")?;
                }
                ExportFormat::Bundle => {
                    if stats.events > 0 {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(&mut *out, &json!({ "resource": event }))
                        .map_err(io::Error::other)?;
                }
            }
            stats.events += 1;
        }
    }
    if format == ExportFormat::Bundle {
        out.write_all(b"]}\n")?;
    }
    out.flush()?;
    Ok(stats)
}

/// The AuditEvents of one record: one per patient, or one when it touched none.
pub fn audit_events(record: &AuditRecord) -> Vec<Value> {
    let id_base = if record.hash.len() >= 32 {
        record.hash[..32].to_owned()
    } else {
        format!("seq{}", record.seq)
    };
    if record.patients.is_empty() {
        return vec![audit_event(record, &format!("{id_base}-0"), None)];
    }
    record
        .patients
        .iter()
        .enumerate()
        .map(|(index, patient)| {
            audit_event(record, &format!("{id_base}-{}", index + 1), Some(patient))
        })
        .collect()
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn audit_event(record: &AuditRecord, id: &str, patient: Option<&str>) -> Value {
    let interaction = record.interaction.as_deref();
    let restful = interaction
        .filter(|i| *i != "other")
        .map(|i| json!({ "system": RESTFUL_INTERACTION, "code": i, "display": i }));
    // healthcare.md: break-the-glass is audited as a security alert (DICOM 110113) with
    // subtype 110127 "Emergency Override Started".
    let (event_type, mut subtype) = if record.break_glass {
        (
            coding(DICOM, "110113", "Security Alert"),
            vec![coding(DICOM, "110127", "Emergency Override Started")],
        )
    } else {
        (
            coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
            Vec::new(),
        )
    };
    subtype.extend(restful);

    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": event_type,
        "action": action(interaction, &record.method),
        "recorded": record.time,
        "outcome": outcome(record),
        "outcomeDesc": outcome_description(record),
        "agent": agents(record),
        "source": {
            "site": record.route.as_deref().unwrap_or("ehrgate"),
            "observer": { "display": "ehrgate gateway" },
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": entities(record, patient),
    });
    if !subtype.is_empty() {
        event["subtype"] = Value::Array(subtype);
    }
    if !record.purpose_of_use.is_empty() {
        event["purposeOfEvent"] = record
            .purpose_of_use
            .iter()
            .map(|code| {
                let mut concept = json!({ "coding": [{ "system": ACT_REASON, "code": code }] });
                if code == super::record::BREAK_GLASS_PURPOSE
                    && let Some(reason) = &record.break_glass_reason
                {
                    concept["text"] = json!(reason);
                }
                concept
            })
            .collect();
    }
    event
}

/// The AuditEvent of a protocol refusal: a security alert (DICOM 110113) refused with outcome
/// 4, subtype the cause (and DICOM 110126 Node Authentication for a failed TLS handshake),
/// the peer as the requesting agent with its network address, and the chain position, cause
/// and counts as entity details.
pub fn refusal_event(record: &RefusalRecord) -> Value {
    let id = if record.hash.len() >= 32 {
        format!("{}-r", &record.hash[..32])
    } else {
        format!("seq{}-r", record.seq)
    };
    let causes = record.causes();
    let mut subtype: Vec<Value> = Vec::new();
    if causes.iter().any(|(cause, _)| cause.starts_with("tls-")) {
        subtype.push(coding(DICOM, "110126", "Node Authentication"));
    }
    subtype.extend(
        causes
            .iter()
            .map(|(cause, _)| coding(REFUSAL_CAUSE, cause, cause)),
    );
    let summary: Vec<String> = causes
        .iter()
        .map(|(cause, count)| format!("{cause}={count}"))
        .collect();
    let description = match &record.aggregate {
        Some(aggregate) => format!(
            "{} protocol refusal(s) without records of their own until {}: {}",
            aggregate.count,
            aggregate.until,
            summary.join(" ")
        ),
        None => {
            let mut description = format!(
                "protocol refusal {}",
                record.cause.as_deref().unwrap_or("unknown")
            );
            if let Some(status) = record.status {
                description.push_str(&format!(" (status {status})"));
            }
            if let Some(detail) = &record.detail {
                description.push_str(&format!(": {detail}"));
            }
            description
        }
    };
    let mut agent = json!({
        "type": { "coding": [coding(DICOM, "110153", "Source Role ID")] },
        "requestor": true,
    });
    match &record.source_address {
        Some(address) => {
            agent["who"] = json!({ "display": format!("unauthenticated peer {address}") });
            agent["network"] = json!({ "address": address, "type": "2" });
        }
        None => {
            agent["who"] = json!({ "display": "peers beyond the gateway's refusal table" });
        }
    }
    let mut details = vec![
        detail("seq", &record.seq.to_string()),
        detail("hash", &record.hash),
        detail("causes", &summary.join(" ")),
        detail("count", &record.count().to_string()),
    ];
    if let Some(protocol) = &record.protocol {
        details.push(detail("protocol", protocol));
    }
    if let Some(port) = record.source_port {
        details.push(detail("source-port", &port.to_string()));
    }
    if let Some(status) = record.status {
        details.push(detail("status", &status.to_string()));
    }
    if let Some(text) = &record.detail {
        details.push(detail("detail", text));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": coding(DICOM, "110113", "Security Alert"),
        "subtype": subtype,
        "action": "E",
        "recorded": record.time,
        "outcome": "4",
        "outcomeDesc": description,
        "agent": [agent],
        "source": {
            "site": "ehrgate",
            "observer": { "display": "ehrgate gateway" },
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": [{
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "name": "connection",
            "description": if record.tls { "client connection (TLS listener)" } else { "client connection" },
            "detail": details,
        }],
    });
    if let Some(aggregate) = &record.aggregate {
        event["period"] = json!({ "start": record.time, "end": aggregate.until });
    }
    event
}

/// FHIR R4 AuditEvent.action: C, R, U, D or E.
fn action(interaction: Option<&str>, method: &str) -> &'static str {
    match interaction {
        Some("create") => "C",
        Some(
            "read" | "vread" | "history-instance" | "history-type" | "history-system"
            | "search-type" | "search-system" | "capabilities",
        ) => "R",
        Some("update" | "patch") => "U",
        Some("delete") => "D",
        Some(_) => "E",
        None => match method {
            "GET" | "HEAD" => "R",
            "PUT" | "PATCH" => "U",
            "DELETE" => "D",
            _ => "E",
        },
    }
}

/// 0 success, 4 minor failure (refused), 8 serious failure (a policy or the upstream failed).
fn outcome(record: &AuditRecord) -> &'static str {
    match record.decision {
        AuditDecision::Allow if record.status >= 500 => "8",
        AuditDecision::Allow if record.status >= 400 => "4",
        AuditDecision::Allow => "0",
        AuditDecision::Deny | AuditDecision::Reject => "4",
        AuditDecision::PolicyError | AuditDecision::UpstreamError => "8",
    }
}

fn outcome_description(record: &AuditRecord) -> String {
    let mut description = format!("{} (status {})", record.decision.as_str(), record.status);
    if let Some(rule) = &record.rule {
        description.push_str(&format!(": rule {rule}"));
    }
    if let Some(module) = &record.module {
        description.push_str(&format!(" by policy {module}"));
    }
    description
}

fn agents(record: &AuditRecord) -> Vec<Value> {
    let network = json!({ "address": record.source_address, "type": "2" });
    let Some(principal) = &record.principal else {
        return vec![json!({
            "who": { "display": "anonymous" },
            "requestor": true,
            "network": network,
        })];
    };
    let who = match &principal.fhir_user {
        Some(fhir_user) => json!({ "reference": fhir_user, "display": principal.subject }),
        None => json!({
            "identifier": { "system": principal.issuer, "value": principal.subject },
            "display": principal.subject,
        }),
    };
    let mut user = json!({
        "type": { "coding": [coding(PARTICIPATION_TYPE, "IRCP", "information recipient")] },
        "who": who,
        "altId": principal.subject,
        "requestor": true,
    });
    if !principal.roles.is_empty() {
        user["role"] = principal
            .roles
            .iter()
            .map(|r| json!({ "text": r }))
            .collect();
    }
    let client = json!({
        "type": { "coding": [coding(DICOM, "110150", "Application")] },
        "who": { "identifier": { "value": principal.client }, "display": principal.client },
        "requestor": false,
        "network": network,
    });
    vec![user, client]
}

fn entities(record: &AuditRecord, patient: Option<&str>) -> Vec<Value> {
    let mut entities = Vec::new();
    if let Some(patient) = patient {
        entities.push(json!({
            "what": { "reference": format!("Patient/{patient}") },
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient"),
        }));
    }
    let is_search = record
        .interaction
        .as_deref()
        .is_some_and(|i| i.starts_with("search"));
    let mut data = json!({
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": if is_search {
            coding(OBJECT_ROLE, "24", "Query")
        } else {
            coding(OBJECT_ROLE, "4", "Domain Resource")
        },
        "description": format!(
            "{} {}",
            record.method,
            record.path.as_deref().unwrap_or("-")
        ),
        "detail": details(record),
    });
    if let (Some(resource_type), Some(resource_id)) = (&record.resource_type, &record.resource_id) {
        data["what"] = json!({ "reference": format!("{resource_type}/{resource_id}") });
    } else if let Some(resource_type) = &record.resource_type {
        data["name"] = json!(resource_type);
    }
    if let Some(query) = &record.query {
        data["query"] = json!(base64(query.as_bytes()));
    }
    entities.push(data);
    entities
}

/// healthcare.md "extras": scopes, rule ids, risk score, chain position.
fn details(record: &AuditRecord) -> Vec<Value> {
    let mut details = vec![
        detail("request-id", &record.request_id),
        detail("decision", record.decision.as_str()),
        detail("risk", &record.risk.to_string()),
        detail("seq", &record.seq.to_string()),
        detail("hash", &record.hash),
    ];
    if let Some(rule) = &record.rule {
        details.push(detail("rule", rule));
    }
    if let Some(principal) = &record.principal
        && !principal.scopes.is_empty()
    {
        details.push(detail("scopes", &principal.scopes.join(" ")));
    }
    if !record.findings.is_empty() {
        let findings: Vec<String> = record
            .findings
            .iter()
            .map(|f| format!("{}:{}:{}", f.module, f.rule, f.severity.as_str()))
            .collect();
        details.push(detail("findings", &findings.join(" ")));
    }
    if !record.shadow_denials.is_empty() {
        let shadow: Vec<String> = record
            .shadow_denials
            .iter()
            .map(|s| format!("{}:{}", s.module, s.rule))
            .collect();
        details.push(detail("shadow-denials", &shadow.join(" ")));
    }
    if record.review {
        details.push(detail("review", &record.review_reasons.join(" ")));
    }
    details
}

fn detail(kind: &str, value: &str) -> Value {
    json!({ "type": kind, "valueString": value })
}

/// Standard base64 with padding (RFC 4648 §4), FHIR's `base64Binary`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                encoded.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
