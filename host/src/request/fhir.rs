//! FHIR R4 (4.0.1) facts the classifier needs: the shared tables and reference parser of the
//! `ehrgate-fhir` crate (which the policy sdk re-exports, so host and policies read FHIR the
//! same way), and the host's own lookup of a type name in a request path.

pub use ehrgate_fhir::reference::{Reference, mentioned_ids};
pub use ehrgate_fhir::{
    RESOURCE_TYPES, defines_patient_param, is_billing_type, is_compartment_type, is_valid_id,
    patient_compartment_params,
};

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

#[cfg(test)]
mod tests {
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
