//! State keys built from request data that always fit the host's key limit.
//!
//! The host refuses keys over [`MAX_KEY_BYTES`] (`wit/policy.wit`, interface `state`), and a
//! policy fails closed on that refusal, so a caller with a long token subject would be locked
//! out. [`state_key`] keeps short keys readable and shortens long ones to a prefix plus a
//! 64-bit FNV-1a hash of the whole key: distinct long keys stay distinct except for hash
//! collisions, which needs an adversary who controls verified token claims.

/// The longest key or member the host accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Bytes of a long key kept verbatim before its hash.
const KEPT_PREFIX_BYTES: usize = MAX_KEY_BYTES - 1 - 16;

/// `kind` (a fixed label chosen by the policy, such as `user:interactive`) joined to `id`
/// (request data, such as a subject) with `:`, shortened with a hash when it would be over
/// [`MAX_KEY_BYTES`]. Only the last part is free text, so keys cannot be confused with each
/// other as long as `kind` contains no request data.
///
/// ```
/// use ehrgate_sdk::keys::{MAX_KEY_BYTES, state_key};
///
/// assert_eq!(state_key("patients-per-hour", "dr-adams"), "patients-per-hour:dr-adams");
///
/// // A subject from a federated issuer can be long; the key still fits and stays distinct.
/// let long_subject = format!("https://idp.hospital.example/{}", "x".repeat(300));
/// let key = state_key("patients-per-hour", &long_subject);
/// assert!(key.len() <= MAX_KEY_BYTES);
/// assert_ne!(key, state_key("patients-per-hour", &format!("{long_subject}y")));
/// ```
pub fn state_key(kind: &str, id: &str) -> String {
    let mut key = String::with_capacity(kind.len() + 1 + id.len());
    key.push_str(kind);
    key.push(':');
    key.push_str(id);
    bounded(key)
}

/// `member` as it may be passed to `distinct-add`, shortened like [`state_key`].
///
/// ```
/// use ehrgate_sdk::keys::{MAX_KEY_BYTES, state_member};
///
/// assert_eq!(state_member("123"), "123");
/// assert!(state_member(&"9".repeat(400)).len() <= MAX_KEY_BYTES);
/// ```
pub fn state_member(member: &str) -> String {
    bounded(member.to_owned())
}

fn bounded(key: String) -> String {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    let hash = fnv1a64(key.as_bytes());
    let mut cut = KEPT_PREFIX_BYTES;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}#{hash:016x}", &key[..cut])
}

/// FNV-1a, 64 bit (Fowler, Noll, Vo): small, deterministic on every replica, and good
/// enough to keep non-adversarial keys apart.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_kept_as_written() {
        assert_eq!(
            state_key("user:interactive", "dr-adams"),
            "user:interactive:dr-adams"
        );
    }

    #[test]
    fn long_keys_fit_and_stay_distinct() {
        let a = state_key("user", &"é".repeat(300));
        let b = state_key("user", &format!("{}x", "é".repeat(300)));
        assert!(a.len() <= MAX_KEY_BYTES && b.len() <= MAX_KEY_BYTES);
        assert_ne!(a, b);
        assert_eq!(a, state_key("user", &"é".repeat(300)), "deterministic");
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
