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
