//! ehrgate policy `anomaly`: anomalous-access detectors with a combined risk score.
//!
//! Detectors (rule ids under `anomaly.`): `volume` and `burst` (distinct patients per user
//! per hour and per five minutes), `vip` (restricted patients), `self-lookup`,
//! `no-care-relationship` (against the operator's care-team file), `after-hours` (day-shift
//! roles), `name-search` (name-search trawling) and `break-glass-rate`. Each raises a
//! finding with a severity and a weight; the weights combine into a risk score 0-100
//! ([`score::risk_score`]) and the score's band decides: allow and record, allow with an
//! `anomaly.review` finding, or refuse with 403 `anomaly.deny`.
//!
//! Rules alone are a weak detector (Boxwala et al., JAMIA 2011: a rule baseline caught none
//! of 58 confirmed violations that learned models found), so the score is meant for the
//! audit trail and the review queue first; only the strongest patterns deny by default.
//! A state error fails closed with 503 `anomaly.state-unavailable`.

mod access;
mod config;
mod detectors;
mod relations;
mod score;

use ehrgate_sdk::{Decision, Level, Policy, Request, Severity};

use access::Access;
use config::Config;

const STATE_UNAVAILABLE_RULE: &str = "anomaly.state-unavailable";

struct Anomaly;

impl Policy for Anomaly {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        config.validate()
    }

    fn evaluate(config: &Config, request: &Request) -> Decision {
        // Anonymous requests (routes that allow them) touch no patient record.
        let Some(principal) = &request.principal else {
            return Decision::allow();
        };
        let access = Access::new(config, request, principal);
        match detectors::run(config, &access) {
            Ok(signals) => score::decide(&config.bands, &signals),
            Err(error) => {
                ehrgate_sdk::log(Level::Warn, &format!("anomaly state error: {error}"));
                let detail: String = error.chars().take(256).collect();
                Decision::deny(
                    503,
                    STATE_UNAVAILABLE_RULE,
                    "access checks are unavailable right now",
                )
                .with_retry_after(1)
                .with_finding(STATE_UNAVAILABLE_RULE, Severity::High, &detail)
            }
        }
    }
}

ehrgate_sdk::export_policy!(Anomaly);
