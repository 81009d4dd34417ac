//! Reading a module's JSON configuration into the policy's typed `Config`, with errors that
//! name the offending field.
//!
//! [`export_policy!`](crate::export_policy) calls [`parse`] in `init`, so its message is the
//! reason the operator reads when the gateway refuses to load the module. Call it from a
//! native unit test to check that a config an operator would write loads, and that a wrong
//! one is refused with a useful message.

use serde::de::DeserializeOwned;

/// Deserializes `json` into `C`. Empty or blank input reads as `{}`, what the gateway sends
/// for a module without config. An error names where the input went wrong:
///
/// - a value of the wrong type or shape, a missing or unknown field: `invalid config at
///   <path>: <what serde found>`, where `<path>` is the field's path from the top
///   (`volume.max_distinct_patients`, `roles[1].name`), or `invalid config: <...>` when
///   the top-level value itself is wrong;
/// - input that is not JSON: `invalid config: <serde_json's message with line and column>`.
///
/// The JSON the gateway hands a module is re-serialized from the gateway's own config file,
/// so a line and column would point into text the operator never wrote; the field path
/// is what they can find, and it replaces the position for every error but a syntax error.
///
/// ```
/// use ehrgate_sdk::config;
///
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config {
///     break_glass_role: String,
///     #[serde(default)]
///     volume: Volume,
/// }
///
/// #[derive(Debug, Default, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Volume {
///     max_distinct_patients: u32,
/// }
///
/// let good: Config = config::parse(r#"{"break_glass_role": "emergency-physician"}"#).unwrap();
/// assert_eq!(good.volume.max_distinct_patients, 0);
///
/// // A typo'd field under `deny_unknown_fields`.
/// let typo = config::parse::<Config>(r#"{"break_glass_rol": "emergency-physician"}"#);
/// assert_eq!(
///     typo.unwrap_err(),
///     "invalid config at break_glass_rol: unknown field `break_glass_rol`, \
///      expected `break_glass_role` or `volume`"
/// );
///
/// // A wrong type deep in a nested struct.
/// let wrong = config::parse::<Config>(
///     r#"{"break_glass_role": "er", "volume": {"max_distinct_patients": "10"}}"#,
/// );
/// assert_eq!(
///     wrong.unwrap_err(),
///     r#"invalid config at volume.max_distinct_patients: invalid type: string "10", expected u32"#
/// );
///
/// // Not JSON at all: the position is all there is to go on.
/// let broken = config::parse::<Config>("break_glass_role = 'er'");
/// assert_eq!(broken.unwrap_err(), "invalid config: expected value at line 1 column 1");
///
/// // No config reads as `{}`.
/// let missing = config::parse::<Config>("  ");
/// assert_eq!(missing.unwrap_err(), "invalid config: missing field `break_glass_role`");
/// ```
pub fn parse<C: DeserializeOwned>(json: &str) -> Result<C, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    // `init` runs on every fresh instance, so on every request, and tracking the path costs
    // (natively: twice the time for a small config, a third more for a 40 KB one). Only a
    // config that fails, which happens at load, pays for a second pass that finds the path.
    serde_json::from_str(json).map_err(|error| locate::<C>(json, &error))
}

/// The message for `error`, which deserializing `json` into `C` produced, with the path of
/// the field where it happened.
fn locate<C: DeserializeOwned>(json: &str, error: &serde_json::Error) -> String {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    match serde_path_to_error::deserialize::<_, C>(&mut deserializer) {
        Err(located) => {
            let path = located.path();
            let field = path.iter().next().is_some().then(|| path.to_string());
            describe(field.as_deref(), located.inner())
        }
        // The value itself is fine: the error is text after it (`trailing characters`).
        Ok(_) => describe(None, error),
    }
}

/// The message for `error`, found at field `path` (none for the top-level value).
fn describe(path: Option<&str>, error: &serde_json::Error) -> String {
    let message = error.to_string();
    if !error.is_data() {
        return format!("invalid config: {message}");
    }
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = message.strip_suffix(&position).unwrap_or(&message);
    match path {
        Some(path) => format!("invalid config at {path}: {message}"),
        None => format!("invalid config: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        roles: Vec<Role>,
        #[serde(default)]
        wards: BTreeMap<String, Ward>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Role {
        name: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ward {
        beds: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Audit,
        Enforce,
    }

    fn error(json: &str) -> String {
        match parse::<Config>(json) {
            Ok(config) => panic!("{json}: accepted as {config:?}"),
            Err(message) => message,
        }
    }

    #[test]
    fn good_and_empty_configs_load() {
        let config: Config = parse(
            r#"{"roles": [{"name": "nurse"}], "wards": {"icu": {"beds": 12}}, "mode": "audit"}"#,
        )
        .unwrap_or_else(|message| panic!("{message}"));
        assert_eq!(config.roles[0].name, "nurse");
        assert_eq!(config.wards["icu"].beds, 12);
        assert!(matches!(config.mode, Some(Mode::Audit)));
        for blank in ["", " \n\t"] {
            let config: Config = parse(blank).unwrap_or_else(|message| panic!("{message}"));
            assert!(config.roles.is_empty() && config.wards.is_empty() && config.mode.is_none());
        }
        assert!(matches!(
            parse::<Config>(r#"{"mode": "enforce"}"#).map(|config| config.mode),
            Ok(Some(Mode::Enforce))
        ));
    }

    #[test]
    fn errors_name_the_path_and_drop_the_meaningless_position() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"roles": [{"name": "nurse"}, {"name": 3}]}"#,
                "invalid config at roles[1].name: invalid type: integer `3`, expected a string",
            ),
            (
                r#"{"wards": {"cardiology": {"beds": -1}}}"#,
                "invalid config at wards.cardiology.beds: invalid value: integer `-1`, expected u16",
            ),
            (
                r#"{"wards": {"icu": {}}}"#,
                "invalid config at wards.icu: missing field `beds`",
            ),
            (
                r#"{"roles": [{"nmae": "nurse"}]}"#,
                "invalid config at roles[0].nmae: unknown field `nmae`, expected `name`",
            ),
            (
                r#"{"mode": "warn"}"#,
                "invalid config at mode: unknown variant `warn`, expected `audit` or `enforce`",
            ),
            (
                "3",
                "invalid config: invalid type: integer `3`, expected struct Config",
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(error(json), *expected, "{json}");
        }
    }

    #[test]
    fn text_that_is_not_one_json_value_is_refused_with_its_position() {
        assert_eq!(
            error("not json"),
            "invalid config: expected ident at line 1 column 2"
        );
        assert_eq!(
            error(r#"{"mode": "audit""#),
            "invalid config: EOF while parsing an object at line 1 column 16"
        );
        assert_eq!(
            error(r#"{"mode": "audit"} {}"#),
            "invalid config: trailing characters at line 1 column 19"
        );
    }
}
