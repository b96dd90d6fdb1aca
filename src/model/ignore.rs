//! Ignore rules: fields of some objects that meshplan neither compares nor owns.
//!
//! A rule names objects (by node, kind, name, namespace) and fields (JSON pointers, `*` for
//! any one key or list index). The render drops the fields from the objects it produces, so
//! that server-side apply gives them up on the next apply (another manager, an HPA, a
//! controller, keeps them); the plan and drift never compare them.
//!
//! - [`IgnoreRule`]: a rule of the plan file (`[[ignore]]` for the whole plan, `ignore = [...]`
//!   in a manifest or helm node), validated by the model builder;
//! - [`BUILTIN_RULES`]: fields that well-known controllers write, ignored without a rule
//!   (cert-manager's CA injector writing `caBundle`, an HPA owning `replicas`);
//! - [`IgnoredFields::of`]: the pointers ignored for one object of one node, with where each
//!   comes from; [`IgnoredFields::remove_from`] drops them from a body;
//!   [`IgnoredFields::covers`] says whether a field lies under one of them.
//!
//! Pure: no I/O.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::planfile::Span;

use super::address::Address;

/// The labels and annotations render puts on every object to mark it as the plan's
/// (`render::MANAGED_BY_LABEL`, `render::PLAN_ANNOTATION`, `render::NODE_ANNOTATION`).
const OWNERSHIP_LABELS: &[&str] = &["app.kubernetes.io/managed-by"];
const OWNERSHIP_ANNOTATIONS: &[&str] = &["meshplan.io/plan", "meshplan.io/node"];

/// Whether `key` of an object's `metadata.<map>` (`labels` or `annotations`) is one of the
/// ownership marks render puts on every object.
pub fn is_ownership_mark(map: &str, key: &str) -> bool {
    match map {
        "labels" => OWNERSHIP_LABELS.contains(&key),
        "annotations" => OWNERSHIP_ANNOTATIONS.contains(&key),
        _ => false,
    }
}

/// One segment of an ignore pointer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    /// A key of an object, or an index of a list when it is a number.
    Key(String),
    /// `*`: any key or index.
    Any,
}

/// A JSON pointer (RFC 6901) whose segments may be `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPointer {
    segments: Vec<Segment>,
}

/// Why a pointer cannot be an ignore pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointerError {
    NoLeadingSlash,
    EmptySegment,
    BadEscape(String),
    Identity,
    OwnershipMark,
}

impl fmt::Display for PointerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLeadingSlash => f.write_str("a JSON pointer starts with `/`"),
            Self::EmptySegment => f.write_str("a JSON pointer has no empty segment (`//` or a trailing `/`)"),
            Self::BadEscape(s) => write!(f, "`{s}` is not a valid escape (`~0` is `~`, `~1` is `/`)"),
            Self::Identity => f.write_str("the identity of an object (apiVersion, kind, metadata, name, namespace) cannot be ignored"),
            Self::OwnershipMark => f.write_str("meshplan's ownership marks (the managed-by label, the meshplan.io annotations) cannot be ignored"),
        }
    }
}

