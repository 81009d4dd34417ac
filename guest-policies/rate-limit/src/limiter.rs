//! Which buckets a request draws from, and taking from all of them or none.

use ehrgate_sdk::Request;
use ehrgate_sdk::keys::state_key;
use ehrgate_sdk::state::{Bucket, BucketStatus};

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
}

impl Dimension {
    pub fn name(self) -> &'static str {
        match self {
            Dimension::User => "user",
            Dimension::Client => "client",
            Dimension::Address => "address",
            Dimension::Route => "route",
            Dimension::Global => "global",
        }
    }

    pub fn rule_id(self) -> &'static str {
        match self {
            Dimension::User => "rate-limit.user",
            Dimension::Client => "rate-limit.client",
            Dimension::Address => "rate-limit.address",
            Dimension::Route => "rate-limit.route",
            Dimension::Global => "rate-limit.global",
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
/// shared ones (route, global). The order decides which bucket a refusal names when several
/// are empty: the caller's own limit before the one everybody shares.
pub fn limits_for(config: &Config, request: &Request) -> Vec<Limit> {
    let tier = config.tiers.iter().find(|tier| matches(tier, request));
    let tier_name = tier.map_or(DEFAULT_TIER, |t| t.name.as_str());
    let shape = |dimension: Dimension| {
        let chosen = tier.and_then(|t| match dimension {
            Dimension::User => t.user,
            Dimension::Client => t.client,
            _ => t.address,
        });
        chosen.unwrap_or(match dimension {
            Dimension::User => config.defaults.user,
            Dimension::Client => config.defaults.client,
            _ => config.defaults.address,
        })
    };
    let mut limits = Vec::with_capacity(5);
    // Anonymous requests (routes that allow them) have only address, route and global.
    if let Some(principal) = &request.principal {
        limits.push(Limit {
            dimension: Dimension::User,
            // Subjects are unique per issuer only; the issuer is configured, not free text.
            key: state_key(
                &format!("user:{tier_name}:{}", principal.issuer),
                &principal.subject,
            ),
            bucket: shape(Dimension::User).bucket(),
        });
        limits.push(Limit {
            dimension: Dimension::Client,
            key: state_key(&format!("client:{tier_name}"), &principal.client_id),
            bucket: shape(Dimension::Client).bucket(),
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
            bucket: shape(Dimension::Address).bucket(),
        });
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

fn matches(tier: &Tier, request: &Request) -> bool {
    let principal = request.principal.as_ref();
    let role_ok = tier.roles.is_empty()
        || principal.is_some_and(|p| tier.roles.iter().any(|role| p.has_role(role)));
    let client_ok =
        tier.clients.is_empty() || principal.is_some_and(|p| tier.clients.contains(&p.client_id));
    let route_ok = tier.routes.is_empty() || tier.routes.contains(&request.route);
    role_ok && client_ok && route_ok
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

/// Takes `cost` from every bucket in `limits`, or from none: each bucket is first read (a
/// take of 0, which the host answers with the level and takes nothing), and tokens are
/// taken only when all have enough. A refused request therefore costs the caller nothing,
/// and a caller stopped by its own bucket does not drain the global ceiling for everyone
/// else. Two requests racing between the read and the take can still both take; the later
/// take then fails and is refused, having spent the earlier buckets' tokens.
pub fn take_all(limits: &[Limit], cost: u64) -> Result<Outcome, String> {
    if let Some(limit) = limits.iter().find(|l| cost > l.bucket.capacity) {
        return Ok(Outcome::TooCostly {
            capacity: limit.bucket.capacity,
            dimension: limit.dimension,
        });
    }
    for limit in limits {
        let level = limit.bucket.take(&limit.key, 0)?;
        if level.remaining < cost {
            // A real take of a cost the bucket cannot pay takes nothing and says when it
            // could (`retry-after-ms`).
            let refused = limit.bucket.take(&limit.key, cost)?;
            if !refused.allowed {
                return Ok(Outcome::Refused(refused, limit.dimension));
            }
            // Tokens appeared between the two calls (another replica's clock ran ahead):
            // the take went through, so the request is allowed by this bucket already.
            return take_rest(limits, cost, Some((limit, refused)));
        }
    }
    take_rest(limits, cost, None)
}

fn take_rest(
    limits: &[Limit],
    cost: u64,
    already: Option<(&Limit, BucketStatus)>,
) -> Result<Outcome, String> {
    let mut tightest: Option<BucketStatus> = None;
    for limit in limits {
        let status = match &already {
            Some((taken, status)) if std::ptr::eq(*taken, limit) => *status,
            _ => limit.bucket.take(&limit.key, cost)?,
        };
        if !status.allowed {
            return Ok(Outcome::Refused(status, limit.dimension));
        }
        // With several quota policies the fields describe the one closest to exhaustion.
        if tightest.is_none_or(|t| status.remaining < t.remaining) {
            tightest = Some(status);
        }
    }
    match tightest {
        Some(status) => Ok(Outcome::Allowed(status)),
        // `limits_for` always includes the global bucket.
        None => Err("no bucket applies to this request".to_owned()),
    }
}
