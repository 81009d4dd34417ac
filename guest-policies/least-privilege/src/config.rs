//! The module's configuration: JSON from the gateway config, parsed on every instance (so it
//! stays small), every field defaulted to the safe choice, unknown fields refused, and the
//! cross-field rules checked in [`validate`].

use std::collections::BTreeMap;

use ehrgate_sdk::fhir;
use ehrgate_sdk::{Permission, Permissions, ScopeContext};
use serde::{Deserialize, Deserializer};

/// The whole configuration. See the README section "Least-privilege policy".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// OAuth clients that are backend services (SMART Backend Services): only their
    /// `system/` scopes are honoured.
    #[serde(default)]
    pub backend_clients: Vec<String>,
    /// Scope contexts whose grants also need one of the caller's roles to permit the access.
    #[serde(default = "user_context")]
    pub role_contexts: Vec<Context>,
    /// Roles by name: which routes, resource types and permissions each role may use.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleRule>,
    /// Operations other than `$everything` and `$export` that may be invoked, with the
    /// permissions they need on their resource type (`lastn` -> `s`).
    #[serde(default)]
    pub operations: BTreeMap<String, Letters>,
    /// The types `Patient/[id]/$everything` can return; `rs` is needed on each. Default:
    /// every type in the patient compartment.
    #[serde(default)]
    pub everything_types: Option<Vec<String>>,
    #[serde(default)]
    pub export: ExportConfig,
    /// Search parameters refused in patient-bound searches, because the gateway cannot tell
    /// which patients they reach (R4 search.html: `_filter`, `_query`, `_contained`).
    #[serde(default = "refused_search_params")]
    pub refused_search_params: Vec<String>,
    #[serde(default)]
    pub security_labels: LabelConfig,
    #[serde(default)]
    pub break_glass: BreakGlassConfig,
    /// Lets patient-bound tokens update, patch and delete resources of a patient (other than
    /// their Patient) whose owner the gateway did not read before the change: on routes with
    /// `verify_write_owner = "off"`, for tokens the route does not cover, and in Bundle
    /// entries. Only for upstreams that enforce the compartment on writes themselves.
    #[serde(default)]
    pub allow_unverified_instance_writes: bool,
    /// The FHIR server's own base URLs as it writes them in references
    /// (`https://ehr.example/fhir`): an absolute reference on one of them counts as the
    /// relative `Type/id`. A patient-bound write's absolute reference on any other base is
    /// refused, as the server may resolve it to anything. Empty by default.
    #[serde(default)]
    pub own_base_urls: Vec<String>,
    /// Confines `user/` grants of a user whose `fhirUser` is a Patient to that patient's
    /// compartment, as `patient/` grants are confined to the launch patient.
    #[serde(default = "yes")]
    pub bind_patient_users: bool,
}

/// A scope context as written in the config.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Context {
    Patient,
    User,
    System,
}

impl Context {
    pub fn matches(self, context: ScopeContext) -> bool {
        matches!(
            (self, context),
            (Context::Patient, ScopeContext::Patient)
                | (Context::User, ScopeContext::User)
                | (Context::System, ScopeContext::System)
        )
    }
}

/// Whether `contexts` lists `context`.
pub fn lists_context(contexts: &[Context], context: ScopeContext) -> bool {
    contexts.iter().any(|listed| listed.matches(context))
}

/// SMART v2 permission letters (`rs`, `cruds`), checked while parsing.
#[derive(Clone, Copy, Debug)]
pub struct Letters(pub Permissions);

impl<'de> Deserialize<'de> for Letters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Permissions::from_letters(&text).map(Letters).map_err(|error| {
            serde::de::Error::custom(format!(
                "permissions `{text}`: {error}; expected SMART v2 letters such as `rs` or `cruds`"
            ))
        })
    }
}

/// What one role may do.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    /// Route names, or `*` for every route.
    #[serde(default = "every_route")]
    pub routes: Vec<String>,
    /// R4 type names, `clinical` (every type but the billing ones), `billing` (Account,
    /// ChargeItem, Claim, ClaimResponse, Coverage, ...) or `*`.
    pub resource_types: Vec<String>,
    /// The permissions the role may use on those types.
    pub permissions: Letters,
}

/// A stand-in for "every type", for interactions that reach all types at once.
pub const EVERY_TYPE: &str = "*";