impl FieldPointer {
    /// Parses `/spec/replicas`, `/webhooks/*/clientConfig/caBundle`,
    /// `/metadata/annotations/example.com~1note`.
    pub fn parse(text: &str) -> Result<Self, PointerError> {
        let rest = text.strip_prefix('/').ok_or(PointerError::NoLeadingSlash)?;
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw.is_empty() {
                return Err(PointerError::EmptySegment);
            }
            if raw == "*" {
                segments.push(Segment::Any);
                continue;
            }
            let mut key = String::new();
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => key.push('~'),
                        Some('1') => key.push('/'),
                        _ => return Err(PointerError::BadEscape(raw.to_owned())),
                    }
                } else {
                    key.push(c);
                }
            }
            segments.push(Segment::Key(key));
        }
        let pointer = Self { segments };
        let keys: Vec<Option<&str>> = pointer
            .segments
            .iter()
            .map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                Segment::Any => None,
            })
            .collect();
        match keys.as_slice() {
            [Some("apiVersion" | "kind" | "metadata")]
            | [Some("metadata"), Some("name" | "namespace")] => return Err(PointerError::Identity),
            [Some("metadata"), Some("labels" | "annotations")]
            | [Some("metadata"), Some("labels" | "annotations"), None] => {
                return Err(PointerError::OwnershipMark);
            }
            [Some("metadata"), Some("labels"), Some(k)] if OWNERSHIP_LABELS.contains(k) => {
                return Err(PointerError::OwnershipMark);
            }
            [Some("metadata"), Some("annotations"), Some(k)]
                if OWNERSHIP_ANNOTATIONS.contains(k) =>
            {
                return Err(PointerError::OwnershipMark);
            }
            _ => {}
        }
        Ok(pointer)
    }

    /// Whether the field at `path` (JSON pointer segments) is this pointer's field or lies
    /// under it.
    pub fn covers(&self, path: &[String]) -> bool {
        path.len() >= self.segments.len()
            && self.segments.iter().zip(path).all(|(s, p)| match s {
                Segment::Any => true,
                Segment::Key(k) => k == p,
            })
    }

    /// Removes the fields this pointer names from `body`; returns whether anything went.
    pub fn remove_from(&self, body: &mut Value) -> bool {
        fn walk(value: &mut Value, segments: &[Segment]) -> bool {
            let Some((first, rest)) = segments.split_first() else {
                return false;
            };
            let last = rest.is_empty();
            match (value, first) {
                (Value::Object(map), Segment::Key(k)) => {
                    if last {
                        map.remove(k).is_some()
                    } else {
                        map.get_mut(k).is_some_and(|v| walk(v, rest))
                    }
                }
                (Value::Object(map), Segment::Any) => {
                    if last {
                        let any = !map.is_empty();
                        map.clear();
                        any
                    } else {
                        map.values_mut().fold(false, |acc, v| walk(v, rest) | acc)
                    }
                }
                (Value::Array(items), Segment::Key(k)) => {
                    let Ok(i) = k.parse::<usize>() else {
                        return false;
                    };
                    if last {
                        if i < items.len() {
                            items.remove(i);
                            true
                        } else {
                            false
                        }
                    } else {
                        items.get_mut(i).is_some_and(|v| walk(v, rest))
                    }
                }
                (Value::Array(items), Segment::Any) => {
                    if last {
                        let any = !items.is_empty();
                        items.clear();
                        any
                    } else {
                        items.iter_mut().fold(false, |acc, v| walk(v, rest) | acc)
                    }
                }
                _ => false,
            }
        }
        walk(body, &self.segments)
    }
}

impl fmt::Display for FieldPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            match s {
                Segment::Any => f.write_str("/*")?,
                Segment::Key(k) => write!(f, "/{}", k.replace('~', "~0").replace('/', "~1"))?,
            }
        }
        Ok(())
    }
}

/// An ignore rule of the plan file.
#[derive(Debug, Clone, PartialEq)]
pub struct IgnoreRule {
    /// The node whose objects it covers (None: a plan-wide `[[ignore]]`).
    pub node: Option<Address>,
    /// The object's kind (`Deployment`); None: every kind (node rules only).
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub fields: Vec<FieldPointer>,
    /// Why, as written (shown in reports).
    pub reason: Option<String>,
    /// The rule in the plan file.
    pub span: Span,
}

impl IgnoreRule {
    /// Whether the rule covers `object` of node `node`.
    pub fn matches(&self, node: &str, object: &crate::cluster::ObjectRef) -> bool {
        self.node.as_ref().is_none_or(|a| a.to_string() == node)
            && self.kind.as_deref().is_none_or(|k| k == object.kind)
            && self.name.as_deref().is_none_or(|n| n == object.name)
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| object.namespace.as_deref() == Some(n))
    }
}

/// When a built-in rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinWhen {
    /// The object carries one of these annotations.
    Annotated(&'static [&'static str]),
    /// A HorizontalPodAutoscaler of the same plan scales the object.
    ScaledByHpa,
}

/// A field that a well-known controller writes: ignored without a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinRule {
    /// A stable name, shown in reports.
    pub id: &'static str,
    /// (API group, kind) of the objects it covers.
    pub kinds: &'static [(&'static str, &'static str)],
    /// The fields (ignore pointers).
    pub fields: &'static [&'static str],
    pub when: BuiltinWhen,
    /// Why (listed in docs/drift.md).
    pub reason: &'static str,
}

/// The annotations that ask cert-manager's CA injector to fill in a CA bundle.
const CA_INJECTION: &[&str] = &[
    "cert-manager.io/inject-ca-from",
    "cert-manager.io/inject-ca-from-secret",
    "cert-manager.io/inject-apiserver-ca",
];

