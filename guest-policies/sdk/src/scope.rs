//! SMART App Launch scopes (hl7.org/fhir/smart-app-launch, scopes-and-launch-context):
//! parse the scope strings of a token into what they grant, never into more.
//!
//! Grammar: `(patient|user|system)/(ResourceType|*).<permissions>[?param=value&...]`, with
//! v2 permissions (`c r u d s`, each at most once and in that order) or the v1 names
//! (`read` = `rs`, `write` = `cud`, `*` = `cruds`). The non-resource scopes (`openid`,
//! `fhirUser`, `profile`, `launch`, `launch/patient`, `offline_access`, ...) are recognized
//! and grant no data. A resource scope that does not follow the grammar is rejected with a
//! [`ScopeError`]: a policy ignores it (it grants nothing) and reports it.
//!
//! ```
//! use ehrgate_sdk::scope::{Permission, Scopes};
//!
//! let scopes = Scopes::parse(["launch/patient", "patient/Observation.rs", "patient/*.dus"]);
//! assert_eq!(scopes.granted.len(), 1);
//! assert!(scopes.granted[0].grants(Permission::Search));
//! assert_eq!(scopes.rejected.len(), 1); // letters out of order
//! ```

use std::fmt;

use crate::Param;
use crate::fhir::{self, JsonTree};

/// Whose data a scope reaches (SMART v2 "scope context").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeContext {
    /// `patient/`: the launch patient's data (the token's `patient` claim).
    Patient,
    /// `user/`: whatever the user may see.
    User,
    /// `system/`: a backend service with no user (SMART Backend Services).
    System,
}

impl ScopeContext {
    /// The scope prefix without the slash: `patient`, `user` or `system`.
    pub fn name(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }

    /// Reads a context name (`patient`, `user`, `system`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "patient" => Some(ScopeContext::Patient),
            "user" => Some(ScopeContext::User),
            "system" => Some(ScopeContext::System),
            _ => None,
        }
    }
}

/// One SMART v2 permission letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// `c`: create (`POST [type]`).
    Create,
    /// `r`: read, vread, instance history.
    Read,
    /// `u`: update (PUT, including upsert) and patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: type and system search, type and system history.
    Search,
}

impl Permission {
    /// The v2 letters in the order the grammar requires.
    pub const ALL: [Permission; 5] = [
        Permission::Create,
        Permission::Read,
        Permission::Update,
        Permission::Delete,
        Permission::Search,
    ];

    pub fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        match self {
            Permission::Create => 1,
            Permission::Read => 2,
            Permission::Update => 4,
            Permission::Delete => 8,
            Permission::Search => 16,
        }
    }
}

/// A set of permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// Every permission (`cruds`).
    pub const ALL: Permissions = Permissions(31);
    /// `rs`, what v1 `.read` grants.
    pub const READ_AND_SEARCH: Permissions = Permissions(2 | 16);

    /// Parses v2 letters: a non-empty subset of `cruds`, each letter at most once and in
    /// that order (SMART v2: "letters out of order may be rejected"; rejecting them keeps
    /// one spelling per grant).
    ///
    /// ```
    /// use ehrgate_sdk::{Permission, Permissions, ScopeError};
    ///
    /// let read_search = Permissions::from_letters("rs").unwrap();
    /// assert!(read_search.contains(Permission::Read) && !read_search.contains(Permission::Update));
    /// assert_eq!(Permissions::from_letters("sr"), Err(ScopeError::PermissionsOutOfOrder));
    /// assert_eq!(Permissions::from_letters("read"), Err(ScopeError::UnknownPermission('e')));
    /// ```
    pub fn from_letters(letters: &str) -> Result<Self, ScopeError> {
        if letters.is_empty() {
            return Err(ScopeError::NoPermissions);
        }
        let mut bits = 0u8;
        let mut next_allowed = 0usize;
        for letter in letters.chars() {
            let Some(position) = Permission::ALL.iter().position(|p| p.letter() == letter) else {
                return Err(ScopeError::UnknownPermission(letter));
            };
            if position < next_allowed {
                let repeated = Permission::ALL
                    .get(position)
                    .is_some_and(|p| bits & p.bit() != 0);
                return Err(if repeated {
                    ScopeError::RepeatedPermission(letter)
                } else {
                    ScopeError::PermissionsOutOfOrder
                });
            }
            bits |= Permission::ALL.get(position).map_or(0, |p| p.bit());
            next_allowed = position + 1;
        }
        Ok(Permissions(bits))
    }

    /// The v1 names: `read` = `rs`, `write` = `cud`, `*` = `cruds`.
    fn from_v1(name: &str) -> Option<Self> {
        match name {
            "read" => Some(Permissions::READ_AND_SEARCH),
            "write" => Some(Permissions(1 | 4 | 8)),
            "*" => Some(Permissions::ALL),
            _ => None,
        }
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// Whether every permission of `other` is in this set.
    pub fn contains_all(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The v2 letters, in order (`rs`).
    pub fn letters(self) -> String {
        Permission::ALL
            .iter()
            .filter(|p| self.contains(**p))
            .map(|p| p.letter())
            .collect()
    }
}

/// Which resource types a scope covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeResource {
    /// `*`: every type the context reaches.
    AnyType,
    /// One R4 resource type.
    Type(String),
}

