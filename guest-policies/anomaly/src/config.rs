//! The anomaly module's configuration: one section per detector, each with its thresholds
//! and its weight in the risk score, plus the score bands. Every field has a default (the
//! defaults follow `shared/reference/healthcare.md`, "Anomalous access detection"), unknown
//! fields are refused, and [`Config::validate`] checks ranges. The JSON is parsed on every
//! instance: keep lists short, and see `relations` for the care-team map's cost.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::relations::Relations;

/// The whole configuration.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub volume: Volume,
    #[serde(default)]
    pub vip: Vip,
    #[serde(default)]
    pub self_lookup: SelfLookup,
    #[serde(default)]
    pub care_relationship: CareRelationship,
    /// The operator's care-team file: which users have a care relationship with which
    /// patients. See [`Relations`] for the format.
    #[serde(default)]
    pub care_teams: Relations,
    #[serde(default)]
    pub after_hours: AfterHours,
    #[serde(default)]
    pub name_search: NameSearch,
    #[serde(default)]
    pub break_glass: BreakGlass,
    #[serde(default)]
    pub bands: Bands,
}

/// Distinct patients per user: an hourly volume and a short burst window.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct Volume {
    pub window_ms: u64,
    /// Distinct patients a user may touch in `window_ms`: 50 for interactive roles
    /// (healthcare.md, "volume").
    pub max_distinct_patients: u32,
    /// Per-role hourly limits for roles whose work is reading many charts (coders, case
    /// managers); a caller with several listed roles gets the highest.
    pub role_limits: BTreeMap<String, u32>,
    /// Roles the volume detectors ignore (bulk-export backend clients).
    pub exempt_roles: Vec<String>,
    pub weight: u8,
    /// The burst detector: `burst_max_distinct_patients` in `burst_window_ms` is faster than
    /// a person reads charts (one new chart every 15 s for 5 minutes) and catches a script
    /// long before the hourly limit does.
    pub burst_window_ms: u64,
    pub burst_max_distinct_patients: u32,
    pub burst_weight: u8,
}

impl Default for Volume {
    fn default() -> Self {
        Volume {
            window_ms: 3_600_000,
            max_distinct_patients: 50,
            role_limits: BTreeMap::new(),
            exempt_roles: Vec::new(),
            // healthcare.md: volume above the threshold is "deny or step up".
            weight: 80,
            burst_window_ms: 300_000,
            burst_max_distinct_patients: 20,
            burst_weight: 80,
        }
    }
}

/// Patients on a VIP / restricted list (public figures, employees' relatives, protected
/// persons). The list is part of this config: a gateway reload (SIGHUP) picks up a new one.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct Vip {
    pub patients: Vec<String>,
    /// Weight of an access to a listed patient without a care relationship. An access by
    /// the patient's care team is recorded (severity info) and weighs nothing: Fabbri &
    /// LeFevre (explanation-based auditing) show that explained accesses need no review.
    pub weight: u8,
}

impl Default for Vip {
    fn default() -> Self {
        Vip {
            patients: Vec::new(),
            weight: 60,
        }
    }
}

/// A member of staff opening their own record (healthcare.md: "always alert").
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct SelfLookup {
    /// Staff identity (`fhirUser` such as `Practitioner/dr-a`, or token subject) to the
    /// patient ids of the same person, from HR or the master patient index.
    pub staff_patients: BTreeMap<String, Vec<String>>,
    /// Also treat `fhirUser` `Practitioner/X` (any type but Patient) touching patient `X`
    /// as self-lookup, for systems that give a person one id across resource types. Off by
    /// default: servers with numeric ids reuse them across types by accident.
    pub match_ids: bool,
    pub weight: u8,
}

impl Default for SelfLookup {
    fn default() -> Self {
        SelfLookup {
            staff_patients: BTreeMap::new(),
            match_ids: false,
            weight: 60,
        }
    }
}

/// Access to a patient with no care relationship in `care_teams`. Off while `care_teams`
/// is empty (without a relation source every access would be unexplained).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct CareRelationship {
    /// Roles whose work is not tied to a care team (registration, emergency department,
    /// release of information): their accesses are not checked.
    pub exempt_roles: Vec<String>,
    /// At the review band by default: healthcare.md lists it as an alert.
    pub weight: u8,
}

