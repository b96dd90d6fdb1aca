//! Render stability: charts that generate material (certificates, random tokens, checksums of
//! generated files) on every `helm template`.
//!
//! 1. Unchanged inputs (same cache key): the previous chart output is reused as is (from what
//!    was applied last, or from the render cache), so a re-plan after an apply is empty.
//! 2. Changed inputs: a chart whose templates call no function that generates material
//!    ([`generating_call`]: keys, certificates, random strings, the time) is rendered once and
//!    has no volatile paths. Any other chart (or one whose templates cannot be read: remote or
//!    packaged charts) is rendered twice with the same inputs, both at once, when the node
//!    has a previous render; the paths whose values differ between the two renders are the
//!    node's *volatile* paths ([`volatile_paths`]).
//! 3. No previous render (a first install, objects another tool applied): there is nothing to
//!    carry generated material over from, nor to compare it with, so the chart is rendered
//!    once and its output is marked [`ChartOutput::volatile_unknown`]. A later render that has
//!    a previous render does not take such an output from the render cache: it renders twice
//!    and carries over. When the node also has sensitive inputs, the fields that differ
//!    between the real and the canary render are generated or derived from a sensitive input,
//!    which one render cannot tell apart: all of them are sensitive (generated key material
//!    is masked too, the safe direction; see [`super::provenance`]).
//! 4. When the previous output has every object and every volatile path of the new one, the
//!    previous values are carried over for all volatile paths of the node together
//!    ([`carry_over`]): a certificate, its key and the `caBundle`s and checksums derived from
//!    it always come from the same render. Otherwise nothing is carried over and the node's
//!    objects that differ only at volatile paths are reported as regenerated material.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::model::ObjectRef;

use super::objects::identity;

/// One document of a chart's output (after stability handling): what the render cache holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartDocument {
    /// The `# Source:` comment helm writes before the document.
    pub source: Option<String>,
    pub object: Json,
    /// Paths whose values change from one render to the next with the same inputs.
    pub volatile_paths: BTreeSet<String>,
    /// Paths whose values were derived from the node's sensitive inputs (found by the canary
    /// render, see [`super::provenance`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sensitive_paths: BTreeSet<String>,
}

/// A chart's output, in helm's order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChartOutput {
    pub documents: Vec<ChartDocument>,
    /// True when the volatile values were carried over from the previous output.
    pub carried_over: bool,
    /// True when the chart may generate material but was rendered once, because the node had
    /// no previous render to carry it over from or compare it with: its volatile paths were
    /// not looked for (they are empty). Such an output is not taken from the render cache by
    /// a render that has a previous render of the node (it renders twice and carries over).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile_unknown: bool,
}

impl ChartOutput {
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }

    pub fn from_json(value: &Json) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    fn by_identity(&self) -> BTreeMap<ObjectRef, &ChartDocument> {
        self.documents
            .iter()
            .map(|d| (identity(&d.object), d))
            .collect()
    }
}

/// Template functions whose result differs from one render to the next with the same inputs
/// (keys, certificates, random strings, the time, hashes with a random salt).
pub const GENERATING_FUNCTIONS: &[&str] = &[
    "ago",
    "bcrypt",
    "encryptAES",
    "genCA",
    "genCAWithKey",
    "genPrivateKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "getHostByName",
    "htpasswd",
    "now",
    "randAlpha",
    "randAlphaNum",
    "randAscii",
    "randBytes",
    "randInt",
    "randNumeric",
    "shuffle",
    "uuidv4",
];

/// The first generating function (see [`GENERATING_FUNCTIONS`]) that a template action of
/// `text` calls, if any. Only `{{ ... }}` actions are looked at (comments and string literals
/// skipped); a name after `.` or `$` is a field or a variable, not a call.
pub fn generating_call(text: &str) -> Option<&'static str> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(len) = after.find("}}") else {
            break;
        };
        let action = &after[..len];
        rest = &after[len + 2..];
        let body = action.trim_start_matches('-').trim_start();
        if body.starts_with("/*") {
            continue;
        }
        if let Some(found) = called_in(body) {
            return Some(found);
        }
    }
    None
}

fn called_in(action: &str) -> Option<&'static str> {
    let bytes = action.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        // String literals are text, not calls.
        if let quote @ (b'"' | b'`') = bytes[i] {
            i += 1;
            while i < bytes.len() && bytes[i] != quote {
                i += if bytes[i] == b'\\' && quote == b'"' {
                    2
                } else {
                    1
                };
            }
            i += 1;
            continue;
        }
        if !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let before = start.checked_sub(1).map(|j| bytes[j]);
        if matches!(before, Some(b'.' | b'$')) || bytes[start].is_ascii_digit() {
            continue;
        }
        let word = &action[start..i];
        if let Some(f) = GENERATING_FUNCTIONS.iter().find(|f| **f == word) {
            return Some(f);
        }
    }
    None
}

/// Pairs the documents of two renders with the same inputs (by identity) and returns, for
/// each document of `first`, the paths that differ in `second`. A document missing from
/// `second` is volatile as a whole (path `""`).
pub fn volatile_paths(
    first: &[(Option<String>, Json)],
    second: &[(Option<String>, Json)],
) -> Vec<BTreeSet<String>> {
    super::objects::differing_paths(first, second, |_| BTreeSet::from([String::new()]))
}