/// The built-in rules (each one documented in docs/drift.md).
pub const BUILTIN_RULES: &[BuiltinRule] = &[
    BuiltinRule {
        id: "cainjector-webhook-ca-bundle",
        kinds: &[
            (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
            ),
            (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
            ),
        ],
        fields: &["/webhooks/*/clientConfig/caBundle"],
        when: BuiltinWhen::Annotated(CA_INJECTION),
        reason: "cert-manager's CA injector writes the CA bundle of a webhook annotated cert-manager.io/inject-ca-from(-secret)",
    },
    BuiltinRule {
        id: "cainjector-crd-conversion-ca-bundle",
        kinds: &[("apiextensions.k8s.io", "CustomResourceDefinition")],
        fields: &["/spec/conversion/webhook/clientConfig/caBundle"],
        when: BuiltinWhen::Annotated(CA_INJECTION),
        reason: "cert-manager's CA injector writes the CA bundle of a CRD's conversion webhook when the CRD is annotated cert-manager.io/inject-ca-from(-secret)",
    },
    BuiltinRule {
        id: "cainjector-apiservice-ca-bundle",
        kinds: &[("apiregistration.k8s.io", "APIService")],
        fields: &["/spec/caBundle"],
        when: BuiltinWhen::Annotated(CA_INJECTION),
        reason: "cert-manager's CA injector writes the CA bundle of an APIService annotated cert-manager.io/inject-ca-from(-secret)",
    },
    BuiltinRule {
        id: "hpa-replicas",
        kinds: &[
            ("apps", "Deployment"),
            ("apps", "StatefulSet"),
            ("apps", "ReplicaSet"),
        ],
        fields: &["/spec/replicas"],
        when: BuiltinWhen::ScaledByHpa,
        reason: "a HorizontalPodAutoscaler of the plan sets the replica count of the workload it scales",
    },
];

/// Facts about the whole set of objects that built-in rules need: the workloads a
/// HorizontalPodAutoscaler scales, as (namespace, kind, name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreFacts {
    scaled: BTreeSet<(String, String, String)>,
}

impl IgnoreFacts {
    /// Learns the scale targets of the HorizontalPodAutoscalers among `objects`; an HPA
    /// without a namespace is in `default_namespace` (its node's).
    pub fn learn<'a>(
        &mut self,
        objects: impl IntoIterator<Item = &'a Value>,
        default_namespace: Option<&str>,
    ) {
        for o in objects {
            if o.get("kind").and_then(Value::as_str) != Some("HorizontalPodAutoscaler") {
                continue;
            }
            let text = |p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_owned);
            if let (Some(kind), Some(name)) = (
                text("/spec/scaleTargetRef/kind"),
                text("/spec/scaleTargetRef/name"),
            ) {
                let namespace = text("/metadata/namespace")
                    .filter(|n| !n.is_empty())
                    .or_else(|| default_namespace.map(str::to_owned))
                    .unwrap_or_default();
                self.scaled.insert((namespace, kind, name));
            }
        }
    }

    fn is_scaled(&self, object: &crate::cluster::ObjectRef) -> bool {
        self.scaled.contains(&(
            object.namespace.clone().unwrap_or_default(),
            object.kind.clone(),
            object.name.clone(),
        ))
    }
}

/// Where an ignored field comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum IgnoreOrigin {
    /// A rule of the plan file.
    Plan {
        reason: Option<String>,
        span: Span,
    },
    Builtin(&'static BuiltinRule),
}

impl IgnoreOrigin {
    /// `built-in rule hpa-replicas` or `plan rule (reason)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Builtin(rule) => format!("built-in rule {}", rule.id),
            Self::Plan {
                reason: Some(reason),
                ..
            } => format!("ignore rule of the plan ({reason})"),
            Self::Plan { reason: None, .. } => "ignore rule of the plan".to_owned(),
        }
    }
}

/// The fields ignored for one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IgnoredFields {
    pub fields: Vec<(FieldPointer, IgnoreOrigin)>,
}

