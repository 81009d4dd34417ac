//! The parameters of an operation invoked by POST with a `Parameters` body (FHIR R4
//! operations.html#request): R4 lets a client pass every parameter either in the query or
//! in the body, so the body's must be judged too. `$export?_type=Observation` with
//! `_type=Condition` in the body would otherwise export what no policy saw.

use serde_json::Value;

use crate::engine::Param;

/// The simple parameters of a `Parameters` body: each `parameter` with a primitive `value[x]`
/// (as its JSON text: strings as written, numbers and booleans printed), or a
/// `valueReference` (its `reference`). Parameters that carry a resource or parts are not
/// search-like values; the policies see the body when the route shows it. A body that is
/// not a `Parameters` resource yields nothing.
pub fn operation_parameters(body: &[u8]) -> Vec<Param> {
    let Ok(parameters) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Vec::new();
    }
    let Some(list) = parameters.get("parameter").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|parameter| {
            let name = parameter.get("name")?.as_str()?;
            let object = parameter.as_object()?;
            let value = object.iter().find_map(|(key, value)| {
                let kind = key.strip_prefix("value")?;
                match value {
                    Value::String(text) => Some(text.clone()),
                    Value::Number(number) => Some(number.to_string()),
                    Value::Bool(flag) => Some(flag.to_string()),
                    Value::Object(reference) if kind == "Reference" => reference
                        .get("reference")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    _ => None,
                }
            })?;
            Some(Param {
                name: name.to_owned(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_values(body: &str) -> Vec<(String, String)> {
        operation_parameters(body.as_bytes())
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect()
    }

    #[test]
    fn primitive_and_reference_parameters_are_read() {
        let body = r#"{"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Condition,Patient"},
            {"name": "_since", "valueInstant": "2026-01-01T00:00:00Z"},
            {"name": "patient", "valueReference": {"reference": "Patient/456"}},
            {"name": "_count", "valueInteger": 5},
            {"name": "includeAssociatedData", "valueBoolean": true},
            {"name": "resource", "resource": {"resourceType": "Patient"}},
            {"name": "group", "part": [{"name": "x", "valueString": "y"}]}
        ]}"#;
        assert_eq!(
            names_and_values(body),
            [
                ("_type", "Condition,Patient"),
                ("_since", "2026-01-01T00:00:00Z"),
                ("patient", "Patient/456"),
                ("_count", "5"),
                ("includeAssociatedData", "true"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
    }

    #[test]
    fn other_bodies_carry_no_parameters() {
        assert!(names_and_values(r#"{"resourceType": "Patient"}"#).is_empty());
        assert!(names_and_values("_type=Condition").is_empty());
        assert!(names_and_values(r#"{"resourceType": "Parameters"}"#).is_empty());
    }
}
