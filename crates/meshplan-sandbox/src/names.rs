//! Object name validation and `generateName`, as apimachinery does them.
//!
//! CONTRACT: `validate_name(kind_rule, name)` returns the messages apimachinery gives
//! (e.g. `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters,
//! '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com',
//! regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`),
//! empty when valid. `generate_name(prefix)` appends 5 random characters from
//! `bcdfghjklmnpqrstvwxz2456789`, truncating the prefix so the whole fits 63 characters.
//!
//! Notes for callers:
//! - An empty name is not special-cased here: for the RFC 1123 rules it fails the regex (as the
//!   apimachinery functions do); the API server reports `metadata.name: Required value: name or
//!   generateName is required` before calling these functions (see [`NAME_REQUIRED`]).
//! - Messages are the bare details; the API server words a cause as
//!   `metadata.name: Invalid value: "<name>": <message>`.
//! - [`validate_generate_name`] checks a `generateName` prefix as apimachinery does (a trailing
//!   `-` is allowed there).
//! - Besides names, the RFC 1123 label/subdomain, qualified-name (label key) and label-value
//!   checks used by selectors are public here.

#[cfg(test)]
use meshplan_k8s::go::go_quote;

/// Which rule a kind's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// RFC 1123 subdomain (most kinds): ≤ 253 characters.
    Subdomain,
    /// RFC 1123 label (Namespace, Service): ≤ 63 characters.
    Label,
    /// Path segment only (RBAC kinds): not `.` or `..`, no `/` or `%`.
    PathSegment,
}

/// Detail of the `metadata.name` Required cause when neither name nor generateName is given.
pub(crate) const NAME_REQUIRED: &str = "name or generateName is required";

/// Characters `generateName` draws from (apimachinery's `utilrand` alphabet: no vowels, no
/// confusable digits).
pub(crate) const GENERATE_NAME_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";
/// Number of random characters appended by `generateName`.
pub(crate) const GENERATED_SUFFIX_LENGTH: usize = 5;
/// Longest prefix kept by `generateName` (63 - 5).
pub(crate) const MAX_GENERATED_PREFIX_LENGTH: usize = 63 - GENERATED_SUFFIX_LENGTH;

/// Longest RFC 1123 label.
pub(crate) const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest RFC 1123 subdomain.
pub(crate) const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest name part of a qualified name and longest label value.
pub(crate) const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Validates an object name under `rule`; empty when valid.
pub(crate) fn validate_name(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::PathSegment => is_valid_path_segment_name(name),
    }
}

/// Validates a `generateName` prefix under `rule` (apimachinery masks one trailing `-` so
/// that `web-` is a valid prefix); empty when valid.
pub(crate) fn validate_generate_name(rule: NameRule, prefix: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(&mask_trailing_dash(prefix)),
        NameRule::Label => is_dns1123_label(&mask_trailing_dash(prefix)),
        NameRule::PathSegment => is_valid_path_segment_prefix(prefix),
    }
}

/// The message of one invalid-name cause as the API server words it:
/// `metadata.name: Invalid value: "Bad_Name": <detail>`.
#[cfg(test)]
pub(crate) fn invalid_name_message(field: &str, name: &str, detail: &str) -> String {
    format!("{field}: Invalid value: {}: {detail}", go_quote(name))
}

/// `generateName`: the prefix (cut to 58 bytes, on a character boundary) followed by 5 random
/// characters from [`GENERATE_NAME_ALPHABET`].
pub(crate) fn generate_name(prefix: &str) -> String {
    let mut cut = prefix.len().min(MAX_GENERATED_PREFIX_LENGTH);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut name = String::with_capacity(cut + GENERATED_SUFFIX_LENGTH);
    name.push_str(&prefix[..cut]);
    name.push_str(&random_suffix());
    name
}

