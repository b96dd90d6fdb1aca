//! Finishing a rendered object: hook marks, namespace by kind scope, ownership marks,
//! sensitive paths, identity and digest.
//!
//! - Namespaced kinds without `metadata.namespace` get the node's namespace (or `default`).
//! - Cluster-scoped kinds lose a `metadata.namespace` they carry, as the API server ignores it
//!   (kubectl and helm send it and the server drops it); meshplan removes it so that the
//!   object's identity and digest match what the server keeps.
//! - Kinds of unknown scope are kept as written ([`KindScope::Unknown`]).
//! - Ownership marks: label `app.kubernetes.io/managed-by: meshplan` (it replaces the
//!   `Helm` value charts set, since meshplan, not helm, manages the release), annotations
//!   `meshplan.io/plan` and `meshplan.io/node`.
//! - Sensitive paths: `/data` and `/stringData` of Secrets, the paths the render derived from
//!   sensitive inputs, and every leaf that holds a sensitive value in one of its derived forms
//!   ([`super::masking`]).
//! - Ignored fields: the fields of the plan's ignore rules and of the built-in rules
//!   ([`crate::model::ignore`]) are dropped, so that server-side apply gives them up.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::model::ObjectRef;
use crate::model::ignore::{IgnoreFacts, IgnoreRule, IgnoredFields};

use super::json::{digest, leaves, push_segment, remove_pointer, set_pointer};
use super::kinds::{KindScope, PlanKinds};
use super::masking::SensitiveForms;
use super::scope::KNOWN_AFTER_APPLY;

/// Label that marks objects managed by meshplan.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "meshplan";
/// Annotation naming the plan.
pub const PLAN_ANNOTATION: &str = "meshplan.io/plan";
/// Annotation naming the node address.
pub const NODE_ANNOTATION: &str = "meshplan.io/node";

/// When a helm hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookPhase {
    PreInstall,
    PostInstall,
    PreUpgrade,
    PostUpgrade,
    PreDelete,
    PostDelete,
    PreRollback,
    PostRollback,
    Test,
}

impl HookPhase {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "pre-install" => Self::PreInstall,
            "post-install" => Self::PostInstall,
            "pre-upgrade" => Self::PreUpgrade,
            "post-upgrade" => Self::PostUpgrade,
            "pre-delete" => Self::PreDelete,
            "post-delete" => Self::PostDelete,
            "pre-rollback" => Self::PreRollback,
            "post-rollback" => Self::PostRollback,
            "test" | "test-success" => Self::Test,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreInstall => "pre-install",
            Self::PostInstall => "post-install",
            Self::PreUpgrade => "pre-upgrade",
            Self::PostUpgrade => "post-upgrade",
            Self::PreDelete => "pre-delete",
            Self::PostDelete => "post-delete",
            Self::PreRollback => "pre-rollback",
            Self::PostRollback => "post-rollback",
            Self::Test => "test",
        }
    }
}

/// What happens to a hook object once its phase ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookDeletePolicy {
    BeforeHookCreation,
    HookSucceeded,
    HookFailed,
}

impl HookDeletePolicy {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "before-hook-creation" => Self::BeforeHookCreation,
            "hook-succeeded" => Self::HookSucceeded,
            "hook-failed" => Self::HookFailed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BeforeHookCreation => "before-hook-creation",
            Self::HookSucceeded => "hook-succeeded",
            Self::HookFailed => "hook-failed",
        }
    }
}

/// A helm hook: `helm.sh/hook`, `helm.sh/hook-weight`, `helm.sh/hook-delete-policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// Sorted, unique.
    pub phases: Vec<HookPhase>,
    /// Lower weights run first (default 0).
    pub weight: i64,
    /// Sorted, unique; `before-hook-creation` when the chart sets none.
    pub delete_policies: Vec<HookDeletePolicy>,
}

/// A hook annotation meshplan does not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHook {
    pub annotation: &'static str,
    pub value: String,
}

/// The hook marks of an object, `Ok(None)` for an ordinary object.
pub fn hook_of(object: &Json) -> Result<Option<Hook>, BadHook> {
    let annotations = object.pointer("/metadata/annotations");
    let get = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    let Some(phases_text) = get("helm.sh/hook") else {
        return Ok(None);
    };
    let mut phases = Vec::new();
    for p in phases_text.split(',').filter(|p| !p.trim().is_empty()) {
        phases.push(HookPhase::parse(p).ok_or_else(|| BadHook {
            annotation: "helm.sh/hook",
            value: phases_text.clone(),
        })?);
    }
    phases.sort();
    phases.dedup();
    let weight = match get("helm.sh/hook-weight") {
        Some(w) => w.trim().parse::<i64>().map_err(|_| BadHook {
            annotation: "helm.sh/hook-weight",
            value: w.clone(),
        })?,
        None => 0,
    };
    let mut delete_policies = Vec::new();
    if let Some(text) = get("helm.sh/hook-delete-policy") {
        for p in text.split(',').filter(|p| !p.trim().is_empty()) {
            delete_policies.push(HookDeletePolicy::parse(p).ok_or_else(|| BadHook {
                annotation: "helm.sh/hook-delete-policy",
                value: text.clone(),
            })?);
        }
    }
    if delete_policies.is_empty() {
        delete_policies.push(HookDeletePolicy::BeforeHookCreation);
    }
    delete_policies.sort();
    delete_policies.dedup();
    Ok(Some(Hook {
        phases,
        weight,
        delete_policies,
    }))
}

