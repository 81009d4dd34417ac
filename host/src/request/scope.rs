//! A route's `resource_types`: the resource types a route serves, enforced on every type a
//! request can reach, for every caller. The path's type is not enough: a system search
//! names its types in `_type`, a batch in its entries, `_include`/`_revinclude` pull in
//! other types, and `$everything`, `$export` and system history return resources of any
//! type, so a billing route would otherwise serve clinical resources.

use super::Rejection;
use super::classify::Classification;
use crate::engine::{Interaction, Param};

/// Operations whose answer may hold resources of any type (FHIR R4 patient-operation-
/// everything, bulk data `$export`): refused on a route limited to some types.
const ANY_TYPE_OPERATIONS: &[&str] = &["everything", "export"];

/// Refuses a request that reaches a type outside `allowed` (empty: every type is served).
pub fn check(
    route: &str,
    allowed: &[String],
    classification: &Classification,
    params: &[Param],
) -> Result<(), Rejection> {
    if allowed.is_empty() {
        return Ok(());
    }
    let refuse = |what: String| {
        Err(Rejection::new(
            404,
            "route.resource-type",
            format!("route `{route}` does not serve {what}"),
        ))
    };
    let served = |name: &str| allowed.iter().any(|t| t == name);
    if let Some(name) = &classification.resource_type
        && !served(name)
    {
        return refuse(format!("`{name}`"));
    }
    if let Some(operation) = &classification.operation
        && ANY_TYPE_OPERATIONS.contains(&operation.as_str())
    {
        return refuse(format!(
            "`${operation}`, which returns resources of every type"
        ));
    }
    match classification.interaction {
        Interaction::HistorySystem => {
            return refuse("system history, which returns resources of every type".into());
        }
        Interaction::SearchSystem => {
            let types: Vec<&str> = params
                .iter()
                .filter(|p| p.name == "_type")
                .flat_map(|p| p.value.split(','))
                .map(str::trim)
                .collect();
            if types.is_empty() {
                return refuse("a system search without `_type`".into());
            }
            if let Some(other) = types.iter().find(|t| !served(t)) {
                return refuse(format!("`{}` (in `_type`)", super::quote(other)));
            }
        }
        Interaction::Batch | Interaction::Transaction => {
            for (index, entry) in classification.entries.iter().enumerate() {
                match &entry.resource_type {
                    Some(name) if !served(name) => {
                        return refuse(format!("`{name}` (bundle entry {index})"));
                    }
                    // A system-level entry: judged like a request of its own.
                    None if !matches!(entry.interaction, Interaction::Capabilities) => {
                        return refuse(format!(
                            "bundle entry {index}, which names no resource type"
                        ));
                    }
                    _ => {}
                }
                if let Some(operation) = &entry.operation
                    && ANY_TYPE_OPERATIONS.contains(&operation.as_str())
                {
                    return refuse(format!("`${operation}` (bundle entry {index})"));
                }
            }
        }
        _ => {}
    }
    for param in params {
        let name = param.name.split(':').next().unwrap_or("");
        if name != "_include" && name != "_revinclude" {
            continue;
        }
        if param.value.trim() == "*" {
            return refuse(format!("`{}=*`", param.name));
        }
        // `Source:param[:Target]`: the source type, and the target when it is named.
        let mut parts = param.value.split(':');
        let source = parts.next().unwrap_or("").trim();
        let target = parts.nth(1).map(str::trim);
        for name in std::iter::once(source).chain(target) {
            if !name.is_empty() && !served(name) {
                return refuse(format!("`{}` (in `{}`)", super::quote(name), param.name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::canonical::canonicalize_target;
    use crate::request::classify::classify;

    const BILLING: &[&str] = &["Claim", "Coverage", "ExplanationOfBenefit", "Patient"];

    fn verdict(method: &str, target: &str, body: Option<&str>) -> Result<(), &'static str> {
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        let canonical = canonicalize_target(target).expect("canonical");
        let classification =
            classify(&method, &canonical, body.map(str::as_bytes), 100).expect("classified");
        let allowed: Vec<String> = BILLING.iter().map(|t| (*t).to_owned()).collect();
        check("billing", &allowed, &classification, &canonical.params).map_err(|r| r.rule_id)
    }

    #[test]
    fn every_type_a_request_reaches_must_be_served() {
        let served = [
            ("GET", "/Claim/1"),
            ("GET", "/Coverage?beneficiary=Patient/1"),
            ("GET", "/Patient/1/Claim"),
            ("GET", "/?_type=Claim,Coverage"),
            ("GET", "/Claim?_include=Claim:patient:Patient"),
            ("GET", "/Claim?_include=Claim:patient"),
            ("GET", "/metadata"),
        ];
        for (method, target) in served {
            assert_eq!(verdict(method, target, None), Ok(()), "{method} {target}");
        }
        let refused = [
            ("GET", "/Observation/1"),
            ("GET", "/Patient/1/Observation"),
            ("GET", "/?_type=Claim,Observation"),
            ("GET", "/?name=smith"),
            ("GET", "/_history"),
            ("GET", "/Patient/1/$everything"),
            ("GET", "/Patient/$export"),
            ("GET", "/Claim?_include=Claim:patient:Observation"),
            ("GET", "/Claim?_revinclude=Observation:subject"),
            ("GET", "/Claim?_include=*"),
            ("GET", "/Claim?_include:iterate=Claim:patient:Observation"),
        ];
        for (method, target) in refused {
            assert_eq!(
                verdict(method, target, None),
                Err("route.resource-type"),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn every_bundle_entry_must_be_served() {
        let bundle = |url: &str| {
            format!(
                r#"{{"resourceType":"Bundle","type":"batch","entry":[{{"request":{{"method":"GET","url":"Claim/1"}}}},{{"request":{{"method":"GET","url":"{url}"}}}}]}}"#
            )
        };
        assert_eq!(verdict("POST", "/", Some(&bundle("Coverage/2"))), Ok(()));
        assert_eq!(
            verdict("POST", "/", Some(&bundle("Observation/2"))),
            Err("route.resource-type")
        );
        assert_eq!(
            verdict("POST", "/", Some(&bundle("Patient/2/$everything"))),
            Err("route.resource-type")
        );
    }
}
