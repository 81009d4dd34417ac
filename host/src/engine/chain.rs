//! The policy chain of a route: modules in order, each in `enforce` or `shadow` mode. Every
//! module sees the same canonical request and every module runs, so the audit record has
//! every module's findings; the first enforced deny decides. A module that fails (trap,
//! deadline, memory, bad output) is an enforced deny with rule `policy-error`.
//!
//! A chain runs as one job on the engine pool, off the HTTP threads; the request's task
//! awaits its outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::bindings::{Request, Response};
use super::invoke::{Export, PolicyFault};
use super::meter::CallMeter;
use super::verdict::{Denial, Finding, ModuleDecision, POLICY_ERROR_RULE};
use super::{ConfiguredPolicy, Evaluation};
use tokio::sync::oneshot;

/// Whether a module's deny is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Its deny refuses the request.
    #[default]
    Enforce,
    /// It is evaluated and audited; its deny is recorded as a shadow deny and not enforced.
    /// For trying a new policy on live traffic.
    Shadow,
}

/// One module of a chain.
#[derive(Clone)]
pub struct ChainLink {
    pub policy: Arc<ConfiguredPolicy>,
    pub mode: Mode,
}

/// An ordered list of modules.
#[derive(Clone, Default)]
pub struct PolicyChain {
    links: Vec<ChainLink>,
}

/// What one module said about one request.
#[derive(Debug, Clone)]
pub struct ModuleReport {
    pub module: Arc<str>,
    pub mode: Mode,
    pub result: Result<ModuleDecision, PolicyFault>,
    /// Wall-clock time from asking for a slot to the decision (queueing included).
    pub elapsed: Duration,
    /// The module's own running time: what its deadline counts.
    pub running: Duration,
}

impl ModuleReport {
    /// The refusal this module asks for: its deny, or `policy-error` when it failed.
    pub fn denial(&self) -> Option<Denial> {
        match &self.result {
            Ok(decision) => decision.denial.clone(),
            Err(fault) => Some(fault_denial(&self.module, fault)),
        }
    }

    /// Findings the module reported (none when it failed).
    pub fn findings(&self) -> &[Finding] {
        match &self.result {
            Ok(decision) => &decision.findings,
            Err(_) => &[],
        }
    }
}

/// The chain's combined decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainDecision {
    Allow,
    Deny { module: Arc<str>, denial: Denial },
}

/// Everything the chain produced for one request.
#[derive(Debug, Clone)]
pub struct ChainOutcome {
    pub decision: ChainDecision,
    /// One report per module, in chain order.
    pub reports: Vec<ModuleReport>,
    /// The highest risk score of the enforced modules.
    pub risk_score: u8,
    /// Headers for the client: on a deny, the denying module's; on an allow, every
    /// enforced module's, in chain order.
    pub response_headers: Vec<(String, String)>,
}

impl ChainOutcome {
    /// Every finding with the module that reported it.
    pub fn findings(&self) -> impl Iterator<Item = (&str, &Finding)> {
        self.reports
            .iter()
            .flat_map(|r| r.findings().iter().map(move |f| (&*r.module, f)))
    }

    /// Modules in shadow mode that would have denied, with their denial.
    pub fn shadow_denials(&self) -> impl Iterator<Item = (&str, Denial)> {
        self.reports
            .iter()
            .filter(|r| r.mode == Mode::Shadow)
            .filter_map(|r| r.denial().map(|d| (&*r.module, d)))
    }
}

/// The refusal for a failed module. The cause goes to the log and the audit record, not to
/// the client: a panic message may quote request data.
pub fn fault_denial(module: &str, fault: &PolicyFault) -> Denial {
    Denial {
        status: if fault.is_transient() { 503 } else { 500 },
        rule_id: POLICY_ERROR_RULE.to_owned(),
        message: format!("policy `{module}` failed, so the request was refused"),
        retry_after_secs: fault.is_transient().then_some(1),
    }
}

impl PolicyChain {
    pub fn new(links: Vec<ChainLink>) -> Self {
        PolicyChain { links }
    }

    pub fn links(&self) -> &[ChainLink] {
        &self.links
    }

    /// Whether any module wants to see the upstream's response.
    pub fn inspects_response(&self) -> bool {
        self.links.iter().any(|l| l.policy.inspects_response)
    }

    /// Runs every module on `request`, on the engine pool.
    pub async fn evaluate(&self, request: Arc<Request>) -> ChainOutcome {
        let (modules, pending) = self.submit(self.links.to_vec(), evaluate_job(request));
        finish(modules, pending.await)
    }

    /// Runs `on-response` of the modules that asked for it, on the engine pool.
    pub async fn on_response(&self, request: Arc<Request>, response: Response) -> ChainOutcome {
        let (modules, pending) = self.submit(self.inspecting(), on_response_job(request, response));
        finish(modules, pending.await)
    }

    /// [`evaluate`](Self::evaluate), waiting on the calling thread (tools and tests; not on
    /// an async task).
    pub fn evaluate_blocking(&self, request: &Request) -> ChainOutcome {
        let job = evaluate_job(Arc::new(request.clone()));
        let (modules, pending) = self.submit(self.links.to_vec(), job);
        finish(modules, pending.blocking_recv())
    }

    /// [`on_response`](Self::on_response), waiting on the calling thread.
    pub fn on_response_blocking(&self, request: &Request, response: &Response) -> ChainOutcome {
        let job = on_response_job(Arc::new(request.clone()), response.clone());
        let (modules, pending) = self.submit(self.inspecting(), job);
        finish(modules, pending.blocking_recv())
    }