impl IgnoredFields {
    /// The ignored fields of `body` (the object, as rendered or last applied) of node
    /// `node`: every matching rule of `rules` (the node's and the plan's) and the built-in
    /// rules that apply.
    pub fn of<'r>(
        rules: impl IntoIterator<Item = &'r IgnoreRule>,
        facts: &IgnoreFacts,
        node: &str,
        body: &Value,
    ) -> Self {
        let Some(object) = crate::cluster::ObjectRef::from_object(body) else {
            return Self::default();
        };
        let mut fields = Vec::new();
        for rule in rules {
            if rule.matches(node, &object) {
                for f in &rule.fields {
                    fields.push((
                        f.clone(),
                        IgnoreOrigin::Plan {
                            reason: rule.reason.clone(),
                            span: rule.span.clone(),
                        },
                    ));
                }
            }
        }
        let group = object.group();
        for rule in BUILTIN_RULES {
            if !rule
                .kinds
                .iter()
                .any(|(g, k)| *g == group && *k == object.kind)
            {
                continue;
            }
            let applies = match rule.when {
                BuiltinWhen::Annotated(keys) => keys.iter().any(|k| {
                    body.pointer("/metadata/annotations")
                        .and_then(|a| a.get(*k))
                        .is_some()
                }),
                BuiltinWhen::ScaledByHpa => facts.is_scaled(&object),
            };
            if applies {
                for f in rule.fields {
                    if let Ok(pointer) = FieldPointer::parse(f) {
                        fields.push((pointer, IgnoreOrigin::Builtin(rule)));
                    }
                }
            }
        }
        Self { fields }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The rule that covers the field at `path` (JSON pointer segments), if any.
    pub fn covers(&self, path: &[String]) -> Option<&IgnoreOrigin> {
        self.fields
            .iter()
            .find(|(p, _)| p.covers(path))
            .map(|(_, origin)| origin)
    }

    /// Drops the ignored fields from `body`; returns the pointers that removed something.
    pub fn remove_from(&self, body: &mut Value) -> Vec<&FieldPointer> {
        self.fields
            .iter()
            .filter_map(|(p, _)| p.remove_from(body).then_some(p))
            .collect()
    }
}