/// Which grammar a scope was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeSyntax {
    /// `.read`, `.write`, `.*`
    V1,
    /// `.cruds` letters
    V2,
}

/// One `param=value` restriction of a granular scope, value percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeParam {
    pub name: String,
    pub value: String,
}

/// A resource scope that parsed: what it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceScope {
    pub context: ScopeContext,
    pub resource: ScopeResource,
    pub permissions: Permissions,
    /// Granular restrictions (SMART v2 "finer-grained resource constraints using search
    /// parameters"): the scope covers only resources matching all of them. Empty for an
    /// unrestricted scope.
    pub restrictions: Vec<ScopeParam>,
    pub syntax: ScopeSyntax,
}

impl ResourceScope {
    /// Whether the scope names `resource_type` (or `*`). Whether `*` should reach a type is
    /// the policy's call: see [`ResourceScope::names_type`].
    ///
    /// ```
    /// use ehrgate_sdk::Scopes;
    ///
    /// let scopes = Scopes::parse(["patient/Observation.rs", "user/*.r"]);
    /// let (observations, everything) = (&scopes.granted[0], &scopes.granted[1]);
    /// assert!(observations.covers_type("Observation"));
    /// assert!(!observations.covers_type("Condition"));
    /// assert!(everything.covers_type("Condition") && !everything.names_type("Condition"));
    /// ```
    pub fn covers_type(&self, resource_type: &str) -> bool {
        match &self.resource {
            ScopeResource::AnyType => true,
            ScopeResource::Type(name) => name == resource_type,
        }
    }

    /// Whether the scope names `resource_type` explicitly (not through `*`).
    pub fn names_type(&self, resource_type: &str) -> bool {
        matches!(&self.resource, ScopeResource::Type(name) if name == resource_type)
    }

    /// Whether the scope grants `permission` (v1 `.read` grants read and search).
    ///
    /// ```
    /// use ehrgate_sdk::{Permission, Scopes};
    ///
    /// let scopes = Scopes::parse(["patient/MedicationRequest.read"]);
    /// let scope = &scopes.granted[0];
    /// assert!(scope.grants(Permission::Read) && scope.grants(Permission::Search));
    /// assert!(!scope.grants(Permission::Create));
    /// ```
    pub fn grants(&self, permission: Permission) -> bool {
        self.permissions.contains(permission)
    }

    pub fn is_granular(&self) -> bool {
        !self.restrictions.is_empty()
    }

    /// Whether a search's parameters carry every restriction of the scope: a parameter of
    /// the same name (no modifier) with exactly the same value. SMART v2: a granular scope
    /// applies to a search only when the search is restricted the same way, so the server's
    /// answer stays inside the grant. Always true for an unrestricted scope.
    ///
    /// ```
    /// use ehrgate_sdk::{Scopes, testing};
    ///
    /// let scopes = Scopes::parse(["patient/Observation.rs?category=laboratory"]);
    /// let lab_only = &scopes.granted[0];
    /// let labs = testing::params(&[("patient", "123"), ("category", "laboratory")]);
    /// let everything = testing::params(&[("patient", "123")]);
    /// assert!(lab_only.restrictions_carried_by(&labs));
    /// assert!(!lab_only.restrictions_carried_by(&everything));
    /// ```
    pub fn restrictions_carried_by(&self, params: &[Param]) -> bool {
        self.restrictions.iter().all(|restriction| {
            params
                .iter()
                .any(|param| param.name == restriction.name && param.value == restriction.value)
        })
    }

