//! The resource types the sandbox serves: the built-in kinds and those defined by CRDs.
//!
//! A [`ResourceType`] carries what discovery, routing, printing and the write path need:
//! group/version/kind, plural/singular/short names, scope, verbs, categories, whether it has a
//! status subresource and tracks `metadata.generation`, its name rule and its printer columns.
//! [`Registry`] holds the built-in table and the CRD-derived types (rebuilt from the stored
//! CRDs whenever one changes).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use meshplan_k8s::schema::Structural;

use super::names::NameRule;

/// Where a printer column takes its cell from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CellSource {
    /// `metadata.name`.
    Name,
    /// Age from `metadata.creationTimestamp`.
    Age,
    /// A simple JSONPath such as `.spec.size` or `.status.phase`.
    Path(String),
    /// The number of entries in `data` plus `binaryData` (ConfigMap, Secret).
    DataCount,
    /// `ready/total` from two paths (Deployment READY).
    Ratio(String, String),
}

/// One printer column of a Table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub source: CellSource,
}

impl Column {
    fn new(name: &str, kind: &str, source: CellSource) -> Self {
        let format = if matches!(source, CellSource::Name) {
            "name"
        } else {
            ""
        };
        Self {
            name: name.to_string(),
            kind: kind.to_string(),
            format: format.to_string(),
            description: String::new(),
            priority: 0,
            source,
        }
    }
}

/// The `scale` subresource of a type: JSONPaths of the replica counts and the selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScalePaths {
    /// e.g. `.spec.replicas`.
    pub spec_replicas: String,
    /// e.g. `.status.replicas`.
    pub status_replicas: String,
    /// e.g. `.spec.selector` (a label selector object) or a CRD's `labelSelectorPath`.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    fn workload() -> Self {
        Self {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".spec.selector".into()),
        }
    }
}

/// A served resource (one group/version/resource).
#[derive(Debug, Clone)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub has_status: bool,
    /// Where the `scale` subresource reads and writes, when the type has one.
    pub scale: Option<ScalePaths>,
    pub tracks_generation: bool,
    pub name_rule: NameRule,
    pub columns: Vec<Column>,
    /// The CRD's name when this type comes from a CRD.
    pub crd: Option<String>,
    /// The structural schema of a CRD version.
    pub schema: Option<Arc<Structural>>,
}

impl ResourceType {
    /// `v1` for the core group, `group/version` otherwise.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub(crate) fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub(crate) fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// Whether this is the CustomResourceDefinition type itself.
    pub(crate) fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.plural == "customresourcedefinitions"
    }

    pub(crate) fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    pub(crate) fn is_secret(&self) -> bool {
        self.group.is_empty() && self.plural == "secrets"
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status: bool,
    generation: bool,
    rule: NameRule,
    all: bool,
}

#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status: bool,
    generation: bool,
    rule: NameRule,
    all: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        short,
        namespaced,
        status,
        generation,
        rule,
        all,
    }
}

use NameRule::{Label, PathSegment, Subdomain};

