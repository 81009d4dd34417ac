//! FHIR R4 (4.0.1) facts a policy needs: resource type names, which search parameters put a
//! type in the patient compartment, which elements of a returned resource reference its
//! patient, billing types, and reading `Patient/[id]` out of a reference.
//!
//! The guest cannot depend on host code, so the tables below are the guest's own copies of
//! the host's `host/src/request/fhir.rs`. They must stay identical: the host fills
//! `request.patients` from its table, and a policy judges with this one.

use serde_json::Value;

/// Read access to a parsed JSON document, so the helpers below work on a
/// `serde_json::Value` and on a policy's own lighter tree alike (a policy that reads large
/// responses may parse them into borrowed strings without allocating).
pub trait JsonTree: Sized {
    /// The member `name` of an object; `None` for anything else.
    fn member(&self, name: &str) -> Option<&Self>;
    /// The text of a string.
    fn text(&self) -> Option<&str>;
    /// The items of an array.
    fn items(&self) -> Option<&[Self]>;
}

impl JsonTree for Value {
    fn member(&self, name: &str) -> Option<&Self> {
        self.get(name)
    }

    fn text(&self) -> Option<&str> {
        self.as_str()
    }

    fn items(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }
}

/// Every FHIR R4 (4.0.1) resource type name, sorted (byte order), from the R4 resource list
/// (hl7.org/fhir/R4/resourcelist.html). Same list as the host's `RESOURCE_TYPES`.
pub const RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Whether `name` is an R4 resource type, spelled exactly (type names are case-sensitive).
///
/// ```
/// use ehrgate_sdk::fhir::is_resource_type;
///
/// assert!(is_resource_type("Observation"));
/// assert!(!is_resource_type("observation"));
/// assert!(!is_resource_type("DomainResource")); // abstract, never in a path
/// ```
pub fn is_resource_type(name: &str) -> bool {
    RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// The FHIR `id` rule (R4 datatypes.html#id): 1 to 64 characters of `[A-Za-z0-9\-\.]`.
///
/// ```
/// use ehrgate_sdk::fhir::is_valid_id;
///
/// assert!(is_valid_id("123") && is_valid_id("pat-7.b"));
/// assert!(!is_valid_id("") && !is_valid_id("123/_history") && !is_valid_id("a_b"));
/// ```
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// The search parameters that put a resource of `resource_type` in the patient compartment
/// (R4 compartmentdefinition-patient.html): a resource is in patient P's compartment when one
/// of these parameters references `Patient/P`. A few entries add a parameter that targets the
/// same element under another name (CarePlan `subject` beside the official `patient`).
/// Empty for types outside the compartment (Practitioner, Organization, Location,
/// Medication, ...) and for unknown types.
///
/// This must stay identical to `patient_compartment_params` in the host's
/// `host/src/request/fhir.rs`, which decides what lands in `request.patients`.
///
/// ```
/// use ehrgate_sdk::fhir::patient_compartment_params;
///
/// // `Observation?subject=Patient/123` and `?performer=Patient/123` both reach patient 123.
/// assert_eq!(patient_compartment_params("Observation"), ["subject", "performer"]);
/// assert!(patient_compartment_params("Practitioner").is_empty());
/// ```
pub fn patient_compartment_params(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Account" => &["subject"],
        "AdverseEvent" => &["subject"],
        "AllergyIntolerance" => &["patient", "recorder", "asserter"],
        "Appointment" => &["actor"],
        "AppointmentResponse" => &["actor"],
        "AuditEvent" => &["patient"],
        "Basic" => &["patient", "author"],
        "BodyStructure" => &["patient"],
        "CarePlan" => &["patient", "subject", "performer"],
        "CareTeam" => &["patient", "participant"],
        "ChargeItem" => &["subject"],
        "Claim" => &["patient", "payee"],
        "ClaimResponse" => &["patient"],
        "ClinicalImpression" => &["subject"],
        "Communication" => &["subject", "sender", "recipient"],
        "CommunicationRequest" => &["subject", "sender", "recipient", "requester"],
        "Composition" => &["subject", "author", "attester"],
        "Condition" => &["patient", "asserter"],
        "Consent" => &["patient"],
        "Coverage" => &["policy-holder", "subscriber", "beneficiary", "payor"],
        "CoverageEligibilityRequest" => &["patient"],
        "CoverageEligibilityResponse" => &["patient"],
        "DetectedIssue" => &["patient"],
        "DeviceRequest" => &["subject", "performer"],
        "DeviceUseStatement" => &["subject"],
        "DiagnosticReport" => &["subject"],
        "DocumentManifest" => &["subject", "author", "recipient"],
        "DocumentReference" => &["subject", "author"],
        "Encounter" => &["patient"],
        "EnrollmentRequest" => &["subject"],
        "EpisodeOfCare" => &["patient"],
        "ExplanationOfBenefit" => &["patient", "payee"],
        "FamilyMemberHistory" => &["patient"],
        "Flag" => &["patient"],
        "Goal" => &["patient"],
        "Group" => &["member"],
        "ImagingStudy" => &["patient"],
        "Immunization" => &["patient"],
        "ImmunizationEvaluation" => &["patient"],
        "ImmunizationRecommendation" => &["patient"],
        "Invoice" => &["subject", "patient", "recipient"],
        "List" => &["subject", "source"],
        "MeasureReport" => &["patient"],
        "Media" => &["subject"],
        "MedicationAdministration" => &["patient", "performer", "subject"],
        "MedicationDispense" => &["subject", "patient", "receiver"],
        "MedicationRequest" => &["subject"],
        "MedicationStatement" => &["subject"],
        "MolecularSequence" => &["patient"],
        "NutritionOrder" => &["patient"],
        "Observation" => &["subject", "performer"],
        "Patient" => &["link"],
        "Person" => &["patient"],
        "Procedure" => &["patient", "performer"],
        "Provenance" => &["patient"],
        "QuestionnaireResponse" => &["subject", "author"],
        "RelatedPerson" => &["patient"],
        "RequestGroup" => &["subject", "participant"],
        "ResearchSubject" => &["individual"],
        "RiskAssessment" => &["subject"],
        "Schedule" => &["actor"],
        "ServiceRequest" => &["subject", "performer"],
        "Specimen" => &["subject"],
        "SupplyDelivery" => &["patient"],
        "SupplyRequest" => &["subject"],
        "VisionPrescription" => &["patient"],
        _ => &[],
    }
}

