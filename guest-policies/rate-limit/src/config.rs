//! The rate-limit module's configuration: JSON from the gateway config, parsed on every
//! instance (so it stays small), every field defaulted, unknown fields refused, and the
//! cross-field rules checked in [`Config::validate`]. See the README section "Rate limiting
//! and anomaly detection" for a worked example.

use std::collections::{BTreeMap, BTreeSet};

use ehrgate_sdk::state::Bucket;
use serde::Deserialize;

use crate::network::Network;

/// The whole configuration.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The per-caller buckets of callers no tier matches.
    #[serde(default)]
    pub defaults: Limits,
    /// Tiers, first match wins: a bulk-export backend client is not an interactive
    /// clinician, and a billing route is not the EHR route.
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// One bucket per named route, shared by every caller of it (protects an upstream).
    #[serde(default)]
    pub routes: BTreeMap<String, Shape>,
    /// One bucket for every authenticated request this module sees: the ceiling that still
    /// holds when an attacker rotates client ids, users and addresses, each of which starts
    /// full. Anonymous requests never draw from it (see `anonymous`).
    #[serde(default = "default_global")]
    pub global: Shape,
    /// One bucket for every anonymous request (a route's `anonymous_paths`, such as
    /// `/metadata`): their ceiling instead of `global` and the route buckets, so that
    /// unauthenticated traffic from however many addresses cannot empty the buckets
    /// clinicians depend on.
    #[serde(default = "default_anonymous")]
    pub anonymous: Shape,
    /// What one request costs, by FHIR interaction.
    #[serde(default)]
    pub costs: Costs,
    /// Source networks (CIDR) that get no address bucket: the hospital's own NAT, where
    /// every workstation shares one address. Their users still have user and client buckets.
    #[serde(default)]
    pub trusted_networks: Vec<Network>,
    /// IPv6 sources share an address bucket per prefix of this many bits: a subscriber
    /// usually holds a whole /64 or more (RFC 6177), so per-address buckets would let one
    /// host rotate through 2^64 fresh buckets.
    #[serde(default = "default_ipv6_prefix_bits")]
    pub ipv6_prefix_bits: u8,
}

/// The shapes of the per-caller buckets.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Per OAuth client (`client-id`).
    #[serde(default = "default_client")]
    pub client: Shape,
    /// Per user (issuer and subject of the token).
    #[serde(default = "default_user")]
    pub user: Shape,
    /// Per source address (IPv6 by prefix), except in `trusted_networks`.
    #[serde(default = "default_address")]
    pub address: Shape,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            client: default_client(),
            user: default_user(),
            address: default_address(),
        }
    }
}

/// A token bucket: holds `capacity` tokens and refills `refill` tokens every `period_ms`,
/// continuously. `capacity` is the burst and `RateLimit-Limit`; `refill / period_ms` the
/// sustained rate.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub capacity: u64,
    pub refill: u64,
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
}

impl Shape {
    pub fn bucket(self) -> Bucket {
        Bucket {
            capacity: self.capacity,
            refill_tokens: self.refill,
            refill_period_ms: self.period_ms,
        }
    }
}

/// A tier: the callers it matches and the per-caller bucket shapes they get instead of the
/// defaults. Every listed criterion must match (a role of the caller, its client, its token's
/// issuer, the route); within one list any entry matches. Shapes not given are the defaults'.
///
/// Client ids and roles are only unique per issuer: with more than one identity provider (or
/// dynamic client registration), a tier that grants more than the defaults should list
/// `issuers`, or another provider's token naming the same client or role lands in it.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Lower-case letters, digits and `-`; it is part of the bucket keys, so a caller that
    /// moves between tiers gets separate buckets.
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub clients: Vec<String>,
    /// Token issuers (`iss`, exactly as configured in `[[identity.issuers]]`); empty matches
    /// any. Anonymous requests match no tier that lists issuers, roles or clients.
    #[serde(default)]
    pub issuers: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub client: Option<Shape>,
    #[serde(default)]
    pub user: Option<Shape>,
    #[serde(default)]
    pub address: Option<Shape>,
}

/// Tokens one request takes from each of its buckets. A search costs more than a read (the
/// upstream does more work), an operation more still, and a bulk `$export` most. A batch or
/// transaction costs the sum of its entries.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Costs {
    pub read: u64,
    pub vread: u64,
    pub search: u64,
    pub history: u64,
    pub create: u64,
    pub update: u64,
    pub patch: u64,
    pub delete: u64,
    pub capabilities: u64,
    /// Operations not named in `operations`.
    pub operation: u64,
    /// By operation name without `$`; merged over the built-in `export` 20, `everything` 10.
    pub operations: BTreeMap<String, u64>,
    /// Requests that are not FHIR interactions.
    pub other: u64,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            read: 1,
            vread: 1,
            search: 2,
            history: 2,
            create: 2,
            update: 2,
            patch: 2,
            delete: 2,
            capabilities: 1,
            operation: 5,
            operations: BTreeMap::new(),
            other: 1,
        }
    }
}