/// The built-in kinds, in discovery order within each group.
const BUILTINS: &[Builtin] = &[
    b(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        &["cm"],
        true,
        false,
        false,
        Subdomain,
        false,
    ),
    b(
        "",
        "v1",
        "Event",
        "events",
        &["ev"],
        true,
        false,
        false,
        Subdomain,
        false,
    ),
    b(
        "",
        "v1",
        "Namespace",
        "namespaces",
        &["ns"],
        false,
        true,
        false,
        Label,
        false,
    ),
    b(
        "",
        "v1",
        "Pod",
        "pods",
        &["po"],
        true,
        true,
        false,
        Subdomain,
        true,
    ),
    b(
        "",
        "v1",
        "Secret",
        "secrets",
        &[],
        true,
        false,
        false,
        Subdomain,
        false,
    ),
    b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        true,
        false,
        false,
        Subdomain,
        false,
    ),
    b(
        "",
        "v1",
        "Service",
        "services",
        &["svc"],
        true,
        true,
        false,
        Label,
        true,
    ),
    b(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        &[],
        false,
        true,
        false,
        PathSegment,
        false,
    ),
    b(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        &["ds"],
        true,
        true,
        true,
        Subdomain,
        true,
    ),
    b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        &["deploy"],
        true,
        true,
        true,
        Subdomain,
        true,
    ),
    b(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        &["rs"],
        true,
        true,
        true,
        Subdomain,
        true,
    ),
    b(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        &["sts"],
        true,
        true,
        true,
        Subdomain,
        true,
    ),
    b(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["hpa"],
        true,
        true,
        false,
        Subdomain,
        true,
    ),
    b(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        &["cj"],
        true,
        true,
        true,
        Subdomain,
        true,
    ),
    b(
        "batch",
        "v1",
        "Job",
        "jobs",
        &[],
        true,
        true,
        true,
        Subdomain,
        true,
    ),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        true,
        true,
        true,
        Subdomain,
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        false,
        false,
        false,
        PathSegment,
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        false,
        false,
        false,
        PathSegment,
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        true,
        false,
        false,
        PathSegment,
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        &[],
        true,
        false,
        false,
        PathSegment,
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        &[],
        false,
        false,
        true,
        Subdomain,
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        &[],
        false,
        false,
        true,
        Subdomain,
        false,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
        true,
        true,
        Subdomain,
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        &["ing"],
        true,
        true,
        true,
        Subdomain,
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        true,
        false,
        true,
        Subdomain,
        false,
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        &[],
        true,
        false,
        false,
        Subdomain,
        false,
    ),
];

/// Group order of discovery (core first, then as a real 1.32 server lists them).
const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "autoscaling",
    "batch",
    "policy",
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "networking.k8s.io",
    "coordination.k8s.io",
];

fn builtin_columns(group: &str, plural: &str) -> Vec<Column> {
    let name = Column::new("Name", "string", CellSource::Name);
    let age = Column::new("Age", "date", CellSource::Age);
    let path = |n: &str, k: &str, p: &str| Column::new(n, k, CellSource::Path(p.to_string()));
    let middle: Vec<Column> = match (group, plural) {
        ("", "configmaps") | ("", "secrets") => {
            let mut cols = Vec::new();
            if plural == "secrets" {
                cols.push(path("Type", "string", ".type"));
            }
            cols.push(Column::new("Data", "string", CellSource::DataCount));
            cols
        }
        ("", "namespaces") => vec![path("Status", "string", ".status.phase")],
        ("coordination.k8s.io", "leases") => vec![path("Holder", "string", ".spec.holderIdentity")],
        ("", "pods") => vec![path("Status", "string", ".status.phase")],
        ("", "services") => vec![
            path("Type", "string", ".spec.type"),
            path("Cluster-IP", "string", ".spec.clusterIP"),
        ],
        ("", "events") => vec![
            path("Type", "string", ".type"),
            path("Reason", "string", ".reason"),
            path("Message", "string", ".message"),
        ],
        ("apps", "deployments") | ("apps", "statefulsets") => vec![Column::new(
            "Ready",
            "string",
            CellSource::Ratio(".status.readyReplicas".into(), ".spec.replicas".into()),
        )],
        ("apps", "replicasets") => vec![
            path("Desired", "integer", ".spec.replicas"),
            path("Ready", "integer", ".status.readyReplicas"),
        ],
        ("apps", "daemonsets") => vec![
            path("Desired", "integer", ".status.desiredNumberScheduled"),
            path("Ready", "integer", ".status.numberReady"),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let mut created = Column::new("Created At", "date", CellSource::Age);
            created.source = CellSource::Path(".metadata.creationTimestamp".into());
            created.kind = "string".into();
            return vec![name, created];
        }
        _ => Vec::new(),
    };
    let mut cols = vec![name];
    cols.extend(middle);
    cols.push(age);
    cols
}