/// Whether resources of `resource_type` can belong to a patient compartment (Patient itself
/// included). Types outside it (Practitioner, Organization, Location, Medication, ...) are
/// shared data that a patient-bound grant reaches only by naming the type.
///
/// ```
/// use ehrgate_sdk::fhir::is_compartment_type;
///
/// assert!(is_compartment_type("Observation") && is_compartment_type("Patient"));
/// assert!(!is_compartment_type("Medication") && !is_compartment_type("Location"));
/// ```
pub fn is_compartment_type(resource_type: &str) -> bool {
    !patient_compartment_params(resource_type).is_empty()
}

/// The element paths (dot-separated, arrays traversed at every step) of a resource of
/// `resource_type` that hold the References the compartment parameters search on: the
/// FHIRPath expressions of those R4 search parameters (searchparameter-registry), with the
/// `.where(resolve() is Patient)` filters dropped because only `Patient/...` references
/// count anyway. Patient itself is special: see [`resource_patients`].
///
/// ```
/// use ehrgate_sdk::fhir::patient_reference_paths;
///
/// // A procedure names its patient as `subject` and maybe as a performer's `actor`.
/// assert_eq!(patient_reference_paths("Procedure"), ["subject", "performer.actor"]);
/// assert!(patient_reference_paths("Organization").is_empty());
/// ```
pub fn patient_reference_paths(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Account" => &["subject"],
        "AdverseEvent" => &["subject"],
        "AllergyIntolerance" => &["patient", "recorder", "asserter"],
        "Appointment" => &["participant.actor"],
        "AppointmentResponse" => &["actor"],
        "AuditEvent" => &["agent.who", "entity.what"],
        "Basic" => &["subject", "author"],
        "BodyStructure" => &["patient"],
        "CarePlan" => &["subject", "activity.detail.performer"],
        "CareTeam" => &["subject", "participant.member"],
        "ChargeItem" => &["subject"],
        "Claim" => &["patient", "payee.party"],
        "ClaimResponse" => &["patient"],
        "ClinicalImpression" => &["subject"],
        "Communication" => &["subject", "sender", "recipient"],
        "CommunicationRequest" => &["subject", "sender", "recipient", "requester"],
        "Composition" => &["subject", "author", "attester.party"],
        "Condition" => &["subject", "asserter"],
        "Consent" => &["patient"],
        "Coverage" => &["policyHolder", "subscriber", "beneficiary", "payor"],
        "CoverageEligibilityRequest" => &["patient"],
        "CoverageEligibilityResponse" => &["patient"],
        "DetectedIssue" => &["patient"],
        "DeviceRequest" => &["subject", "performer"],
        "DeviceUseStatement" => &["subject"],
        "DiagnosticReport" => &["subject"],
        "DocumentManifest" => &["subject", "author", "recipient"],
        "DocumentReference" => &["subject", "author"],
        "Encounter" => &["subject"],
        "EnrollmentRequest" => &["candidate"],
        "EpisodeOfCare" => &["patient"],
        "ExplanationOfBenefit" => &["patient", "payee.party"],
        "FamilyMemberHistory" => &["patient"],
        "Flag" => &["subject"],
        "Goal" => &["subject"],
        "Group" => &["member.entity"],
        "ImagingStudy" => &["subject"],
        "Immunization" => &["patient"],
        "ImmunizationEvaluation" => &["patient"],
        "ImmunizationRecommendation" => &["patient"],
        "Invoice" => &["subject", "recipient"],
        "List" => &["subject", "source"],
        "MeasureReport" => &["subject"],
        "Media" => &["subject"],
        "MedicationAdministration" => &["subject", "performer.actor"],
        "MedicationDispense" => &["subject", "receiver"],
        "MedicationRequest" => &["subject"],
        "MedicationStatement" => &["subject"],
        "MolecularSequence" => &["patient"],
        "NutritionOrder" => &["patient"],
        "Observation" => &["subject", "performer"],
        "Patient" => &["link.other"],
        "Person" => &["link.target"],
        "Procedure" => &["subject", "performer.actor"],
        "Provenance" => &["target"],
        "QuestionnaireResponse" => &["subject", "author"],
        "RelatedPerson" => &["patient"],
        "RequestGroup" => &["subject", "action.participant"],
        "ResearchSubject" => &["individual"],
        "RiskAssessment" => &["subject"],
        "Schedule" => &["actor"],
        "ServiceRequest" => &["subject", "performer"],
        "Specimen" => &["subject"],
        "SupplyDelivery" => &["patient"],
        "SupplyRequest" => &["deliverTo"],
        "VisionPrescription" => &["patient"],
        _ => &[],
    }
}

