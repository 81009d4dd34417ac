//! The caller as this module sees it: the token's parsed scopes, the roles the config knows,
//! the patient its grants are bound to, whether it is a backend service, and a valid
//! break-the-glass. [`Caller::grants`] answers the one question every check asks: which of
//! the caller's scopes let it use a permission on a type, and under which binding.

use ehrgate_sdk::fhir;
use ehrgate_sdk::scope::ScopeResource;
use ehrgate_sdk::{Permission, Principal, Request, ResourceScope, ScopeContext, Scopes};

use crate::config::{Config, EVERY_TYPE, Lift, RoleRule, lists_context};
use crate::refusal::{self, Refusal};

/// The v3-ActReason code for break-the-glass (the host strips the system).
const BREAK_THE_GLASS: &str = "BTG";

/// Whose data a grant reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding<'a> {
    /// Whatever the scope names (`user/` without a patient user, backend `system/`).
    Unbound,
    /// Only this patient's compartment, plus non-compartment types the scope names
    /// (`patient/` scopes, and `user/` scopes of a patient user).
    Patient(&'a str),
}

/// One scope that lets the caller use a permission on a type.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    pub scope: &'a ResourceScope,
    pub binding: Binding<'a>,
}

/// What a request reaches: one type, or every type at once (system search, system history,
/// system-level operations, `$export` without `_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    Type(&'a str),
    EveryType,
}

impl Target<'_> {
    fn describe(&self) -> String {
        match self {
            Target::Type(name) => format!("`{name}`"),
            Target::EveryType => "every type (`*`)".to_string(),
        }
    }
}

/// A break-the-glass the config allows for this caller.
#[derive(Clone, Copy, Debug)]
pub struct BreakGlass {
    pub lifts_compartment: bool,
    pub lifts_labels: bool,
}

/// What happened on the way to an allow that the audit record must show.
#[derive(Default)]
pub struct Notes {
    /// Refusals break-the-glass lifted, as their messages.
    pub lifted: Vec<String>,
}

pub struct Caller<'a> {
    pub config: &'a Config,
    pub principal: &'a Principal,
    pub route: &'a str,
    pub scopes: Scopes,
    pub is_backend: bool,
    pub launch_patient: Option<&'a str>,
    /// The patient a patient user (`fhirUser` = `Patient/[id]`) is, when the config binds
    /// patient users.
    pub patient_user: Option<&'a str>,
    pub break_glass: Option<BreakGlass>,
    roles: Vec<&'a RoleRule>,
}

/// Why no grant was found, least specific first: the refusal names the most specific.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Miss {
    NoScope,
    WildcardOutsideCompartment,
    NoLaunchPatient,
    SystemClient,
    Role,
}

impl<'a> Caller<'a> {
    /// Reads the caller from the request. Fails on a break-the-glass the config does not
    /// allow (SMART/HL7 v3-ActReason BTG: only configured roles, and only with a reason).
    pub fn new(
        config: &'a Config,
        request: &'a Request,
        principal: &'a Principal,
    ) -> Result<Self, Refusal> {
        let roles = principal
            .roles
            .iter()
            .filter_map(|name| config.roles.get(name))
            .collect();
        let patient_user = if config.bind_patient_users {
            principal
                .fhir_user
                .as_deref()
                .and_then(fhir::patient_id_of_reference)
        } else {
            None
        };
        let break_glass = if principal.has_purpose(BREAK_THE_GLASS) {
            let allowed = principal
                .roles
                .iter()
                .any(|role| config.break_glass.roles.contains(role));
            if !allowed {
                return Err(Refusal::new(
                    refusal::BREAK_GLASS,
                    "break-the-glass (purpose of use `BTG`) is not allowed for the caller's roles",
                ));
            }
            let has_reason = request
                .break_glass_reason
                .as_deref()
                .is_some_and(|reason| !reason.trim().is_empty());
            if !has_reason {
                return Err(Refusal::new(
                    refusal::BREAK_GLASS,
                    "break-the-glass (purpose of use `BTG`) needs a reason",
                ));
            }
            let lifts = &config.break_glass.lifts;
            Some(BreakGlass {
                lifts_compartment: lifts.contains(&Lift::Compartment),
                lifts_labels: lifts.contains(&Lift::SecurityLabels),
            })
        } else {
            None
        };
        Ok(Caller {
            config,
            principal,
            route: &request.route,
            scopes: Scopes::parse(principal.scopes.iter().map(String::as_str)),
            is_backend: config.backend_clients.contains(&principal.client_id),
            launch_patient: principal.launch_patient.as_deref(),
            patient_user,
            break_glass,
            roles,
        })
    }