fn builtin_types() -> Vec<Arc<ResourceType>> {
    BUILTINS
        .iter()
        .map(|bt| {
            Arc::new(ResourceType {
                group: bt.group.to_string(),
                version: bt.version.to_string(),
                kind: bt.kind.to_string(),
                plural: bt.plural.to_string(),
                singular: bt.kind.to_lowercase(),
                short_names: bt.short.iter().map(|s| s.to_string()).collect(),
                categories: if bt.all {
                    vec!["all".to_string()]
                } else {
                    Vec::new()
                },
                namespaced: bt.namespaced,
                has_status: bt.status,
                scale: matches!(bt.plural, "deployments" | "statefulsets" | "replicasets")
                    .then(ScalePaths::workload),
                tracks_generation: bt.generation,
                name_rule: bt.rule,
                columns: builtin_columns(bt.group, bt.plural),
                crd: None,
                schema: None,
            })
        })
        .collect()
}

/// A CRD's types could not be built (the CRD's schema is not structural, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CrdTypeError {
    pub field: String,
    pub message: String,
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = value;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

fn strings_at(value: &Value, path: &[&str]) -> Vec<String> {
    let mut cur = value;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return Vec::new(),
        }
    }
    cur.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the served types of one CRD (one per served version). The CRD's defaults
/// (singular, listKind) are expected to be filled already.
pub(crate) fn crd_types(crd: &Value) -> Result<Vec<Arc<ResourceType>>, CrdTypeError> {
    let name = str_at(crd, &["metadata", "name"]).unwrap_or_default();
    let group = str_at(crd, &["spec", "group"]).unwrap_or_default();
    let kind = str_at(crd, &["spec", "names", "kind"]).unwrap_or_default();
    let plural = str_at(crd, &["spec", "names", "plural"]).unwrap_or_default();
    let singular = str_at(crd, &["spec", "names", "singular"])
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = str_at(crd, &["spec", "scope"]) != Some("Cluster");
    let short_names = strings_at(crd, &["spec", "names", "shortNames"]);
    let categories = strings_at(crd, &["spec", "names", "categories"]);
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        if version.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let vname = version
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let schema = match version.pointer("/schema/openAPIV3Schema") {
            Some(raw) => Some(Arc::new(Structural::compile(raw).map_err(|message| {
                CrdTypeError {
                    field: format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    message,
                }
            })?)),
            None => None,
        };
        let has_status = version.pointer("/subresources/status").is_some();
        let scale = version.pointer("/subresources/scale").map(|sc| {
            let text = |k: &str| sc.get(k).and_then(Value::as_str).map(str::to_string);
            ScalePaths {
                spec_replicas: text("specReplicasPath").unwrap_or_else(|| ".spec.replicas".into()),
                status_replicas: text("statusReplicasPath")
                    .unwrap_or_else(|| ".status.replicas".into()),
                label_selector: text("labelSelectorPath"),
            }
        });
        let mut columns = vec![Column::new("Name", "string", CellSource::Name)];
        match version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
        {
            Some(extra) if !extra.is_empty() => {
                for col in extra {
                    let cname = col.get("name").and_then(Value::as_str).unwrap_or_default();
                    let ckind = col.get("type").and_then(Value::as_str).unwrap_or("string");
                    let path = col
                        .get("jsonPath")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let mut column = Column::new(cname, ckind, CellSource::Path(path.to_string()));
                    column.format = col
                        .get("format")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    column.description = col
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    column.priority = col.get("priority").and_then(Value::as_i64).unwrap_or(0);
                    if ckind == "date" && path == ".metadata.creationTimestamp" {
                        column.source = CellSource::Age;
                    }
                    columns.push(column);
                }
            }
            _ => columns.push(Column::new("Age", "date", CellSource::Age)),
        }
        out.push(Arc::new(ResourceType {
            group: group.to_string(),
            version: vname.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            short_names: short_names.clone(),
            categories: categories.clone(),
            namespaced,
            has_status,
            scale,
            tracks_generation: true,
            name_rule: NameRule::Subdomain,
            columns,
            crd: Some(name.to_string()),
            schema,
        }));
    }
    Ok(out)
}

/// One served API group with its versions, the preferred one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupInfo {
    pub name: String,
    pub versions: Vec<String>,
}