/// Five random characters of [`GENERATE_NAME_ALPHABET`], drawn from the random bits of a
/// version-4 UUID.
fn random_suffix() -> String {
    let alphabet = GENERATE_NAME_ALPHABET.as_bytes();
    let bytes = uuid::Uuid::new_v4().into_bytes();
    // Bytes 0..6 of a v4 UUID are entirely random (version and variant bits live in bytes 6
    // and 8): 48 bits, far more than 27^5 needs, so the modulo bias is negligible.
    let mut bits = bytes[..6]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let base = alphabet.len() as u64;
    let mut out = String::with_capacity(GENERATED_SUFFIX_LENGTH);
    for _ in 0..GENERATED_SUFFIX_LENGTH {
        let index = (bits % base) as usize;
        bits /= base;
        out.push(char::from(alphabet[index]));
    }
    out
}

fn mask_trailing_dash(name: &str) -> String {
    match name.strip_suffix('-') {
        Some(stripped) if name.len() > 1 => format!("{stripped}a"),
        _ => name.to_string(),
    }
}

/// `validation.RegexError`: the message, examples and the regex.
pub(crate) fn regex_error(message: &str, regex: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{regex}')");
    }
    let mut out = String::from(message);
    out.push_str(" (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(regex);
    out.push_str("')");
    out
}

