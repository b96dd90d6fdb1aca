//! The second net of masking: the forms a template may turn a sensitive value into.
//!
//! The render marks the fields it knows were derived from a sensitive input (a manifest's
//! interpolation, a helm node's canary render, see [`super::provenance`]). Whatever slips
//! through that (a chart that refuses the canary, a value passed through a generating
//! function) is caught here by looking for the value itself in every string leaf, in the
//! forms charts commonly produce:
//!
//! - verbatim (the whole leaf, or inside it when the value has at least [`MIN_LEN`] bytes);
//! - JSON-escaped, as `toJson` and `quote` (Go's `%q`) write it, with and without Go's HTML
//!   escapes (`\u003c`, `\u003e`, `\u0026`);
//! - base64 (standard alphabet) of the value and of its JSON-escaped form, at each of the three
//!   byte alignments it can have inside a longer encoded text, with or without padding, line
//!   wrapping or indentation (whitespace is ignored when looking for base64);
//! - re-indented (`indent`, `nindent`): every line trimmed, in the leaf and in the value.
//!
//! The same forms are redacted from messages ([`SensitiveForms::redact`]): what helm or the
//! API server echoes back. Every render registers the sensitive values it knows
//! ([`register_for_output`]); what the commands write (stdout, stderr, progress, a saved change
//! set) passes through [`redact_output`] first, so an error message that quotes a value is
//! printed without it.
//!
//! Limits: a value shorter than [`MIN_LEN`] bytes is masked only where a leaf equals it; a
//! transformation other than these (hashing, encryption, a substring, another encoding) is not
//! recognised here, only by provenance.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value as Json;

/// The shortest value looked for inside longer strings (shorter ones only as a whole leaf).
pub const MIN_LEN: usize = 6;

/// The shortest base64 fragment looked for (shorter ones match too much by chance).
const MIN_BASE64: usize = 8;

/// What replaces a sensitive value in a message.
pub const REDACTED: &str = "(sensitive)";

/// One sensitive value and its derived forms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forms {
    value: String,
    /// Looked for as substrings of the text as it is (verbatim and escaped forms).
    plain: Vec<String>,
    /// Looked for in the text with all whitespace removed (base64 forms).
    compact: Vec<String>,
    /// The value's lines trimmed and joined with `\n` (multi-line values only).
    lines: Option<String>,
}

/// The sensitive values of a render and the forms they may take.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SensitiveForms {
    forms: Vec<Forms>,
}

/// The sensitive values seen by this process, for [`redact_output`].
static REGISTERED: std::sync::Mutex<SensitiveForms> =
    std::sync::Mutex::new(SensitiveForms { forms: Vec::new() });

/// Adds `values` to the values redacted from every output of this process.
pub fn register_for_output(values: &[String]) {
    if values.is_empty() {
        return;
    }
    if let Ok(mut registered) = REGISTERED.lock() {
        for v in values {
            if !v.is_empty() && !registered.forms.iter().any(|f| f.value == *v) {
                registered.forms.push(Forms::of(v));
            }
        }
    }
}

/// `text` without any sensitive value this process has seen, in any of its forms.
pub fn redact_output(text: &str) -> std::borrow::Cow<'_, str> {
    match REGISTERED.lock() {
        Ok(registered) if !registered.is_empty() => {
            std::borrow::Cow::Owned(registered.redact(text))
        }
        _ => std::borrow::Cow::Borrowed(text),
    }
}