/// Whether `resource_type` defines the `patient` search parameter in R4 (4.0.1)
/// (searchparameter-registry). Most patient-compartment types do; AdverseEvent, Group,
/// Patient, Schedule and SupplyRequest do not (a server ignores `patient=` on them, or
/// refuses it, rather than narrowing the search), and a few types outside the compartment
/// do (Contract, Device, GuidanceResponse, Task).
///
/// ```
/// use ehrgate_sdk::fhir::defines_patient_param;
///
/// assert!(defines_patient_param("Observation") && defines_patient_param("Device"));
/// assert!(!defines_patient_param("Patient") && !defines_patient_param("AdverseEvent"));
/// ```
pub fn defines_patient_param(resource_type: &str) -> bool {
    match resource_type {
        "AdverseEvent" | "Group" | "Patient" | "Schedule" | "SupplyRequest" => false,
        "Contract" | "Device" | "GuidanceResponse" | "Task" => true,
        other => is_compartment_type(other),
    }
}

/// Types outside the R4 patient compartment whose resources still name a patient: the
/// element paths behind their `patient` search parameter (Contract and GuidanceResponse
/// `subject`, Device `patient`, Task `for`) and Binary's `securityContext` (R4
/// binary.html: the resource whose access rules apply to the Binary). Empty for every
/// other type, including the compartment types (see [`patient_reference_paths`]).
///
/// ```
/// use ehrgate_sdk::fhir::patient_link_paths;
///
/// assert_eq!(patient_link_paths("Task"), ["for"]);
/// assert!(patient_link_paths("Observation").is_empty());
/// ```
pub fn patient_link_paths(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Binary" => &["securityContext"],
        "Contract" | "GuidanceResponse" => &["subject"],
        "Device" => &["patient"],
        "Task" => &["for"],
        _ => &[],
    }
}

