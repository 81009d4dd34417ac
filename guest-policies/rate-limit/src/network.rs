//! Source addresses: CIDR networks from the config and the address bucket's key.

use std::net::IpAddr;

use serde::Deserialize;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a /32 or
/// /128.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct Network {
    address: IpAddr,
    prefix_bits: u8,
}

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.as_str(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| {
            format!("`{text}` is not a network; expected CIDR such as `10.0.0.0/8` or `fd00::/8`")
        })?;
        let max = max_bits(address);
        let prefix_bits = match prefix {
            None => max,
            Some(prefix) => match prefix.parse::<u8>() {
                Ok(bits) if bits <= max => bits,
                _ => {
                    return Err(format!(
                        "`{text}` has prefix `/{prefix}`; expected /0 to /{max}"
                    ));
                }
            },
        };
        Ok(Network {
            address,
            prefix_bits,
        })
    }
}

impl Network {
    /// Whether `address` is inside this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask(32, self.prefix_bits);
                (u128::from(u32::from(net)) & mask) == (u128::from(u32::from(ip)) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask(128, self.prefix_bits);
                (u128::from(net) & mask) == (u128::from(ip) & mask)
            }
            _ => false,
        }
    }
}

fn max_bits(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The mask of the first `prefix_bits` of a `width`-bit address, in the low bits of a u128.
fn mask(width: u8, prefix_bits: u8) -> u128 {
    let prefix_bits = prefix_bits.min(width);
    if prefix_bits == 0 {
        return 0;
    }
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    // prefix_bits >= 1, so the shift is at most 127.
    all & !((1u128 << (width - prefix_bits)) - 1)
}

/// The source address as one bucket key: IPv4 as written, IPv6 cut to its first
/// `ipv6_prefix_bits` (an IPv4-mapped IPv6 address counts as the IPv4 address). None when
/// the address does not parse, which the gateway never sends.
pub fn address_key(source: &str, ipv6_prefix_bits: u8) -> Option<String> {
    let address: IpAddr = source.parse().ok()?;
    Some(match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let masked = u128::from(v6) & mask(128, ipv6_prefix_bits);
                format!("{}/{ipv6_prefix_bits}", std::net::Ipv6Addr::from(masked))
            }
        },
    })
}

/// The parsed source address, for the trusted-network check.
pub fn parse_address(source: &str) -> Option<IpAddr> {
    let address: IpAddr = source.parse().ok()?;
    Some(match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        Network::try_from(text.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        parse_address(text).unwrap_or_else(|| panic!("{text}"))
    }

    #[test]
    fn networks_contain_their_addresses() {
        assert!(net("10.0.0.0/8").contains(ip("10.200.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!net("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(net("fd00::/8").contains(ip("fd12:3456::1")));
        assert!(!net("fd00::/8").contains(ip("10.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(
            net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped"
        );
    }

    #[test]
    fn bad_networks_say_what_is_expected() {
        let error = Network::try_from("10.0.0.0/33".to_owned())
            .err()
            .unwrap_or_default();
        assert!(error.contains("expected /0 to /32"), "{error}");
        let error = Network::try_from("ten/8".to_owned())
            .err()
            .unwrap_or_default();
        assert!(error.contains("expected CIDR"), "{error}");
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_prefix() {
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1", 64).as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(
            address_key("2001:db8:1:2:bbbb::9", 64),
            address_key("2001:db8:1:2:aaaa::1", 64)
        );
        assert_eq!(address_key("192.0.2.1", 64).as_deref(), Some("192.0.2.1"));
        assert_eq!(
            address_key("::ffff:192.0.2.1", 64).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(address_key("not an address", 64), None);
    }
}
