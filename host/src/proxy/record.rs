//! What happens when a request is done: its metrics, and its decision record in the log
//! (the audit log's writer takes the same record).

use std::sync::Arc;

use super::context::{Decision, RequestContext};
use super::metrics::{FaultLabels, ModuleLabels, RequestLabels, RuleLabels, UpstreamLabels};
use super::{Gateway, Shared};

pub(crate) fn record(shared: &Arc<Shared>, _gateway: &Gateway, context: &RequestContext) {
    let metrics = &shared.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: context.route.clone().unwrap_or_else(|| "none".into()),
            decision: context.decision.label().into(),
            status: context.status,
        })
        .inc();
    if let Some(rule) = context.decision.rule_id()
        && !matches!(context.decision, Decision::Allowed)
    {
        metrics
            .denials
            .get_or_create(&RuleLabels { rule: rule.into() })
            .inc();
    }
    for outcome in [&context.chain, &context.response_chain]
        .into_iter()
        .flatten()
    {
        for report in &outcome.reports {
            metrics
                .policy_seconds
                .get_or_create(&ModuleLabels {
                    module: report.module.to_string(),
                })
                .observe(report.elapsed.as_secs_f64());
            metrics
                .policy_running_seconds
                .get_or_create(&ModuleLabels {
                    module: report.module.to_string(),
                })
                .observe(report.running.as_secs_f64());
            if let Err(fault) = &report.result {
                metrics
                    .policy_faults
                    .get_or_create(&FaultLabels {
                        module: report.module.to_string(),
                        kind: fault.kind().into(),
                    })
                    .inc();
            }
        }
    }
    if let (Some(upstream), Some(elapsed)) = (&context.upstream, context.upstream_time) {
        metrics
            .upstream_seconds
            .get_or_create(&UpstreamLabels {
                upstream: upstream.clone(),
            })
            .observe(elapsed.as_secs_f64());
    }
    let findings: Vec<String> = context
        .chain
        .iter()
        .chain(context.response_chain.iter())
        .flat_map(|o| o.findings().map(|(m, f)| format!("{m}:{}", f.rule_id)))
        .collect();
    tracing::info!(
        target: "ehrgate::decision",
        request_id = %context.id,
        route = context.route.as_deref().unwrap_or("-"),
        method = %context.method,
        path = context.path.as_deref().unwrap_or("-"),
        subject = context.principal.as_ref().map_or("-", |p| p.subject.as_str()),
        client = context.principal.as_ref().map_or("-", |p| p.client_id.as_str()),
        source = %context.peer.ip(),
        decision = context.decision.label(),
        rule = context.decision.rule_id().unwrap_or("-"),
        status = context.status,
        upstream_status = context.upstream_status.unwrap_or(0),
        patients = %context.patients.join(","),
        findings = %findings.join(","),
        risk = context.chain.as_ref().map_or(0, |c| c.risk_score),
        policy_us = context.policy_time.as_micros() as u64,
        total_us = context.started.elapsed().as_micros() as u64,
        "decision"
    );
}
