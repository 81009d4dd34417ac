//! Accessors over the canonical [`Request`] and its [`Principal`].

use crate::{Principal, Request};

impl Request {
    /// The first value of query or form parameter `name` (exact name, modifiers included).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// Every value of parameter `name`, in request order.
    pub fn params_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// The value of an allow-listed header (lower-case `name`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// The caller's subject, or `anonymous`.
    pub fn subject(&self) -> &str {
        self.principal
            .as_ref()
            .map_or("anonymous", |p| p.subject.as_str())
    }
}

impl Principal {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the caller declared purpose of use `code` (for example `BTG`).
    pub fn has_purpose(&self, code: &str) -> bool {
        self.purpose_of_use.iter().any(|p| p == code)
    }
}