impl Default for CareRelationship {
    fn default() -> Self {
        CareRelationship {
            exempt_roles: Vec::new(),
            weight: 45,
        }
    }
}

/// Access outside the working hours of roles configured as day-shift.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct AfterHours {
    /// Day-shift roles; empty switches the detector off.
    pub roles: Vec<String>,
    /// Start of the working day, `HH:MM` local time.
    pub start: ClockTime,
    /// End of the working day, `HH:MM` local time (exclusive).
    pub end: ClockTime,
    /// Local time's offset from UTC in minutes (`60` for CET, `-300` for EST). Fixed: change
    /// it at daylight-saving switches.
    pub utc_offset_minutes: i32,
    /// Whether Saturday and Sunday are outside working hours.
    pub weekends_off: bool,
    /// Low: healthcare.md calls after-hours "low weight alone"; it matters with others.
    pub weight: u8,
}

impl Default for AfterHours {
    fn default() -> Self {
        AfterHours {
            roles: Vec::new(),
            start: ClockTime(7 * 60),
            end: ClockTime(19 * 60),
            utc_offset_minutes: 0,
            weekends_off: true,
            weight: 20,
        }
    }
}

/// Searches for patients by name (`Patient?name=`, `family=`, `given=`): looking people up
/// rather than treating the patient in front of you.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct NameSearch {
    pub window_ms: u64,
    /// healthcare.md: "20 or more name searches in an hour".
    pub max_searches: u64,
    /// Per-role limits for roles whose job is finding patients (registration desks).
    pub role_limits: BTreeMap<String, u64>,
    /// The `Patient` search parameters that search by name (modifiers such as `:exact` are
    /// stripped before comparing).
    pub params: Vec<String>,
    pub weight: u8,
}

impl Default for NameSearch {
    fn default() -> Self {
        NameSearch {
            window_ms: 3_600_000,
            max_searches: 20,
            role_limits: BTreeMap::new(),
            params: ["name", "family", "given", "phonetic"]
                .map(str::to_owned)
                .to_vec(),
            weight: 50,
        }
    }
}

/// Break-the-glass (purpose of use `BTG`) on more distinct patients than a per-user rate.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct BreakGlass {
    pub window_ms: u64,
    /// Distinct patients opened under break-the-glass in `window_ms` before it is unusual.
    pub max_patients: u32,
    pub weight: u8,
}

impl Default for BreakGlass {
    fn default() -> Self {
        BreakGlass {
            window_ms: 86_400_000,
            max_patients: 3,
            weight: 50,
        }
    }
}

/// What the combined risk score does.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct Bands {
    /// From this score the request is allowed with an `anomaly.review` finding (severity
    /// high) for the privacy officer's queue; below it findings are only recorded.
    pub review: u8,
    /// From this score the request is refused with 403 `anomaly.deny`; `null` never denies.
    pub deny: Option<u8>,
}

impl Default for Bands {
    fn default() -> Self {
        Bands {
            review: 40,
            deny: Some(80),
        }
    }
}

/// A time of day, written `HH:MM`, held as minutes since midnight.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct ClockTime(pub u16);

impl TryFrom<String> for ClockTime {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let parsed = text.split_once(':').and_then(|(hours, minutes)| {
            let hours: u16 = hours.parse().ok()?;
            let minutes: u16 = minutes.parse().ok()?;
            (hours < 24 && minutes < 60 && text.len() == 5).then_some(hours * 60 + minutes)
        });
        parsed.map(ClockTime).ok_or_else(|| {
            format!("`{text}` is not a time of day; expected `HH:MM` from `00:00` to `23:59`")
        })
    }
}

