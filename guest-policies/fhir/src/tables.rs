//! FHIR R4 (4.0.1) tables: resource type names, the id rule, which search parameters and
//! elements put a resource in the patient compartment, the types outside it that still name
//! a patient, and billing types.

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

/// Whether `name` is an R4 resource type, spelled exactly (type names are case-sensitive).
///
/// ```
/// use ehrgate_fhir::is_resource_type;
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
/// use ehrgate_fhir::is_valid_id;
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
/// ```
/// use ehrgate_fhir::patient_compartment_params;
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
/// use ehrgate_fhir::is_compartment_type;
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
/// count anyway. Patient itself is special: see the sdk's `resource_patients`.
///
/// ```
/// use ehrgate_fhir::patient_reference_paths;
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
/// use ehrgate_fhir::defines_patient_param;
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
/// use ehrgate_fhir::patient_link_paths;
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
/// use ehrgate_fhir::patient_link_params;
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

/// Billing and payer resource types (R4 financial module). Routes and policies use this to
/// keep clinical roles away from billing data and billing roles away from clinical data.
///
/// ```
/// use ehrgate_fhir::is_billing_type;
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

#[cfg(test)]
mod tests {
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
}
