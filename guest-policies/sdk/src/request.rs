//! Accessors over the canonical [`Request`], its [`Principal`] and its [`Interaction`].

use crate::search::{split_modifier, split_unescaped};
use crate::{Interaction, Permission, Principal, Request};

impl Request {
    /// The first value of query or form parameter `name` (exact name, modifiers included),
    /// as written: FHIR escapes kept, `,`-separated alternatives not split.
    ///
    /// ```
    /// use ehrgate_sdk::{Interaction, testing};
    ///
    /// let mut search = testing::request(Interaction::SearchType, Some("Observation"));
    /// search.params = testing::params(&[("patient", "123"), ("code:not", "8867-4")]);
    /// assert_eq!(search.param("patient"), Some("123"));
    /// assert_eq!(search.param("code"), None); // only `code:not` was sent
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// Every value of parameter `name` (exact name), in request order. Repeating a parameter
    /// means AND in FHIR (search.html#combining): `date=ge2024-01-01&date=lt2025-01-01`.
    ///
    /// ```
    /// use ehrgate_sdk::{Interaction, testing};
    ///
    /// let mut search = testing::request(Interaction::SearchType, Some("Observation"));
    /// search.params = testing::params(&[("date", "ge2024-01-01"), ("date", "lt2025-01-01")]);
    /// let dates: Vec<&str> = search.params_named("date").collect();
    /// assert_eq!(dates, ["ge2024-01-01", "lt2025-01-01"]);
    /// ```
    pub fn params_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// Every alternative of every parameter `name` (exact name): each value split on the
    /// commas that are not escaped (FHIR `,` means OR, `\,` is a comma inside a value), in
    /// request order. Parts keep their other escapes (see [`crate::search`]); empty parts
    /// are kept, so `patient=` yields one empty id rather than none. Repeats (AND) and
    /// alternatives (OR) are flattened together, which is what a policy wants when every
    /// value must be allowed; use [`Request::params_named`] with
    /// [`crate::search::split_unescaped`] to tell them apart.
    ///
    /// ```
    /// use ehrgate_sdk::{Interaction, testing};
    ///
    /// let mut search = testing::request(Interaction::SearchType, Some("Observation"));
    /// search.params = testing::params(&[("patient", "123,456"), ("patient", "789")]);
    /// let patients: Vec<&str> = search.param_values("patient").collect();
    /// assert_eq!(patients, ["123", "456", "789"]);
    ///
    /// search.params = testing::params(&[("name", r"Smith\, Jr.,Doe")]);
    /// assert_eq!(search.param_values("name").count(), 2);
    /// ```
    pub fn param_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params_named(name)
            .flat_map(|value| split_unescaped(value, ','))
    }

    /// Every parameter whose name is `name` with or without a modifier, as
    /// `(modifier, value)` in request order: `code`, `code:not` and `code:text` all match
    /// `code`; a chain (`subject.name`) does not match `subject`. A modifier changes what the
    /// value means (`:not` negates, `:missing` takes `true` or `false`, `:text` searches
    /// text), so judge the modifier with the value; a policy should refuse modifiers it does
    /// not understand rather than read their values as plain ones.
    ///
    /// ```
    /// use ehrgate_sdk::{Interaction, testing};
    ///
    /// let mut search = testing::request(Interaction::SearchType, Some("Observation"));
    /// search.params = testing::params(&[("subject:Patient", "123"), ("subject", "456")]);
    /// let subjects: Vec<(Option<&str>, &str)> = search.params_any_modifier("subject").collect();
    /// assert_eq!(subjects, [(Some("Patient"), "123"), (None, "456")]);
    /// ```
    pub fn params_any_modifier<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (Option<&'a str>, &'a str)> + 'a {
        self.params.iter().filter_map(move |param| {
            let (base, modifier) = split_modifier(&param.name);
            (base == name).then_some((modifier, param.value.as_str()))
        })
    }

    /// The value of an allow-listed header (lower-case `name`). Only the headers the route
    /// shows to policies are here; `authorization` and cookies never are.
    ///
    /// ```
    /// use ehrgate_sdk::{Interaction, Header, testing};
    ///
    /// let mut read = testing::request(Interaction::Read, Some("Patient"));
    /// read.headers = vec![Header { name: "x-ward".into(), value: "cardiology".into() }];
    /// assert_eq!(read.header("x-ward"), Some("cardiology"));
    /// assert_eq!(read.header("X-Ward"), None); // names are lower case
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// The caller's subject, or `anonymous`.
    ///
    /// ```
    /// use ehrgate_sdk::{Interaction, testing};
    ///
    /// let mut read = testing::request(Interaction::Read, Some("Patient"));
    /// assert_eq!(read.subject(), "anonymous");
    /// read.principal = Some(testing::principal("dr-adams"));
    /// assert_eq!(read.subject(), "dr-adams");
    /// ```
    pub fn subject(&self) -> &str {
        self.principal
            .as_ref()
            .map_or("anonymous", |p| p.subject.as_str())
    }
}