/// Where the object's default namespace comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultNamespace {
    Known(String),
    /// The node's namespace is known only during apply.
    Unknown,
}

/// What [`finish`] needs to know about the node.
#[derive(Debug)]
pub struct FinishContext<'a> {
    pub plan_name: &'a str,
    pub node: &'a str,
    pub default_namespace: DefaultNamespace,
    pub kinds: &'a PlanKinds<'a>,
    /// Known sensitive values and their derived forms; strings holding one are sensitive.
    pub sensitive_forms: &'a SensitiveForms,
    /// The ignore rules that may cover the node's objects (the node's and the plan's).
    pub ignore_rules: &'a [&'a IgnoreRule],
    /// What the built-in ignore rules need to know about the whole plan.
    pub ignore_facts: &'a IgnoreFacts,
}

/// An object after finishing, before the comparison with the previous render.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub object_ref: ObjectRef,
    pub scope: KindScope,
    pub object: Json,
    pub digest: String,
    pub unknown_paths: BTreeSet<String>,
    pub sensitive_paths: BTreeSet<String>,
}

/// Pairs the documents of two renders of one chart by identity and returns, for each document
/// of `first`, the paths whose values differ in `second`; a document `second` does not hold
/// gets `unpaired(document)`. How generated material (two renders with the same inputs),
/// fields known after apply (two placeholders) and fields derived from sensitive inputs (a
/// canary render) are all found.
pub fn differing_paths(
    first: &[(Option<String>, Json)],
    second: &[(Option<String>, Json)],
    unpaired: impl Fn(&Json) -> BTreeSet<String>,
) -> Vec<BTreeSet<String>> {
    let others: std::collections::BTreeMap<ObjectRef, &Json> =
        second.iter().map(|(_, o)| (identity(o), o)).collect();
    first
        .iter()
        .map(|(_, object)| match others.get(&identity(object)) {
            Some(other) => super::json::diff_paths(object, other),
            None => unpaired(object),
        })
        .collect()
}

