//! FHIR R4 (4.0.1) facts the classifier needs: resource type names, the id rule, which search
//! parameters put a resource in the patient compartment, and which types are billing data.

/// Every FHIR R4 (4.0.1) resource type name, sorted (byte order), from the R4 resource list
/// (hl7.org/fhir/R4/resourcelist.html).
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

/// What a path segment in the resource-type position names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeName {
    /// An R4 resource type, spelled exactly.
    Known(&'static str),
    /// An R4 resource type spelled with the wrong case (`patient`); holds the right spelling.
    /// FHIR type names are case-sensitive, but some servers match them case-insensitively, so
    /// the gateway refuses the spelling rather than guess which resource the server will serve.
    WrongCase(&'static str),
    /// Not an R4 resource type.
    Unknown,
}

/// Looks up a resource type name.
pub fn resource_type(name: &str) -> TypeName {
    if let Ok(index) = RESOURCE_TYPES.binary_search(&name) {
        return RESOURCE_TYPES
            .get(index)
            .map_or(TypeName::Unknown, |known| TypeName::Known(known));
    }
    RESOURCE_TYPES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .map_or(TypeName::Unknown, |known| TypeName::WrongCase(known))
}

/// The FHIR `id` rule (R4 datatypes.html#id): 1 to 64 characters of `[A-Za-z0-9\-\.]`.
/// Resource ids and version ids both follow it.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// The search parameters that put a resource of `resource_type` in the patient compartment
/// (R4 compartmentdefinition-patient.html): a resource is in patient P's compartment when one
/// of these parameters references `Patient/P`. A few entries add a parameter that targets the
/// same element under another name (CarePlan `subject` beside the official `patient`), because
/// a request can name either. Empty for types outside the compartment (Practitioner,
/// Organization, Location, Medication, ...) and for unknown types.
///
/// The guest sdk keeps its own copy (`guest-policies/sdk/src/fhir.rs`, which guests cannot
/// import from here); the two tables must stay identical, which a unit test below checks.
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

/// Billing and payer resource types (R4 financial module: claims, coverage, payment and
/// billing). Routes and policies use this to keep clinical roles away from billing data and
/// billing roles away from clinical data.
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

/// Whether resources of `resource_type` can belong to a patient compartment (Patient
/// itself included).
pub fn is_compartment_type(resource_type: &str) -> bool {
    !patient_compartment_params(resource_type).is_empty()
}

/// Whether `resource_type` defines the `patient` search parameter in R4 (4.0.1)
/// (searchparameter-registry). A server ignores (or refuses) `patient=` on the others, so it
/// names no patient there. Same table as the sdk's, which judges pins with it.
pub fn defines_patient_param(resource_type: &str) -> bool {
    match resource_type {
        "AdverseEvent" | "Group" | "Patient" | "Schedule" | "SupplyRequest" => false,
        "Contract" | "Device" | "GuidanceResponse" | "Task" => true,
        other => is_compartment_type(other),
    }
}

#[cfg(test)]
mod tests {
    /// The guest sdk's copy of these tables, which guests use to judge responses.
    const GUEST_COPY: &str = include_str!("../../../guest-policies/sdk/src/fhir.rs");
    const HOST_COPY: &str = include_str!("fhir.rs");

    /// The text of the item that starts with `start` (up to its closing line at column 0),
    /// without comments and whitespace.
    fn item(source: &str, start: &str) -> String {
        let Some(begin) = source.find(start) else {
            return format!("<`{start}` missing>");
        };
        let rest = &source[begin..];
        let end = [rest.find("\n}\n"), rest.find("\n];\n")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        rest[..end]
            .lines()
            .map(|line| line.split("//").next().unwrap_or("").trim())
            .collect::<Vec<_>>()
            .join("")
    }

    #[test]
    fn the_guest_sdk_copy_of_the_fhir_tables_is_identical() {
        for start in [
            "pub const RESOURCE_TYPES: &[&str] = &[",
            "pub fn patient_compartment_params(resource_type: &str)",
            "pub fn is_billing_type(resource_type: &str)",
            "pub fn is_compartment_type(resource_type: &str)",
            "pub fn defines_patient_param(resource_type: &str)",
        ] {
            assert_eq!(
                item(HOST_COPY, start),
                item(GUEST_COPY, start),
                "`{start}` differs between host/src/request/fhir.rs and guest-policies/sdk/src/fhir.rs"
            );
        }
    }

    use super::*;

    #[test]
    fn resource_types_are_sorted_unique_and_complete() {
        assert!(RESOURCE_TYPES.windows(2).all(|pair| pair[0] < pair[1]));
        // R4 4.0.1 defines 146 concrete resource types.
        assert_eq!(RESOURCE_TYPES.len(), 146);
    }

    #[test]
    fn type_lookup() {
        let cases: &[(&str, TypeName)] = &[
            ("Patient", TypeName::Known("Patient")),
            (
                "ExplanationOfBenefit",
                TypeName::Known("ExplanationOfBenefit"),
            ),
            ("VisionPrescription", TypeName::Known("VisionPrescription")),
            ("Account", TypeName::Known("Account")),
            ("patient", TypeName::WrongCase("Patient")),
            ("OBSERVATION", TypeName::WrongCase("Observation")),
            (
                "explanationofbenefit",
                TypeName::WrongCase("ExplanationOfBenefit"),
            ),
            ("Patients", TypeName::Unknown),
            ("metadata", TypeName::Unknown),
            ("", TypeName::Unknown),
            ("DomainResource", TypeName::Unknown),
        ];
        for (name, expected) in cases {
            assert_eq!(resource_type(name), *expected, "{name}");
        }
    }

    #[test]
    fn ids() {
        let cases: &[(&str, bool)] = &[
            ("123", true),
            ("a-B.9", true),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
            ("", false),
            ("a_b", false),
            ("a b", false),
            ("Patient/1", false),
            ("é", false),
        ];
        for (id, valid) in cases {
            assert_eq!(is_valid_id(id), *valid, "{id}");
        }
    }

    #[test]
    fn compartment_params_cover_the_reference_table_and_only_known_types() {
        let table: &[(&str, &[&str])] = &[
            ("Patient", &["link"]),
            ("Observation", &["subject", "performer"]),
            ("Condition", &["patient", "asserter"]),
            ("AllergyIntolerance", &["patient", "recorder", "asserter"]),
            ("Encounter", &["patient"]),
            ("MedicationRequest", &["subject"]),
            ("DiagnosticReport", &["subject"]),
            ("Procedure", &["patient", "performer"]),
            ("Immunization", &["patient"]),
            ("DocumentReference", &["subject", "author"]),
            ("Claim", &["patient", "payee"]),
            ("ExplanationOfBenefit", &["patient", "payee"]),
            (
                "Coverage",
                &["policy-holder", "subscriber", "beneficiary", "payor"],
            ),
            ("Account", &["subject"]),
            ("ChargeItem", &["subject"]),
            ("Invoice", &["subject", "patient", "recipient"]),
        ];
        for (resource, params) in table {
            let found = patient_compartment_params(resource);
            for param in *params {
                assert!(found.contains(param), "{resource} lacks {param}");
            }
        }
        for outside in [
            "Practitioner",
            "Organization",
            "Location",
            "Medication",
            "Unknown",
        ] {
            assert!(patient_compartment_params(outside).is_empty(), "{outside}");
        }
        // The match has 66 arms; all of them must be R4 type names, or a misspelled arm would
        // silently leave its type outside the compartment.
        let listed = RESOURCE_TYPES
            .iter()
            .filter(|resource| !patient_compartment_params(resource).is_empty())
            .count();
        assert_eq!(listed, 66);
    }

    #[test]
    fn billing_types() {
        let billing_types = [
            "Account",
            "ChargeItem",
            "Claim",
            "ClaimResponse",
            "Coverage",
            "CoverageEligibilityRequest",
            "CoverageEligibilityResponse",
            "ExplanationOfBenefit",
            "Invoice",
            "PaymentNotice",
            "PaymentReconciliation",
        ];
        for billing in billing_types {
            assert!(is_billing_type(billing), "{billing}");
            assert!(matches!(resource_type(billing), TypeName::Known(_)));
        }
        for clinical in ["Patient", "Observation", "claim", "Encounter"] {
            assert!(!is_billing_type(clinical), "{clinical}");
        }
    }
}
