//! Placeholders for values known only during apply, so that a helm node whose values use one
//! is still rendered at plan time and its objects appear in the plan (Terraform's "known
//! after apply").
//!
//! 1. Every `${read.NAME.value}` that is unknown is replaced by a placeholder
//!    ([`PlaceholderScope`]): a PEM-shaped certificate when the read selects a certificate
//!    (its key or last field ends in `.crt`, `.pem` or `.cert`, like the `ca.crt` of a
//!    cert-manager Secret), else a plain marker string. A template that embeds the reference
//!    gets the placeholder in its place (`"pre-${read.x.value}"` → `"pre-<placeholder>"`).
//!    Both shapes are non-empty, so a chart's `required` passes; the PEM shape also passes a
//!    chart that checks for `-----BEGIN CERTIFICATE-----`. A chart that parses the value (or
//!    refuses it in its schema or with `fail`) refuses the placeholder: the node is then
//!    rendered during apply, with the chart's message as the reason.
//! 2. The chart is rendered with two different sets of placeholders ([`Variant::A`] and
//!    [`Variant::B`]). Documents are paired by identity; every path whose value differs between
//!    the two renders is *known after apply* ([`unknown_paths`]): the embedded copies of the
//!    value and what the chart derives from it (a `sha256sum` annotation, a base64 copy) — and
//!    the material a chart generates anew on every render, which is known only after apply
//!    too.
//! 3. When the two renders do not hold the same objects (an object's name or presence depends
//!    on the value), the node is rendered during apply instead ([`unknown_paths`] says why).
//!
//! Pure: no I/O.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use crate::model::{Lookup, NodeKind, NodeSpec, ObjectRef, Plan, ReadSelect, Reference, Scope};

use super::objects::identity;
use super::scope::RenderScope;

/// Which of the two placeholder renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    A,
    B,
}

impl Variant {
    fn tag(self) -> &'static str {
        match self {
            Variant::A => "a",
            Variant::B => "b",
        }
    }
}

/// The placeholder of an unknown read value. `pem`: shaped like a PEM certificate.
pub fn placeholder(variant: Variant, read: &str, pem: bool) -> String {
    if pem {
        // A syntactically plausible PEM block whose body (base64 of a marker) differs per
        // variant and per read.
        let marker = format!("meshplan placeholder {} for {read}", variant.tag());
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, marker);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in body.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    } else {
        format!("meshplan-placeholder-{}-{read}", variant.tag())
    }
}

/// Whether a read selects a certificate (its key or last field ends in `.crt`, `.pem` or
/// `.cert`).
fn selects_certificate(select: &ReadSelect) -> bool {
    let last = match select {
        ReadSelect::Key(key) => key.as_str(),
        ReadSelect::Field(path) => path.last().map(String::as_str).unwrap_or_default(),
    };
    let last = last.to_ascii_lowercase();
    [".crt", ".pem", ".cert"].iter().any(|s| last.ends_with(s)) || last == "crt" || last == "pem"
}

/// The render scope with a placeholder for every read value that is unknown.
#[derive(Debug, Clone, Copy)]
pub struct PlaceholderScope<'a> {
    pub inner: RenderScope<'a>,
    pub plan: &'a Plan,
    pub variant: Variant,
}

impl Scope for PlaceholderScope<'_> {
    fn lookup(&self, reference: &Reference) -> Lookup {
        match self.inner.lookup(reference) {
            Lookup::Unknown => match reference {
                Reference::Node { address, .. } if address.kind == NodeKind::Read => {
                    let pem = matches!(
                        self.plan.node(address).map(|n| &n.spec),
                        Some(NodeSpec::Read(read)) if selects_certificate(&read.select)
                    );
                    Lookup::Known(Json::String(placeholder(self.variant, &address.name, pem)))
                }
                _ => Lookup::Unknown,
            },
            other => other,
        }
    }
}

/// Why the two placeholder renders cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotComparable {
    pub reason: String,
}

/// For each document of `a`, the paths whose values differ in `b` (the fields known after
/// apply). Fails when the two renders do not hold the same objects.
pub fn unknown_paths(
    a: &[(Option<String>, Json)],
    b: &[(Option<String>, Json)],
) -> Result<Vec<BTreeSet<String>>, NotComparable> {
    let ids = |docs: &[(Option<String>, Json)]| -> Vec<ObjectRef> {
        docs.iter().map(|(_, o)| identity(o)).collect()
    };
    let (ids_a, ids_b) = (ids(a), ids(b));
    let set_a: BTreeSet<&ObjectRef> = ids_a.iter().collect();
    let set_b: BTreeSet<&ObjectRef> = ids_b.iter().collect();
    if set_a.len() != ids_a.len() || set_a != set_b {
        let differs = set_a
            .symmetric_difference(&set_b)
            .next()
            .map(|o| format!(" ({} depends on it)", o.short()))
            .unwrap_or_default();
        return Err(NotComparable {
            reason: format!("the chart's objects depend on the value{differs}"),
        });
    }
    Ok(super::objects::differing_paths(a, b, |_| {
        BTreeSet::from([String::new()])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_differ_per_variant_and_pem_ones_look_like_certificates() {
        let a = placeholder(Variant::A, "trust_anchor", true);
        let b = placeholder(Variant::B, "trust_anchor", true);
        assert_ne!(a, b);
        assert!(a.starts_with("-----BEGIN CERTIFICATE-----\n"), "{a}");
        assert!(a.ends_with("\n-----END CERTIFICATE-----\n"), "{a}");
        assert_eq!(
            placeholder(Variant::A, "mode", false),
            "meshplan-placeholder-a-mode"
        );
        assert!(selects_certificate(&ReadSelect::Key("ca.crt".into())));
        assert!(selects_certificate(&ReadSelect::Key("tls.PEM".into())));
        assert!(!selects_certificate(&ReadSelect::Key("token".into())));
        assert!(selects_certificate(&ReadSelect::Field(vec![
            "data".into(),
            "ca.crt".into()
        ])));
    }

    fn doc(name: &str, data: Json) -> (Option<String>, Json) {
        (
            None,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": "d"}, "data": data}),
        )
    }

    #[test]
    fn paths_that_differ_between_the_variants_are_unknown() {
        let a = [
            doc("same", json!({"k": "v"})),
            doc("uses", json!({"pem": "A", "sum": "1", "k": "v"})),
        ];
        let b = [
            doc("uses", json!({"pem": "B", "sum": "2", "k": "v"})),
            doc("same", json!({"k": "v"})),
        ];
        let paths = unknown_paths(&a, &b).unwrap();
        assert!(paths[0].is_empty());
        assert_eq!(
            paths[1],
            BTreeSet::from(["/data/pem".to_owned(), "/data/sum".to_owned()])
        );
    }

    #[test]
    fn objects_that_depend_on_the_value_are_not_comparable() {
        let a = [doc("x-A", json!({}))];
        let b = [doc("x-B", json!({}))];
        let err = unknown_paths(&a, &b).unwrap_err();
        assert!(err.reason.contains("depend on the value"), "{}", err.reason);
        assert!(unknown_paths(&a, &[]).is_err());
    }
}