impl Principal {
    /// Whether the caller holds `role` (exact, case-sensitive, as written in the token).
    ///
    /// ```
    /// use ehrgate_sdk::testing;
    ///
    /// let mut caller = testing::principal("dr-adams");
    /// caller.roles = vec!["physician".into(), "cardiology".into()];
    /// assert!(caller.has_role("physician"));
    /// assert!(!caller.has_role("Physician"));
    /// ```
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the caller declared purpose of use `code` (for example `BTG`).
    ///
    /// ```
    /// use ehrgate_sdk::testing;
    ///
    /// let mut caller = testing::principal("dr-adams");
    /// caller.purpose_of_use = vec!["TREAT".into(), "BTG".into()];
    /// assert!(caller.has_purpose("BTG"));
    /// assert!(!caller.has_purpose("HPAYMT"));
    /// ```
    pub fn has_purpose(&self, code: &str) -> bool {
        self.purpose_of_use.iter().any(|p| p == code)
    }
}

impl Interaction {
    /// Whether this is a search: `search-type` (including compartment searches such as
    /// `Patient/123/Observation`) or `search-system`. History is not a search here; see
    /// [`Interaction::permission`] for the SMART view, where both need `s`.
    ///
    /// ```
    /// use ehrgate_sdk::Interaction;
    ///
    /// assert!(Interaction::SearchType.is_search());
    /// assert!(!Interaction::Read.is_search());
    /// ```
    pub fn is_search(self) -> bool {
        matches!(self, Interaction::SearchType | Interaction::SearchSystem)
    }

    /// Whether this reads one resource by id: `read` or `vread` (not its history).
    ///
    /// ```
    /// use ehrgate_sdk::Interaction;
    ///
    /// assert!(Interaction::Read.is_read() && Interaction::Vread.is_read());
    /// assert!(!Interaction::HistoryInstance.is_read());
    /// ```
    pub fn is_read(self) -> bool {
        matches!(self, Interaction::Read | Interaction::Vread)
    }

