//! Requests and principals for native unit tests of a policy's rules.
//!
//! The generated records have no defaults and no `..` shorthand, so a test would otherwise
//! spell out all nineteen fields of a [`Request`]. These functions fill every field with an
//! empty or neutral value; a test then sets the few fields its rule reads. Call the policy's
//! own functions (its `evaluate`, or the helpers behind it) with the result: that runs
//! natively under `cargo test`, as long as the code under test calls no host import
//! ([`crate::state`], [`crate::log`]), which exists only inside the gateway.
//!
//! Nothing here checks that a request is one the gateway would build: the gateway, not the
//! test, fills `patients` from the compartment parameters, for example. Set what the rule
//! relies on.
//!
//! ```
//! use ehrgate_sdk::{Decision, Interaction, Request, Severity, testing};
//!
//! // The rule under test: nurses may read, not write, medication orders.
//! fn nurse_rule(request: &Request) -> Decision {
//!     let nurse = request.principal.as_ref().is_some_and(|p| p.has_role("nurse"));
//!     if nurse && request.interaction.is_write() {
//!         return Decision::deny(403, "nurse.read-only", "nurses may not change orders")
//!             .with_finding("nurse.read-only", Severity::Low, "write refused");
//!     }
//!     Decision::allow()
//! }
//!
//! let mut nurse = testing::principal("nurse-joy");
//! nurse.roles = vec!["nurse".into()];
//!
//! let mut read = testing::request(Interaction::Read, Some("MedicationRequest"));
//! read.resource_id = Some("rx-7".into());
//! read.principal = Some(nurse.clone());
//! assert!(nurse_rule(&read).is_allow());
//!
//! let mut update = testing::request(Interaction::Update, Some("MedicationRequest"));
//! update.principal = Some(nurse);
//! assert!(!nurse_rule(&update).is_allow());
//! ```

use crate::{Interaction, Param, Principal, Request};

/// A request with `interaction` on `resource_type` (none for system-level interactions such
/// as `capabilities` or `search-system`), the method that interaction uses, path `/[type]`
/// (`/metadata` for `capabilities`, `/` for other system-level ones), no parameters, headers,
/// patients, entries, body or principal (anonymous), and time 0. Set `resource_id`, `params`,
/// `patients`, `principal` and whatever else the rule under test reads.
///
/// ```
/// use ehrgate_sdk::{Interaction, testing};
///
/// let mut search = testing::request(Interaction::SearchType, Some("Observation"));
/// search.params = testing::params(&[("patient", "123"), ("category", "laboratory")]);
/// search.patients = vec!["123".into()];
/// assert_eq!((search.method.as_str(), search.path.as_str()), ("GET", "/Observation"));
/// assert_eq!(search.subject(), "anonymous");
/// ```
pub fn request(interaction: Interaction, resource_type: Option<&str>) -> Request {
    let method = match interaction {
        Interaction::Create
        | Interaction::Batch
        | Interaction::Transaction
        | Interaction::Operation => "POST",
        Interaction::Update => "PUT",
        Interaction::Patch => "PATCH",
        Interaction::Delete => "DELETE",
        Interaction::Read
        | Interaction::Vread
        | Interaction::HistoryInstance
        | Interaction::HistoryType
        | Interaction::HistorySystem
        | Interaction::SearchType
        | Interaction::SearchSystem
        | Interaction::Capabilities
        | Interaction::Other => "GET",
    };
    let path = match (resource_type, interaction) {
        (Some(resource_type), _) => format!("/{resource_type}"),
        (None, Interaction::Capabilities) => "/metadata".to_owned(),
        (None, _) => "/".to_owned(),
    };
    Request {
        id: "test-request".to_owned(),
        time_ms: 0,
        source_address: "127.0.0.1".to_owned(),
        method: method.to_owned(),
        path,
        route: "test".to_owned(),
        upstream: "ehr".to_owned(),
        interaction,
        resource_type: resource_type.map(str::to_owned),
        resource_id: None,
        version_id: None,
        operation: None,
        params: Vec::new(),
        headers: Vec::new(),
        principal: None,
        break_glass_reason: None,
        patients: Vec::new(),
        entries: Vec::new(),
        body: None,
    }
}

/// A caller with token subject `subject`, client `test-client`, issuer `test-issuer`, and no
/// roles, scopes, launch context, `fhirUser` or purpose of use. Set what the rule reads.
///
/// ```
/// use ehrgate_sdk::testing;
///
/// let mut app = testing::principal("patient-portal-user-42");
/// app.scopes = vec!["launch/patient".into(), "patient/Observation.rs".into()];
/// app.launch_patient = Some("123".into());
/// assert!(!app.has_role("physician"));
/// ```
pub fn principal(subject: &str) -> Principal {
    Principal {
        subject: subject.to_owned(),
        client_id: "test-client".to_owned(),
        issuer: "test-issuer".to_owned(),
        roles: Vec::new(),
        scopes: Vec::new(),
        launch_patient: None,
        launch_encounter: None,
        fhir_user: None,
        purpose_of_use: Vec::new(),
    }
}

/// Parameters from `(name, value)` pairs, in order, values as the gateway passes them
/// (percent-decoded, FHIR escapes kept).
///
/// ```
/// use ehrgate_sdk::testing;
///
/// let params = testing::params(&[("subject:Patient", "123"), ("code", "8867-4")]);
/// assert_eq!(params[0].name, "subject:Patient");
/// ```
pub fn params(pairs: &[(&str, &str)]) -> Vec<Param> {
    pairs
        .iter()
        .map(|(name, value)| Param {
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        })
        .collect()
}