/// The built-in types plus the CRD-defined ones.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    builtin: Vec<Arc<ResourceType>>,
    custom: Vec<Arc<ResourceType>>,
    /// Compiled types per CRD name, with a digest of the CRD they were built from.
    compiled: BTreeMap<String, (blake3::Hash, Vec<Arc<ResourceType>>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            builtin: builtin_types(),
            custom: Vec::new(),
            compiled: BTreeMap::new(),
        }
    }

    /// Serves the types of these CRDs (and no other custom types), compiling only the CRDs
    /// whose definition changed since the last call. CRDs that do not compile are skipped.
    pub(crate) fn set_crds(&mut self, crds: &[&Value]) {
        let mut compiled = BTreeMap::new();
        let mut custom = Vec::new();
        for crd in crds {
            let name = str_at(crd, &["metadata", "name"])
                .unwrap_or_default()
                .to_string();
            let digest = blake3::hash(
                serde_json::to_string(&crd.get("spec"))
                    .unwrap_or_default()
                    .as_bytes(),
            );
            let types = match self.compiled.remove(&name) {
                Some((old, types)) if old == digest => types,
                _ => match crd_types(crd) {
                    Ok(types) => types,
                    Err(_) => continue,
                },
            };
            custom.extend(types.iter().cloned());
            compiled.insert(name, (digest, types));
        }
        self.compiled = compiled;
        self.custom = custom;
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.builtin.iter().chain(self.custom.iter())
    }

    /// The type served at `group/version/plural`.
    pub(crate) fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.all()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Any served version of `group/plural` (the storage-independent identity of objects).
    pub(crate) fn find_any_version(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.all()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
    }

    /// The types of one group/version.
    pub(crate) fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.all()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }

    /// Served groups in discovery order: built-in groups first, CRD groups sorted after.
    pub(crate) fn groups(&self) -> Vec<GroupInfo> {
        let mut groups: Vec<GroupInfo> = Vec::new();
        let mut push = |group: &str, version: &str| {
            if let Some(g) = groups.iter_mut().find(|g| g.name == group) {
                if !g.versions.iter().any(|v| v == version) {
                    g.versions.push(version.to_string());
                }
            } else {
                groups.push(GroupInfo {
                    name: group.to_string(),
                    versions: vec![version.to_string()],
                });
            }
        };
        for name in GROUP_ORDER {
            for t in self.builtin.iter().filter(|t| t.group == *name) {
                push(&t.group, &t.version);
            }
        }
        let mut custom: Vec<&Arc<ResourceType>> = self.custom.iter().collect();
        custom.sort_by(|a, b| a.group.cmp(&b.group));
        for t in custom {
            push(&t.group, &t.version);
        }
        for g in &mut groups {
            g.versions
                .sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
fn version_priority(version: &str) -> (u8, u64, u64) {
    let rest = match version.strip_prefix('v') {
        Some(rest) => rest,
        None => return (0, 0, 0),
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse::<u64>().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    (level, major, num.parse::<u64>().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplan_k8s::lists::{BuiltinListTypes, ListType, ListTypes};

    #[test]
    fn finds_builtins_and_orders_groups() {
        let reg = Registry::new();
        let cm = reg.find("", "v1", "configmaps").expect("configmaps");
        assert_eq!(cm.short_names, vec!["cm"]);
        assert!(reg.find("apps", "v1", "deployments").is_some());
        let groups = reg.groups();
        assert_eq!(groups[0].name, "");
        assert!(groups.iter().any(|g| g.name == "apps"));
    }

    #[test]
    fn version_priority_prefers_ga() {
        let mut v = vec!["v1beta1", "v2", "v1", "v1alpha1", "v2beta2"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v2beta2", "v1beta1", "v1alpha1"]);
    }

    #[test]
    fn builtin_list_types_follow_core_markers() {
        let path = ["spec", "template", "spec", "containers"];
        assert_eq!(
            BuiltinListTypes.list_type(&path),
            ListType::Map(vec!["name".into()])
        );
        let ports = ["spec", "template", "spec", "containers", "ports"];
        assert_eq!(
            BuiltinListTypes.list_type(&ports),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(BuiltinListTypes.list_type(&["data"]), ListType::Atomic);
    }
}
