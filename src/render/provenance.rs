//! Masking by provenance: which fields of a chart's output were derived from its sensitive
//! inputs.
//!
//! 1. The values of a helm node know which of their leaves were built from a sensitive input
//!    (a sensitive read, a Secret's data): the render scope marks them while evaluating.
//! 2. Those leaves get a *canary* ([`canary_values`]): every occurrence of a sensitive value in
//!    the leaf is replaced by a value of the same shape ([`canary`]: each letter and digit
//!    moved to the next one of its class, everything else — punctuation, whitespace, line
//!    breaks, PEM armour lines, the rest of the leaf — kept), so a chart that checks a prefix,
//!    a length or a format takes the canary as it takes the value.
//! 3. The chart is rendered with the canary values, at the same time as with the real ones;
//!    documents are paired by identity and every path whose value differs between the two
//!    renders is sensitive ([`sensitive_paths`]): the copies of the value however the chart
//!    transformed them (re-indented, quoted, base64-encoded, embedded in JSON or YAML,
//!    hashed). A document that only one render holds is sensitive as a whole (everything but
//!    its identity).
//! 4. The result is kept with the chart output in the render cache, so a warm plan does not
//!    pay for the second render again.
//!
//! When the chart refuses the canary (helm fails), the node keeps only the second net, the
//! derived forms of [`super::masking`].
//!
//! Generated material (keys, certificates, random tokens) differs between any two renders, so
//! the canary render changes it too. When the real render was paired with a second identical
//! one, those fields are known ([`super::stability`]) and left out; when the chart was rendered
//! once (no previous render of the node), they cannot be told apart from derived fields and are
//! sensitive too: over-masking generated key material rather than showing a derived field.
//!
//! Pure: no I/O.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::json::push_segment;

/// A value of the same shape as `value` and different from it wherever it holds a letter or
/// a digit: each moves to the next of its class (`a`→`b`, `z`→`a`, `9`→`0`). Lines that are
/// PEM armour (`-----BEGIN ...-----`) are kept, so a PEM stays a PEM.
pub fn canary(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for line in value.split_inclusive('\n') {
        if line.trim_start().starts_with("-----") {
            out.push_str(line);
            continue;
        }
        out.extend(line.chars().map(|c| match c {
            'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            other => other,
        }));
    }
    out
}

/// `values` with a canary at every path of `sensitive_paths` (see the module). `secrets` are
/// the sensitive values known: inside a leaf only their occurrences are replaced; a leaf that
/// holds none of them (a value built from one in a way the leaf does not show) is replaced
/// whole. None when nothing changed (no such path, or no letter or digit to change).
pub fn canary_values(
    values: &Json,
    sensitive_paths: &BTreeSet<String>,
    secrets: &[String],
) -> Option<Json> {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    // Longest first: a secret inside another is replaced as part of the longer one.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = values.clone();
    for path in sensitive_paths {
        if let Some(slot) = out.pointer_mut(path) {
            replace_in(slot, &secrets);
        }
    }
    (out != *values).then_some(out)
}

fn replace_in(value: &mut Json, secrets: &[&str]) {
    match value {
        Json::String(s) => {
            let found: Vec<&&str> = secrets.iter().filter(|x| s.contains(**x)).collect();
            *s = if found.is_empty() {
                canary(s)
            } else {
                found.iter().fold(s.clone(), |text, secret| {
                    text.replace(**secret, &canary(secret))
                })
            };
        }
        Json::Number(n) => {
            if let Ok(parsed) = serde_json::from_str::<Json>(&canary(&n.to_string())) {
                *value = parsed;
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|v| replace_in(v, secrets)),
        Json::Object(map) => map.values_mut().for_each(|v| replace_in(v, secrets)),
        Json::Bool(_) | Json::Null => {}
    }
}

/// For each document of `real`, the paths that differ in `canary` (the render with canary
/// values): the fields derived from the sensitive inputs. A document the canary render does
/// not hold is sensitive as a whole, but for its identity.
pub fn sensitive_paths(
    real: &[(Option<String>, Json)],
    canary: &[(Option<String>, Json)],
) -> Vec<BTreeSet<String>> {
    super::objects::differing_paths(real, canary, all_but_identity)
}

/// Every top-level field of `object` but `apiVersion`, `kind` and `metadata`.
fn all_but_identity(object: &Json) -> BTreeSet<String> {
    object
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
        .map(|k| push_segment("", k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masking_canaries_keep_the_shape() {
        assert_eq!(canary("abz-AZ_09"), "bca-BA_10");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB+z/9\n-----END CERTIFICATE-----\n";
        assert_eq!(
            canary(pem),
            "-----BEGIN CERTIFICATE-----\nNJJC+a/0\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(canary("https://"), "iuuqt://");
    }

    #[test]
    fn masking_canary_values_replace_only_the_secret_inside_a_leaf() {
        let values = json!({
            "url": "https://user:s3cret@example.com",
            "whole": "derived",
            "port": 8443,
            "nested": {"list": ["s3cret", "other"]},
            "plain": "s3cret",
        });
        let paths: BTreeSet<String> = ["/url", "/whole", "/port", "/nested"]
            .into_iter()
            .map(String::from)
            .collect();
        let c = canary_values(&values, &paths, &["s3cret".to_owned()]).unwrap();
        assert_eq!(c["url"], "https://user:t4dsfu@example.com");
        assert_eq!(c["whole"], "efsjwfe");
        assert_eq!(c["port"], 9554);
        assert_eq!(c["nested"]["list"], json!(["t4dsfu", "puifs"]));
        // Not a sensitive path: left alone.
        assert_eq!(c["plain"], "s3cret");
        assert_eq!(canary_values(&values, &BTreeSet::new(), &[]), None);
    }

    fn doc(name: &str, data: Json) -> (Option<String>, Json) {
        (
            None,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": "d"}, "data": data}),
        )
    }

    #[test]
    fn masking_provenance_marks_what_differs_and_unpaired_documents() {
        let real = [
            doc(
                "a",
                json!({"k": "v", "b64": "czNjcmV0", "json": "{\"p\":\"s3cret\"}"}),
            ),
            doc("only-real", json!({"x": "1"})),
        ];
        let canary = [doc(
            "a",
            json!({"k": "v", "b64": "dDRkc2Z1", "json": "{\"p\":\"t4dsfu\"}"}),
        )];
        let paths = sensitive_paths(&real, &canary);
        assert_eq!(
            paths[0].iter().collect::<Vec<_>>(),
            ["/data/b64", "/data/json"]
        );
        assert_eq!(paths[1].iter().collect::<Vec<_>>(), ["/data"]);
    }
}
