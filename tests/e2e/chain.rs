//! The policy chain: order, first enforced deny wins, shadow mode, merged findings, and
//! failed modules as `policy-error` denies.

use std::sync::Arc;

use crate::support::{chaos_request, engine, load, patient_search};
use ehrgate::engine::{
    ChainDecision, ChainLink, ConfiguredPolicy, Mode, POLICY_ERROR_RULE, PolicyChain, PolicyEngine,
};

fn link(engine: &PolicyEngine, name: &str, config: &str, mode: Mode) -> ChainLink {
    ChainLink {
        policy: load(engine, name, "chaos", config),
        mode,
    }
}

fn deny(rule: &str, status: u16) -> String {
    format!(
        r#"{{"verdict":"deny","status":{status},"rule_id":"{rule}","findings":[{{"rule_id":"{rule}.seen","severity":"medium","detail":"{rule}"}}]}}"#
    )
}

#[test]
fn the_first_enforced_deny_wins_and_every_module_runs() {
    let engine = engine();
    let chain = PolicyChain::new(vec![
        link(
            &engine,
            "first",
            r#"{"risk":10,"findings":[{"rule_id":"first.note","severity":"low"}]}"#,
            Mode::Enforce,
        ),
        link(&engine, "second", &deny("second.rule", 403), Mode::Enforce),
        link(&engine, "third", &deny("third.rule", 429), Mode::Enforce),
    ]);
    let outcome = chain.evaluate_blocking(&patient_search());
    match &outcome.decision {
        ChainDecision::Deny { module, denial } => {
            assert_eq!(&**module, "second");
            assert_eq!(
                (denial.status, denial.rule_id.as_str()),
                (403, "second.rule")
            );
        }
        other => panic!("expected a deny, got {other:?}"),
    }
    let order: Vec<&str> = outcome.reports.iter().map(|r| &*r.module).collect();
    assert_eq!(order, ["first", "second", "third"]);
    let findings: Vec<(&str, &str)> = outcome
        .findings()
        .map(|(module, f)| (module, f.rule_id.as_str()))
        .collect();
    assert_eq!(
        findings,
        [
            ("first", "first.note"),
            ("second", "second.rule.seen"),
            ("third", "third.rule.seen")
        ]
    );
    assert_eq!(outcome.risk_score, 10);
}

#[test]
fn order_decides_which_deny_is_reported() {
    let engine = engine();
    let chain = PolicyChain::new(vec![
        link(&engine, "third", &deny("third.rule", 429), Mode::Enforce),
        link(&engine, "second", &deny("second.rule", 403), Mode::Enforce),
    ]);
    match chain.evaluate_blocking(&patient_search()).decision {
        ChainDecision::Deny { module, .. } => assert_eq!(&*module, "third"),
        other => panic!("expected a deny, got {other:?}"),
    }
}

#[test]
fn shadow_denies_are_recorded_but_not_enforced() {
    let engine = engine();
    let chain = PolicyChain::new(vec![
        link(&engine, "trial", &deny("trial.rule", 403), Mode::Shadow),
        link(
            &engine,
            "live",
            r#"{"risk":5,"headers":[["ratelimit-remaining","9"]]}"#,
            Mode::Enforce,
        ),
    ]);
    let outcome = chain.evaluate_blocking(&patient_search());
    assert_eq!(outcome.decision, ChainDecision::Allow);
    let shadow: Vec<(&str, String)> = outcome
        .shadow_denials()
        .map(|(m, d)| (m, d.rule_id))
        .collect();
    assert_eq!(shadow, [("trial", "trial.rule".to_owned())]);
    assert_eq!(
        outcome.findings().count(),
        1,
        "the shadow module's finding is kept"
    );
    assert_eq!(
        outcome.response_headers,
        [("ratelimit-remaining".to_owned(), "9".to_owned())]
    );
}

#[test]
fn a_failing_module_denies_with_policy_error_and_later_modules_still_run() {
    let engine = engine();
    let chain = PolicyChain::new(vec![
        link(&engine, "broken", "{}", Mode::Enforce),
        link(
            &engine,
            "after",
            r#"{"findings":[{"rule_id":"after.ran","severity":"info"}]}"#,
            Mode::Enforce,
        ),
    ]);
    let outcome = chain.evaluate_blocking(&chaos_request("panic"));
    match &outcome.decision {
        ChainDecision::Deny { module, denial } => {
            assert_eq!(&**module, "broken");
            assert_eq!(denial.rule_id, POLICY_ERROR_RULE);
            assert_eq!(denial.status, 500);
            assert!(
                !denial.message.contains("chaos fixture"),
                "the cause stays out of the client message"
            );
        }
        other => panic!("expected a deny, got {other:?}"),
    }
    // `after` sees the same header and panics too; what matters is that it was run.
    assert_eq!(outcome.reports.len(), 2);
    assert!(outcome.reports[0].result.is_err());

    // The chain serves the next request normally.
    assert_eq!(
        chain.evaluate_blocking(&patient_search()).decision,
        ChainDecision::Allow
    );
}

#[test]
fn a_failing_shadow_module_does_not_deny() {
    let engine = engine();
    let chain = PolicyChain::new(vec![link(&engine, "trial", "{}", Mode::Shadow)]);
    let outcome = chain.evaluate_blocking(&chaos_request("recurse"));
    assert_eq!(outcome.decision, ChainDecision::Allow);
    let shadow: Vec<String> = outcome.shadow_denials().map(|(_, d)| d.rule_id).collect();
    assert_eq!(shadow, [POLICY_ERROR_RULE]);
}

#[test]
fn the_response_hook_runs_only_for_modules_that_ask() {
    use ehrgate::engine::Response;
    let engine = engine();
    let asks: Arc<ConfiguredPolicy> =
        load(&engine, "asks", "chaos", r#"{"inspect_response":true}"#);
    assert!(asks.inspects_response);
    let chain = PolicyChain::new(vec![
        ChainLink {
            policy: asks,
            mode: Mode::Enforce,
        },
        link(&engine, "quiet", "{}", Mode::Enforce),
    ]);
    assert!(chain.inspects_response());
    let response = Response {
        status: 200,
        content_type: Some("application/fhir+json".into()),
        body: Some(r#"{"resourceType":"Bundle"}"#.into()),
    };
    let outcome = chain.on_response_blocking(&patient_search(), &response);
    assert_eq!(outcome.reports.len(), 1);
    assert_eq!(&*outcome.reports[0].module, "asks");
    let detail: Vec<&str> = outcome.findings().map(|(_, f)| f.detail.as_str()).collect();
    assert_eq!(detail, ["status 200 body 25 bytes"]);
}

#[test]
fn an_empty_chain_allows() {
    let outcome = PolicyChain::default().evaluate_blocking(&patient_search());
    assert_eq!(outcome.decision, ChainDecision::Allow);
    assert!(outcome.reports.is_empty());
}