/// The identity of an object as written (namespace as found).
pub fn identity(object: &Json) -> ObjectRef {
    let text = |p: &str| {
        object
            .pointer(p)
            .map(|v| match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    ObjectRef {
        api_version: text("/apiVersion"),
        kind: text("/kind"),
        namespace: object
            .pointer("/metadata/namespace")
            .filter(|v| !v.is_null())
            .map(|_| text("/metadata/namespace")),
        name: text("/metadata/name"),
    }
}

/// Applies namespace rules, ownership marks and sensitivity to one object.
pub fn finish(
    mut object: Json,
    mut unknown_paths: BTreeSet<String>,
    mut sensitive_paths: BTreeSet<String>,
    ctx: &FinishContext<'_>,
) -> Finished {
    if !object.is_object() {
        object = Json::Object(serde_json::Map::new());
    }
    let api_version = object
        .get("apiVersion")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = object
        .get("kind")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let scope = ctx.kinds.scope(&api_version, &kind);
    let has_namespace = object
        .pointer("/metadata/namespace")
        .is_some_and(|v| !v.is_null() && v != "");
    match scope {
        KindScope::Namespaced if !has_namespace => {
            let value = match &ctx.default_namespace {
                DefaultNamespace::Known(ns) => ns.clone(),
                DefaultNamespace::Unknown => {
                    unknown_paths.insert("/metadata/namespace".into());
                    KNOWN_AFTER_APPLY.to_string()
                }
            };
            set_pointer(&mut object, "/metadata/namespace", Json::String(value));
        }
        KindScope::Cluster => {
            remove_pointer(&mut object, "/metadata/namespace");
            unknown_paths.remove("/metadata/namespace");
        }
        _ => {}
    }
    set_pointer(
        &mut object,
        &push_segment("/metadata/labels", MANAGED_BY_LABEL),
        MANAGED_BY_VALUE.into(),
    );
    set_pointer(
        &mut object,
        &push_segment("/metadata/annotations", PLAN_ANNOTATION),
        ctx.plan_name.into(),
    );
    set_pointer(
        &mut object,
        &push_segment("/metadata/annotations", NODE_ANNOTATION),
        ctx.node.into(),
    );
    if api_version == "v1" && kind == "Secret" {
        for key in ["data", "stringData"] {
            if object.get(key).is_some() {
                sensitive_paths.insert(format!("/{key}"));
            }
        }
    }
    if !ctx.sensitive_forms.is_empty() {
        for (path, leaf) in leaves(&object) {
            if ctx.sensitive_forms.matches_leaf(leaf) {
                sensitive_paths.insert(path);
            }
        }
    }
    // Fields meshplan neither compares nor owns: not applied, so server-side apply gives
    // them up.
    let ignored = IgnoredFields::of(
        ctx.ignore_rules.iter().copied(),
        ctx.ignore_facts,
        ctx.node,
        &object,
    );
    let removed: Vec<String> = ignored
        .remove_from(&mut object)
        .into_iter()
        .map(ToString::to_string)
        .collect();
    if !removed.is_empty() {
        let gone = |p: &String| {
            let segments = crate::model::ignore::pointer_segments(p);
            ignored.covers(&segments).is_some()
        };
        unknown_paths.retain(|p| !gone(p));
        sensitive_paths.retain(|p| !gone(p));
    }
    let mut object_ref = identity(&object);
    if scope == KindScope::Cluster {
        object_ref.namespace = None;
    }
    Finished {
        object_ref,
        scope,
        digest: digest(&object),
        object,
        unknown_paths,
        sensitive_paths,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static NO_FACTS: std::sync::LazyLock<IgnoreFacts> =
        std::sync::LazyLock::new(IgnoreFacts::default);

    fn ctx<'a>(kinds: &'a PlanKinds<'a>, secrets: &'a SensitiveForms) -> FinishContext<'a> {
        FinishContext {
            plan_name: "p",
            node: "helm.x",
            default_namespace: DefaultNamespace::Known("apps".into()),
            kinds,
            sensitive_forms: secrets,
            ignore_rules: &[],
            ignore_facts: &NO_FACTS,
        }
    }

    #[test]
    fn namespaces_follow_the_kind_scope() {
        let kinds = PlanKinds::new(None);
        let none = SensitiveForms::default();
        let c = ctx(&kinds, &none);
        let cm = finish(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            BTreeSet::new(),
            BTreeSet::new(),
            &c,
        );
        assert_eq!(cm.object["metadata"]["namespace"], "apps");
        assert_eq!(cm.object_ref.short().to_string(), "ConfigMap/apps/a");
        let cr = finish(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "r", "namespace": "apps"}}),
            BTreeSet::new(),
            BTreeSet::new(),
            &c,
        );
        assert!(cr.object["metadata"].get("namespace").is_none());
        assert_eq!(cr.scope, KindScope::Cluster);
        let pm = finish(
            json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                   "metadata": {"name": "m"}}),
            BTreeSet::new(),
            BTreeSet::new(),
            &c,
        );
        assert_eq!(pm.scope, KindScope::Unknown);
        assert!(pm.object["metadata"].get("namespace").is_none());
    }

    #[test]
    fn marks_replace_helm_and_secrets_are_sensitive() {
        let kinds = PlanKinds::new(None);
        let secrets = SensitiveForms::new(["s3cr3t-value"]);
        let c = ctx(&kinds, &secrets);
        let s = finish(
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "a", "labels": {"app.kubernetes.io/managed-by": "Helm"}},
                   "data": {"k": "dg=="}}),
            BTreeSet::new(),
            BTreeSet::new(),
            &c,
        );
        assert_eq!(s.object["metadata"]["labels"][MANAGED_BY_LABEL], "meshplan");
        assert_eq!(s.object["metadata"]["annotations"][PLAN_ANNOTATION], "p");
        assert_eq!(
            s.object["metadata"]["annotations"][NODE_ANNOTATION],
            "helm.x"
        );
        assert!(s.sensitive_paths.contains("/data"));
        let cm = finish(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
                   "data": {"pem": "-- s3cr3t-value --", "other": "x"}}),
            BTreeSet::new(),
            BTreeSet::new(),
            &c,
        );
        assert_eq!(cm.sensitive_paths.iter().collect::<Vec<_>>(), ["/data/pem"]);
    }

    #[test]
    fn hooks_parse_with_defaults() {
        let h = hook_of(&json!({"metadata": {"annotations": {
            "helm.sh/hook": "post-install,pre-upgrade", "helm.sh/hook-weight": "-5"}}}))
        .unwrap()
        .unwrap();
        assert_eq!(h.phases, [HookPhase::PostInstall, HookPhase::PreUpgrade]);
        assert_eq!(h.weight, -5);
        assert_eq!(h.delete_policies, [HookDeletePolicy::BeforeHookCreation]);
        assert_eq!(hook_of(&json!({"metadata": {}})), Ok(None));
        assert!(
            hook_of(&json!({"metadata": {"annotations": {"helm.sh/hook": "sometime"}}})).is_err()
        );
    }
}