/// Operation costs that apply unless `costs.operations` names the operation.
pub const BUILT_IN_OPERATION_COSTS: &[(&str, u64)] = &[("export", 20), ("everything", 10)];

impl Costs {
    /// The cost of operation `name`.
    pub fn of_operation(&self, name: &str) -> u64 {
        if let Some(cost) = self.operations.get(name) {
            return *cost;
        }
        BUILT_IN_OPERATION_COSTS
            .iter()
            .find(|(builtin, _)| *builtin == name)
            .map_or(self.operation, |(_, cost)| *cost)
    }

    /// The most a plain interaction (not an operation, not a bundle) can cost, and where
    /// that cost is configured. Every bucket must hold at least this much, or some basic
    /// FHIR interaction could never pass. Operations may cost more than a tier's buckets
    /// hold: those callers then get 413 for them, which is how a tier keeps interactive
    /// users off `$export`.
    fn largest_interaction(&self) -> (u64, String) {
        let named = [
            ("read", self.read),
            ("vread", self.vread),
            ("search", self.search),
            ("history", self.history),
            ("create", self.create),
            ("update", self.update),
            ("patch", self.patch),
            ("delete", self.delete),
            ("capabilities", self.capabilities),
            ("other", self.other),
        ];
        let mut largest = (0, String::new());
        for (name, cost) in named {
            if cost > largest.0 {
                largest = (cost, format!("costs.{name}"));
            }
        }
        largest
    }
}

fn default_period_ms() -> u64 {
    60_000
}
fn default_client() -> Shape {
    Shape {
        capacity: 1200,
        refill: 600,
        period_ms: 60_000,
    }
}
fn default_user() -> Shape {
    Shape {
        capacity: 300,
        refill: 120,
        period_ms: 60_000,
    }
}
fn default_address() -> Shape {
    Shape {
        capacity: 600,
        refill: 300,
        period_ms: 60_000,
    }
}
fn default_global() -> Shape {
    Shape {
        capacity: 2000,
        refill: 1000,
        period_ms: 1000,
    }
}
/// 200 tokens, 100 more a second. Anonymous paths are discovery documents (the
/// CapabilityStatement, `.well-known/smart-configuration`) that an app fetches once per
/// launch or start-up: 100 a second is 360,000 launches an hour, far beyond any hospital's
/// fleet, and the burst of 200 absorbs a shift change in which hundreds of workstations start
/// their apps at once. It is a tenth of the default `global`, so a flood of anonymous requests
/// adds at most a tenth to what the upstreams see from authenticated traffic.
fn default_anonymous() -> Shape {
    Shape {
        capacity: 200,
        refill: 100,
        period_ms: 1000,
    }
}
fn default_ipv6_prefix_bits() -> u8 {
    64
}

/// The name of the tier that applies when none in `tiers` matches.
pub const DEFAULT_TIER: &str = "default";

const MAX_TIER_NAME: usize = 32;

