//! Test fixture. Its decision comes from its config (so chain tests can line up allows,
//! denies, findings and shadow modules), and the request header `x-chaos` makes it
//! misbehave in one of the ways the sandbox must contain.

use ehrgate_sdk::state::{self, Bucket};
use ehrgate_sdk::{Capabilities, Decision, Policy, Request, Response, Severity};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `allow` or `deny`.
    #[serde(default = "allow")]
    verdict: String,
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default = "default_rule")]
    rule_id: String,
    #[serde(default)]
    findings: Vec<FindingConfig>,
    #[serde(default)]
    risk: u8,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    inspect_response: bool,
    /// Makes `init` refuse the config, as a module with a real config check would.
    #[serde(default)]
    reject: bool,
    /// Deny a batch or transaction when any entry is of this resource type.
    #[serde(default)]
    deny_entry_type: Option<String>,
    /// Deny when the request touches this patient.
    #[serde(default)]
    deny_patient: Option<String>,
    /// Misbehave this way on every request, as if it were in `x-chaos` (for routes whose
    /// module is broken throughout: benches and isolation tests).
    #[serde(default)]
    behaviour: Option<String>,
    /// `burn`: loop iterations of legal work per call.
    #[serde(default = "default_burn")]
    burn_iterations: u64,
    /// `flood`: new state keys inserted per call, in every table.
    #[serde(default = "default_flood")]
    flood_keys: u32,
    /// `bucket`: the refill period of the two-token bucket per subject.
    #[serde(default = "default_bucket_period")]
    bucket_period_ms: u64,
}

fn default_bucket_period() -> u64 {
    1000
}

fn default_burn() -> u64 {
    1_000_000
}
fn default_flood() -> u32 {
    1_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingConfig {
    rule_id: String,
    severity: String,
    #[serde(default)]
    detail: String,
}

fn allow() -> String {
    "allow".to_owned()
}
fn default_status() -> u16 {
    403
}
fn default_rule() -> String {
    "chaos.deny".to_owned()
}

struct Chaos;

static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Policy for Chaos {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), String> {
        if config.reject {
            return Err("`reject` is true: this fixture refuses its config".to_owned());
        }
        if config.verdict != "allow" && config.verdict != "deny" {
            return Err(format!(
                "`verdict` is `{}`; expected `allow` or `deny`",
                config.verdict
            ));
        }
        Ok(())
    }

    fn capabilities(config: &Config) -> Capabilities {
        Capabilities {
            inspect_response: config.inspect_response,
        }
    }

    fn evaluate(config: &Config, request: &Request) -> Decision {
        if let Some(behaviour) = request.header("x-chaos").or(config.behaviour.as_deref()) {
            return misbehave(behaviour, config, request);
        }
        if let Some(denied) = &config.deny_entry_type
            && let Some(index) = request
                .entries
                .iter()
                .position(|e| e.resource_type.as_deref() == Some(denied.as_str()))
        {
            return Decision::deny(
                403,
                "chaos.entry-type",
                &format!("bundle entry {index} is a `{denied}`"),
            );
        }
        if let Some(denied) = &config.deny_patient
            && request.patients.iter().any(|p| p == denied)
        {
            return Decision::deny(403, "chaos.patient", "this patient is off limits");
        }
        configured(config)
    }

    fn on_response(config: &Config, _request: &Request, response: &Response) -> Decision {
        let body_len = response.body.as_ref().map_or(0, |b| b.len());
        configured(config).with_finding(
            "chaos.response",
            Severity::Info,
            &format!("status {} body {body_len} bytes", response.status),
        )
    }
}

fn configured(config: &Config) -> Decision {
    let mut decision = if config.verdict == "deny" {
        Decision::deny(config.status, &config.rule_id, "denied by configuration")
    } else {
        Decision::allow()
    };
    for finding in &config.findings {
        decision = decision.with_finding(
            &finding.rule_id,
            severity(&finding.severity),
            &finding.detail,
        );
    }
    for (name, value) in &config.headers {
        decision = decision.with_header(name, value);
    }
    decision.with_risk(config.risk)
}

fn severity(name: &str) -> Severity {
    match name {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => Severity::Info,
    }
}