impl SensitiveForms {
    /// The forms of `values` (empty values are ignored).
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut forms: Vec<Forms> = values
            .into_iter()
            .map(|v| v.as_ref().to_owned())
            .filter(|v| !v.is_empty())
            .map(|v| Forms::of(&v))
            .collect();
        forms.sort_by(|a, b| a.value.cmp(&b.value));
        forms.dedup();
        Self { forms }
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Whether `text` holds a sensitive value in one of its forms.
    pub fn matches(&self, text: &str) -> bool {
        if self.forms.is_empty() {
            return false;
        }
        if self
            .forms
            .iter()
            .any(|f| text == f.value || f.plain.iter().any(|p| text.contains(p.as_str())))
        {
            return true;
        }
        // The normalised forms of the text only when some value needs them (most leaves are
        // short and hold no whitespace).
        let has_space = text.contains(char::is_whitespace);
        let compact: std::borrow::Cow<'_, str> = if has_space {
            text.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .into()
        } else {
            text.into()
        };
        if self
            .forms
            .iter()
            .any(|f| f.compact.iter().any(|p| compact.contains(p.as_str())))
        {
            return true;
        }
        if !text.contains('\n') || self.forms.iter().all(|f| f.lines.is_none()) {
            return false;
        }
        let lines = trimmed_lines(text);
        self.forms
            .iter()
            .any(|f| f.lines.as_ref().is_some_and(|l| lines.contains(l.as_str())))
    }

    /// Whether a JSON leaf holds a sensitive value (strings, and numbers written the same).
    pub fn matches_leaf(&self, leaf: &Json) -> bool {
        match leaf {
            Json::String(s) => self.matches(s),
            Json::Number(n) => {
                let text = n.to_string();
                self.forms.iter().any(|f| f.value == text)
            }
            _ => false,
        }
    }

    /// `text` with every form of every sensitive value replaced by [`REDACTED`]. A value
    /// re-indented over several lines is redacted line by line; base64 broken over lines is
    /// found only when unbroken.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let mut patterns: Vec<&str> = Vec::new();
        for f in &self.forms {
            if f.value.len() >= MIN_LEN || out == f.value {
                patterns.push(&f.value);
            }
            patterns.extend(f.plain.iter().map(String::as_str));
            patterns.extend(f.compact.iter().map(String::as_str));
            if f.lines.is_some() {
                patterns.extend(
                    f.value
                        .lines()
                        .map(str::trim)
                        // PEM armour is not the secret: other PEM blocks stay readable.
                        .filter(|l| l.len() >= MIN_LEN && !l.starts_with("-----")),
                );
            }
        }
        // Longest first, so that a form is not cut by a shorter one inside it.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        patterns.dedup();
        for p in patterns {
            if !p.is_empty() && out.contains(p) {
                out = out.replace(p, REDACTED);
            }
        }
        out
    }
}

impl Forms {
    fn of(value: &str) -> Self {
        let mut plain = Vec::new();
        let mut compact = Vec::new();
        if value.len() >= MIN_LEN {
            plain.push(value.to_owned());
            let escaped = json_escaped(value);
            let html = html_escaped(&escaped);
            for form in [escaped, html] {
                if form != value && !plain.contains(&form) {
                    plain.push(form);
                }
            }
            let raw: Vec<String> = plain.clone();
            for form in &raw {
                for fragment in base64_fragments(form.as_bytes()) {
                    if !compact.contains(&fragment) {
                        compact.push(fragment);
                    }
                }
            }
        }
        let lines = (value.trim().contains('\n'))
            .then(|| trimmed_lines(value))
            .filter(|l| l.len() >= MIN_LEN);
        Self {
            value: value.to_owned(),
            plain,
            compact,
            lines,
        }
    }
}

/// The value as JSON writes it inside a string (no surrounding quotes).
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_owned()
}