    /// Whether a resource satisfies every restriction of the scope: `Some(true)` or
    /// `Some(false)` when every restriction is a token parameter this module can evaluate on
    /// a resource (see [`token_element`]), `None` when one is not. Always `Some(true)` for an
    /// unrestricted scope.
    pub fn restrictions_match_resource<J: JsonTree>(&self, resource: &J) -> Option<bool> {
        let mut all_match = true;
        for restriction in &self.restrictions {
            let element = token_element(&restriction.name)?;
            if !token_matches(resource.member(element), &restriction.value) {
                all_match = false;
            }
        }
        Some(all_match)
    }

    /// Whether every restriction can be evaluated on a resource.
    pub fn restrictions_checkable_on_resources(&self) -> bool {
        self.restrictions
            .iter()
            .all(|restriction| token_element(&restriction.name).is_some())
    }
}

/// The non-resource scopes, which grant no data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonResourceScope {
    /// `openid`, `fhirUser`, `profile`: identity data (OpenID Connect).
    Identity,
    /// `launch`, `launch/patient`, `launch/encounter`, ...: launch context requests.
    Launch,
    /// `offline_access`, `online_access`: refresh tokens.
    Refresh,
}

/// What one scope string is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedScope {
    Resource(ResourceScope),
    NonResource(NonResourceScope),
    /// A word that is not a SMART scope at all (an issuer's own scope such as `email`).
    /// It grants nothing.
    Other,
}

/// Why a resource scope was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// `patient/Observation` without `.permissions`.
    NoPermissionSeparator,
    /// A type that is not an R4 resource type (names are case-sensitive).
    UnknownResourceType,
    /// `patient/Observation.`
    NoPermissions,
    UnknownPermission(char),
    RepeatedPermission(char),
    PermissionsOutOfOrder,
    /// `patient/Observation.read?x=y`: restrictions are a v2 feature.
    RestrictionOnV1,
    /// `patient/*.rs?x=y`: a search parameter means something only for one type.
    RestrictionOnWildcard,
    /// `?` with nothing, a part without `=`, an empty name or value, bad percent-encoding.
    MalformedRestriction,
    /// A modifier (`code:text=`), a chain (`subject.name=`) or `_filter` inside a scope:
    /// experimental in SMART v2, refused.
    UnsupportedRestriction(String),
}

impl fmt::Display for ScopeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeError::NoPermissionSeparator => {
                formatter.write_str("no `.` before the permissions")
            }
            ScopeError::UnknownResourceType => formatter.write_str("not an R4 resource type"),
            ScopeError::NoPermissions => formatter.write_str("no permissions after `.`"),
            ScopeError::UnknownPermission(letter) => {
                write!(formatter, "unknown permission `{letter}`")
            }
            ScopeError::RepeatedPermission(letter) => {
                write!(formatter, "permission `{letter}` repeated")
            }
            ScopeError::PermissionsOutOfOrder => {
                formatter.write_str("permissions out of order (expected `cruds` order)")
            }
            ScopeError::RestrictionOnV1 => {
                formatter.write_str("`?` restrictions need v2 permissions")
            }
            ScopeError::RestrictionOnWildcard => {
                formatter.write_str("`?` restrictions need a resource type, not `*`")
            }
            ScopeError::MalformedRestriction => formatter.write_str("malformed `?` restriction"),
            ScopeError::UnsupportedRestriction(name) => write!(
                formatter,
                "restriction `{name}` uses a modifier, a chain or `_filter`"
            ),
        }
    }
}

