//! What the gateway read of the stored resource before an update, patch or delete by id.
//!
//! A write by id names the resource it changes, not whose it is: a body that names the
//! caller's patient may overwrite another patient's record. On routes that verify write
//! owners (`verify_write_owner`, on for patient-bound tokens by default) the gateway reads
//! the stored resource first, adds the patients it references to `request.patients`, and
//! forwards the write on condition that the stored version is still the one read
//! (`If-Match`), so a concurrent change makes the upstream refuse the write. It tells the
//! policies what it read through three headers of its own in `request.headers` (shown
//! whatever the route's `policy_headers` lists; clients cannot send `x-ehrgate-*` headers,
//! the gateway refuses them), which [`Request::stored`] reads:
//!
//! | header | value |
//! |---|---|
//! | `x-ehrgate-stored` | `found` or `absent`; missing when the gateway did not read |
//! | `x-ehrgate-stored-patients` | when found: the patient ids the stored resource references anywhere, sorted, `,`-separated, empty when none |
//! | `x-ehrgate-stored-version` | when found and the upstream versions it: the version id the write is pinned to |
//!
//! A read that failed never reaches the policies (the gateway answers 502, 504, or 403 when
//! the upstream refused it). Without
//! the headers (a route with `verify_write_owner = "off"`, a token the route does not cover,
//! a Bundle entry) the owner is unknown.

use crate::{Header, Request};

/// `found` or `absent`; present when the gateway read the stored resource.
pub const STORED_HEADER: &str = "x-ehrgate-stored";
/// The patients the stored resource references, `,`-separated.
pub const STORED_PATIENTS_HEADER: &str = "x-ehrgate-stored-patients";
/// The version the write is pinned to.
pub const STORED_VERSION_HEADER: &str = "x-ehrgate-stored-version";

/// What the gateway read before the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<'a> {
    /// The resource exists: its version (when versioned) and the patient ids it references.
    Found {
        version: Option<&'a str>,
        patients: Vec<&'a str>,
    },
    /// Nothing is stored under the id: an update creates the resource, and the gateway
    /// forwards it with `If-None-Match: *`; a patch or delete that the policies allow is
    /// answered 404 by the gateway and not forwarded (there is nothing to change). The
    /// policies judge first, so a caller they refuse learns nothing about which ids exist.
    Absent,
}

impl Stored<'_> {
    /// The headers the gateway sends for this finding, for native tests of a policy.
    ///
    /// ```
    /// use ehrgate_sdk::stored::Stored;
    /// use ehrgate_sdk::{Interaction, testing};
    ///
    /// let mut update = testing::request(Interaction::Update, Some("Observation"));
    /// let found = Stored::Found { version: Some("3"), patients: vec!["123"] };
    /// update.headers = found.to_headers();
    /// assert_eq!(update.stored(), Some(found));
    /// ```
    pub fn to_headers(&self) -> Vec<Header> {
        let header = |name: &str, value: &str| Header {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        match self {
            Stored::Absent => vec![header(STORED_HEADER, "absent")],
            Stored::Found { version, patients } => {
                let mut headers = vec![
                    header(STORED_HEADER, "found"),
                    header(STORED_PATIENTS_HEADER, &patients.join(",")),
                ];
                if let Some(version) = version {
                    headers.push(header(STORED_VERSION_HEADER, version));
                }
                headers
            }
        }
    }
}

impl Request {
    /// What the gateway read of the stored resource before this write, or `None` when it
    /// did not read it (the owner is then unknown). A header with an unknown value counts
    /// as not read.
    ///
    /// ```
    /// use ehrgate_sdk::stored::Stored;
    /// use ehrgate_sdk::{Header, Interaction, testing};
    ///
    /// let mut delete = testing::request(Interaction::Delete, Some("Observation"));
    /// assert_eq!(delete.stored(), None);
    /// delete.headers = vec![
    ///     Header { name: "x-ehrgate-stored".into(), value: "found".into() },
    ///     Header { name: "x-ehrgate-stored-patients".into(), value: "123,456".into() },
    /// ];
    /// assert_eq!(delete.stored(), Some(Stored::Found { version: None, patients: vec!["123", "456"] }));
    /// ```
    pub fn stored(&self) -> Option<Stored<'_>> {
        match self.header(STORED_HEADER)? {
            "absent" => Some(Stored::Absent),
            "found" => Some(Stored::Found {
                version: self.header(STORED_VERSION_HEADER),
                patients: self
                    .header(STORED_PATIENTS_HEADER)
                    .unwrap_or_default()
                    .split(',')
                    .filter(|id| !id.is_empty())
                    .collect(),
            }),
            _ => None,
        }
    }
}