/// Go's `encoding/json` escapes of `<`, `>` and `&` (what helm's `toJson` writes).
fn html_escaped(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The base64 text that `bytes` become wherever they sit in a longer encoded text: for each
/// of the three alignments, the characters that encode only `bytes` (and, aligned at the
/// start, the whole encoding with and without padding).
fn base64_fragments(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let whole = STANDARD.encode(bytes);
    out.push(whole.trim_end_matches('=').to_owned());
    for lead in 0..3usize {
        let mut buf = vec![0u8; lead];
        buf.extend_from_slice(bytes);
        let encoded = STANDARD.encode(&buf);
        // Skip the group holding the lead bytes; keep only whole groups of the value's bytes.
        let skip = if lead == 0 { 0 } else { 4 };
        let first_byte = if lead == 0 { 0 } else { 3 - lead };
        let full_groups = (bytes.len().saturating_sub(first_byte)) / 3;
        let fragment: String = encoded.chars().skip(skip).take(full_groups * 4).collect();
        if fragment.len() >= MIN_BASE64 && !out.contains(&fragment) {
            out.push(fragment);
        }
    }
    out.retain(|f| f.len() >= MIN_BASE64);
    out
}

/// The text's lines, each trimmed, joined with `\n` (empty lines dropped).
fn trimmed_lines(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n";

    fn forms() -> SensitiveForms {
        SensitiveForms::new(["hunter2-<&>-token", PEM])
    }

    #[test]
    fn masking_finds_verbatim_and_quoted_forms() {
        let f = forms();
        assert!(f.matches("hunter2-<&>-token"));
        assert!(f.matches("password=hunter2-<&>-token;"));
        // `quote` and `toJson` of a multi-line value: escaped newlines.
        let quoted = serde_json::to_string(PEM).unwrap();
        assert!(f.matches(&format!("key: {quoted}")));
        // Go's toJson escapes HTML characters.
        assert!(f.matches(r#"{"password":"hunter2-\u003c\u0026\u003e-token"}"#));
        assert!(!f.matches("hunter2"));
        assert!(!f.matches("an unrelated value"));
    }

    #[test]
    fn masking_finds_base64_at_every_alignment_wrapped_or_not() {
        let f = forms();
        let b64 = STANDARD.encode("hunter2-<&>-token");
        assert!(f.matches(&b64));
        assert!(f.matches(b64.trim_end_matches('=')));
        // Inside a longer encoded text, at each alignment.
        for prefix in ["", "a", "ab", "abc"] {
            let text = STANDARD.encode(format!("{prefix}user:hunter2-<&>-token\n"));
            assert!(f.matches(&text), "prefix {prefix:?}: {text}");
            let json = STANDARD.encode(format!(
                r#"{prefix}{{"auth":{}}}"#,
                serde_json::to_string(PEM).unwrap()
            ));
            assert!(f.matches(&json), "json with prefix {prefix:?}");
        }
        // Wrapped at 64 columns and indented.
        let pem_b64 = STANDARD.encode(PEM);
        let wrapped: Vec<String> = pem_b64
            .as_bytes()
            .chunks(64)
            .map(|c| format!("    {}", String::from_utf8_lossy(c)))
            .collect();
        assert!(f.matches(&wrapped.join("\n")));
        assert!(!f.matches(&STANDARD.encode("hunter3-<&>-token")));
    }

    #[test]
    fn masking_finds_re_indented_values() {
        let f = forms();
        let indented: String = PEM.lines().map(|l| format!("      {l}\n")).collect();
        let config = format!("tls:\n  key: |\n{indented}  other: 1\n");
        assert!(f.matches(&config));
        // A single line of the value is not the value.
        assert!(!f.matches("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn masking_short_values_only_as_whole_leaves() {
        let f = SensitiveForms::new(["abc"]);
        assert!(f.matches("abc"));
        assert!(!f.matches("abcdef"));
        assert!(f.matches_leaf(&Json::String("abc".into())));
        let n = SensitiveForms::new(["8443"]);
        assert!(n.matches_leaf(&serde_json::json!(8443)));
        assert!(!n.matches_leaf(&serde_json::json!(true)));
    }

    #[test]
    fn masking_redacts_every_form_from_messages() {
        let f = forms();
        let b64 = STANDARD.encode("hunter2-<&>-token");
        let quoted = serde_json::to_string(PEM).unwrap();
        let message = format!(
            "Error: invalid value \"hunter2-<&>-token\" ({b64}); key {quoted}; indented:\n        {}\n",
            PEM.lines().nth(1).unwrap()
        );
        let redacted = f.redact(&message);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(!redacted.contains(&b64[..12]), "{redacted}");
        assert!(
            !redacted.contains("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
            "{redacted}"
        );
        assert!(
            redacted.starts_with("Error: invalid value \"(sensitive)\""),
            "{redacted}"
        );
        // Another PEM block keeps its armour.
        let other = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(f.redact(other), other);
        assert_eq!(SensitiveForms::default().redact("x"), "x");
    }
}
