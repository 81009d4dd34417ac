//! The care-team relation source: which users have a care relationship with which patients.
//!
//! A guest has no filesystem, so the operator's care-team file is the `care_teams` object of
//! the module config. Each entry relates a set of users to a set of patients, in one of two
//! shapes:
//!
//! ```json
//! "care_teams": {
//!   "Practitioner/dr-a": ["pat-1", "pat-2"],
//!   "ward-4b": { "members": ["Practitioner/dr-b", "nurse-7"], "patients": ["pat-3", "pat-4"] }
//! }
//! ```
//!
//! The first shape's key is the user (a `fhirUser` reference or a token subject); the second
//! is a named team whose every member relates to every listed patient (a ward, a service, a
//! FHIR `CareTeam`). Team entries grow with members plus patients rather than their product,
//! which is what keeps a large hospital's file small.
//!
//! The config is parsed on every instance, so parsing must be cheap: every id goes into one
//! shared string arena (no allocation per id) and a lookup scans the entries linearly, which
//! is faster than building an index that one request would use once.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The longest user or patient id accepted, in bytes (the host's key limit).
const MAX_ID_BYTES: usize = 256;

/// Parsed `care_teams`.
#[derive(Default, Debug)]
pub struct Relations {
    /// Every id, back to back.
    text: String,
    /// Byte ranges of `text`, one per id.
    ids: Vec<Range<u32>>,
    /// Per entry: its members and its patients, as ranges of `ids`.
    entries: Vec<(Range<u32>, Range<u32>)>,
}

impl Relations {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries and ids held.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        (self.entries.len(), self.ids.len())
    }

    /// Whether any of `identities` (the caller's `fhirUser` and subject) relates to `patient`.
    pub fn related(&self, identities: &[&str], patient: &str) -> bool {
        self.entries.iter().any(|(members, patients)| {
            self.any_id(members.clone(), |id| identities.contains(&id))
                && self.any_id(patients.clone(), |id| id == patient)
        })
    }

    fn any_id(&self, range: Range<u32>, mut test: impl FnMut(&str) -> bool) -> bool {
        range.into_iter().any(|index| {
            self.ids
                .get(index as usize)
                .and_then(|span| self.text.get(span.start as usize..span.end as usize))
                .is_some_and(&mut test)
        })
    }

    fn push_id<E: de::Error>(&mut self, id: &str) -> Result<(), E> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(E::custom(format!(
                "care_teams: id `{}` is empty or longer than {MAX_ID_BYTES} bytes",
                id.escape_debug()
            )));
        }
        let start = self.text.len();
        self.text.push_str(id);
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(self.text.len())) else {
            return Err(E::custom("care_teams is larger than 4 GiB"));
        };
        self.ids.push(start..end);
        Ok(())
    }

    fn next_id_index<E: de::Error>(&self) -> Result<u32, E> {
        u32::try_from(self.ids.len()).map_err(|_| E::custom("care_teams has too many ids"))
    }
}

impl<'de> Deserialize<'de> for Relations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RelationsVisitor)
    }
}

struct RelationsVisitor;

impl<'de> Visitor<'de> for RelationsVisitor {
    type Value = Relations;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of `user: [patients]` or `team: {members, patients}` entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Relations, A::Error> {
        let mut relations = Relations::default();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(EntrySeed {
                relations: &mut relations,
                key: &key,
            })?;
        }
        Ok(relations)
    }
}

/// One entry's value, added to the arena as it is read.
struct EntrySeed<'a> {
    relations: &'a mut Relations,
    key: &'a str,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "care_teams entry `{}`: a list of patient ids, or {{\"members\": [..], \"patients\": [..]}}",
            self.key
        )
    }

    /// `"user": ["pat-1", ...]`: the key is the only member.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let members_start = self.relations.next_id_index()?;
        self.relations.push_id(self.key)?;
        let patients_start = self.relations.next_id_index()?;
        while seq.next_element_seed(IdSeed(self.relations))?.is_some() {}
        let end = self.relations.next_id_index()?;
        self.relations
            .entries
            .push((members_start..patients_start, patients_start..end));
        Ok(())
    }

    /// `"team": {"members": [...], "patients": [...]}`.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut members = None;
        let mut patients = None;
        while let Some(field) = map.next_key::<String>()? {
            let slot = match field.as_ref() {
                "members" => &mut members,
                "patients" => &mut patients,
                other => {
                    return Err(de::Error::custom(format!(
                        "care_teams entry `{}`: unknown field `{other}`, expected `members` or `patients`",
                        self.key
                    )));
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom(format!(
                    "care_teams entry `{}`: `{field}` is given twice",
                    self.key
                )));
            }
            let start = self.relations.next_id_index()?;
            map.next_value_seed(IdListSeed(self.relations))?;
            *slot = Some(start..self.relations.next_id_index()?);
        }
        match (members, patients) {
            (Some(members), Some(patients)) => {
                self.relations.entries.push((members, patients));
                Ok(())
            }
            _ => Err(de::Error::custom(format!(
                "care_teams entry `{}`: needs both `members` and `patients`",
                self.key
            ))),
        }
    }
}

/// A list of ids, added to the arena.
struct IdListSeed<'a>(&'a mut Relations);

impl<'de> DeserializeSeed<'de> for IdListSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for IdListSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of ids")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(IdSeed(self.0))?.is_some() {}
        Ok(())
    }
}

/// One id, added to the arena without an allocation of its own.
struct IdSeed<'a>(&'a mut Relations);

impl<'de> DeserializeSeed<'de> for IdSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IdSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an id string")
    }

    fn visit_str<E: de::Error>(self, id: &str) -> Result<(), E> {
        self.0.push_id(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Relations, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn both_entry_shapes_relate_users_to_patients() {
        let relations = parse(
            r#"{
                "Practitioner/dr-a": ["pat-1", "pat-2"],
                "ward-4b": {"members": ["Practitioner/dr-b", "nurse-7"], "patients": ["pat-3"]}
            }"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(relations.related(&["Practitioner/dr-a"], "pat-2"));
        assert!(!relations.related(&["Practitioner/dr-a"], "pat-3"));
        assert!(relations.related(&["x", "nurse-7"], "pat-3"));
        assert!(
            !relations.related(&["ward-4b"], "pat-3"),
            "a team name is not a member"
        );
        assert!(!relations.related(&["nurse-7"], "pat-1"));
        assert_eq!(relations.len(), (2, 6));
    }

    #[test]
    fn escaped_ids_are_read_as_text() {
        let relations = parse(r#"{"dr\u002da": ["pat\"1"]}"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(relations.related(&["dr-a"], "pat\"1"));
    }

    #[test]
    fn malformed_entries_say_what_is_expected() {
        let error = parse(r#"{"t": {"members": ["a"]}}"#)
            .err()
            .unwrap_or_default();
        assert!(
            error.contains("needs both `members` and `patients`"),
            "{error}"
        );
        let error = parse(r#"{"t": {"members": [], "patient": []}}"#)
            .err()
            .unwrap_or_default();
        assert!(error.contains("unknown field `patient`"), "{error}");
        let error = parse(r#"{"t": "pat-1"}"#).err().unwrap_or_default();
        assert!(error.contains("a list of patient ids"), "{error}");
        let error = parse(r#"{"t": [1]}"#).err().unwrap_or_default();
        assert!(error.contains("an id string"), "{error}");
        let error = parse(r#"{"t": [""]}"#).err().unwrap_or_default();
        assert!(error.contains("is empty"), "{error}");
    }
}
