//! Strict base64url without padding (RFC 4648 §5), the encoding of every JWS segment
//! (RFC 7515 §2) and of JWK members (RFC 7517 §4, RFC 7518 §6).

/// Whether `input` uses only the base64url alphabet.
pub(super) fn is_alphabet(input: &str) -> bool {
    input.bytes().all(|byte| value(byte).is_some())
}

/// Decodes `input`, or `None` when it has a character outside the alphabet, padding, an
/// impossible length, or non-zero bits after the last byte. Refusing those bits keeps one
/// encoding per byte string (RFC 4648 §3.5), so a token cannot be altered without changing
/// what it decodes to.
pub(super) fn decode(input: &str) -> Option<Vec<u8>> {
    // Four characters carry three bytes; a lone trailing character carries no whole byte.
    if input.len() % 4 == 1 {
        return None;
    }
    let mut decoded = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut buffer: u32 = 0;
    let mut buffered_bits: u32 = 0;
    for byte in input.bytes() {
        buffer = (buffer << 6) | u32::from(value(byte)?);
        buffered_bits += 6;
        if buffered_bits >= 8 {
            buffered_bits -= 8;
            decoded.push((buffer >> buffered_bits) as u8);
            buffer &= (1 << buffered_bits) - 1;
        }
    }
    if buffer != 0 {
        return None;
    }
    Some(decoded)
}

fn value(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}