/// The search parameters of the [`patient_link_paths`] types that reference a patient by
/// those elements (R4 searchparameter-registry): `patient` and `subject` where defined.
///
/// ```
/// use ehrgate_sdk::fhir::patient_link_params;
///
/// assert_eq!(patient_link_params("Task"), ["patient", "subject"]);
/// assert!(patient_link_params("Binary").is_empty());
/// ```
pub fn patient_link_params(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Contract" | "GuidanceResponse" | "Task" => &["patient", "subject"],
        "Device" => &["patient"],
        _ => &[],
    }
}

/// Billing and payer resource types (R4 financial module). Same list as the host's
/// `is_billing_type`.
///
/// ```
/// use ehrgate_sdk::fhir::is_billing_type;
///
/// assert!(is_billing_type("Claim") && is_billing_type("ExplanationOfBenefit"));
/// assert!(!is_billing_type("Observation"));
/// ```
pub fn is_billing_type(resource_type: &str) -> bool {
    matches!(
        resource_type,
        "Account"
            | "ChargeItem"
            | "Claim"
            | "ClaimResponse"
            | "Coverage"
            | "CoverageEligibilityRequest"
            | "CoverageEligibilityResponse"
            | "ExplanationOfBenefit"
            | "Invoice"
            | "PaymentNotice"
            | "PaymentReconciliation"
    )
}

/// A relative literal reference (R4 references.html#literal) split into resource type and
/// id: `Observation/obs-1` or `Observation/obs-1/_history/2` (the version is dropped). The
/// type must be an R4 resource type and the ids must follow the `id` rule. Absolute URLs,
/// contained references (`#x`), `urn:` references and anything else give `None`: where
/// they point is not knowable from the string alone (an absolute URL may name another
/// server). See [`patient_id_of_reference`] for the patient case, which also reads absolute
/// `http(s)` URLs.
///
/// ```
/// use ehrgate_sdk::fhir::parse_reference;
///
/// assert_eq!(parse_reference("Practitioner/dr-adams"), Some(("Practitioner", "dr-adams")));
/// assert_eq!(parse_reference("Observation/hb-1/_history/3"), Some(("Observation", "hb-1")));
/// assert_eq!(parse_reference("https://ehr.example/fhir/Patient/123"), None);
/// assert_eq!(parse_reference("#contained-med"), None);
/// assert_eq!(parse_reference("Patient/123 "), None); // not a valid id
/// ```
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let mut parts = reference.split('/');
    let resource_type = parts.next().filter(|name| is_resource_type(name))?;
    let id = parts.next().filter(|id| is_valid_id(id))?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Some((resource_type, id)),
        (Some("_history"), Some(version), None) if is_valid_id(version) => {
            Some((resource_type, id))
        }
        _ => None,
    }
}

/// The patient id of a reference string: `Patient/123`, `Patient/123/_history/2`, or an
/// absolute `http(s)` URL ending in one of these. Contained (`#x`), logical and other-type
/// references name no patient.
///
/// ```
/// use ehrgate_sdk::fhir::patient_id_of_reference;
///
/// assert_eq!(patient_id_of_reference("Patient/123"), Some("123"));
/// assert_eq!(patient_id_of_reference("https://ehr.example/fhir/Patient/123"), Some("123"));
/// assert_eq!(patient_id_of_reference("Group/cardiology-ward"), None);
/// ```
pub fn patient_id_of_reference(reference: &str) -> Option<&str> {
    let relative = match reference.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest.rfind("/Patient/").and_then(|at| rest.get(at + 1..))?
        }
        Some(_) => return None,
        None => reference,
    };
    match parse_reference(relative)? {
        ("Patient", id) => Some(id),
        _ => None,
    }
}

