//! Combining the detectors' signals into one risk score and the score into an action.

use ehrgate_sdk::{Decision, Severity};

use crate::config::Bands;

/// The rule id of the finding that puts an allowed request on the review queue.
pub const REVIEW_RULE: &str = "anomaly.review";
/// The rule id of a refusal by score.
pub const DENY_RULE: &str = "anomaly.deny";

/// What one detector noticed.
pub struct Signal {
    pub rule_id: &'static str,
    pub severity: Severity,
    /// 0 to 100: the detector's share of the risk score.
    pub weight: u8,
    /// For the auditor: counts and ids, never names or clinical content.
    pub detail: String,
}

/// The combined risk score, 0 to 100: each weight is read as the chance that its signal
/// alone means misuse, and the score as the chance that at least one does (a noisy-OR,
/// assuming independent signals). Two weak signals together rise above either (after-hours
/// 20 with no care relationship 45 gives 56) without any pair of them reaching certainty,
/// and one strong signal is never diluted by quiet detectors, as an average would be.
pub fn risk_score(signals: &[Signal]) -> u8 {
    let quiet: f64 = signals
        .iter()
        .map(|s| 1.0 - f64::from(s.weight.min(100)) / 100.0)
        .product();
    ((1.0 - quiet) * 100.0).round().clamp(0.0, 100.0) as u8
}

/// The decision for `signals` under `bands`: allow and record below `review`, allow with an
/// `anomaly.review` finding (severity high) from `review`, 403 `anomaly.deny` from `deny`.
/// Every signal is a finding either way, so the audit record says why.
pub fn decide(bands: &Bands, signals: &[Signal]) -> Decision {
    let score = risk_score(signals);
    let fired: Vec<&str> = signals
        .iter()
        .filter(|s| s.weight > 0)
        .map(|s| s.rule_id)
        .collect();
    let mut decision = if bands.deny.is_some_and(|deny| score >= deny) {
        Decision::deny(
            403,
            DENY_RULE,
            "this access pattern needs review before it can continue; contact the privacy office",
        )
    } else if score >= bands.review {
        Decision::allow().with_finding(
            REVIEW_RULE,
            Severity::High,
            &format!("risk {score}: {}", fired.join(", ")),
        )
    } else {
        Decision::allow()
    };
    for signal in signals {
        decision = decision.with_finding(signal.rule_id, signal.severity, &signal.detail);
    }
    decision.with_risk(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(weight: u8) -> Signal {
        Signal {
            rule_id: "anomaly.test",
            severity: Severity::Low,
            weight,
            detail: String::new(),
        }
    }

    #[test]
    fn scores_combine_as_a_noisy_or() {
        assert_eq!(risk_score(&[]), 0);
        assert_eq!(risk_score(&[signal(45)]), 45);
        assert_eq!(risk_score(&[signal(20), signal(45)]), 56);
        assert_eq!(risk_score(&[signal(60), signal(45)]), 78);
        assert_eq!(risk_score(&[signal(100), signal(0)]), 100);
        assert_eq!(risk_score(&[signal(0), signal(0)]), 0);
    }

    #[test]
    fn bands_pick_the_action() {
        let bands = Bands::default();
        assert!(decide(&bands, &[signal(20)]).is_allow());
        let review = decide(&bands, &[signal(45)]);
        assert!(review.is_allow());
        assert_eq!(review.findings[0].rule_id, REVIEW_RULE);
        assert_eq!(review.risk_score, 45);
        assert!(!decide(&bands, &[signal(80)]).is_allow());
        let never = Bands {
            review: 40,
            deny: None,
        };
        assert!(decide(&never, &[signal(100)]).is_allow());
    }
}
