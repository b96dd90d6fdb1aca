//! The validated plan: vars with their final values, repos, and nodes with typed fields.
//! Strings are [`Template`]s (their `${...}` references already checked); everything else is
//! plain data. Built by [`super::build()`]; nothing here does I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::lint_checks::CheckId;
use crate::planfile::{FileId, RawValue, Span};

use super::address::{Address, NodeKind};
use super::ignore::IgnoreRule;
use super::template::{EvalError, Lookup, RefUse, Reference, Scope, Template};

/// A validated plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `[plan] name`: names the state directory and the change sets.
    pub name: String,
    /// The plan file.
    pub file: FileId,
    /// The directory relative paths of the plan are resolved against.
    pub base_dir: PathBuf,
    pub vars: BTreeMap<String, Var>,
    pub repos: BTreeMap<String, Repo>,
    /// The enabled nodes, by address.
    pub nodes: BTreeMap<Address, Node>,
    /// Nodes switched off with `enabled = false`: validated like the others, not part of the
    /// graph (a later apply deletes what they created before).
    pub disabled: BTreeMap<Address, Node>,
    /// `[state]`: where the plan's state lives (all defaults when the table is absent).
    pub state: StateSettings,
    /// The plan-wide ignore rules (`[[ignore]]`), in the order written.
    pub ignore: Vec<IgnoreRule>,
}

/// The state backends a plan can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackend {
    /// A sled database in a local directory.
    Local,
    /// Secrets and a Lease in a namespace of the target cluster.
    Kubernetes,
}

impl StateBackend {
    pub const NAMES: [&'static str; 2] = ["local", "kubernetes"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "local" => Some(Self::Local),
            "kubernetes" => Some(Self::Kubernetes),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// The `[state]` table as written (every key optional; defaults are the state's business).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateSettings {
    pub backend: Option<StateBackend>,
    /// The namespace of the state's Secrets and Lease (`kubernetes`), or of the apply's Lease
    /// (`local`).
    pub namespace: Option<String>,
    /// The state's name in the cluster (default: the plan name).
    pub name: Option<String>,
    /// The local state directory, joined to the plan's directory (`dir` as written, when
    /// absolute).
    pub dir: Option<PathBuf>,
    /// How long a Lease lock lasts without renewal (whole seconds).
    pub lease_duration: Option<Duration>,
}

impl Plan {
    pub fn node(&self, address: &Address) -> Option<&Node> {
        self.nodes.get(address)
    }

    /// The ignore rules that may cover objects of node `address`: the node's, then the
    /// plan-wide ones.
    pub fn ignore_rules(&self, address: &Address) -> impl Iterator<Item = &IgnoreRule> {
        self.node(address)
            .into_iter()
            .flat_map(|n| n.ignore.iter())
            .chain(self.ignore.iter())
    }

    /// A scope where vars and static node attributes are known and `read.*.value` is not.
    pub fn static_scope(&self) -> StaticScope<'_> {
        StaticScope { plan: self }
    }
}

/// A declared variable and its final value (default, var file or `--var`).
#[derive(Debug, Clone, PartialEq)]
pub struct Var {
    pub name: String,
    pub value: serde_json::Value,
    /// Where the variable is declared in `[vars]`.
    pub span: Span,
    pub origin: VarOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarOrigin {
    Default,
    VarFile(String),
    CommandLine,
}

/// A chart repository alias from `[repos]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Repo {
    pub name: String,
    pub url: String,
    pub span: Span,
}

/// One node of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub address: Address,
    /// The span of the node's header.
    pub span: Span,
    /// Explicit dependencies (`depends_on`), in the order written.
    pub depends_on: Vec<Dependency>,
    pub wait: Wait,
    /// Upper bound for the whole node during apply.
    pub timeout: Option<Duration>,
    pub prevent_destroy: bool,
    /// Default namespace (manifest), release namespace (helm), object namespace (read, check).
    pub namespace: Option<Template>,
    /// Fields of the node's objects that meshplan neither compares nor owns (`ignore`).
    pub ignore: Vec<IgnoreRule>,
    /// Lint findings switched off for this node (`suppress`), in the order written.
    pub suppress: Vec<Suppression>,
    pub spec: NodeSpec,
}

/// `suppress = [{ check = "ID", reason = "..." }]`: findings of one lint check on one node
/// are reported as suppressed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub check: CheckId,
    pub reason: String,
    /// The entry in the plan file.
    pub span: Span,
}

/// `depends_on` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub target: Address,
    pub span: Span,
}

/// How apply waits for the node's objects to be ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// `wait = false` switches readiness waiting off.
    pub enabled: bool,
    /// A condition type that must be `True` (instead of the built-in readiness rules).
    pub condition: Option<String>,
    pub timeout: Option<Duration>,
}

