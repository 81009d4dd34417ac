//! Which buckets a request draws from, and taking from all of them or none.

use ehrgate_sdk::Request;
use ehrgate_sdk::keys::state_key;
use ehrgate_sdk::state::{self, Bucket, BucketStatus};

use crate::config::{Config, DEFAULT_TIER, Tier};
use crate::network::{address_key, parse_address};

/// What a bucket limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    User,
    Client,
    Address,
    Route,
    Global,
    Anonymous,
}

impl Dimension {
    pub fn name(self) -> &'static str {
        match self {
            Dimension::User => "user",
            Dimension::Client => "client",
            Dimension::Address => "address",
            Dimension::Route => "route",
            Dimension::Global => "global",
            Dimension::Anonymous => "anonymous",
        }
    }

    pub fn rule_id(self) -> &'static str {
        match self {
            Dimension::User => "rate-limit.user",
            Dimension::Client => "rate-limit.client",
            Dimension::Address => "rate-limit.address",
            Dimension::Route => "rate-limit.route",
            Dimension::Global => "rate-limit.global",
            Dimension::Anonymous => "rate-limit.anonymous",
        }
    }
}

/// One bucket a request draws from.
#[derive(Debug)]
pub struct Limit {
    pub dimension: Dimension,
    pub key: String,
    pub bucket: Bucket,
}

/// The buckets `request` draws from, most specific first (user, client, address), then the
/// shared ones (route, global; anonymous for anonymous requests). The order decides which bucket a refusal names when several
/// are empty: the caller's own limit before the one everybody shares.
///
/// Anonymous requests (routes' `anonymous_paths`) draw from their address bucket and the
/// `anonymous` ceiling only: not from `global` or a route bucket, which authenticated callers
/// depend on and which unauthenticated traffic from many addresses could otherwise empty.
pub fn limits_for(config: &Config, request: &Request) -> Vec<Limit> {
    let tier = config.tiers.iter().find(|tier| matches(tier, request));
    let tier_name = tier.map_or(DEFAULT_TIER, |t| t.name.as_str());
    let defaults = &config.defaults;
    let user_shape = tier.and_then(|t| t.user).unwrap_or(defaults.user);
    let client_shape = tier.and_then(|t| t.client).unwrap_or(defaults.client);
    let address_shape = tier.and_then(|t| t.address).unwrap_or(defaults.address);
    let mut limits = Vec::with_capacity(5);
    if let Some(principal) = &request.principal {
        // Subjects and client ids are unique per issuer only (a second identity provider, or
        // dynamic client registration, can mint any client id); the issuer is configured,
        // not free text.
        limits.push(Limit {
            dimension: Dimension::User,
            key: state_key(
                &format!("user:{tier_name}:{}", principal.issuer),
                &principal.subject,
            ),
            bucket: user_shape.bucket(),
        });
        limits.push(Limit {
            dimension: Dimension::Client,
            key: state_key(
                &format!("client:{tier_name}:{}", principal.issuer),
                &principal.client_id,
            ),
            bucket: client_shape.bucket(),
        });
    }
    let trusted = parse_address(&request.source_address)
        .is_some_and(|ip| config.trusted_networks.iter().any(|net| net.contains(ip)));
    if !trusted {
        let address = address_key(&request.source_address, config.ipv6_prefix_bits)
            .unwrap_or_else(|| request.source_address.clone());
        limits.push(Limit {
            dimension: Dimension::Address,
            key: state_key(&format!("address:{tier_name}"), &address),
            bucket: address_shape.bucket(),
        });
    }
    if request.principal.is_none() {
        limits.push(Limit {
            dimension: Dimension::Anonymous,
            key: "anonymous".to_owned(),
            bucket: config.anonymous.bucket(),
        });
        return limits;
    }
    if let Some(route_shape) = config.routes.get(&request.route) {
        limits.push(Limit {
            dimension: Dimension::Route,
            key: state_key("route", &request.route),
            bucket: route_shape.bucket(),
        });
    }
    limits.push(Limit {
        dimension: Dimension::Global,
        key: "global".to_owned(),
        bucket: config.global.bucket(),
    });
    limits
}

