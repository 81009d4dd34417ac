//! An ehrgate policy: residents may open only the charts of patients on their own ward.
//!
//! The ward lists come from the module's config (the gateway passes it to `init`), so the
//! hospital updates them with a config reload, not a rebuild.

use std::collections::BTreeMap;

use ehrgate_sdk::{Decision, Policy, Request, Severity};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The role this rule applies to.
    #[serde(default = "resident")]
    role: String,
    /// Each resident (their `fhirUser`, for example `Practitioner/res-1`) and the patient
    /// ids on their ward.
    wards: BTreeMap<String, Vec<String>>,
}

fn resident() -> String {
    "resident".to_owned()
}

struct WardOnly;

impl Policy for WardOnly {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if config.role.is_empty() {
            return Err("`role` is empty; expected the role name residents carry".to_owned());
        }
        Ok(())
    }

    fn evaluate(config: &Config, request: &Request) -> Decision {
        let Some(principal) = &request.principal else {
            return Decision::allow();
        };
        if !principal.has_role(&config.role) {
            return Decision::allow();
        }
        let ward = principal
            .fhir_user
            .as_ref()
            .and_then(|user| config.wards.get(user));
        let off_ward = request
            .patients
            .iter()
            .find(|patient| !ward.is_some_and(|ward| ward.contains(patient)));
        match off_ward {
            None => Decision::allow(),
            Some(patient) => Decision::deny(
                403,
                "ward-only.off-ward",
                "residents may open only the charts of patients on their ward",
            )
            .with_finding("ward-only.off-ward", Severity::Medium, &format!("patient {patient}")),
        }
    }
}

ehrgate_sdk::export_policy!(WardOnly);

// Unit tests of the rule, run natively with `cargo test`: quicker to write and run than
// fixture cases, which check the compiled module through the gateway's request path.
#[cfg(test)]
mod tests {
    use ehrgate_sdk::{Interaction, Policy, Request, config, testing};

    use super::{Config, WardOnly};

    fn config() -> Config {
        config::parse(r#"{"wards": {"Practitioner/res-1": ["p1", "p2"]}}"#)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Resident `res-1` (with `roles`) opening patient `patient`'s chart.
    fn open_chart(patient: &str, roles: &[&str]) -> Request {
        let mut caller = testing::principal("res-1");
        caller.fhir_user = Some("Practitioner/res-1".to_owned());
        caller.roles = roles.iter().map(|role| (*role).to_owned()).collect();
        let mut request = testing::request(Interaction::Read, Some("Patient"));
        request.resource_id = Some(patient.to_owned());
        request.patients = vec![patient.to_owned()];
        request.principal = Some(caller);
        request
    }

    #[test]
    fn a_resident_opens_a_chart_on_her_ward() {
        let decision = WardOnly::evaluate(&config(), &open_chart("p1", &["resident"]));
        assert!(decision.is_allow());
    }

    #[test]
    fn a_resident_is_refused_a_chart_off_her_ward() {
        let decision = WardOnly::evaluate(&config(), &open_chart("p9", &["resident"]));
        assert!(!decision.is_allow());
        assert_eq!(decision.findings[0].rule_id, "ward-only.off-ward");
    }

    #[test]
    fn attendings_are_not_limited_to_a_ward() {
        let decision = WardOnly::evaluate(&config(), &open_chart("p9", &["attending"]));
        assert!(decision.is_allow());
    }

    #[test]
    fn a_mistyped_config_is_refused_naming_the_field() {
        let error = config::parse::<Config>(r#"{"ward": {}}"#).err().unwrap_or_default();
        assert!(error.contains("unknown field `ward`"), "{error}");
    }
}