fn misbehave(behaviour: &str, config: &Config, request: &Request) -> Decision {
    match behaviour {
        "burn" => {
            // Legal work that takes a while: a module that is merely slow.
            let mut sum = 0u64;
            for i in 0..config.burn_iterations {
                sum = std::hint::black_box(sum.wrapping_mul(31).wrapping_add(i));
            }
            Decision::allow().with_risk((sum % 2) as u8)
        }
        "flood" => {
            // New keys in every state table on every call: an attempt to evict others'.
            let bucket = Bucket {
                capacity: 5,
                refill_tokens: 1,
                refill_period_ms: 1000,
            };
            for i in 0..config.flood_keys {
                let key = format!("flood-{}-{i}", request.id);
                let _ = bucket.take(&key, 1);
                let _ = state::distinct_add(&key, &key, 3_600_000);
                let _ = state::counter_add(&key, 1, 60_000);
            }
            Decision::allow()
        }
        "loop" => loop {
            std::hint::black_box(());
        },
        "grow" => grow_memory_forever(),
        "recurse" => Decision::allow().with_risk(recurse(std::hint::black_box(1)) as u8),
        "panic" => panic!("chaos fixture panicked on request"),
        "huge" => Decision::deny(403, "chaos.huge", &"x".repeat(8 << 20)),
        "bad-status" => Decision::deny(200, "chaos.bad-status", "a deny with status 200"),
        "bad-rule" => Decision::deny(403, "Not A Rule!", "rule id with spaces"),
        "bad-header" => Decision::allow().with_header("content-length", "0"),
        "stdout" => {
            // The sandbox has no stdout: this calls a WASI import that traps.
            println!("hello from the sandbox");
            Decision::allow()
        }
        "log-spam" => {
            // More lines than the per-call cap, one with a newline that must not forge a
            // line of the gateway's text log.
            for i in 0..40 {
                ehrgate_sdk::log(ehrgate_sdk::Level::Info, &format!("spam {i}\nforged line"));
            }
            Decision::allow()
        }
        "huge-log" => {
            // More than the host's per-call hostcall byte cap.
            ehrgate_sdk::log(ehrgate_sdk::Level::Info, &"y".repeat(1 << 20));
            Decision::allow()
        }
        "static-counter" => {
            // A fresh instance per evaluation: this is 1 every time.
            let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            Decision::allow().with_finding("chaos.calls", Severity::Info, &calls.to_string())
        }
        "echo" => Decision::allow().with_finding("chaos.echo", Severity::Info, &echo(request)),
        "bucket" => match (Bucket {
            capacity: 2,
            refill_tokens: 1,
            refill_period_ms: config.bucket_period_ms,
        })
        .take(request.subject(), 1)
        {
            Ok(status) if status.allowed => {
                Decision::allow().with_header("ratelimit-remaining", &status.remaining.to_string())
            }
            Ok(status) => Decision::deny(429, "chaos.rate", "slow down")
                .with_retry_after(status.retry_after_ms.div_ceil(1000) as u32),
            Err(e) => Decision::deny(500, "chaos.state-error", &e),
        },
        "distinct" => {
            let member = request.patients.first().map_or("none", |p| p.as_str());
            match state::distinct_add(request.subject(), member, 3_600_000) {
                Ok(count) => Decision::allow().with_finding(
                    "chaos.distinct",
                    Severity::Info,
                    &count.to_string(),
                ),
                Err(e) => Decision::deny(500, "chaos.state-error", &e),
            }
        }
        other => Decision::deny(400, "chaos.unknown", &format!("no behaviour `{other}`")),
    }
}

/// Describes the request as the guest saw it, so tests can check what crossed the boundary.
fn echo(request: &Request) -> String {
    let params: Vec<String> = request
        .params
        .iter()
        .map(|p| format!("{}={}", p.name, p.value))
        .collect();
    let principal = request.principal.as_ref().map_or(String::new(), |p| {
        format!(
            "{}|{}|{}|{}",
            p.subject,
            p.client_id,
            p.scopes.join(" "),
            p.launch_patient.as_deref().unwrap_or("-")
        )
    });
    format!(
        "{} {} {:?} {} [{}] [{}] {}",
        request.method,
        request.path,
        request.interaction,
        request.resource_type.as_deref().unwrap_or("-"),
        params.join("&"),
        request.patients.join(","),
        principal
    )
}

#[allow(clippy::empty_loop)]
fn grow_memory_forever() -> Decision {
    #[cfg(target_arch = "wasm32")]
    loop {
        // One 64 KiB page at a time, until the host's memory limit refuses and traps.
        if core::arch::wasm32::memory_grow(0, 1) == usize::MAX {
            return Decision::deny(500, "chaos.grow-refused", "memory.grow returned -1");
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    Decision::allow()
}

fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    if frame[0] == 0 {
        return 0;
    }
    recurse(depth + 1) + frame[15] % 2
}

ehrgate_sdk::export_policy!(Chaos);