impl Default for Wait {
    fn default() -> Self {
        Self {
            enabled: true,
            condition: None,
            timeout: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeSpec {
    Manifest(Manifest),
    Helm(Helm),
    Read(Read),
    Check(Check),
}

impl NodeSpec {
    pub fn kind(&self) -> NodeKind {
        match self {
            NodeSpec::Manifest(_) => NodeKind::Manifest,
            NodeSpec::Helm(_) => NodeKind::Helm,
            NodeSpec::Read(_) => NodeKind::Read,
            NodeSpec::Check(_) => NodeKind::Check,
        }
    }
}

/// Kubernetes objects given by a YAML file, an inline YAML string or TOML tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub source: ManifestSource,
    pub objects: Vec<ManifestObject>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ManifestSource {
    /// `file = "..."`: `path` is resolved against the plan's directory, `written` as written.
    File {
        path: PathBuf,
        written: String,
        span: Span,
    },
    /// `yaml = """..."""`.
    Yaml { span: Span },
    /// `[[manifest.NAME.objects]]`.
    Objects { span: Span },
}

/// One object of a manifest, with the identifying fields checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObject {
    pub api_version: String,
    pub kind: String,
    pub name: Template,
    pub namespace: Option<Template>,
    /// The whole object.
    pub value: Value,
    /// Where the object starts (in the YAML file for file manifests).
    pub span: Span,
    /// The object as written, with a span on every key (for messages about one field): see
    /// [`ManifestObject::raw`].
    pub raw: RawObject,
}

/// Where to find a manifest object as written. An object of TOML is kept; an object of YAML
/// (a manifest file, inline YAML) is parsed again from its source text when a message needs
/// one of its fields, so that a file of 100,000 documents is not held twice (once as written,
/// once as values).
#[derive(Debug, Clone, PartialEq)]
pub enum RawObject {
    Kept(RawValue),
    /// The document's text: from the start of its first line to its end.
    Yaml {
        file: FileId,
        range: std::ops::Range<usize>,
    },
}

impl ManifestObject {
    /// The object as written, with a span on every key. None when its text does not parse
    /// alone to one document (a flow mapping closed on a line after its last value): a
    /// message about one of its fields then points at the object's start.
    pub fn raw(
        &self,
        sources: &crate::planfile::SourceMap,
    ) -> Option<std::borrow::Cow<'_, RawValue>> {
        match &self.raw {
            RawObject::Kept(raw) => Some(std::borrow::Cow::Borrowed(raw)),
            RawObject::Yaml { file, range } => {
                let text = sources.text(*file).get(range.clone())?;
                let mut docs = crate::planfile::parse_yaml(*file, text, range.start).ok()?;
                (docs.len() == 1).then(|| std::borrow::Cow::Owned(docs.remove(0)))
            }
        }
    }
}

/// A Helm chart rendered with `helm template` and applied as objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Helm {
    pub chart: Chart,
    pub version: Option<Template>,
    /// Release name: `release`, or the node name with `_` turned into `-`.
    pub release: String,
    /// Values files first (in order), then `values` on top.
    pub values_files: Vec<ValuesFile>,
    pub values: Value,
    /// `values` as written, with a span on every key (for messages about one value).
    pub values_raw: Option<RawValue>,
    pub include_crds: bool,
    pub create_namespace: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// `ALIAS/NAME` with the alias declared in `[repos]`.
    Repo {
        repo: String,
        url: String,
        name: String,
    },
    /// `oci://registry/path/chart`.
    Oci(String),
    /// A chart directory or archive, resolved against the plan's directory.
    Local(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValuesFile {
    pub path: PathBuf,
    pub written: String,
    pub span: Span,
    pub values: Value,
    /// The file's document as written, with a span on every key.
    pub raw: RawValue,
}

/// A value read from the cluster during apply; `${read.NAME.value}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub api_version: Template,
    pub kind: Template,
    pub name: Template,
    pub select: ReadSelect,
    /// Sensitive values are never stored or printed in clear. Defaults to true for Secrets.
    pub sensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadSelect {
    /// A key of `data` (Secret values are base64-decoded) or of a ConfigMap.
    Key(String),
    /// A dotted field path, e.g. `status.loadBalancer.ingress`.
    Field(Vec<String>),
}

/// A precondition on the live cluster: an object's condition must have the given status.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub api_version: Template,
    pub kind: Template,
    pub name: Template,
    pub condition: String,
    /// Expected status of the condition, `True` by default.
    pub status: String,
}

/// A structured value (helm values, manifest objects) whose strings may hold references.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(Template),
    Array(Vec<Value>),
    /// Keys in source order, unique.
    Table(Vec<(String, Value)>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Table(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_template(&self) -> Option<&Template> {
        match self {
            Value::String(t) => Some(t),
            _ => None,
        }
    }

    /// Every reference inside the value, in order.
    pub fn references(&self) -> Vec<&RefUse> {
        self.templates()
            .into_iter()
            .flat_map(|t| t.references())
            .collect()
    }

    /// Every string inside the value, in order.
    pub fn templates(&self) -> Vec<&Template> {
        let mut out = Vec::new();
        self.collect_templates(&mut out);
        out
    }

    fn collect_templates<'a>(&'a self, out: &mut Vec<&'a Template>) {
        match self {
            Value::String(t) => out.push(t),
            Value::Array(items) => items.iter().for_each(|v| v.collect_templates(out)),
            Value::Table(entries) => entries.iter().for_each(|(_, v)| v.collect_templates(out)),
            _ => {}
        }
    }

    /// Evaluates every string; the first error stops evaluation.
    pub fn evaluate(&self, scope: &dyn Scope) -> Result<serde_json::Value, EvalError> {
        Ok(match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Integer(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(t) => t.evaluate(scope)?,
            Value::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|v| v.evaluate(scope))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Table(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), v.evaluate(scope)?);
                }
                serde_json::Value::Object(map)
            }
        })
    }
}