/// Whether `tier` applies to `request`: every criterion it lists matches. Roles and client
/// ids mean something only together with the issuer that minted them, which is what
/// `issuers` pins down.
fn matches(tier: &Tier, request: &Request) -> bool {
    let principal = request.principal.as_ref();
    let role_ok = tier.roles.is_empty()
        || principal.is_some_and(|p| tier.roles.iter().any(|role| p.has_role(role)));
    let client_ok =
        tier.clients.is_empty() || principal.is_some_and(|p| tier.clients.contains(&p.client_id));
    let issuer_ok =
        tier.issuers.is_empty() || principal.is_some_and(|p| tier.issuers.contains(&p.issuer));
    let route_ok = tier.routes.is_empty() || tier.routes.contains(&request.route);
    role_ok && client_ok && issuer_ok && route_ok
}

/// How taking from every bucket went.
pub enum Outcome {
    /// Every bucket had enough; the status of the one with the fewest tokens left.
    Allowed(BucketStatus),
    /// This bucket had too few tokens; nothing was taken from any bucket.
    Refused(BucketStatus, Dimension),
    /// The request costs more than this bucket can ever hold.
    TooCostly { capacity: u64, dimension: Dimension },
}

/// Takes `cost` from every bucket in `limits`, or from none, in one host call (one atomic
/// step and one round trip on a shared backend): a refused request costs the caller
/// nothing, and a caller stopped by its own bucket does not drain the global ceiling for
/// everyone else.
pub fn take_all(limits: &[Limit], cost: u64) -> Result<Outcome, String> {
    if let Some(limit) = limits.iter().find(|l| cost > l.bucket.capacity) {
        return Ok(Outcome::TooCostly {
            capacity: limit.bucket.capacity,
            dimension: limit.dimension,
        });
    }
    if limits.is_empty() {
        // `limits_for` always includes the global or the anonymous bucket.
        return Err("no bucket applies to this request".to_owned());
    }
    let buckets: Vec<(&str, Bucket)> = limits
        .iter()
        .map(|limit| (limit.key.as_str(), limit.bucket))
        .collect();
    let statuses = state::take_all(&buckets, cost)?;
    if statuses.len() != limits.len() {
        return Err(format!(
            "the host answered {} of {} buckets",
            statuses.len(),
            limits.len()
        ));
    }
    if statuses.iter().all(|status| status.allowed) {
        // With several quota policies the fields describe the one closest to exhaustion.
        return statuses
            .into_iter()
            .min_by_key(|status| status.remaining)
            .map(Outcome::Allowed)
            .ok_or_else(|| "the host answered no bucket".to_owned());
    }
    // Refused: the first bucket that was short names the limit.
    limits
        .iter()
        .zip(statuses)
        .find(|(_, status)| status.retry_after_ms > 0)
        .map(|(limit, status)| Outcome::Refused(status, limit.dimension))
        .ok_or_else(|| "the host refused every bucket but named none short".to_owned())
}

#[cfg(test)]
mod tests {
    use ehrgate_sdk::{Interaction, testing};

    use super::*;

    const HOME: &str = "https://idp.hospital.example";
    const PARTNER: &str = "https://idp.partner.example";

    fn parse(json: &str) -> Config {
        let config: Config = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        config.validate().unwrap_or_else(|e| panic!("{e}"));
        config
    }

    fn read(issuer: Option<&str>, client_id: &str, source: &str) -> Request {
        let mut request = testing::request(Interaction::Read, Some("Patient"));
        request.route = "ehr".to_owned();
        request.source_address = source.to_owned();
        request.principal = issuer.map(|issuer| {
            let mut principal = testing::principal("dr-adams");
            principal.issuer = issuer.to_owned();
            principal.client_id = client_id.to_owned();
            principal
        });
        request
    }

    fn keys(config: &Config, request: &Request) -> Vec<(Dimension, String)> {
        limits_for(config, request)
            .into_iter()
            .map(|limit| (limit.dimension, limit.key))
            .collect()
    }

    fn key_of(config: &Config, request: &Request, dimension: Dimension) -> Option<String> {
        keys(config, request)
            .into_iter()
            .find(|(d, _)| *d == dimension)
            .map(|(_, key)| key)
    }

    fn capacity_of(config: &Config, request: &Request, dimension: Dimension) -> Option<u64> {
        limits_for(config, request)
            .into_iter()
            .find(|limit| limit.dimension == dimension)
            .map(|limit| limit.bucket.capacity)
    }