/// Parses one scope string. [`Scopes::parse`] does this for every scope of a token.
///
/// ```
/// use ehrgate_sdk::scope::{NonResourceScope, ParsedScope, ScopeError, parse_scope};
///
/// assert!(matches!(parse_scope("user/Patient.rs"), Ok(ParsedScope::Resource(_))));
/// assert_eq!(
///     parse_scope("launch/patient"),
///     Ok(ParsedScope::NonResource(NonResourceScope::Launch))
/// );
/// assert_eq!(parse_scope("email"), Ok(ParsedScope::Other));
/// assert_eq!(parse_scope("patient/Patient"), Err(ScopeError::NoPermissionSeparator));
/// ```
pub fn parse_scope(scope: &str) -> Result<ParsedScope, ScopeError> {
    match scope {
        "openid" | "fhirUser" | "profile" => {
            return Ok(ParsedScope::NonResource(NonResourceScope::Identity));
        }
        "offline_access" | "online_access" => {
            return Ok(ParsedScope::NonResource(NonResourceScope::Refresh));
        }
        "launch" => return Ok(ParsedScope::NonResource(NonResourceScope::Launch)),
        _ => {}
    }
    // `launch/patient`, `launch/encounter` and the other launch context requests.
    if scope
        .strip_prefix("launch/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    {
        return Ok(ParsedScope::NonResource(NonResourceScope::Launch));
    }
    let Some((context_name, rest)) = scope.split_once('/') else {
        return Ok(ParsedScope::Other);
    };
    let Some(context) = ScopeContext::from_name(context_name) else {
        return Ok(ParsedScope::Other);
    };
    parse_resource_scope(context, rest).map(ParsedScope::Resource)
}

/// Parses what follows `patient/`, `user/` or `system/`.
fn parse_resource_scope(context: ScopeContext, rest: &str) -> Result<ResourceScope, ScopeError> {
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let (type_name, permission_text) = body
        .split_once('.')
        .ok_or(ScopeError::NoPermissionSeparator)?;
    let resource = if type_name == "*" {
        ScopeResource::AnyType
    } else if fhir::is_resource_type(type_name) {
        ScopeResource::Type(type_name.to_string())
    } else {
        return Err(ScopeError::UnknownResourceType);
    };
    let (permissions, syntax) = match Permissions::from_v1(permission_text) {
        Some(permissions) => (permissions, ScopeSyntax::V1),
        None => (Permissions::from_letters(permission_text)?, ScopeSyntax::V2),
    };
    let restrictions = match query {
        None => Vec::new(),
        Some(_) if syntax == ScopeSyntax::V1 => return Err(ScopeError::RestrictionOnV1),
        Some(_) if resource == ScopeResource::AnyType => {
            return Err(ScopeError::RestrictionOnWildcard);
        }
        Some(query) => parse_restrictions(query)?,
    };
    Ok(ResourceScope {
        context,
        resource,
        permissions,
        restrictions,
        syntax,
    })
}

fn parse_restrictions(query: &str) -> Result<Vec<ScopeParam>, ScopeError> {
    let mut restrictions = Vec::new();
    for part in query.split('&') {
        let (name, raw_value) = part
            .split_once('=')
            .ok_or(ScopeError::MalformedRestriction)?;
        let value = percent_decode(raw_value).ok_or(ScopeError::MalformedRestriction)?;
        if name.is_empty() || value.is_empty() {
            return Err(ScopeError::MalformedRestriction);
        }
        // SMART v2 §"Finer-grained resource constraints": modifiers, chained parameters and
        // `_filter` are experimental; a policy that cannot judge them refuses the scope.
        if name.contains([':', '.']) || name == "_filter" {
            return Err(ScopeError::UnsupportedRestriction(name.to_string()));
        }
        if !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return Err(ScopeError::MalformedRestriction);
        }
        restrictions.push(ScopeParam {
            name: name.to_string(),
            value,
        });
    }
    Ok(restrictions)
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); `None` for a broken escape or non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let high = bytes
                .get(index + 1)
                .and_then(|b| (*b as char).to_digit(16))?;
            let low = bytes
                .get(index + 2)
                .and_then(|b| (*b as char).to_digit(16))?;
            decoded.push(u8::try_from(high * 16 + low).ok()?);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The element a token search parameter reads, for the parameters whose R4 expression is
/// the same-named element of the resource (`Observation.category`, `Condition.code`,
/// `Encounter.class`, ...). Granular scopes in practice (US Core's
/// `category=...|laboratory`) use these. `None` for any other parameter.
pub fn token_element(param: &str) -> Option<&'static str> {
    match param {
        "category" => Some("category"),
        "code" => Some("code"),
        "status" => Some("status"),
        "type" => Some("type"),
        "class" => Some("class"),
        "clinical-status" => Some("clinicalStatus"),
        "verification-status" => Some("verificationStatus"),
        _ => None,
    }
}