/// A literal reference (R4 references.html#literal) split into resource type and id:
/// relative as [`parse_reference`] reads it, or an absolute `http(s)` URL whose path ends
/// in `Type/id` or `Type/id/_history/vid`. Anything a server could resolve some other way
/// gives `None`: conditional references (`Patient?identifier=...`), `urn:` placeholders,
/// contained references (`#x`), a leading `/`, `.` or `..` segments, queries and fragments.
///
/// ```
/// use ehrgate_sdk::fhir::parse_literal_reference;
///
/// assert_eq!(parse_literal_reference("Patient/123"), Some(("Patient", "123")));
/// assert_eq!(
///     parse_literal_reference("https://ehr.example/fhir/Observation/o1/_history/2"),
///     Some(("Observation", "o1"))
/// );
/// assert_eq!(parse_literal_reference("/Patient/123"), None);
/// assert_eq!(parse_literal_reference("Patient?identifier=mrn|1"), None);
/// assert_eq!(parse_literal_reference("https://ehr.example/Patient/1/../2"), None);
/// ```
pub fn parse_literal_reference(reference: &str) -> Option<(&str, &str)> {
    let Some((scheme, rest)) = reference.split_once("://") else {
        return parse_reference(reference);
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        || rest.contains(['?', '#'])
    {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    // The authority, then at least `Type/id`; no empty, `.` or `..` segment anywhere.
    if segments.len() < 3
        || segments
            .iter()
            .any(|segment| segment.is_empty() || matches!(*segment, "." | ".."))
    {
        return None;
    }
    let versioned = segments.len() >= 5 && segments.iter().rev().nth(1) == Some(&"_history");
    let kept = if versioned { 4 } else { 2 };
    let tail_len: usize = segments
        .iter()
        .rev()
        .take(kept)
        .map(|s| s.len())
        .sum::<usize>()
        + kept
        - 1;
    parse_reference(reference.get(reference.len().checked_sub(tail_len)?..)?)
}

/// Every patient id a resource's compartment elements reference (see
/// [`patient_reference_paths`]), in document order, with repeats. For a Patient, its own
/// `id` comes first, then its `link.other` references.
///
/// ```
/// use ehrgate_sdk::fhir::resource_patients;
///
/// let observation = serde_json::json!({
///     "resourceType": "Observation",
///     "subject": {"reference": "Patient/123"},
///     "performer": [{"reference": "Practitioner/dr-adams"}, {"reference": "Patient/123"}]
/// });
/// assert_eq!(resource_patients("Observation", &observation), ["123", "123"]);
/// ```
pub fn resource_patients<'a, J: JsonTree>(resource_type: &str, resource: &'a J) -> Vec<&'a str> {
    let mut patients = Vec::new();
    if resource_type == "Patient"
        && let Some(id) = resource.member("id").and_then(J::text)
    {
        patients.push(id);
    }
    for path in patient_reference_paths(resource_type) {
        visit_references(resource, path, &mut |id| patients.push(id));
    }
    patients
}

/// Whether a resource belongs to patient `patient_id`'s compartment (R4
/// compartmentdefinition-patient.html: one compartment parameter referencing the patient
/// suffices). Always false for types outside the compartment.
///
/// ```
/// use ehrgate_sdk::fhir::in_patient_compartment;
///
/// let allergy = serde_json::json!({
///     "resourceType": "AllergyIntolerance",
///     "patient": {"reference": "Patient/123"},
///     "recorder": {"reference": "Practitioner/dr-adams"}
/// });
/// assert!(in_patient_compartment("AllergyIntolerance", &allergy, "123"));
/// assert!(!in_patient_compartment("AllergyIntolerance", &allergy, "456"));
/// ```
pub fn in_patient_compartment<J: JsonTree>(
    resource_type: &str,
    resource: &J,
    patient_id: &str,
) -> bool {
    if resource_type == "Patient" && resource.member("id").and_then(J::text) == Some(patient_id) {
        return true;
    }
    let mut found = false;
    for path in patient_reference_paths(resource_type) {
        visit_references(resource, path, &mut |id| found |= id == patient_id);
        if found {
            return true;
        }
    }
    false
}