    #[test]
    fn anonymous_requests_draw_on_their_address_and_the_anonymous_ceiling_only() {
        let config = parse(r#"{"routes": {"ehr": {"capacity": 50, "refill": 50}}}"#);
        let anonymous = read(None, "", "203.0.113.9");
        assert_eq!(
            keys(&config, &anonymous),
            [
                (Dimension::Address, "address:default:203.0.113.9".to_owned()),
                (Dimension::Anonymous, "anonymous".to_owned()),
            ]
        );
        assert_eq!(
            capacity_of(&config, &anonymous, Dimension::Anonymous),
            Some(200)
        );
        // From a trusted network only the ceiling is left.
        let trusted = parse(r#"{"trusted_networks": ["10.0.0.0/8"]}"#);
        let inside = read(None, "", "10.1.2.3");
        assert_eq!(
            keys(&trusted, &inside),
            [(Dimension::Anonymous, "anonymous".to_owned())]
        );
    }

    #[test]
    fn authenticated_requests_draw_on_global_and_the_route_never_on_the_anonymous_ceiling() {
        let config = parse(
            r#"{"routes": {"ehr": {"capacity": 50, "refill": 50}},
                "anonymous": {"capacity": 20, "refill": 10, "period_ms": 1000}}"#,
        );
        let dimensions: Vec<Dimension> = keys(&config, &read(Some(HOME), "ward-app", "192.0.2.1"))
            .into_iter()
            .map(|(dimension, _)| dimension)
            .collect();
        assert_eq!(
            dimensions,
            [
                Dimension::User,
                Dimension::Client,
                Dimension::Address,
                Dimension::Route,
                Dimension::Global,
            ]
        );
    }

    #[test]
    fn client_buckets_are_per_issuer() {
        let config = parse("{}");
        let home = read(Some(HOME), "ward-app", "10.0.0.1");
        let partner = read(Some(PARTNER), "ward-app", "10.0.0.1");
        assert_eq!(
            key_of(&config, &home, Dimension::Client).as_deref(),
            Some("client:default:https://idp.hospital.example:ward-app")
        );
        assert_eq!(
            key_of(&config, &partner, Dimension::Client).as_deref(),
            Some("client:default:https://idp.partner.example:ward-app")
        );
        assert_eq!(
            key_of(&config, &home, Dimension::User).as_deref(),
            Some("user:default:https://idp.hospital.example:dr-adams")
        );
    }

    #[test]
    fn a_tier_with_issuers_matches_only_their_tokens() {
        let config = parse(
            r#"{"tiers": [{"name": "bulk", "clients": ["exporter"],
                           "issuers": ["https://idp.hospital.example"],
                           "client": {"capacity": 5000, "refill": 100}}]}"#,
        );
        let home = read(Some(HOME), "exporter", "10.0.0.1");
        assert_eq!(capacity_of(&config, &home, Dimension::Client), Some(5000));
        assert_eq!(
            key_of(&config, &home, Dimension::Client).as_deref(),
            Some("client:bulk:https://idp.hospital.example:exporter")
        );
        // The same client id from another identity provider gets the defaults.
        let partner = read(Some(PARTNER), "exporter", "10.0.0.1");
        assert_eq!(
            capacity_of(&config, &partner, Dimension::Client),
            Some(1200)
        );
        assert_eq!(
            key_of(&config, &partner, Dimension::Client).as_deref(),
            Some("client:default:https://idp.partner.example:exporter")
        );
        // And a tier with issuers never matches an anonymous request.
        let anonymous = read(None, "", "192.0.2.1");
        assert_eq!(
            key_of(&config, &anonymous, Dimension::Address).as_deref(),
            Some("address:default:192.0.2.1")
        );
    }

    #[test]
    fn a_tier_may_match_by_issuer_alone() {
        let config = parse(
            r#"{"tiers": [{"name": "partner", "issuers": ["https://idp.partner.example"],
                           "user": {"capacity": 30, "refill": 30}}]}"#,
        );
        let partner = read(Some(PARTNER), "any-app", "192.0.2.1");
        assert_eq!(capacity_of(&config, &partner, Dimension::User), Some(30));
        let home = read(Some(HOME), "any-app", "192.0.2.1");
        assert_eq!(capacity_of(&config, &home, Dimension::User), Some(300));
    }
}