/// R4 search.html#token on an element that is a `code`, a Coding or a CodeableConcept (or a
/// list of them): `[system]|[code]`, `|[code]` (no system), `[system]|` (any code of the
/// system) or `[code]` (any system).
fn token_matches<J: JsonTree>(element: Option<&J>, token: &str) -> bool {
    let (system, code) = match token.split_once('|') {
        Some((system, code)) => (Some(system), code),
        None => (None, token),
    };
    let coding_matches = |coding: &J| {
        let coding_system = coding.member("system").and_then(J::text);
        let coding_code = coding.member("code").and_then(J::text);
        let system_ok = match system {
            None => true,
            Some("") => coding_system.is_none(),
            Some(expected) => coding_system == Some(expected),
        };
        let code_ok = (code.is_empty() && system.is_some()) || coding_code == Some(code);
        system_ok && code_ok
    };
    let value_matches = |value: &J| {
        // A plain `code` has no system (R4 search.html#token: "the system is implicit").
        if let Some(text) = value.text() {
            return system.is_none_or(str::is_empty) && text == code;
        }
        match value.member("coding").and_then(J::items) {
            Some(codings) => codings.iter().any(coding_matches),
            None => coding_matches(value),
        }
    };
    match element {
        Some(value) => match value.items() {
            Some(values) => values.iter().any(value_matches),
            None => value_matches(value),
        },
        None => false,
    }
}

/// The scopes of one token, parsed: what they grant and what was rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    /// Resource scopes that parsed, in token order.
    pub granted: Vec<ResourceScope>,
    /// Resource scopes that did not parse, with the reason. They grant nothing.
    pub rejected: Vec<(String, ScopeError)>,
}