    /// Whether this changes one resource: `create`, `update`, `patch` or `delete`. A `batch`,
    /// a `transaction` or an `operation` may write too but is not a write here: judge a
    /// Bundle by its `entries` (each has its own interaction) and an operation by its name.
    ///
    /// ```
    /// use ehrgate_sdk::Interaction;
    ///
    /// assert!(Interaction::Patch.is_write());
    /// assert!(!Interaction::SearchType.is_write());
    /// assert!(!Interaction::Transaction.is_write()); // look at request.entries
    /// ```
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Interaction::Create | Interaction::Update | Interaction::Patch | Interaction::Delete
        )
    }

    /// The SMART v2 permission this interaction needs (smart-app-launch
    /// scopes-and-launch-context, "Scopes for requesting FHIR resources"): `c` create; `r`
    /// read, vread and instance history; `u` update and patch; `d` delete; `s` type and
    /// system search and history. `None` for `capabilities`, `batch`, `transaction`,
    /// `operation` and `other`, which no single letter covers.
    ///
    /// ```
    /// use ehrgate_sdk::{Interaction, Permission, Scopes};
    ///
    /// let scopes = Scopes::parse(["patient/Observation.rs"]);
    /// let may = |interaction: Interaction| {
    ///     interaction
    ///         .permission()
    ///         .is_some_and(|needed| scopes.granted.iter().any(|scope| scope.grants(needed)))
    /// };
    /// assert_eq!(Interaction::HistoryType.permission(), Some(Permission::Search));
    /// assert!(may(Interaction::Vread));
    /// assert!(!may(Interaction::Update));
    /// ```
    pub fn permission(self) -> Option<Permission> {
        match self {
            Interaction::Create => Some(Permission::Create),
            Interaction::Read | Interaction::Vread | Interaction::HistoryInstance => {
                Some(Permission::Read)
            }
            Interaction::Update | Interaction::Patch => Some(Permission::Update),
            Interaction::Delete => Some(Permission::Delete),
            Interaction::SearchType
            | Interaction::SearchSystem
            | Interaction::HistoryType
            | Interaction::HistorySystem => Some(Permission::Search),
            Interaction::Capabilities
            | Interaction::Batch
            | Interaction::Transaction
            | Interaction::Operation
            | Interaction::Other => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing;

    use super::*;

    fn search(pairs: &[(&str, &str)]) -> Request {
        let mut request = testing::request(Interaction::SearchType, Some("Observation"));
        request.params = testing::params(pairs);
        request
    }

    #[test]
    fn values_split_on_unescaped_commas_across_repeats() {
        let request = search(&[
            ("patient", "1,2"),
            ("code", r"a\,b,c"),
            ("patient", "3"),
            ("patient:missing", "true"),
            ("status", ""),
        ]);
        let patients: Vec<&str> = request.param_values("patient").collect();
        assert_eq!(patients, ["1", "2", "3"]);
        let codes: Vec<&str> = request.param_values("code").collect();
        assert_eq!(codes, [r"a\,b", "c"]);
        let statuses: Vec<&str> = request.param_values("status").collect();
        assert_eq!(statuses, [""]);
        assert_eq!(request.param_values("date").count(), 0);
    }

    #[test]
    fn lookups_ignoring_modifiers_keep_the_modifier() {
        let request = search(&[
            ("code", "1"),
            ("code:not", "2"),
            ("code.system", "3"),
            ("codes", "4"),
            ("_has:Observation:patient:code", "5"),
        ]);
        let codes: Vec<(Option<&str>, &str)> = request.params_any_modifier("code").collect();
        assert_eq!(codes, [(None, "1"), (Some("not"), "2")]);
        let has: Vec<(Option<&str>, &str)> = request.params_any_modifier("_has").collect();
        assert_eq!(has, [(Some("Observation:patient:code"), "5")]);
    }

    #[test]
    fn interactions_classify_and_map_to_smart_permissions() {
        use Interaction as I;
        let table: &[(Interaction, bool, bool, bool, Option<Permission>)] = &[
            // interaction, is_search, is_read, is_write, permission
            (I::Read, false, true, false, Some(Permission::Read)),
            (I::Vread, false, true, false, Some(Permission::Read)),
            (I::Update, false, false, true, Some(Permission::Update)),
            (I::Patch, false, false, true, Some(Permission::Update)),
            (I::Delete, false, false, true, Some(Permission::Delete)),
            (
                I::HistoryInstance,
                false,
                false,
                false,
                Some(Permission::Read),
            ),
            (
                I::HistoryType,
                false,
                false,
                false,
                Some(Permission::Search),
            ),
            (
                I::HistorySystem,
                false,
                false,
                false,
                Some(Permission::Search),
            ),
            (I::Create, false, false, true, Some(Permission::Create)),
            (I::SearchType, true, false, false, Some(Permission::Search)),
            (
                I::SearchSystem,
                true,
                false,
                false,
                Some(Permission::Search),
            ),
            (I::Capabilities, false, false, false, None),
            (I::Batch, false, false, false, None),
            (I::Transaction, false, false, false, None),
            (I::Operation, false, false, false, None),
            (I::Other, false, false, false, None),
        ];
        for (interaction, search, read, write, permission) in table {
            assert_eq!(interaction.is_search(), *search, "{interaction:?}");
            assert_eq!(interaction.is_read(), *read, "{interaction:?}");
            assert_eq!(interaction.is_write(), *write, "{interaction:?}");
            assert_eq!(interaction.permission(), *permission, "{interaction:?}");
        }
    }
}
