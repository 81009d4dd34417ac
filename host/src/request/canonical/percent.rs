//! Percent-encoding for the canonical target (RFC 3986 §2.1): strict decoding that refuses
//! encodings which would split or read differently at the gateway and the upstream, and the
//! one encoding the gateway writes back.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, PercentEncode, utf8_percent_encode};

use crate::request::{Rejection, quote};

/// RFC 3986 §2.3 unreserved characters stay literal; everything else starts out encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment keeps the `pchar` sub-delimiters that carry no meaning to FHIR servers or
/// common frameworks (RFC 3986 §3.3). `$` must stay literal for operations (`$everything`).
/// `;` (matrix parameters), `+` and `&` are always encoded.
const PATH_SEGMENT: &AsciiSet = &UNRESERVED
    .remove(b'$')
    .remove(b':')
    .remove(b'@')
    .remove(b'!')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b'=');

/// A query name or value keeps the characters FHIR search syntax uses (search.html: `:`
/// modifiers, `,` OR lists, `|` token systems, `$` composites, `*` wildcards); `+` is encoded
/// as `%2B` and a space as `%20`, so form decoding and plain percent decoding agree.
const QUERY_COMPONENT: &AsciiSet = &UNRESERVED
    .remove(b':')
    .remove(b',')
    .remove(b'|')
    .remove(b'$')
    .remove(b'*');

/// A decoded path segment in its canonical spelling.
pub(super) fn encode_segment(segment: &str) -> PercentEncode<'_> {
    utf8_percent_encode(segment, PATH_SEGMENT)
}

/// A decoded query name or value in its canonical spelling.
pub(super) fn encode_query_component(component: &str) -> PercentEncode<'_> {
    utf8_percent_encode(component, QUERY_COMPONENT)
}

/// Which part of the target a component comes from: each allows different encoded characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Component {
    PathSegment,
    QueryName,
    QueryValue,
}

impl Component {
    fn describe(self) -> &'static str {
        match self {
            Component::PathSegment => "path segment",
            Component::QueryName => "query parameter name",
            Component::QueryValue => "query parameter value",
        }
    }
}

/// Percent-decodes one component (RFC 3986 §2.1), refusing encodings that would change how
/// the component is split or interpreted (RFC 3986 §2.2: an encoded delimiter is data, but
/// servers that decode before splitting treat it as a delimiter).
pub(super) fn decode(raw: &str, component: Component) -> Result<String, Rejection> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                let escape = bytes.get(index + 1..index + 3).and_then(hex_pair);
                let Some(value) = escape else {
                    let shown = raw.get(index..).unwrap_or(raw);
                    return Err(Rejection::bad_request(
                        "canonical.bad-percent-encoding",
                        format!(
                            "{} `{}` has an invalid percent-encoding at `{}`; expected `%` \
                             followed by two hex digits",
                            component.describe(),
                            quote(raw),
                            quote(shown.get(..3).unwrap_or(shown))
                        ),
                    ));
                };
                check_encoded_byte(value, raw, component)?;
                decoded.push(value);
                index += 3;
            }
            // application/x-www-form-urlencoded: `+` is a space in query names and values.
            b'+' if component != Component::PathSegment => {
                decoded.push(b' ');
                index += 1;
            }
            _ => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| {
        Rejection::bad_request(
            "canonical.invalid-utf8",
            format!(
                "{} `{}` does not decode to UTF-8; expected UTF-8 percent-encoded byte by byte",
                component.describe(),
                quote(raw)
            ),
        )
    })?;
    // Multi-byte control characters (C1, U+0080..U+009F) pass the byte check above.
    if text.chars().any(char::is_control) {
        return Err(encoded_control(raw, component));
    }
    Ok(text)
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let [high, low] = pair else {
        return None;
    };
    let high = char::from(*high).to_digit(16)?;
    let low = char::from(*low).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

fn check_encoded_byte(value: u8, raw: &str, component: Component) -> Result<(), Rejection> {
    if value < 0x20 || value == 0x7F {
        return Err(encoded_control(raw, component));
    }
    let in_value = component == Component::QueryValue;
    // (rule id, what was found, what to send instead)
    let refused: Option<(&'static str, &str, &str)> = match value {
        // Query values carry FHIR references (`Patient%2F123`), which servers decode after
        // splitting the query, so an encoded `/` there is data. In a path or a name it would
        // split differently at the gateway and the upstream.
        b'/' if !in_value => Some((
            "canonical.encoded-separator",
            "an encoded `/` (`%2F`)",
            "`/` only as a separator",
        )),
        // In a value `\` is FHIR's search escape character (search.html#escaping: `\,`
        // `\|` `\$`), which clients must percent-encode; elsewhere some servers treat it as
        // a separator.
        b'\\' if !in_value => Some((
            "canonical.encoded-separator",
            "an encoded `\\` (`%5C`)",
            "no backslash",
        )),
        // An encoded dot makes a dot segment the gateway does not see (`%2e%2e`).
        b'.' if !in_value => Some((
            "canonical.encoded-dot",
            "an encoded `.` (`%2E`)",
            "`.` unencoded",
        )),
        b';' if component == Component::PathSegment => Some((
            "canonical.matrix-parameter",
            "an encoded `;` (`%3B`)",
            "parameters in the query",
        )),
        _ => None,
    };
    match refused {
        None => Ok(()),
        Some((rule_id, found, instead)) => Err(Rejection::bad_request(
            rule_id,
            format!(
                "{} `{}` contains {found}; expected {instead}",
                component.describe(),
                quote(raw)
            ),
        )),
    }
}

fn encoded_control(raw: &str, component: Component) -> Rejection {
    Rejection::bad_request(
        "canonical.encoded-control-character",
        format!(
            "{} `{}` decodes to a control character; expected printable text",
            component.describe(),
            quote(raw)
        ),
    )
}