impl Scopes {
    /// Parses every scope; non-resource and unrecognized words grant nothing and are dropped.
    /// A malformed resource scope is never read as a wider (or narrower) one: it lands in
    /// `rejected` and grants nothing, so a policy can report it and judge with the rest.
    ///
    /// ```
    /// use ehrgate_sdk::{Permission, Scopes, testing};
    ///
    /// let mut app = testing::principal("patient-portal-user-42");
    /// app.scopes = vec![
    ///     "openid".into(),
    ///     "launch/patient".into(),
    ///     "patient/Observation.rs".into(),
    ///     "patient/observation.cruds".into(), // type names are case-sensitive
    ///     "patient/*.sr".into(),              // letters out of order
    /// ];
    /// let scopes = Scopes::parse(app.scopes.iter().map(String::as_str));
    ///
    /// assert_eq!(scopes.granted.len(), 1);
    /// let may_write = scopes.granted.iter().any(|scope| scope.grants(Permission::Update));
    /// assert!(!may_write);
    /// let rejected: Vec<&str> = scopes.rejected.iter().map(|(text, _)| text.as_str()).collect();
    /// assert_eq!(rejected, ["patient/observation.cruds", "patient/*.sr"]);
    /// assert_eq!(scopes.rejected[1].1.to_string(), "permissions out of order (expected `cruds` order)");
    /// ```
    pub fn parse<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut parsed = Scopes::default();
        for scope in scopes {
            match parse_scope(scope) {
                Ok(ParsedScope::Resource(resource)) => parsed.granted.push(resource),
                Ok(ParsedScope::NonResource(_) | ParsedScope::Other) => {}
                Err(error) => parsed.rejected.push((scope.to_string(), error)),
            }
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resource(scope: &str) -> ResourceScope {
        match parse_scope(scope) {
            Ok(ParsedScope::Resource(resource)) => resource,
            other => panic!("{scope}: {other:?}"),
        }
    }

    #[test]
    fn v2_and_v1_permissions() {
        let cases: &[(&str, ScopeContext, Option<&str>, &str, ScopeSyntax)] = &[
            (
                "patient/Observation.rs",
                ScopeContext::Patient,
                Some("Observation"),
                "rs",
                ScopeSyntax::V2,
            ),
            (
                "user/*.cruds",
                ScopeContext::User,
                None,
                "cruds",
                ScopeSyntax::V2,
            ),
            (
                "system/Patient.r",
                ScopeContext::System,
                Some("Patient"),
                "r",
                ScopeSyntax::V2,
            ),
            (
                "patient/Condition.cud",
                ScopeContext::Patient,
                Some("Condition"),
                "cud",
                ScopeSyntax::V2,
            ),
            (
                "user/Claim.s",
                ScopeContext::User,
                Some("Claim"),
                "s",
                ScopeSyntax::V2,
            ),
            (
                "patient/Observation.read",
                ScopeContext::Patient,
                Some("Observation"),
                "rs",
                ScopeSyntax::V1,
            ),
            (
                "user/*.write",
                ScopeContext::User,
                None,
                "cud",
                ScopeSyntax::V1,
            ),
            (
                "system/*.*",
                ScopeContext::System,
                None,
                "cruds",
                ScopeSyntax::V1,
            ),
            (
                "patient/Patient.*",
                ScopeContext::Patient,
                Some("Patient"),
                "cruds",
                ScopeSyntax::V1,
            ),
        ];
        for (text, context, resource_type, letters, syntax) in cases {
            let scope = resource(text);
            assert_eq!(scope.context, *context, "{text}");
            match resource_type {
                Some(name) => {
                    assert_eq!(
                        scope.resource,
                        ScopeResource::Type((*name).into()),
                        "{text}"
                    );
                    assert!(scope.names_type(name) && scope.covers_type(name), "{text}");
                    assert!(!scope.covers_type("Practitioner"), "{text}");
                }
                None => {
                    assert_eq!(scope.resource, ScopeResource::AnyType, "{text}");
                    assert!(scope.covers_type("Practitioner") && !scope.names_type("Practitioner"));
                }
            }
            assert_eq!(scope.permissions.letters(), *letters, "{text}");
            assert_eq!(scope.syntax, *syntax, "{text}");
            assert!(!scope.is_granular(), "{text}");
        }
        let read = resource("patient/Observation.read");
        assert!(read.grants(Permission::Read) && read.grants(Permission::Search));
        assert!(!read.grants(Permission::Create) && !read.grants(Permission::Update));
        let write = resource("user/Observation.write");
        assert!(!write.grants(Permission::Read) && write.grants(Permission::Delete));
    }

    #[test]
    fn malformed_resource_scopes_are_rejected_never_widened() {
        let cases: &[(&str, ScopeError)] = &[
            ("patient/Observation", ScopeError::NoPermissionSeparator),
            ("patient/Observation.", ScopeError::NoPermissions),
            ("patient/Observation.dus", ScopeError::PermissionsOutOfOrder),
            ("patient/Observation.sr", ScopeError::PermissionsOutOfOrder),
            (
                "patient/Observation.rrs",
                ScopeError::RepeatedPermission('r'),
            ),
            ("patient/Observation.rx", ScopeError::UnknownPermission('x')),
            ("patient/Observation.R", ScopeError::UnknownPermission('R')),
            (
                "patient/Observation.Read",
                ScopeError::UnknownPermission('R'),
            ),
            (
                "patient/Observation.reads",
                ScopeError::UnknownPermission('e'),
            ),
            ("patient/observation.rs", ScopeError::UnknownResourceType),
            ("patient/Foo.rs", ScopeError::UnknownResourceType),
            ("patient/.rs", ScopeError::UnknownResourceType),
            ("patient/**.rs", ScopeError::UnknownResourceType),
            (
                "patient/Observation.read?category=x",
                ScopeError::RestrictionOnV1,
            ),
            ("patient/*.rs?category=x", ScopeError::RestrictionOnWildcard),
            ("patient/Observation.rs?", ScopeError::MalformedRestriction),
            (
                "patient/Observation.rs?category",
                ScopeError::MalformedRestriction,
            ),
            (
                "patient/Observation.rs?category=",
                ScopeError::MalformedRestriction,
            ),
            (
                "patient/Observation.rs?=x",
                ScopeError::MalformedRestriction,
            ),
            (
                "patient/Observation.rs?category=%zz",
                ScopeError::MalformedRestriction,
            ),
            (
                "patient/Observation.rs?a=1&&b=2",
                ScopeError::MalformedRestriction,
            ),
            (
                "patient/Observation.rs?code:text=x",
                ScopeError::UnsupportedRestriction("code:text".into()),
            ),
            (
                "patient/Observation.rs?subject.name=x",
                ScopeError::UnsupportedRestriction("subject.name".into()),
            ),
            (
                "patient/Observation.rs?_filter=x",
                ScopeError::UnsupportedRestriction("_filter".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_scope(text), Err(expected.clone()), "{text}");
            let scopes = Scopes::parse([*text, "patient/Patient.r"]);
            assert_eq!(scopes.granted.len(), 1, "{text}");
            assert_eq!(scopes.rejected.len(), 1, "{text}");
            assert!(!expected.to_string().is_empty());
        }
    }

    #[test]
    fn non_resource_scopes_grant_nothing() {
        for text in [
            "openid",
            "fhirUser",
            "profile",
            "launch",
            "launch/patient",
            "launch/encounter",
            "offline_access",
            "online_access",
        ] {
            assert!(
                matches!(parse_scope(text), Ok(ParsedScope::NonResource(_))),
                "{text}"
            );
        }
        for text in [
            "email",
            "Patient/Observation.rs",
            "admin/Patient.rs",
            "launch/",
            "launch/a/b",
        ] {
            assert_eq!(parse_scope(text), Ok(ParsedScope::Other), "{text}");
        }
        let scopes = Scopes::parse(["openid", "fhirUser", "launch/patient", "email"]);
        assert!(scopes.granted.is_empty() && scopes.rejected.is_empty());
    }

    #[test]
    fn granular_restrictions_apply_to_searches_that_carry_them() {
        let scope = resource(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        );
        assert!(scope.is_granular());
        assert_eq!(scope.restrictions.len(), 1);
        let param = |name: &str, value: &str| Param {
            name: name.into(),
            value: value.into(),
        };
        let lab = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        assert!(scope.restrictions_carried_by(&[param("patient", "1"), param("category", lab)]));
        assert!(!scope.restrictions_carried_by(&[param("patient", "1")]));
        assert!(!scope.restrictions_carried_by(&[param("category", "laboratory")]));
        assert!(!scope.restrictions_carried_by(&[param("category:not", lab)]));
        assert!(
            !scope.restrictions_carried_by(&[param("category", &format!("{lab},x|vital-signs"))])
        );

        let encoded = resource("patient/Observation.rs?category=a%7Cb&status=final");
        assert_eq!(encoded.restrictions[0].value, "a|b");
        assert!(
            encoded.restrictions_carried_by(&[param("status", "final"), param("category", "a|b")])
        );
        assert!(!encoded.restrictions_carried_by(&[param("category", "a|b")]));
    }

    #[test]
    fn granular_restrictions_on_resources() {
        let lab_scope = resource(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        );
        let lab = json!({
            "resourceType": "Observation",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory"
            }]}]
        });
        let vitals = json!({
            "resourceType": "Observation",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs"
            }]}]
        });
        let uncategorized = json!({"resourceType": "Observation"});
        assert_eq!(lab_scope.restrictions_match_resource(&lab), Some(true));
        assert_eq!(lab_scope.restrictions_match_resource(&vitals), Some(false));
        assert_eq!(
            lab_scope.restrictions_match_resource(&uncategorized),
            Some(false)
        );
        assert!(lab_scope.restrictions_checkable_on_resources());

        let code_only = resource("patient/Observation.rs?category=laboratory");
        assert_eq!(code_only.restrictions_match_resource(&lab), Some(true));
        let no_system = resource("patient/Observation.rs?category=%7Claboratory");
        assert_eq!(no_system.restrictions_match_resource(&lab), Some(false));
        let any_code = resource(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category%7C",
        );
        assert_eq!(any_code.restrictions_match_resource(&vitals), Some(true));

        let status = resource("patient/Observation.rs?status=final");
        assert_eq!(
            status.restrictions_match_resource(&json!({"status": "final"})),
            Some(true)
        );
        assert_eq!(
            status.restrictions_match_resource(&json!({"status": "preliminary"})),
            Some(false)
        );

        let class = resource(
            "patient/Encounter.rs?class=http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB",
        );
        let ambulatory = json!({"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}});
        assert_eq!(class.restrictions_match_resource(&ambulatory), Some(true));

        let unsupported = resource("patient/Observation.rs?date=2020");
        assert_eq!(unsupported.restrictions_match_resource(&lab), None);
        assert!(!unsupported.restrictions_checkable_on_resources());
        let plain = resource("patient/Observation.rs");
        assert_eq!(plain.restrictions_match_resource(&lab), Some(true));
    }

    #[test]
    fn permission_sets() {
        let rs = Permissions::from_letters("rs").unwrap_or_default();
        let r = Permissions::from_letters("r").unwrap_or_default();
        assert!(rs.contains_all(r) && !r.contains_all(rs));
        assert!(Permissions::ALL.contains_all(rs));
        assert_eq!(Permissions::ALL.letters(), "cruds");
        assert_eq!(
            Permissions::from_letters(""),
            Err(ScopeError::NoPermissions)
        );
    }
}
