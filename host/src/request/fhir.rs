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
