//! Host bindings generated from `wit/policy.wit`. The generated types are the canonical
//! request and decision records that the rest of the host builds and reads.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
    // Calls are async so the engine pool can move a long call between threads; state
    // imports are async so a shared backend can wait on the network without a thread.
    imports: { "ehrgate:policy/state": async },
    exports: { default: async },
});

pub use ehrgate::policy::log::Level as GuestLogLevel;
pub use ehrgate::policy::state::BucketStatus as GuestBucketStatus;
pub use ehrgate::policy::types::{
    Decision as GuestDecision, Deny as GuestDeny, Entry, Finding as GuestFinding, Header,
    Interaction, Param, Principal, Severity, Verdict as GuestVerdict,
};