impl Node {
    /// Every string of the node that may hold references: namespace, version, helm values
    /// (files first), manifest objects, the object fields of reads and checks.
    pub fn templates(&self) -> Vec<&Template> {
        let mut out: Vec<&Template> = Vec::new();
        out.extend(self.namespace.as_ref());
        match &self.spec {
            NodeSpec::Manifest(m) => {
                for object in &m.objects {
                    out.extend(object.value.templates());
                }
            }
            NodeSpec::Helm(h) => {
                out.extend(h.version.as_ref());
                for f in &h.values_files {
                    out.extend(f.values.templates());
                }
                out.extend(h.values.templates());
            }
            NodeSpec::Read(r) => out.extend([&r.api_version, &r.kind, &r.name]),
            NodeSpec::Check(c) => out.extend([&c.api_version, &c.kind, &c.name]),
        }
        out
    }

    /// Every reference the node makes (all its strings), sorted by position.
    pub fn references(&self) -> Vec<&RefUse> {
        let mut out: Vec<&RefUse> = self
            .templates()
            .into_iter()
            .flat_map(|t| t.references())
            .collect();
        out.sort_by_key(|r| r.span.key());
        out
    }

    /// The value of a static attribute (`${TYPE.NAME.ATTR}`), evaluated in `scope`.
    /// `read.*.value` is never static.
    pub fn attribute(&self, attribute: &str, scope: &dyn Scope) -> Lookup {
        let template = |t: &Template| match t.evaluate(scope) {
            Ok(v) => Lookup::Known(v),
            Err(EvalError::Unknown { .. }) => Lookup::Unknown,
            Err(_) => Lookup::Missing,
        };
        let optional = |t: &Option<Template>| match t {
            Some(t) => template(t),
            None => Lookup::Known(serde_json::Value::Null),
        };
        match (&self.spec, attribute) {
            (_, "namespace") => optional(&self.namespace),
            (NodeSpec::Helm(h), "release") => Lookup::Known(h.release.clone().into()),
            (NodeSpec::Helm(h), "version") => optional(&h.version),
            (NodeSpec::Helm(h), "chart") => Lookup::Known(
                match &h.chart {
                    Chart::Repo { repo, name, .. } => format!("{repo}/{name}"),
                    Chart::Oci(url) => url.clone(),
                    Chart::Local(path) => path.display().to_string(),
                }
                .into(),
            ),
            (NodeSpec::Read(_), "value") => Lookup::Unknown,
            (NodeSpec::Read(r), "api_version") => template(&r.api_version),
            (NodeSpec::Read(r), "kind") => template(&r.kind),
            (NodeSpec::Read(r), "name") => template(&r.name),
            (NodeSpec::Check(c), "api_version") => template(&c.api_version),
            (NodeSpec::Check(c), "kind") => template(&c.kind),
            (NodeSpec::Check(c), "name") => template(&c.name),
            (NodeSpec::Check(c), "condition") => Lookup::Known(c.condition.clone().into()),
            _ => Lookup::Missing,
        }
    }
}

/// Vars and static node attributes; `read.*.value` is unknown (known after apply).
#[derive(Debug, Clone, Copy)]
pub struct StaticScope<'a> {
    plan: &'a Plan,
}

impl Scope for StaticScope<'_> {
    fn lookup(&self, reference: &Reference) -> Lookup {
        match reference {
            Reference::Var { name, path } => {
                let Some(var) = self.plan.vars.get(name) else {
                    return Lookup::Missing;
                };
                let mut value = &var.value;
                for key in path {
                    match value.get(key) {
                        Some(v) => value = v,
                        None => return Lookup::Missing,
                    }
                }
                Lookup::Known(value.clone())
            }
            Reference::Node { address, attribute } => match self.plan.nodes.get(address) {
                // Attributes of other nodes only refer to vars and reads (no node chains
                // through static attributes are needed), so one level is enough.
                Some(node) => node.attribute(attribute, &VarsOnly(self.plan)),
                None => Lookup::Missing,
            },
        }
    }
}

struct VarsOnly<'a>(&'a Plan);

impl Scope for VarsOnly<'_> {
    fn lookup(&self, reference: &Reference) -> Lookup {
        match reference {
            Reference::Var { .. } => self.0.static_scope().lookup(reference),
            Reference::Node { .. } => Lookup::Unknown,
        }
    }
}