/// `validation.MaxLenError`.
pub(crate) fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `validation.EmptyError`.
pub(crate) fn empty_error() -> String {
    "must be non-empty".to_string()
}

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?` exactly.
fn matches_dns1123_label(value: &str) -> bool {
    let b = value.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            is_alnum_lower(*first)
                && is_alnum_lower(*last)
                && b.iter().all(|c| is_alnum_lower(*c) || *c == b'-')
        }
        _ => false,
    }
}

/// Matches the RFC 1123 subdomain regex exactly (labels joined by dots).
fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// `validation.IsDNS1123Label`.
pub(crate) fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// `validation.IsDNS1123Subdomain`.
pub(crate) fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

const PATH_SEGMENT_MAY_NOT_BE: [&str; 2] = [".", ".."];
const PATH_SEGMENT_MAY_NOT_CONTAIN: [&str; 2] = ["/", "%"];

/// `path.IsValidPathSegmentName`.
pub(crate) fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for illegal in PATH_SEGMENT_MAY_NOT_BE {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    is_valid_path_segment_prefix(name)
}

/// `path.IsValidPathSegmentPrefix`.
pub(crate) fn is_valid_path_segment_prefix(name: &str) -> Vec<String> {
    PATH_SEGMENT_MAY_NOT_CONTAIN
        .iter()
        .filter(|illegal| name.contains(**illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// Matches `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` exactly.
fn matches_qualified_name(value: &str) -> bool {
    let b = value.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            is_alnum(*first)
                && is_alnum(*last)
                && b.iter()
                    .all(|c| is_alnum(*c) || matches!(*c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `validation.IsQualifiedName` (label and annotation keys): `[prefix/]name`.
pub(crate) fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                for msg in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {msg}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// `validation.IsValidLabelValue`.
pub(crate) fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(max_len_error(QUALIFIED_NAME_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

    #[test]
    fn subdomain_accepts_valid_names() {
        for name in ["a", "web", "my-app.example.com", "0abc", "a.b-c.d9"] {
            assert!(
                validate_name(NameRule::Subdomain, name).is_empty(),
                "{name}"
            );
        }
        let longest = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(longest.len(), 253);
        assert!(validate_name(NameRule::Subdomain, &longest).is_empty());
    }

    #[test]
    fn subdomain_rejects_with_apimachinery_message() {
        for name in [
            "Web", "web_app", "-web", "web-", "a..b", ".a", "a.", "", "wéb",
        ] {
            assert_eq!(
                validate_name(NameRule::Subdomain, name),
                vec![SUBDOMAIN_MSG.to_string()],
                "{name}"
            );
        }
    }

    #[test]
    fn subdomain_too_long_reports_length_first() {
        let name = "a".repeat(254);
        assert_eq!(
            validate_name(NameRule::Subdomain, &name),
            vec!["must be no more than 253 characters".to_string()]
        );
        let bad = format!("{}_", "a".repeat(253));
        assert_eq!(
            validate_name(NameRule::Subdomain, &bad),
            vec![
                "must be no more than 253 characters".to_string(),
                SUBDOMAIN_MSG.to_string()
            ]
        );
    }

    #[test]
    fn label_rules_and_messages() {
        assert!(validate_name(NameRule::Label, "kube-system").is_empty());
        assert!(validate_name(NameRule::Label, &"a".repeat(63)).is_empty());
        assert_eq!(
            validate_name(NameRule::Label, &"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
        assert_eq!(
            validate_name(NameRule::Label, "my.ns"),
            vec!["must not contain dots".to_string()]
        );
        assert_eq!(
            validate_name(NameRule::Label, "My_ns"),
            vec![LABEL_MSG.to_string()]
        );
    }

    #[test]
    fn path_segment_rules() {
        assert!(validate_name(NameRule::PathSegment, "system:controller:x").is_empty());
        assert!(validate_name(NameRule::PathSegment, "Any Thing").is_empty());
        assert_eq!(
            validate_name(NameRule::PathSegment, ".."),
            vec!["may not be '..'".to_string()]
        );
        assert_eq!(
            validate_name(NameRule::PathSegment, "."),
            vec!["may not be '.'".to_string()]
        );
        assert_eq!(
            validate_name(NameRule::PathSegment, "a/b%c"),
            vec![
                "may not contain '/'".to_string(),
                "may not contain '%'".to_string()
            ]
        );
    }

    #[test]
    fn generate_name_prefix_allows_trailing_dash() {
        assert!(validate_generate_name(NameRule::Subdomain, "web-").is_empty());
        assert!(validate_generate_name(NameRule::Label, "web-").is_empty());
        assert_eq!(
            validate_generate_name(NameRule::Subdomain, "Web-"),
            vec![SUBDOMAIN_MSG.to_string()]
        );
    }

    #[test]
    fn generate_name_appends_five_alphabet_chars() {
        let name = generate_name("web-");
        assert_eq!(name.len(), 9);
        assert!(name.starts_with("web-"));
        assert!(
            name[4..]
                .chars()
                .all(|c| GENERATE_NAME_ALPHABET.contains(c))
        );
        assert!(validate_name(NameRule::Subdomain, &name).is_empty());
    }

    #[test]
    fn generate_name_truncates_long_prefix_to_58() {
        let prefix = "p".repeat(80);
        let name = generate_name(&prefix);
        assert_eq!(name.len(), 63);
        assert_eq!(&name[..58], &prefix[..58]);
        assert!(validate_name(NameRule::Label, &name).is_empty());
    }

    #[test]
    fn generate_name_truncation_respects_char_boundaries() {
        let prefix = format!("{}é", "a".repeat(57));
        let name = generate_name(&prefix);
        assert!(name.starts_with(&"a".repeat(57)));
        assert_eq!(name.len(), 57 + 5);
    }

    #[test]
    fn generate_name_varies() {
        let names: std::collections::BTreeSet<String> =
            (0..20).map(|_| generate_name("x-")).collect();
        assert!(names.len() > 15, "{names:?}");
    }

    #[test]
    fn qualified_name_messages() {
        assert!(is_qualified_name("app").is_empty());
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert_eq!(
            is_qualified_name("/name"),
            vec!["prefix part must be non-empty".to_string()]
        );
        assert_eq!(
            is_qualified_name("bad key"),
            vec!["name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string()]
        );
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_string()]
        );
        assert_eq!(is_qualified_name("Example.com/x").len(), 1);
        assert!(
            is_qualified_name("Example.com/x")[0]
                .starts_with("prefix part a lowercase RFC 1123 subdomain")
        );
        assert_eq!(
            is_qualified_name(&"n".repeat(64)),
            vec!["name part must be no more than 63 characters".to_string()]
        );
    }

    #[test]
    fn label_value_messages() {
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_x-Y").is_empty());
        assert_eq!(
            is_valid_label_value("a b"),
            vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string()]
        );
        assert_eq!(is_valid_label_value(&"v".repeat(64)).len(), 1);
    }

    #[test]
    fn invalid_name_message_quotes_like_go() {
        assert_eq!(
            invalid_name_message("metadata.name", "Bad\"Name", "x"),
            "metadata.name: Invalid value: \"Bad\\\"Name\": x"
        );
        assert_eq!(go_quote("a\nb\u{1}"), "\"a\\nb\\x01\"");
    }
}