/// Walks `path` (`performer.actor`) from `value`, descending into arrays at every step, and
/// calls `found` with the patient id of every `reference` at the end.
fn visit_references<'a, J: JsonTree>(value: &'a J, path: &str, found: &mut dyn FnMut(&'a str)) {
    if let Some(items) = value.items() {
        for item in items {
            visit_references(item, path, found);
        }
        return;
    }
    match path.split_once('.') {
        Some((first, rest)) => {
            if let Some(child) = value.member(first) {
                visit_references(child, rest, found);
            }
        }
        None => {
            if let Some(references) = value.member(path) {
                match references.items() {
                    Some(items) => {
                        for reference in items {
                            visit_reference(reference, found);
                        }
                    }
                    None => visit_reference(references, found),
                }
            }
        }
    }
}

fn visit_reference<'a, J: JsonTree>(reference: &'a J, found: &mut dyn FnMut(&'a str)) {
    if let Some(id) = reference
        .member("reference")
        .and_then(J::text)
        .and_then(patient_id_of_reference)
    {
        found(id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resource_types_are_sorted_unique_and_complete() {
        assert!(RESOURCE_TYPES.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(RESOURCE_TYPES.len(), 146);
        assert!(is_resource_type("ExplanationOfBenefit"));
        assert!(!is_resource_type("patient"));
        assert!(!is_resource_type("DomainResource"));
    }

    #[test]
    fn every_compartment_type_has_reference_paths_and_nothing_else_does() {
        for resource_type in RESOURCE_TYPES {
            assert_eq!(
                patient_compartment_params(resource_type).is_empty(),
                patient_reference_paths(resource_type).is_empty(),
                "{resource_type}"
            );
        }
        // The same count as the host's table: 66 types in the R4 patient compartment.
        let listed = RESOURCE_TYPES
            .iter()
            .filter(|resource_type| is_compartment_type(resource_type))
            .count();
        assert_eq!(listed, 66);
        for outside in [
            "Practitioner",
            "Organization",
            "Location",
            "Medication",
            "X",
        ] {
            assert!(!is_compartment_type(outside), "{outside}");
            assert!(patient_reference_paths(outside).is_empty(), "{outside}");
        }
    }

    #[test]
    fn reference_paths_cover_the_reference_table() {
        let table: &[(&str, &[&str])] = &[
            ("Observation", &["subject", "performer"]),
            ("Condition", &["subject", "asserter"]),
            ("AllergyIntolerance", &["patient", "recorder", "asserter"]),
            ("Encounter", &["subject"]),
            ("MedicationRequest", &["subject"]),
            ("DiagnosticReport", &["subject"]),
            ("Procedure", &["subject", "performer.actor"]),
            ("Immunization", &["patient"]),
            ("DocumentReference", &["subject", "author"]),
            ("Claim", &["patient"]),
            ("ExplanationOfBenefit", &["patient"]),
            (
                "Coverage",
                &["beneficiary", "subscriber", "policyHolder", "payor"],
            ),
            ("Account", &["subject"]),
            ("ChargeItem", &["subject"]),
            ("Invoice", &["subject", "recipient"]),
            ("Patient", &["link.other"]),
        ];
        for (resource_type, paths) in table {
            let found = patient_reference_paths(resource_type);
            for path in *paths {
                assert!(found.contains(path), "{resource_type} lacks {path}");
            }
        }
    }

    #[test]
    fn references() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Patient/123", Some("123")),
            ("Patient/123/_history/4", Some("123")),
            ("https://ehr.example/fhir/Patient/a-1", Some("a-1")),
            ("HTTP://ehr.example/Patient/7", Some("7")),
            ("Patient/", None),
            ("Patient/1/2", None),
            ("Patient/a_b", None),
            ("Group/1", None),
            ("#contained", None),
            ("urn:uuid:Patient/1", None),
            ("123", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(patient_id_of_reference(reference), *expected, "{reference}");
        }
    }

    #[test]
    fn relative_references() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("Patient/123", Some(("Patient", "123"))),
            ("Observation/a.b-1", Some(("Observation", "a.b-1"))),
            ("Observation/1/_history/2", Some(("Observation", "1"))),
            ("Observation/1/_history/", None),
            ("Observation/1/_history", None),
            ("Observation/1/_history/2/x", None),
            ("Observation/1/history/2", None),
            ("Observation/1/", None),
            ("Observation/", None),
            ("Observation", None),
            ("observation/1", None),
            ("Foo/1", None),
            ("/Patient/1", None),
            ("Patient/1?x=y", None),
            ("https://ehr.example/fhir/Patient/1", None),
            ("#med-1", None),
            ("urn:uuid:6e7b0c5a-0000-4000-8000-000000000000", None),
            ("", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(parse_reference(reference), *expected, "{reference}");
        }
        // The `id` rule caps ids at 64 characters.
        let longest = "7".repeat(64);
        let reference = format!("Patient/{longest}");
        assert_eq!(
            parse_reference(&reference),
            Some(("Patient", longest.as_str()))
        );
        assert_eq!(parse_reference(&format!("{reference}7")), None);
    }

    #[test]
    fn patients_of_resources() {
        let procedure = json!({
            "resourceType": "Procedure",
            "subject": {"reference": "Patient/1"},
            "performer": [
                {"actor": {"reference": "Practitioner/9"}},
                {"actor": {"reference": "Patient/2"}}
            ]
        });
        assert_eq!(resource_patients("Procedure", &procedure), ["1", "2"]);
        assert!(in_patient_compartment("Procedure", &procedure, "2"));
        assert!(!in_patient_compartment("Procedure", &procedure, "9"));

        let coverage = json!({
            "resourceType": "Coverage",
            "beneficiary": {"reference": "Patient/1"},
            "payor": [{"reference": "Organization/ins"}, {"reference": "Patient/3"}]
        });
        assert_eq!(resource_patients("Coverage", &coverage), ["1", "3"]);

        let patient = json!({
            "resourceType": "Patient",
            "id": "1",
            "link": [{"other": {"reference": "Patient/5"}, "type": "seealso"}]
        });
        assert_eq!(resource_patients("Patient", &patient), ["1", "5"]);

        let practitioner = json!({"resourceType": "Practitioner", "id": "1"});
        assert!(resource_patients("Practitioner", &practitioner).is_empty());
        assert!(!in_patient_compartment("Practitioner", &practitioner, "1"));

        // A subject element of the wrong shape names nobody rather than failing.
        let odd = json!({"resourceType": "Observation", "subject": "Patient/1"});
        assert!(resource_patients("Observation", &odd).is_empty());
    }

    #[test]
    fn literal_references() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("Patient/123", Some(("Patient", "123"))),
            (
                "https://ehr.example/fhir/Patient/123",
                Some(("Patient", "123")),
            ),
            (
                "HTTP://ehr.example/Observation/o1/_history/2",
                Some(("Observation", "o1")),
            ),
            ("https://ehr.example/Patient/123/_history", None),
            ("https://ehr.example/fhir/Patient/123?x=1", None),
            ("https://ehr.example/fhir/Patient/123#p", None),
            ("https://ehr.example/fhir/../Patient/123", None),
            ("https://ehr.example//Patient/123", None),
            ("https://Patient/123", None),
            ("ftp://ehr.example/Patient/123", None),
            ("urn:uuid:6e7b0c5a-0000-4000-8000-000000000000", None),
            ("/Patient/123", None),
            ("Patient?identifier=mrn|1", None),
            ("#p1", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(parse_literal_reference(reference), *expected, "{reference}");
        }
    }

    #[test]
    fn patient_parameters_and_links() {
        let without_patient: Vec<&str> = RESOURCE_TYPES
            .iter()
            .copied()
            .filter(|name| is_compartment_type(name) && !defines_patient_param(name))
            .collect();
        assert_eq!(
            without_patient,
            [
                "AdverseEvent",
                "Group",
                "Patient",
                "Schedule",
                "SupplyRequest"
            ]
        );
        for resource_type in RESOURCE_TYPES {
            let links = patient_link_paths(resource_type);
            // Link paths are only for types outside the compartment.
            assert!(
                links.is_empty() || !is_compartment_type(resource_type),
                "{resource_type}"
            );
            // Every type with link search parameters has link paths.
            assert!(patient_link_params(resource_type).is_empty() || !links.is_empty());
        }
    }

    #[test]
    fn billing() {
        assert!(is_billing_type("Claim"));
        assert!(is_billing_type("ExplanationOfBenefit"));
        assert!(!is_billing_type("Observation"));
        assert!(!is_billing_type("Patient"));
    }
}
