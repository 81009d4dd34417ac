//! The policy author's side of `wit/policy.wit`: the generated bindings, a friendlier
//! [`Policy`] trait with typed configuration, decision builders, request accessors and the
//! host's bounded-state imports.
//!
//! What is where:
//!
//! - [`Decision`] builders (`Decision::deny(..).with_finding(..)`) and accessors on
//!   [`Request`], [`Principal`] and [`Interaction`] (parameters with FHIR's `,` alternatives
//!   and `:modifier`s, headers, roles, search/read/write, the SMART permission needed);
//! - [`scope`]: SMART scopes parsed into what they grant, never more;
//! - [`fhir`]: resource types, ids, references and the patient compartment;
//! - [`search`]: FHIR search syntax (escapes, separators, modifiers);
//! - [`config`]: the typed config with errors that name the offending field;
//! - [`state`], [`keys`] and [`time`]: shared counters and buckets, their keys, the clock;
//! - [`testing`]: requests and principals for native unit tests of a policy's rules.
//!
//! A complete policy:
//!
//! ```no_run
//! use ehrgate_sdk::{Decision, Policy, Request};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     blocked_client: String,
//! }
//!
//! struct BlockOneClient;
//!
//! impl Policy for BlockOneClient {
//!     type Config = Config;
//!
//!     fn evaluate(config: &Config, request: &Request) -> Decision {
//!         match &request.principal {
//!             Some(p) if p.client_id == config.blocked_client => {
//!                 Decision::deny(403, "example.blocked-client", "this client is blocked")
//!             }
//!             _ => Decision::allow(),
//!         }
//!     }
//! }
//!
//! ehrgate_sdk::export_policy!(BlockOneClient);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and point a route's policy
//! chain at `target/wasm32-wasip2/release/<crate>.wasm`.

// The generated bindings name this crate by its absolute path so that the export macro
// works from policy crates; this makes the same path work inside the sdk itself.
extern crate self as ehrgate_sdk;

pub mod config;
mod decision;
pub mod fhir;
pub mod keys;
mod request;
pub mod scope;
pub mod search;
pub mod state;
pub mod stored;
pub mod testing;
pub mod time;

/// The raw bindings generated from `wit/policy.wit`. Most authors need only the re-exports
/// at the crate root.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "::ehrgate_sdk::bindings",
        runtime_path: "::ehrgate_sdk::__private::wit_bindgen::rt",
    });
}

pub use bindings::ehrgate::policy::log::Level;
pub use bindings::ehrgate::policy::types::{
    Capabilities, Decision, Deny, Entry, Finding, Header, Interaction, Param, Principal, Request,
    Response, Severity, Verdict,
};
pub use scope::{Permission, Permissions, ResourceScope, ScopeContext, ScopeError, Scopes};

/// A policy with typed configuration. Implement it and call [`export_policy!`].
///
/// The gateway creates a fresh instance of the module for every request, so the module keeps
/// no state of its own between requests: use [`state`] for counters and buckets.
pub trait Policy {
    /// The module's configuration, deserialized from the JSON the operator wrote in the
    /// gateway config. Use `#[serde(deny_unknown_fields)]` so typos are load errors; test
    /// what operators will write with [`config::parse`], which `init` uses.
    type Config: serde::de::DeserializeOwned + Send + Sync + 'static;

    /// Checks the configuration beyond what deserialization checks (ranges, consistency).
    /// An error here stops the gateway from loading the module, with this message.
    fn validate(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// What the module asks of the host; see [`Capabilities`].
    fn capabilities(_config: &Self::Config) -> Capabilities {
        Capabilities {
            inspect_response: false,
        }
    }

    /// Decides on a request.
    fn evaluate(config: &Self::Config, request: &Request) -> Decision;

    /// Inspects the upstream's response; called only when [`Policy::capabilities`] asked.
    fn on_response(_config: &Self::Config, _request: &Request, _response: &Response) -> Decision {
        Decision::allow()
    }
}

/// Writes `message` to the gateway's log, tagged with this module's name. The host keeps at
/// most 16 messages of at most 1024 bytes per call; never log protected data.
///
/// This calls the host, so it works only inside the gateway, not in a native test.
///
/// ```no_run
/// use ehrgate_sdk::{Level, log};
///
/// log(Level::Warn, "scope `patient/Observation.dus` rejected: permissions out of order");
/// ```
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::ehrgate::policy::log::log(level, message);
    // A native `cargo test` has no gateway log: the message goes to stderr instead.
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Exports a [`Policy`] implementation as the module's `policy` world. Use it once per
/// module crate (a `cdylib` built for `wasm32-wasip2`). The exported `init` reads the config
/// with [`config::parse`], then runs [`Policy::validate`].
///
/// ```no_run
/// use ehrgate_sdk::{Decision, Policy, Request};
///
/// struct AllowAll;
///
/// impl Policy for AllowAll {
///     type Config = serde_json::Value;
///
///     fn evaluate(_config: &serde_json::Value, _request: &Request) -> Decision {
///         Decision::allow()
///     }
/// }
///
/// ehrgate_sdk::export_policy!(AllowAll);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            static CONFIG: ::std::sync::OnceLock<<$policy as $crate::Policy>::Config> =
                ::std::sync::OnceLock::new();

            struct ExportedPolicy;

            impl $crate::bindings::Guest for ExportedPolicy {
                fn init(config: String) -> Result<$crate::Capabilities, String> {
                    $crate::__private::init::<$policy>(&config, &CONFIG)
                }

                fn evaluate(request: $crate::Request) -> $crate::Decision {
                    match CONFIG.get() {
                        Some(config) => <$policy as $crate::Policy>::evaluate(config, &request),
                        None => $crate::__private::not_initialized(),
                    }
                }

                fn on_response(
                    request: $crate::Request,
                    response: $crate::Response,
                ) -> $crate::Decision {
                    match CONFIG.get() {
                        Some(config) => {
                            <$policy as $crate::Policy>::on_response(config, &request, &response)
                        }
                        None => $crate::__private::not_initialized(),
                    }
                }
            }

            $crate::bindings::__export_policy_world!(ExportedPolicy);
        };
    };
}

/// Support for [`export_policy!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use std::sync::OnceLock;

    pub use wit_bindgen;

    use crate::{Capabilities, Decision, Level, Policy};

    pub fn init<P: Policy>(
        raw_config: &str,
        slot: &OnceLock<P::Config>,
    ) -> Result<Capabilities, String> {
        // A panic would otherwise try to print to stderr, which the sandbox does not have;
        // send the message to the host log so the policy-error the host reports names it.
        std::panic::set_hook(Box::new(|info| {
            crate::log(Level::Error, &format!("panic: {info}"));
        }));
        let config: P::Config = crate::config::parse(raw_config)?;
        P::validate(&config)?;
        let capabilities = P::capabilities(&config);
        // A fresh instance gets exactly one init; a second one keeps the first config.
        let _ = slot.set(config);
        Ok(capabilities)
    }

    pub fn not_initialized() -> Decision {
        Decision::deny(
            500,
            "sdk.not-initialized",
            "the module was called before init succeeded",
        )
    }
}