impl RoleRule {
    /// Whether this role may use `permission` on `resource_type` (or on every type, for
    /// [`EVERY_TYPE`]) through `route`.
    pub fn permits(&self, route: &str, resource_type: &str, permission: Permission) -> bool {
        let route_ok = self.routes.iter().any(|r| r == "*" || r == route);
        let type_ok = self.resource_types.iter().any(|listed| {
            listed == "*"
                || (resource_type != EVERY_TYPE
                    && (listed == resource_type
                        || (listed == "billing" && fhir::is_billing_type(resource_type))
                        || (listed == "clinical" && !fhir::is_billing_type(resource_type))))
        });
        route_ok && type_ok && self.permissions.0.contains(permission)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Scope contexts that may start a Patient-level export (`Patient/$export`). System-level
    /// and Group exports always need `system/` scopes.
    #[serde(default = "system_context")]
    pub patient_level_contexts: Vec<Context>,
    /// Group ids that may be exported (`Group/[id]/$export`); `*` for any. Empty: none.
    #[serde(default)]
    pub group_ids: Vec<String>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            patient_level_contexts: system_context(),
            group_ids: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    /// v3-Confidentiality codes that restrict a resource.
    #[serde(default = "confidentiality_codes")]
    pub confidentiality_codes: Vec<String>,
    /// v3-ActCode sensitivity codes that restrict a resource, whatever their system.
    #[serde(default = "sensitivity_codes")]
    pub sensitivity_codes: Vec<String>,
    /// Roles that may see restricted resources.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Purposes of use that may see restricted resources.
    #[serde(default)]
    pub purposes: Vec<String>,
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig {
            confidentiality_codes: confidentiality_codes(),
            sensitivity_codes: sensitivity_codes(),
            roles: Vec::new(),
            purposes: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassConfig {
    /// Roles that may declare purpose of use `BTG`. Empty: nobody.
    #[serde(default)]
    pub roles: Vec<String>,
    /// What a valid break-the-glass lifts.
    #[serde(default)]
    pub lifts: Vec<Lift>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Lift {
    /// The patient binding of patient-bound grants (reads and searches of other patients).
    Compartment,
    /// The role or purpose security labels require.
    SecurityLabels,
}

fn yes() -> bool {
    true
}
fn user_context() -> Vec<Context> {
    vec![Context::User]
}
fn system_context() -> Vec<Context> {
    vec![Context::System]
}
fn every_route() -> Vec<String> {
    vec!["*".to_string()]
}
fn refused_search_params() -> Vec<String> {
    ["_filter", "_query", "_contained", "_containedType"]
        .map(String::from)
        .to_vec()
}
fn confidentiality_codes() -> Vec<String> {
    ["R", "V"].map(String::from).to_vec()
}
/// v3-ActCode InformationSensitivityPolicy codes for the usual specially protected data.
fn sensitivity_codes() -> Vec<String> {
    [
        "ETH", "GDIS", "HIV", "MST", "PSY", "PSYTHPN", "SCA", "SDV", "SEX", "STD", "SUD", "BH",
        "TBOO",
    ]
    .map(String::from)
    .to_vec()
}

/// Checks what deserialization cannot: type names, operation names, ids.
pub fn validate(config: &Config) -> Result<(), String> {
    for (name, role) in &config.roles {
        if name.is_empty() {
            return Err("`roles` has a role with an empty name".to_string());
        }
        if role.resource_types.is_empty() {
            return Err(format!(
                "role `{name}` has no `resource_types`\n\
                 help: list R4 types, `clinical`, `billing` or `*`"
            ));
        }
        for listed in &role.resource_types {
            let known = matches!(listed.as_str(), "*" | "clinical" | "billing")
                || fhir::is_resource_type(listed);
            if !known {
                return Err(format!(
                    "role `{name}`: `resource_types` entry `{listed}` is not an R4 resource \
                     type\nhelp: use a type such as `Observation` (case matters), or `clinical`, \
                     `billing`, `*`"
                ));
            }
        }
        if role.routes.is_empty() || role.routes.iter().any(String::is_empty) {
            return Err(format!(
                "role `{name}` has an empty `routes` list or route name\nhelp: name routes \
                 from the gateway config, or `*`"
            ));
        }
    }
    for name in config.operations.keys() {
        if name == "everything" || name == "export" {
            return Err(format!(
                "`operations` lists `{name}`, which is built in\nhelp: remove it; \
                 `$everything` is configured with `everything_types` and `$export` with `export`"
            ));
        }
        let valid = !name.is_empty()
            && !name.starts_with('$')
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
        if !valid {
            return Err(format!(
                "`operations` key `{name}` is not an operation name\nhelp: write the name \
                 without `$`, such as `lastn`"
            ));
        }
    }
    if let Some(types) = &config.everything_types {
        check_types("everything_types", types)?;
    }
    for id in &config.export.group_ids {
        if id != "*" && !fhir::is_valid_id(id) {
            return Err(format!(
                "`export.group_ids` entry `{id}` is not a FHIR id\nhelp: use Group ids, or `*` \
                 for any Group"
            ));
        }
    }
    for base in &config.own_base_urls {
        let (scheme, rest) = base.split_once("://").unwrap_or_default();
        let valid = matches!(scheme, "http" | "https")
            && !rest.is_empty()
            && !rest.starts_with('/')
            && !base.contains(['?', '#', ' '])
            && !rest.split('/').any(|segment| matches!(segment, "." | ".."));
        if !valid {
            return Err(format!(
                "`own_base_urls` entry `{base}` is not an http(s) base URL
help: write the \
                 base the server uses in references, such as `https://ehr.example/fhir`"
            ));
        }
    }
    if config.break_glass.roles.is_empty() && !config.break_glass.lifts.is_empty() {
        return Err(
            "`break_glass.lifts` is set but `break_glass.roles` is empty, so nobody \
                    could break the glass\nhelp: list the roles that may declare purpose of \
                    use `BTG`"
                .to_string(),
        );
    }
    Ok(())
}

fn check_types(key: &str, types: &[String]) -> Result<(), String> {
    match types.iter().find(|name| !fhir::is_resource_type(name)) {
        Some(name) => Err(format!(
            "`{key}` entry `{name}` is not an R4 resource type\nhelp: use type names such as \
             `Observation` (case matters)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| e.to_string())?;
        validate(&config)?;
        Ok(config)
    }

    #[test]
    fn defaults_are_closed() {
        let config = parse("{}").unwrap_or_else(|e| panic!("{e}"));
        assert!(config.backend_clients.is_empty());
        assert!(config.roles.is_empty());
        assert_eq!(config.role_contexts, [Context::User]);
        assert!(config.break_glass.roles.is_empty());
        assert!(config.export.group_ids.is_empty());
        assert_eq!(config.export.patient_level_contexts, [Context::System]);
        assert!(
            config
                .refused_search_params
                .contains(&"_filter".to_string())
        );
        assert!(
            config
                .security_labels
                .sensitivity_codes
                .contains(&"HIV".to_string())
        );
        assert!(!config.allow_unverified_instance_writes);
        assert!(config.bind_patient_users);
    }

    #[test]
    fn roles_permit_by_route_type_group_and_letter() {
        let config = parse(
            r#"{"roles": {
                "billing": {"routes": ["billing"], "resource_types": ["billing", "Patient"], "permissions": "rs"},
                "clinician": {"resource_types": ["clinical"], "permissions": "cruds"}
            }}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let billing = &config.roles["billing"];
        assert!(billing.permits("billing", "Claim", Permission::Read));
        assert!(billing.permits("billing", "Patient", Permission::Search));
        assert!(!billing.permits("ehr", "Claim", Permission::Read));
        assert!(!billing.permits("billing", "Observation", Permission::Read));
        assert!(!billing.permits("billing", "Claim", Permission::Update));
        assert!(!billing.permits("billing", EVERY_TYPE, Permission::Read));
        let clinician = &config.roles["clinician"];
        assert!(clinician.permits("anything", "Observation", Permission::Delete));
        assert!(!clinician.permits("ehr", "ExplanationOfBenefit", Permission::Read));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            (r#"{"verdikt": 1}"#, "unknown field `verdikt`"),
            (r#"{"role_contexts": ["usr"]}"#, "unknown variant `usr`"),
            (
                r#"{"roles": {"x": {"resource_types": ["Observation"], "permissions": "sr"}}}"#,
                "permissions `sr`: permissions out of order",
            ),
            (
                r#"{"roles": {"x": {"resource_types": ["observation"], "permissions": "r"}}}"#,
                "`observation` is not an R4 resource type",
            ),
            (
                r#"{"roles": {"x": {"resource_types": [], "permissions": "r"}}}"#,
                "has no `resource_types`",
            ),
            (
                r#"{"roles": {"x": {"resource_types": ["*"], "permissions": "r", "routes": []}}}"#,
                "empty `routes`",
            ),
            (r#"{"operations": {"everything": "rs"}}"#, "built in"),
            (
                r#"{"operations": {"$lastn": "s"}}"#,
                "not an operation name",
            ),
            (r#"{"everything_types": ["Observation", "Foo"]}"#, "`Foo`"),
            (r#"{"export": {"group_ids": ["a/b"]}}"#, "not a FHIR id"),
            (r#"{"break_glass": {"lifts": ["compartment"]}}"#, "nobody"),
            (
                r#"{"break_glass": {"roles": ["er"], "lifts": ["everything"]}}"#,
                "unknown variant",
            ),
        ];
        for (json, expected) in cases {
            match parse(json) {
                Ok(_) => panic!("{json} was accepted"),
                Err(message) => assert!(message.contains(expected), "{json}: {message}"),
            }
        }
    }
}