/// Why volatile values could not be carried over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarryOver {
    /// The node has no volatile paths.
    NothingVolatile,
    /// Every volatile value now comes from the previous output.
    CarriedOver,
    /// Nothing was carried over; the reason names the first object or path that was missing.
    Regenerated { reason: String },
}

/// Carries the previous values of all volatile paths over into `output`, all or nothing.
pub fn carry_over(output: &mut ChartOutput, previous: Option<&ChartOutput>) -> CarryOver {
    if output.documents.iter().all(|d| d.volatile_paths.is_empty()) {
        return CarryOver::NothingVolatile;
    }
    let Some(previous) = previous else {
        return CarryOver::Regenerated {
            reason: "no previous render to take generated material from".into(),
        };
    };
    let previous = previous.by_identity();
    let mut updates: Vec<(usize, String, Json)> = Vec::new();
    for (i, doc) in output.documents.iter().enumerate() {
        if doc.volatile_paths.is_empty() {
            continue;
        }
        let id = identity(&doc.object);
        let Some(before) = previous.get(&id) else {
            return CarryOver::Regenerated {
                reason: format!("{} is new", id.short()),
            };
        };
        for path in &doc.volatile_paths {
            match before.object.pointer(path) {
                Some(value) if doc.object.pointer(path).is_some() => {
                    updates.push((i, path.clone(), value.clone()))
                }
                _ => {
                    return CarryOver::Regenerated {
                        reason: format!("{} has no `{path}` in both renders", id.short()),
                    };
                }
            }
        }
    }
    for (i, path, value) in updates {
        if let Some(slot) = output.documents[i].object.pointer_mut(&path) {
            *slot = value;
        }
    }
    output.carried_over = true;
    CarryOver::CarriedOver
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(name: &str, crt: &str, bundle: &str) -> Vec<(Option<String>, Json)> {
        vec![
            (
                None,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                       "data": {"tls.crt": crt}, "type": "kubernetes.io/tls"}),
            ),
            (
                None,
                json!({"apiVersion": "admissionregistration.k8s.io/v1",
                       "kind": "MutatingWebhookConfiguration", "metadata": {"name": "w"},
                       "webhooks": [{"clientConfig": {"caBundle": bundle}}]}),
            ),
        ]
    }

    fn output(docs: Vec<(Option<String>, Json)>, volatile: &[BTreeSet<String>]) -> ChartOutput {
        ChartOutput {
            documents: docs
                .into_iter()
                .zip(volatile)
                .map(|((source, object), v)| ChartDocument {
                    source,
                    object,
                    volatile_paths: v.clone(),
                    sensitive_paths: BTreeSet::new(),
                })
                .collect(),
            carried_over: false,
            volatile_unknown: false,
        }
    }

    #[test]
    fn generating_calls_are_found_in_actions_only() {
        let tpl = |t: &str| generating_call(t);
        assert_eq!(tpl("{{- $ca := genCA \"x\" 365 -}}"), Some("genCA"));
        assert_eq!(
            tpl("a: {{ randAlphaNum 16 | b64enc }}"),
            Some("randAlphaNum")
        );
        assert_eq!(tpl("at: {{ now | date \"2006\" }}"), Some("now"));
        // Text, comments, fields, variables and strings are not calls.
        assert_eq!(tpl("description: generated now, with genCA"), None);
        assert_eq!(tpl("{{/* genCA now */}} {{- /* uuidv4 */ -}}"), None);
        assert_eq!(
            tpl("{{ .Values.now }} {{ $now := 1 }} {{ include \"now\" . }}"),
            None
        );
        assert_eq!(tpl("{{ printf \"%s\" `randAlpha` }} {{ nowhere }}"), None);
    }

    #[test]
    fn volatile_paths_come_from_two_renders() {
        let v = volatile_paths(&doc("s", "A", "X"), &doc("s", "B", "Y"));
        assert_eq!(v[0].iter().collect::<Vec<_>>(), ["/data/tls.crt"]);
        assert_eq!(
            v[1].iter().collect::<Vec<_>>(),
            ["/webhooks/0/clientConfig/caBundle"]
        );
    }

    #[test]
    fn carries_over_all_volatile_paths_together() {
        let v = volatile_paths(&doc("s", "A", "X"), &doc("s", "B", "Y"));
        let previous = output(doc("s", "OLD", "OLDCA"), &v);
        let mut new = output(doc("s", "A", "X"), &v);
        assert_eq!(
            carry_over(&mut new, Some(&previous)),
            CarryOver::CarriedOver
        );
        assert_eq!(new.documents[0].object["data"]["tls.crt"], "OLD");
        assert_eq!(
            new.documents[1].object["webhooks"][0]["clientConfig"]["caBundle"],
            "OLDCA"
        );
        assert!(new.carried_over);
    }

    #[test]
    fn nothing_is_carried_when_one_object_is_new() {
        let v = volatile_paths(&doc("s", "A", "X"), &doc("s", "B", "Y"));
        let mut previous = output(doc("s", "OLD", "OLDCA"), &v);
        previous.documents.remove(1);
        let mut new = output(doc("s", "A", "X"), &v);
        let r = carry_over(&mut new, Some(&previous));
        assert!(
            matches!(&r, CarryOver::Regenerated { reason } if reason.contains("MutatingWebhookConfiguration/w is new")),
            "{r:?}"
        );
        // Not even the certificate is carried over: it would not match the new caBundle.
        assert_eq!(new.documents[0].object["data"]["tls.crt"], "A");
        assert!(!new.carried_over);
    }
}