    /// Whether the caller holds one of `roles`.
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        self.principal.roles.iter().any(|role| roles.contains(role))
    }

    /// `system/` scopes this caller holds but may not use (it is not a backend client).
    pub fn ignored_system_scopes(&self) -> usize {
        if self.is_backend {
            return 0;
        }
        self.scopes
            .granted
            .iter()
            .filter(|scope| scope.context == ScopeContext::System)
            .count()
    }

    /// The caller's grants of `permission` on `target`: unbound ones first, then bound,
    /// unrestricted before granular. A refusal names the most specific reason none applies.
    ///
    /// - `system/` scopes count only for configured backend clients;
    /// - `patient/` scopes need a launch patient and are bound to it; `user/` scopes of a
    ///   patient user are bound to that patient;
    /// - a bound `*` reaches only patient-compartment types: Practitioner, Organization,
    ///   Medication and the like need a scope that names them (healthcare reference:
    ///   "allow them only where a scope grants them explicitly");
    /// - grants in the configured `role_contexts` also need a role that permits the access.
    pub fn grants(
        &self,
        target: Target<'_>,
        permission: Permission,
    ) -> Result<Vec<Grant<'_>>, Refusal> {
        let mut found = Vec::new();
        let mut miss = Miss::NoScope;
        for scope in &self.scopes.granted {
            let names_target = match target {
                Target::Type(name) => scope.covers_type(name),
                Target::EveryType => scope.resource == ScopeResource::AnyType,
            };
            if !scope.grants(permission) || !names_target {
                continue;
            }
            let binding = match scope.context {
                ScopeContext::System if !self.is_backend => {
                    miss = miss.max(Miss::SystemClient);
                    continue;
                }
                ScopeContext::System => Binding::Unbound,
                ScopeContext::User => self.patient_user.map_or(Binding::Unbound, Binding::Patient),
                ScopeContext::Patient => match self.launch_patient {
                    Some(patient) => Binding::Patient(patient),
                    None => {
                        miss = miss.max(Miss::NoLaunchPatient);
                        continue;
                    }
                },
            };
            if let (Binding::Patient(_), Target::Type(name)) = (binding, target)
                && !scope.names_type(name)
                && !fhir::is_compartment_type(name)
            {
                miss = miss.max(Miss::WildcardOutsideCompartment);
                continue;
            }
            if lists_context(&self.config.role_contexts, scope.context)
                && !self.role_permits(target, permission)
            {
                miss = miss.max(Miss::Role);
                continue;
            }
            found.push(Grant { scope, binding });
        }
        found.sort_by_key(|grant| (grant.binding != Binding::Unbound, grant.scope.is_granular()));
        if found.is_empty() {
            return Err(self.miss_refusal(miss, target, permission));
        }
        Ok(found)
    }

    /// Whether the caller may read `resource_type` at all (`r` or `s`), for `_include`,
    /// `_revinclude` and `_has` targets.
    pub fn may_read(&self, resource_type: &str) -> bool {
        self.grants(Target::Type(resource_type), Permission::Read)
            .is_ok()
            || self
                .grants(Target::Type(resource_type), Permission::Search)
                .is_ok()
    }

    fn role_permits(&self, target: Target<'_>, permission: Permission) -> bool {
        let resource_type = match target {
            Target::Type(name) => name,
            Target::EveryType => EVERY_TYPE,
        };
        self.roles
            .iter()
            .any(|role| role.permits(self.route, resource_type, permission))
    }

    fn miss_refusal(&self, miss: Miss, target: Target<'_>, permission: Permission) -> Refusal {
        let what = target.describe();
        let letter = permission.letter();
        match miss {
            Miss::NoScope => Refusal::new(
                refusal::SCOPE,
                format!("no scope of the token grants `{letter}` on {what}"),
            ),
            Miss::WildcardOutsideCompartment => Refusal::new(
                refusal::SCOPE,
                format!(
                    "{what} is outside the patient compartment, so a patient-bound `*` scope \
                     does not reach it; a scope must name it"
                ),
            ),
            Miss::NoLaunchPatient => Refusal::new(
                refusal::COMPARTMENT,
                "`patient/` scopes need a launch patient (`patient` claim), and the token has none",
            ),
            Miss::SystemClient => Refusal::new(
                refusal::SYSTEM_SCOPE,
                format!(
                    "`system/` scopes are honoured only for backend clients, and client `{}` \
                     is not one",
                    self.principal.client_id
                ),
            ),
            Miss::Role => Refusal::new(
                refusal::ROLE,
                format!(
                    "none of the caller's roles may use `{letter}` on {what} through route `{}`",
                    self.route
                ),
            ),
        }
    }

    /// A refusal of the patient binding: lifted (and noted) when a valid break-the-glass
    /// lifts the compartment, returned otherwise.
    pub fn compartment_refusal(&self, refusal: Refusal, notes: &mut Notes) -> Result<(), Refusal> {
        match self.break_glass {
            Some(glass) if glass.lifts_compartment => {
                notes.lifted.push(refusal.message);
                Ok(())
            }
            _ => Err(refusal),
        }
    }
}

/// The first of `patients` that is not `patient`: a request naming anyone else is not
/// confined to the launch patient, whatever its type (a `Device?patient=` or
/// `Patient/456/Device` search names a patient too).
pub fn other_patient<'p>(patients: &'p [String], patient: &str) -> Option<&'p str> {
    patients
        .iter()
        .find(|found| *found != patient)
        .map(String::as_str)
}