    /// [`evaluate`](Self::evaluate) on the calling thread, without the hand-off to the
    /// engine pool (and without its isolation): what the engine's own work costs, for
    /// benchmarks.
    pub fn evaluate_in_place(&self, request: &Request) -> ChainOutcome {
        let call = evaluate_job(Arc::new(request.clone()));
        let meter = Arc::new(CallMeter::default());
        let job = run_links(self.links.to_vec(), call, meter.clone());
        combine(super::pool::run_here(meter, job))
    }

    fn inspecting(&self) -> Vec<ChainLink> {
        self.links
            .iter()
            .filter(|l| l.policy.inspects_response)
            .cloned()
            .collect()
    }

    /// Submits one engine job that calls `call` for each link in order.
    fn submit<F, Fut>(
        &self,
        links: Vec<ChainLink>,
        call: F,
    ) -> (Modules, oneshot::Receiver<Vec<ModuleReport>>)
    where
        F: Fn(Arc<ConfiguredPolicy>, Arc<CallMeter>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Evaluation> + Send + 'static,
    {
        let modules: Modules = links
            .iter()
            .map(|l| (l.policy.name.clone(), l.mode))
            .collect();
        let Some(first) = links.first() else {
            let (sender, receiver) = oneshot::channel();
            let _ = sender.send(Vec::new());
            return (modules, receiver);
        };
        let pool_owner = first.policy.clone();
        let starts_long = links.iter().any(|l| l.policy.runs_long());
        let meter = Arc::new(CallMeter::default());
        let job = run_links(links, call, meter.clone());
        (
            modules,
            pool_owner.shared.pool.submit(meter, job, starts_long),
        )
    }
}

/// Calls `call` for each link in order, within the job metered by `meter`; a module's
/// failure is logged with its cause.
async fn run_links<F, Fut>(
    links: Vec<ChainLink>,
    call: F,
    meter: Arc<CallMeter>,
) -> Vec<ModuleReport>
where
    F: Fn(Arc<ConfiguredPolicy>, Arc<CallMeter>) -> Fut,
    Fut: std::future::Future<Output = Evaluation>,
{
    let mut reports = Vec::with_capacity(links.len());
    for link in links {
        let started = Instant::now();
        let evaluation = call(link.policy.clone(), meter.clone()).await;
        if let Err(fault) = &evaluation.result {
            tracing::warn!(
                module = %link.policy.name,
                fault = fault.kind(),
                cause = %fault,
                "policy module failed"
            );
        }
        reports.push(ModuleReport {
            module: link.policy.name.clone(),
            mode: link.mode,
            result: evaluation.result,
            elapsed: started.elapsed(),
            running: evaluation.running,
        });
    }
    reports
}

fn evaluate_job(
    request: Arc<Request>,
) -> impl Fn(Arc<ConfiguredPolicy>, Arc<CallMeter>) -> BoxedEvaluation + Send + 'static {
    move |policy, meter| {
        let request = request.clone();
        Box::pin(async move { policy.decide(&meter, Export::Evaluate(&request)).await })
    }
}

fn on_response_job(
    request: Arc<Request>,
    response: Response,
) -> impl Fn(Arc<ConfiguredPolicy>, Arc<CallMeter>) -> BoxedEvaluation + Send + 'static {
    let response = Arc::new(response);
    move |policy, meter| {
        let (request, response) = (request.clone(), response.clone());
        Box::pin(async move {
            policy
                .decide(&meter, Export::OnResponse(&request, &response))
                .await
        })
    }
}

/// The modules of a submitted job, by name and mode, for the reports of a job that never
/// reported.
type Modules = Vec<(Arc<str>, Mode)>;

type BoxedEvaluation = std::pin::Pin<Box<dyn std::future::Future<Output = Evaluation> + Send>>;

/// The outcome from the job's reports; a job that never reported (the pool shut down under
/// the request) is a failure of every module.
fn finish(
    modules: Modules,
    reports: Result<Vec<ModuleReport>, oneshot::error::RecvError>,
) -> ChainOutcome {
    let reports = reports.unwrap_or_else(|_| {
        modules
            .into_iter()
            .map(|(module, mode)| ModuleReport {
                module,
                mode,
                result: Err(super::engine_stopped()),
                elapsed: Duration::ZERO,
                running: Duration::ZERO,
            })
            .collect()
    });
    combine(reports)
}

/// First enforced deny wins; risk is the enforced maximum.
fn combine(reports: Vec<ModuleReport>) -> ChainOutcome {
    let enforced = || reports.iter().filter(|r| r.mode == Mode::Enforce);
    let deciding = enforced().find_map(|r| r.denial().map(|d| (r, d)));
    let risk_score = enforced()
        .filter_map(|r| r.result.as_ref().ok())
        .map(|d| d.risk_score)
        .max()
        .unwrap_or(0);
    let headers_of = |r: &ModuleReport| match &r.result {
        Ok(decision) => decision.response_headers.clone(),
        Err(_) => Vec::new(),
    };
    let (decision, response_headers) = match deciding {
        Some((report, denial)) => (
            ChainDecision::Deny {
                module: report.module.clone(),
                denial,
            },
            headers_of(report),
        ),
        None => (
            ChainDecision::Allow,
            enforced().flat_map(headers_of).collect(),
        ),
    };
    ChainOutcome {
        decision,
        reports,
        risk_score,
        response_headers,
    }
}