impl Config {
    /// Every problem with the configuration, one per line.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for (at, weight) in [
            ("volume.weight", self.volume.weight),
            ("volume.burst_weight", self.volume.burst_weight),
            ("vip.weight", self.vip.weight),
            ("self_lookup.weight", self.self_lookup.weight),
            ("care_relationship.weight", self.care_relationship.weight),
            ("after_hours.weight", self.after_hours.weight),
            ("name_search.weight", self.name_search.weight),
            ("break_glass.weight", self.break_glass.weight),
        ] {
            if weight > 100 {
                problems.push(format!("`{at}` is {weight}; expected 0 to 100"));
            }
        }
        for (at, window) in [
            ("volume.window_ms", self.volume.window_ms),
            ("volume.burst_window_ms", self.volume.burst_window_ms),
            ("name_search.window_ms", self.name_search.window_ms),
            ("break_glass.window_ms", self.break_glass.window_ms),
        ] {
            if window == 0 || window > 7 * 86_400_000 {
                problems.push(format!(
                    "`{at}` is {window}; expected 1 ms to 7 days (604800000)"
                ));
            }
        }
        if self.volume.max_distinct_patients == 0 || self.volume.burst_max_distinct_patients == 0 {
            problems.push(
                "`volume.max_distinct_patients` and `volume.burst_max_distinct_patients` must be above 0\n  help: list roles in `volume.exempt_roles` to switch the detector off for them"
                    .to_owned(),
            );
        }
        if self.volume.burst_window_ms >= self.volume.window_ms {
            problems.push(format!(
                "`volume.burst_window_ms` ({}) is not shorter than `volume.window_ms` ({})\n  help: the burst window catches fast trawling before the hourly limit does",
                self.volume.burst_window_ms, self.volume.window_ms
            ));
        }
        if self.name_search.params.is_empty() {
            problems.push("`name_search.params` is empty\n  help: the defaults are `name`, `family`, `given`, `phonetic`".to_owned());
        }
        if self.break_glass.max_patients == 0 {
            problems.push("`break_glass.max_patients` must be above 0".to_owned());
        }
        if self.after_hours.utc_offset_minutes.abs() > ehrgate_sdk::time::MAX_UTC_OFFSET_MINUTES {
            problems.push(format!(
                "`after_hours.utc_offset_minutes` is {}; expected -840 to 840 (UTC-14 to UTC+14)",
                self.after_hours.utc_offset_minutes
            ));
        }
        let deny = self.bands.deny.unwrap_or(100);
        if self.bands.review == 0
            || self.bands.review > 100
            || deny > 100
            || deny < self.bands.review
        {
            problems.push(format!(
                "`bands` has review {} and deny {deny}; expected 1 <= review <= deny <= 100",
                self.bands.review
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
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
    fn an_empty_config_has_the_documented_defaults() {
        let config = parse("{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.volume.max_distinct_patients, 50);
        assert_eq!(config.name_search.max_searches, 20);
        assert_eq!(config.bands.review, 40);
        assert_eq!(config.bands.deny, Some(80));
        assert_eq!(config.after_hours.start, ClockTime(420));
        assert!(config.care_teams.is_empty());
    }

    #[test]
    fn times_of_day_are_checked() {
        let config = parse(r#"{"after_hours": {"start": "06:30", "end": "20:00"}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.after_hours.start, ClockTime(390));
        let error = parse(r#"{"after_hours": {"start": "6:30"}}"#)
            .err()
            .unwrap_or_default();
        assert!(error.contains("expected `HH:MM`"), "{error}");
        let error = parse(r#"{"after_hours": {"end": "24:00"}}"#)
            .err()
            .unwrap_or_default();
        assert!(error.contains("`24:00` is not a time of day"), "{error}");
    }

    #[test]
    fn ranges_are_checked_with_every_problem_listed() {
        let error = parse(
            r#"{"vip": {"weight": 150}, "volume": {"burst_window_ms": 3600000},
                "bands": {"review": 90, "deny": 50}}"#,
        )
        .err()
        .unwrap_or_default();
        assert!(error.contains("`vip.weight` is 150"), "{error}");
        assert!(error.contains("`volume.burst_window_ms`"), "{error}");
        assert!(error.contains("review 90 and deny 50"), "{error}");
    }

    #[test]
    fn typos_are_refused() {
        let error = parse(r#"{"volume": {"max_distinct_patient": 10}}"#)
            .err()
            .unwrap_or_default();
        assert!(
            error.contains("unknown field `max_distinct_patient`"),
            "{error}"
        );
    }
}