impl Config {
    /// Every problem with the configuration, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let (largest_cost, largest_at) = self.costs.largest_interaction();
        let mut check = |at: String, shape: &Shape| {
            if let Some(problem) = shape_problem(&at, shape, largest_cost, &largest_at) {
                problems.push(problem);
            }
        };
        check("defaults.client".into(), &self.defaults.client);
        check("defaults.user".into(), &self.defaults.user);
        check("defaults.address".into(), &self.defaults.address);
        check("global".into(), &self.global);
        check("anonymous".into(), &self.anonymous);
        for (route, shape) in &self.routes {
            check(format!("routes.{route}"), shape);
        }
        for (index, tier) in self.tiers.iter().enumerate() {
            for (dimension, shape) in [
                ("client", &tier.client),
                ("user", &tier.user),
                ("address", &tier.address),
            ] {
                if let Some(shape) = shape {
                    check(format!("tiers[{index}].{dimension}"), shape);
                }
            }
        }
        let mut names = BTreeSet::new();
        for (index, tier) in self.tiers.iter().enumerate() {
            problems.extend(tier_problem(index, tier));
            if !names.insert(tier.name.as_str()) {
                problems.push(format!(
                    "`tiers[{index}].name` `{}` is used by an earlier tier\n  help: give every tier its own name",
                    tier.name
                ));
            }
        }
        if self.ipv6_prefix_bits > 128 {
            problems.push(format!(
                "`ipv6_prefix_bits` is {}; expected 0 to 128 (64 is one subscriber's network)",
                self.ipv6_prefix_bits
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

fn shape_problem(at: &str, shape: &Shape, largest_cost: u64, largest_at: &str) -> Option<String> {
    if shape.capacity == 0 || shape.refill == 0 || shape.period_ms == 0 {
        return Some(format!(
            "`{at}` has a zero `capacity`, `refill` or `period_ms`\n  help: every bucket needs a capacity and a refill rate above 0"
        ));
    }
    if shape.capacity < largest_cost {
        return Some(format!(
            "`{at}.capacity` is {}, below the cost of one request, {largest_cost} (`{largest_at}`)\n  help: raise the capacity or lower the cost; a request that costs more than a bucket holds can never pass",
            shape.capacity
        ));
    }
    None
}

fn tier_problem(index: usize, tier: &Tier) -> Vec<String> {
    let mut problems = Vec::new();
    let well_formed = !tier.name.is_empty()
        && tier.name.len() <= MAX_TIER_NAME
        && tier
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !well_formed {
        problems.push(format!(
            "`tiers[{index}].name` `{}` is not 1-{MAX_TIER_NAME} characters of [a-z0-9-]",
            tier.name.escape_debug()
        ));
    }
    if tier.name == DEFAULT_TIER {
        problems.push(format!(
            "`tiers[{index}].name` `{DEFAULT_TIER}` is reserved for callers no tier matches\n  help: set those shapes in `defaults`"
        ));
    }
    if tier.roles.is_empty()
        && tier.clients.is_empty()
        && tier.issuers.is_empty()
        && tier.routes.is_empty()
    {
        problems.push(format!(
            "`tiers[{index}]` (`{}`) matches every caller\n  help: list `roles`, `clients`, `issuers` or `routes`, or set the shapes in `defaults`",
            tier.name
        ));
    }
    if let Some(position) = tier
        .issuers
        .iter()
        .position(|issuer| issuer.trim().is_empty())
    {
        problems.push(format!(
            "`tiers[{index}].issuers[{position}]` is empty\n  help: give the issuer exactly as `[[identity.issuers]]` `issuer` has it"
        ));
    }
    if tier.client.is_none() && tier.user.is_none() && tier.address.is_none() {
        problems.push(format!(
            "`tiers[{index}]` (`{}`) sets no bucket shape\n  help: give it a `client`, `user` or `address` shape",
            tier.name
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn an_empty_config_has_safe_defaults() {
        let config = parse("{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.global.capacity, 2000);
        assert_eq!(
            config.anonymous,
            Shape {
                capacity: 200,
                refill: 100,
                period_ms: 1000
            }
        );
        assert_eq!(config.costs.of_operation("export"), 20);
        assert_eq!(config.costs.of_operation("lastn"), 5);
        assert_eq!(config.ipv6_prefix_bits, 64);
    }

    #[test]
    fn operation_costs_merge_over_the_built_ins() {
        let config =
            parse(r#"{"costs": {"operations": {"lastn": 3}}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.costs.of_operation("lastn"), 3);
        assert_eq!(config.costs.of_operation("export"), 20);
    }

    #[test]
    fn a_bucket_smaller_than_a_cost_is_refused() {
        let error = parse(
            r#"{"defaults": {"user": {"capacity": 2, "refill": 10}}, "costs": {"update": 3}}"#,
        )
        .err()
        .unwrap_or_default();
        assert!(error.contains("`defaults.user.capacity` is 2"), "{error}");
        assert!(error.contains("`costs.update`"), "{error}");
        // Operations may cost more than a bucket holds: that tier cannot run them.
        assert!(parse(r#"{"defaults": {"user": {"capacity": 5, "refill": 1}}}"#).is_ok());
    }

    #[test]
    fn tiers_need_criteria_shapes_and_unique_names() {
        let error = parse(
            r#"{"tiers": [
                {"name": "bulk", "clients": ["x"], "client": {"capacity": 50, "refill": 5}},
                {"name": "bulk", "roles": ["y"]},
                {"name": "Default", "client": {"capacity": 50, "refill": 5}}
            ]}"#,
        )
        .err()
        .unwrap_or_default();
        assert!(error.contains("used by an earlier tier"), "{error}");
        assert!(
            error.contains("`tiers[1]` (`bulk`) sets no bucket shape"),
            "{error}"
        );
        assert!(
            error.contains("`tiers[2].name` `Default` is not"),
            "{error}"
        );
        assert!(
            error.contains("`tiers[2]` (`Default`) matches every caller"),
            "{error}"
        );
    }

    #[test]
    fn tiers_may_match_by_issuer_and_anonymous_is_checked_like_any_bucket() {
        let config = parse(
            r#"{"tiers": [{"name": "partner", "issuers": ["https://idp.partner.example"],
                           "user": {"capacity": 30, "refill": 30}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.tiers[0].issuers, ["https://idp.partner.example"]);
        let error = parse(
            r#"{"anonymous": {"capacity": 1, "refill": 1},
                "tiers": [{"name": "t", "issuers": [" "], "user": {"capacity": 30, "refill": 30}}]}"#,
        )
        .err()
        .unwrap_or_default();
        assert!(error.contains("`anonymous.capacity` is 1"), "{error}");
        assert!(error.contains("`tiers[0].issuers[0]` is empty"), "{error}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = parse(r#"{"global": {"capacity": 5, "refil": 1}}"#)
            .err()
            .unwrap_or_default();
        assert!(error.contains("unknown field `refil`"), "{error}");
    }
}