/// JSON pointer segments of a pointer string (`/a/b~1c` → `["a", "b/c"]`).
pub fn pointer_segments(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::planfile::FileId;

    fn rule(kind: Option<&str>, name: Option<&str>, fields: &[&str]) -> IgnoreRule {
        IgnoreRule {
            node: None,
            kind: kind.map(str::to_owned),
            name: name.map(str::to_owned),
            namespace: None,
            fields: fields
                .iter()
                .map(|f| FieldPointer::parse(f).unwrap())
                .collect(),
            reason: Some("scaled by hand".into()),
            span: Span::file_start(FileId(0)),
        }
    }

    fn segments(p: &str) -> Vec<String> {
        pointer_segments(p)
    }

    #[test]
    fn pointers_parse_with_escapes_and_wildcards() {
        let p = FieldPointer::parse("/webhooks/*/clientConfig/caBundle").unwrap();
        assert_eq!(p.to_string(), "/webhooks/*/clientConfig/caBundle");
        assert!(p.covers(&segments("/webhooks/0/clientConfig/caBundle")));
        assert!(!p.covers(&segments("/webhooks/0/clientConfig/service")));
        let p = FieldPointer::parse("/metadata/annotations/example.com~1note").unwrap();
        assert!(p.covers(&segments("/metadata/annotations/example.com~1note")));
        assert_eq!(p.to_string(), "/metadata/annotations/example.com~1note");
        assert!(
            FieldPointer::parse("/spec/template")
                .unwrap()
                .covers(&segments("/spec/template/spec/containers/0/image"))
        );
        for (bad, err) in [
            ("spec/replicas", PointerError::NoLeadingSlash),
            ("/spec//replicas", PointerError::EmptySegment),
            ("/spec/", PointerError::EmptySegment),
            ("/a~2b", PointerError::BadEscape("a~2b".into())),
            ("/metadata/name", PointerError::Identity),
            ("/kind", PointerError::Identity),
            ("/metadata/labels", PointerError::OwnershipMark),
            (
                "/metadata/labels/app.kubernetes.io~1managed-by",
                PointerError::OwnershipMark,
            ),
            (
                "/metadata/annotations/meshplan.io~1plan",
                PointerError::OwnershipMark,
            ),
            ("/metadata/labels/*", PointerError::OwnershipMark),
        ] {
            assert_eq!(FieldPointer::parse(bad), Err(err), "{bad}");
        }
        assert!(FieldPointer::parse("/metadata/labels/tier").is_ok());
    }

    #[test]
    fn the_ownership_marks_are_renders() {
        assert_eq!(OWNERSHIP_LABELS, [crate::render::MANAGED_BY_LABEL]);
        assert_eq!(
            OWNERSHIP_ANNOTATIONS,
            [
                crate::render::PLAN_ANNOTATION,
                crate::render::NODE_ANNOTATION
            ]
        );
    }

    #[test]
    fn removal_follows_keys_indices_and_wildcards() {
        let mut body = json!({"webhooks": [
            {"name": "a", "clientConfig": {"caBundle": "x", "service": {"name": "s"}}},
            {"name": "b", "clientConfig": {"service": {"name": "t"}}}
        ], "spec": {"replicas": 2, "list": [1, 2, 3]}});
        assert!(
            FieldPointer::parse("/webhooks/*/clientConfig/caBundle")
                .unwrap()
                .remove_from(&mut body)
        );
        assert!(
            body["webhooks"][0]["clientConfig"]
                .get("caBundle")
                .is_none()
        );
        assert_eq!(body["webhooks"][0]["clientConfig"]["service"]["name"], "s");
        assert!(
            FieldPointer::parse("/spec/list/1")
                .unwrap()
                .remove_from(&mut body)
        );
        assert_eq!(body["spec"]["list"], json!([1, 3]));
        assert!(
            !FieldPointer::parse("/spec/paused")
                .unwrap()
                .remove_from(&mut body)
        );
        assert!(
            FieldPointer::parse("/spec/replicas")
                .unwrap()
                .remove_from(&mut body)
        );
        assert_eq!(body["spec"], json!({"list": [1, 3]}));
    }

    #[test]
    fn plan_rules_match_by_node_kind_name_and_namespace() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "linkerd-viz"}, "spec": {"replicas": 1}});
        let facts = IgnoreFacts::default();
        let rules = [rule(Some("Deployment"), Some("web"), &["/spec/replicas"])];
        let ignored = IgnoredFields::of(&rules, &facts, "helm.linkerd_viz", &deployment);
        assert_eq!(ignored.fields.len(), 1);
        assert!(ignored.covers(&segments("/spec/replicas")).is_some());
        assert_eq!(
            ignored
                .covers(&segments("/spec/replicas"))
                .unwrap()
                .describe(),
            "ignore rule of the plan (scaled by hand)"
        );
        for other in [
            rule(Some("StatefulSet"), None, &["/spec/replicas"]),
            rule(Some("Deployment"), Some("tap"), &["/spec/replicas"]),
            IgnoreRule {
                namespace: Some("linkerd".into()),
                ..rule(Some("Deployment"), None, &["/spec/replicas"])
            },
            IgnoreRule {
                node: Address::parse("helm.other"),
                ..rule(None, None, &["/spec/replicas"])
            },
        ] {
            assert!(
                IgnoredFields::of([&other], &facts, "helm.linkerd_viz", &deployment).is_empty(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn builtin_rules_need_their_condition() {
        let webhook = |annotated: bool| {
            let mut w = json!({"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "w"},
                "webhooks": [{"name": "x", "clientConfig": {"caBundle": "Zm9v"}}]});
            if annotated {
                w["metadata"]["annotations"] =
                    json!({"cert-manager.io/inject-ca-from": "linkerd/linkerd-sp-validator"});
            }
            w
        };
        let facts = IgnoreFacts::default();
        assert!(IgnoredFields::of([], &facts, "helm.x", &webhook(false)).is_empty());
        let ignored = IgnoredFields::of([], &facts, "helm.x", &webhook(true));
        let mut body = webhook(true);
        assert_eq!(ignored.remove_from(&mut body).len(), 1);
        assert_eq!(body["webhooks"][0]["clientConfig"], json!({}));
        assert_eq!(
            ignored
                .covers(&segments("/webhooks/0/clientConfig/caBundle"))
                .unwrap()
                .describe(),
            "built-in rule cainjector-webhook-ca-bundle"
        );

        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "apps"}, "spec": {"replicas": 1}});
        assert!(IgnoredFields::of([], &facts, "helm.x", &deployment).is_empty());
        let mut facts = IgnoreFacts::default();
        facts.learn([&json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}})], None);
        let ignored = IgnoredFields::of([], &facts, "helm.x", &deployment);
        assert!(ignored.covers(&segments("/spec/replicas")).is_some());
    }
}
