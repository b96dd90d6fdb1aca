//! Object name validation and `generateName`, as apimachinery does them.
//!
//! CONTRACT: `validate_name(kind_rule, name)` returns the messages apimachinery gives
//! (e.g. `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters,
//! '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com',
//! regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`),
//! empty when valid. `generate_name(prefix)` appends 5 random characters from
//! `bcdfghjklmnpqrstvwxz2456789`, truncating the prefix so the whole fits 63 characters.

/// Which rule a kind's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds): ≤ 253 characters.
    Subdomain,
    /// RFC 1123 label (Namespace, Service): ≤ 63 characters.
    Label,
    /// Path segment only (RBAC kinds): not `.` or `..`, no `/` or `%`.
    PathSegment,
}

pub fn validate_name(rule: NameRule, name: &str) -> Vec<String> {
    let _ = (rule, name);
    todo!()
}

pub fn generate_name(prefix: &str) -> String {
    let _ = prefix;
    todo!()
}
