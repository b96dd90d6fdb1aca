//! Stage 4, render: the model → the desired Kubernetes objects of every node.
//!
//! 1. Each manifest and helm node is rendered in a [`RenderScope`] (vars, static attributes,
//!    the read values known so far). Manifest objects are evaluated leaf by leaf: a leaf that
//!    uses a value known only during apply becomes `(known after apply)` and its path is
//!    recorded ([`RenderedObject::unknown_paths`]). A helm node whose values use such a value
//!    is rendered with placeholders ([`placeholder`]): its objects are known, the fields that
//!    depend on the value are recorded as unknown, and its status is
//!    [`NodeStatus::RenderedWithPlaceholders`]. When its version or namespace uses such a
//!    value, or the chart refuses the placeholders, it is not rendered now:
//!    [`NodeStatus::RenderedDuringApply`], with the references that are unknown and why.
//! 2. Helm nodes run the real `helm template` ([`helm`]); at most
//!    [`RenderOptions::parallelism`] helm processes run at once, and output order never
//!    depends on timing. The chart output is looked up first in the previous render (same
//!    cache key) and in the [`RenderCache`]; on a miss the chart is rendered once, or, when its
//!    templates may generate material and the node has a previous render, twice at once to
//!    find the material ([`stability`]), whose previous values are carried over. A node whose
//!    values hold sensitive inputs is also rendered with canaries in their place, at the same
//!    time, to find the fields derived from them ([`provenance`]), from a copy of a local
//!    chart that generates cheap keys ([`cheap_keys`]); with a single real render the
//!    generated fields differ from the canary render too and are marked sensitive as well.
//!    A render that is only shown ([`RenderOptions::stand_in_keys`]) and a render with
//!    placeholders (never applied) run that copy instead of the chart, its generated fields
//!    masked; the shown output is cached apart from real ones.
//!    The marks are cached with the output. helm's version (part of the cache key) is cached
//!    by the helm binary's path, size and modification time; a session asks it in the
//!    background as it opens ([`prime_helm_version`]), and its renderers share it. While it
//!    is asked for the first time, a node without a previous render starts its renders at
//!    once, and uses them when the cache does not have the output.
//! 3. Kind scopes come from discovery, CRDs rendered anywhere in the plan, and the built-in
//!    kinds ([`kinds`]). Every object is then finished ([`objects`]): namespace by scope,
//!    ownership marks, sensitive paths (with the derived forms of sensitive values,
//!    [`masking`]), ignored fields dropped, digest, hook marks, and its
//!    comparison with the previous render ([`SincePrevious`]).
//!
//! Read and check nodes have no objects and are not part of the result. Only the helm runner
//! does I/O (it runs helm, reads local charts and writes a temporary 0600 values file).

pub mod cache;
pub mod chart_info;
pub mod cheap_keys;
pub mod dump;
pub mod error;
pub mod helm;
pub mod json;
pub mod kinds;
pub mod masking;
pub mod objects;
pub mod placeholder;
pub mod provenance;
pub mod scope;
pub mod stability;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::{OnceCell, Semaphore};

use crate::model::{
    Address, Helm, Manifest, Node, NodeSpec, ObjectRef, Plan, Template, deep_merge,
};
use meshplan_k8s::Discovery;

pub use cache::{CacheError, ChartIdentity, KeyInputs, MemoryCache, RenderCache, cache_key};
pub use chart_info::ChartInfo;
pub use dump::{DumpOptions, dump_render};
pub use error::{RenderError, RenderErrors};
pub use helm::{HELM_ENV, HelmOutput, HelmProcess, HelmRunError, HelmRunner};
pub use kinds::{KindScope, KindScopes, PlanKinds};
pub use masking::SensitiveForms;
pub use objects::{
    Hook, HookDeletePolicy, HookPhase, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NODE_ANNOTATION,
    PLAN_ANNOTATION,
};
pub use scope::{KNOWN_AFTER_APPLY, ReadValue, RenderScope};
pub use stability::{CarryOver, ChartDocument, ChartOutput};

use helm::{ChartProblem, ResolvedChart, TemplateArgs};
use objects::{DefaultNamespace, FinishContext};
use placeholder::{PlaceholderScope, Variant};
use scope::{Marked, evaluate_marked, evaluate_template_marked};

/// Settings of the render stage.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Repository alias → a local directory holding the alias's charts as `DIR/<chart>`
    /// (`--repo-dir NAME=DIR`); relative directories are resolved against the plan's
    /// directory. The chart's `Chart.yaml` version must match the version the plan pins.
    pub repo_dirs: BTreeMap<String, PathBuf>,
    /// The cluster's discovery: helm's `--api-versions` and kind scopes. `None` renders
    /// offline (helm's defaults, built-in kinds and the plan's CRDs).
    pub discovery: Option<Discovery>,
    /// The cluster's version (e.g. `v1.31.2`), helm's `--kube-version`; `None` leaves helm's
    /// default.
    pub kube_version: Option<String>,
    /// How many helm nodes render at once; 0 means the available parallelism.
    pub parallelism: usize,
    /// The render is shown, never applied (a plan without `--out`, a lint): on a cache miss,
    /// a local chart whose templates generate keys is rendered from its copy that generates
    /// cheap ones ([`cheap_keys`]), as the canary render is. The fields those keys make are
    /// sensitive (masked), the output is cached apart from real renders, and the apply
    /// renders the chart itself: the plan does not pay for keys it would not apply.
    pub stand_in_keys: bool,
}

/// What a render run knows besides the plan.
#[derive(Debug, Clone, Default)]
pub struct RenderInputs {
    /// Values of reads known so far; reads not listed are `(known after apply)`.
    pub reads: BTreeMap<Address, ReadValue>,
    /// What was applied last, per node (from state).
    pub previous: BTreeMap<Address, PreviousRender>,
    /// Render only these nodes (all manifest and helm nodes when `None`).
    pub targets: Option<BTreeSet<Address>>,
    /// Helm nodes whose generated material is regenerated: their chart is rendered anew (no
    /// reuse of the previous render or the cache) and nothing is carried over. For charts whose
    /// generated material depends on inputs (a certificate for a changed host name).
    pub regenerate: BTreeSet<Address>,
}

/// What a later render needs from an applied one: kept in state per node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PreviousRender {
    /// The render cache key of a helm node.
    pub cache_key: Option<String>,
    /// The chart output of a helm node, before finishing.
    pub chart_output: Option<ChartOutput>,
    /// The finished objects (hooks included).
    pub objects: Vec<Json>,
    /// Per object of `objects`, its sensitive paths (kept sealed in the state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_paths: Vec<BTreeSet<String>>,
}

/// Every rendered node, by address.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanRender {
    pub plan: String,
    pub nodes: BTreeMap<Address, NodeRender>,
    /// `helm version`, when helm ran.
    pub helm_version: Option<String>,
}

impl PlanRender {
    /// Every object whose kind neither the cluster nor the plan knows, as the error the plan
    /// stage reports (in address order).
    pub fn unknown_kinds(&self) -> Vec<UnknownKind> {
        self.objects()
            .filter(|(_, o)| o.scope == KindScope::Unknown)
            .map(|(address, o)| UnknownKind {
                node: address.clone(),
                object: o.object_ref.clone(),
            })
            .collect()
    }

    /// Every object (hooks included) of every rendered node, in address order.
    pub fn objects(&self) -> impl Iterator<Item = (&Address, &RenderedObject)> {
        self.nodes
            .iter()
            .flat_map(|(a, n)| n.objects.iter().chain(&n.hooks).map(move |o| (a, o)))
    }
}

/// One node's render.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRender {
    pub address: Address,
    pub status: NodeStatus,
    /// Ordinary objects, in the order written (manifests) or printed by helm.
    pub objects: Vec<RenderedObject>,
    /// Helm hook objects, in helm's order, each with its [`Hook`] marks.
    pub hooks: Vec<RenderedObject>,
    /// Details of a helm render.
    pub helm: Option<HelmRender>,
}

impl NodeRender {
    /// What to keep in state once this render is applied.
    pub fn to_previous(&self) -> PreviousRender {
        PreviousRender {
            cache_key: self.helm.as_ref().map(|h| h.cache_key.clone()),
            chart_output: self.helm.as_ref().map(|h| h.output.clone()),
            objects: self
                .objects
                .iter()
                .chain(&self.hooks)
                .map(|o| o.object.clone())
                .collect(),
            sensitive_paths: self
                .objects
                .iter()
                .chain(&self.hooks)
                .map(|o| o.sensitive_paths.clone())
                .collect(),
        }
    }
}

/// Whether the node's objects are known now.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeStatus {
    /// Rendered; single fields may still be `(known after apply)`.
    Rendered,
    /// A helm node rendered with a placeholder for each value known only during apply: its
    /// objects are known, the fields that depend on those values are `unknown_paths` of the
    /// objects. Rendered again with the real values during apply.
    RenderedWithPlaceholders {
        /// The references known only during apply (e.g. `read.trust_anchor.value`), sorted.
        unknown_references: Vec<String>,
    },
    /// A helm node that can only be rendered during apply.
    RenderedDuringApply {
        /// The references known only during apply (e.g. `read.trust_anchor.value`), sorted.
        unknown_references: Vec<String>,
        /// The merged values with `(known after apply)` at the unknown paths.
        known_values: Json,
        /// Paths of the unknown values inside `known_values`.
        unknown_paths: BTreeSet<String>,
        /// Paths of sensitive values inside `known_values` (never printed).
        sensitive_paths: BTreeSet<String>,
        /// Why it was not rendered with placeholders (the chart refused them, its objects
        /// depend on the values); None when its version or namespace is unknown.
        refused_placeholders: Option<String>,
    },
}

/// Where a helm node's chart output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderSource {
    /// `helm template` ran (twice at once when the chart may generate material and the node
    /// has a previous render).
    Helm,
    /// The render cache had the key.
    Cache,
    /// The previous (applied) render had the same key.
    Previous,
}

/// A helm node's render details.
#[derive(Debug, Clone, PartialEq)]
pub struct HelmRender {
    /// The chart as shown to users.
    pub chart: String,
    pub release: String,
    pub namespace: String,
    pub cache_key: String,
    pub source: RenderSource,
    /// Generated material handling; `None` when the output was reused.
    pub carry_over: Option<CarryOver>,
    /// The chart output as cached (before finishing).
    pub output: ChartOutput,
}

/// How an object compares with the node's previous render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SincePrevious {
    /// No previous render has the object.
    New,
    Same,
    Changed,
    /// Differs from the previous render only at volatile paths: the chart regenerated material.
    OnlyRegeneratedMaterial,
}

/// One desired object.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedObject {
    pub object_ref: ObjectRef,
    pub scope: KindScope,
    /// The object with ownership marks; sensitive paths must never be shown.
    pub object: Json,
    /// The manifest file or helm's `# Source:` template.
    pub source: Option<String>,
    pub hook: Option<Hook>,
    /// blake3 of the canonical JSON of `object`.
    pub digest: String,
    /// Paths holding `(known after apply)`.
    pub unknown_paths: BTreeSet<String>,
    /// Paths whose values are sensitive (never printed).
    pub sensitive_paths: BTreeSet<String>,
    /// Paths the chart regenerates on every render.
    pub volatile_paths: BTreeSet<String>,
    pub since_previous: SincePrevious,
}

impl RenderedObject {
    /// True when some field is known only during apply.
    pub fn is_known_after_apply(&self) -> bool {
        !self.unknown_paths.is_empty()
    }
}

/// An object of a kind that is not installed and not created by the plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
#[error(
    "{node}: {}: kind {} ({}) is not installed and not created by the plan",
    object.short(),
    object.kind,
    object.api_version
)]
#[diagnostic(
    code(render::unknown_kind),
    help(
        "install the CRD that defines the kind first, or add a node that creates it (and depend on it)"
    )
)]
pub struct UnknownKind {
    pub node: Address,
    pub object: ObjectRef,
}

/// Renders plans; holds the helm runner, the render cache and the options.
pub struct Renderer {
    helm: Arc<dyn HelmRunner>,
    cache: Arc<dyn RenderCache>,
    options: RenderOptions,
    /// helm's version, asked once; shared with the other renderers of a run
    /// ([`Renderer::with_helm_version`]).
    helm_version: Arc<OnceCell<String>>,
    /// The copies of local charts with cheap keys, for canary renders ([`cheap_keys`]), by
    /// chart path and content; None for a chart that generates no key. Removed with the
    /// renderer.
    cheap_charts: std::sync::Mutex<BTreeMap<ChartCopyKey, Option<Arc<CheapChart>>>>,
}

/// A local chart's path and content digest.
type ChartCopyKey = (String, String);

/// A copy of a local chart with cheap keys ([`cheap_keys`]), removed when dropped.
struct CheapChart {
    chart: ResolvedChart,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A node's objects before finishing.
struct RawDoc {
    source: Option<String>,
    object: Json,
    unknown_paths: BTreeSet<String>,
    sensitive_paths: BTreeSet<String>,
    volatile_paths: BTreeSet<String>,
}

enum RawNode {
    Objects {
        docs: Vec<RawDoc>,
        default_namespace: DefaultNamespace,
        helm: Option<HelmRender>,
        /// Rendered with placeholders for these references.
        placeholders: Vec<String>,
    },
    DuringApply {
        unknown_references: Vec<String>,
        known_values: Json,
        unknown_paths: BTreeSet<String>,
        sensitive_paths: BTreeSet<String>,
        refused_placeholders: Option<String>,
    },
}

impl Renderer {
    pub fn new(
        helm: Arc<dyn HelmRunner>,
        cache: Arc<dyn RenderCache>,
        options: RenderOptions,
    ) -> Self {
        Self {
            helm,
            cache,
            options,
            helm_version: Arc::new(OnceCell::new()),
            cheap_charts: std::sync::Mutex::default(),
        }
    }

    /// Shares helm's version with other renderers of the same run (and with
    /// [`prime_helm_version`], which may be asking it already): helm is asked at most once.
    pub fn with_helm_version(mut self, version: Arc<OnceCell<String>>) -> Self {
        self.helm_version = version;
        self
    }

    /// Renders every manifest and helm node of `plan` (or the targets). All nodes are tried;
    /// the errors of every failed node are returned together.
    pub async fn render(
        &self,
        plan: &Plan,
        inputs: &RenderInputs,
    ) -> Result<PlanRender, RenderErrors> {
        let scope = RenderScope::new(plan, &inputs.reads);
        let selected: Vec<&Node> = plan
            .nodes
            .values()
            .filter(|n| matches!(n.spec, NodeSpec::Manifest(_) | NodeSpec::Helm(_)))
            .filter(|n| {
                inputs
                    .targets
                    .as_ref()
                    .is_none_or(|t| t.contains(&n.address))
            })
            .collect();
        let permits = match self.options.parallelism {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let semaphore = Semaphore::new(permits);
        let sensitive_values = scope.sensitive_values();
        masking::register_for_output(&sensitive_values);
        let jobs = selected.iter().map(|node| {
            let scope = &scope;
            let semaphore = &semaphore;
            let secrets = &sensitive_values;
            async move {
                let result = match &node.spec {
                    NodeSpec::Manifest(m) => render_manifest(node, m, scope),
                    NodeSpec::Helm(h) => {
                        let regenerate = inputs.regenerate.contains(&node.address);
                        self.render_helm(
                            plan,
                            node,
                            h,
                            scope,
                            inputs.previous.get(&node.address),
                            regenerate,
                            semaphore,
                            secrets,
                        )
                        .await
                    }
                    NodeSpec::Read(_) | NodeSpec::Check(_) => Ok(RawNode::Objects {
                        docs: Vec::new(),
                        default_namespace: DefaultNamespace::Known("default".into()),
                        helm: None,
                        placeholders: Vec::new(),
                    }),
                };
                (node.address.clone(), result)
            }
        });
        let results = futures::future::join_all(jobs).await;

        let mut errors = Vec::new();
        let mut raw: BTreeMap<Address, RawNode> = BTreeMap::new();
        for (address, result) in results {
            match result {
                Ok(r) => {
                    raw.insert(address, r);
                }
                Err(e) => errors.push(e),
            }
        }

        let mut kinds = PlanKinds::new(
            self.options
                .discovery
                .as_ref()
                .map(|d| d as &dyn KindScopes),
        );
        let mut ignore_facts = crate::model::ignore::IgnoreFacts::default();
        for node in raw.values() {
            if let RawNode::Objects {
                docs,
                default_namespace,
                ..
            } = node
            {
                docs.iter().for_each(|d| kinds.learn(&d.object));
                let namespace = match default_namespace {
                    DefaultNamespace::Known(ns) => Some(ns.as_str()),
                    DefaultNamespace::Unknown => None,
                };
                ignore_facts.learn(docs.iter().map(|d| &d.object), namespace);
            }
        }
        let sensitive_forms = SensitiveForms::new(&sensitive_values);
        let mut nodes = BTreeMap::new();
        for (address, node) in raw {
            let rules: Vec<&crate::model::IgnoreRule> = plan.ignore_rules(&address).collect();
            let finish = FinishInputs {
                kinds: &kinds,
                sensitive_forms: &sensitive_forms,
                ignore_rules: &rules,
                ignore_facts: &ignore_facts,
            };
            match finish_node(
                &plan.name,
                &address,
                node,
                &finish,
                inputs.previous.get(&address),
            ) {
                Ok(n) => {
                    nodes.insert(address, n);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| a.node().cmp(b.node()));
            return Err(RenderErrors {
                errors: helm_missing_once(errors),
            });
        }
        Ok(PlanRender {
            plan: plan.name.clone(),
            nodes,
            helm_version: self.helm_version.get().cloned(),
        })
    }

    /// What the chart of a helm node declares (values, schema, subcharts): read from the
    /// chart directory or archive the node resolves to, or fetched with `helm pull` for a
    /// repository or OCI chart. Err: why it cannot be read (for messages).
    pub async fn chart_info(&self, plan: &Plan, node: &Node) -> Result<ChartInfo, String> {
        let NodeSpec::Helm(helm) = &node.spec else {
            return Err(format!("{} is not a helm node", node.address));
        };
        let version = match &helm.version {
            None => None,
            Some(t) => match t.evaluate(&plan.static_scope()) {
                Ok(v) => Some(json_text(&v)),
                Err(_) => return Err("its chart version is known only during apply".into()),
            },
        };
        let chart = resolve_chart_for(plan, &node.address, helm, version.as_deref(), &self.options)
            .map_err(|e| e.to_string())?;
        if chart.repo_url.is_none() && matches!(chart.identity, ChartIdentity::Local { .. }) {
            return chart_info::read_chart(std::path::Path::new(&chart.reference));
        }
        let dir = std::env::temp_dir().join(format!("meshplan-chart-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut args = vec!["pull".to_string(), chart.reference.clone()];
        if let Some(url) = &chart.repo_url {
            args.extend(["--repo".into(), url.clone()]);
        }
        if let Some(v) = &chart.version {
            args.extend(["--version".into(), v.clone()]);
        }
        args.extend(["--destination".into(), dir.display().to_string()]);
        let pulled = self
            .run_helm(
                &node.address,
                &chart.display,
                chart.repo_url.as_deref(),
                args,
            )
            .await;
        let result = pulled.map_err(|e| e.to_string()).and_then(|_| {
            let archive = std::fs::read_dir(&dir)
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "tgz"))
                .ok_or_else(|| "helm pull wrote no chart archive".to_string())?;
            chart_info::read_chart(&archive)
        });
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// helm's version: from the cache when the same binary answered before, else asked.
    async fn helm_version(&self, node: &Address) -> Result<String, RenderError> {
        self.helm_version
            .get_or_try_init(|| async {
                ask_helm_version(self.helm.as_ref(), self.cache.as_ref())
                    .await
                    .map_err(|failure| match failure {
                        VersionFailure::Run(e) => run_error(node, e),
                        VersionFailure::Failed(out) => {
                            helm_failed(node, "helm", None, "version", &out)
                        }
                    })
            })
            .await
            .cloned()
    }

    /// Runs helm for `node`; `chart` names the chart in messages, `repo_url` is its
    /// repository's (for the way out when the repository cannot be reached).
    async fn run_helm(
        &self,
        node: &Address,
        chart: &str,
        repo_url: Option<&str>,
        args: Vec<String>,
    ) -> Result<String, RenderError> {
        let command = args.first().cloned().unwrap_or_default();
        let out = self.helm.run(args).await.map_err(|e| run_error(node, e))?;
        if !out.success {
            return Err(helm_failed(node, chart, repo_url, &command, &out));
        }
        Ok(out.stdout)
    }

    #[allow(clippy::too_many_arguments)]
    async fn render_helm(
        &self,
        plan: &Plan,
        node: &Node,
        helm: &Helm,
        scope: &RenderScope<'_>,
        previous: Option<&PreviousRender>,
        regenerate: bool,
        processes: &Semaphore,
        secrets: &[String],
    ) -> Result<RawNode, RenderError> {
        let address = &node.address;
        let eval_err = |source| RenderError::Eval {
            node: address.clone(),
            source: Box::new(source),
        };
        // Namespace, version and values, with unknowns marked.
        let mut marks = Marked::default();
        let text = |t: Option<&Template>, path: &str, marks: &mut Marked| {
            t.map(|t| evaluate_template_marked(t, scope, path, marks))
                .transpose()
                .map(|v| v.map(|v| json_text(&v)))
        };
        let namespace = text(node.namespace.as_ref(), "/namespace", &mut marks)
            .map_err(eval_err)?
            .unwrap_or_else(|| "default".to_string());
        let version = text(helm.version.as_ref(), "/version", &mut marks).map_err(eval_err)?;
        let identity_unknown = !marks.unknown_references.is_empty();
        let mut values = Json::Object(serde_json::Map::new());
        let mut value_marks = Marked::default();
        for layer in helm
            .values_files
            .iter()
            .map(|f| &f.values)
            .chain(std::iter::once(&helm.values))
        {
            let m = evaluate_marked(layer, scope).map_err(eval_err)?;
            deep_merge(&mut values, m.value);
            value_marks.unknown_paths.extend(m.unknown_paths);
            value_marks.unknown_references.extend(m.unknown_references);
            value_marks.sensitive_paths.extend(m.sensitive_paths);
        }
        // A later layer may replace an unknown value of an earlier one.
        value_marks
            .unknown_paths
            .retain(|p| values.pointer(p).and_then(Json::as_str) == Some(KNOWN_AFTER_APPLY));
        if !value_marks.unknown_paths.is_empty() {
            marks
                .unknown_references
                .extend(value_marks.unknown_references);
        }
        let during_apply = |refused_placeholders: Option<String>| RawNode::DuringApply {
            unknown_references: marks.unknown_references.iter().cloned().collect(),
            known_values: values.clone(),
            unknown_paths: value_marks.unknown_paths.clone(),
            sensitive_paths: value_marks.sensitive_paths.clone(),
            refused_placeholders,
        };
        if identity_unknown {
            return Ok(during_apply(None));
        }

        let chart = resolve_chart_for(plan, address, helm, version.as_deref(), &self.options)?;
        let api_versions = self
            .options
            .discovery
            .as_ref()
            .map(Discovery::api_versions)
            .unwrap_or_default();
        let kube_version = self.options.kube_version.clone();
        let no_version = String::new();
        let early = ChartRun {
            processes,
            address,
            chart: &chart,
            helm,
            helm_version: &no_version,
            api_versions: &api_versions,
            kube_version: kube_version.as_deref(),
            namespace: &namespace,
            sensitive_inputs: &value_marks.sensitive_paths,
            secrets,
        };
        // helm's version is part of the cache key only. A node without a previous render,
        // when helm's version is asked for the first time (a render cache that has never
        // seen this helm binary: a first plan), starts its renders at once instead of after
        // `helm version`; they are used only when the cache, asked with the key, does not
        // have the output.
        let known_values = marks.unknown_references.is_empty();
        let early_start = known_values && previous.is_none() && self.helm_version_unknown();
        let (helm_version, early_renders) = if early_start {
            let (version, renders) = futures::future::join(
                self.helm_version(address),
                self.fresh_renders(&early, &values, false),
            )
            .await;
            (version?, Some(renders))
        } else {
            (self.helm_version(address).await?, None)
        };
        let run = ChartRun {
            helm_version: &helm_version,
            ..early
        };

        let (key, output, source, carry, placeholders) = if known_values {
            let (key, output, source, carry) = self
                .chart_output(&run, &values, previous, regenerate, early_renders)
                .await?;
            (key, output, source, carry, Vec::new())
        } else {
            // Values known only during apply: render with placeholders, twice.
            let evaluate = |variant| {
                let scope = PlaceholderScope {
                    inner: *scope,
                    plan,
                    variant,
                };
                let mut values = Json::Object(serde_json::Map::new());
                for layer in helm
                    .values_files
                    .iter()
                    .map(|f| &f.values)
                    .chain(std::iter::once(&helm.values))
                {
                    deep_merge(&mut values, layer.evaluate(&scope)?);
                }
                Ok::<_, crate::model::EvalError>(values)
            };
            let values_a = evaluate(Variant::A).map_err(eval_err)?;
            let values_b = evaluate(Variant::B).map_err(eval_err)?;
            match self.placeholder_output(&run, &values_a, &values_b).await? {
                Ok((key, output, source)) => (
                    key,
                    output,
                    source,
                    None,
                    marks.unknown_references.iter().cloned().collect(),
                ),
                Err(refused) => return Ok(during_apply(Some(refused))),
            }
        };
        let placeholder_render = !placeholders.is_empty();

        let mut docs = Vec::new();
        if helm.create_namespace {
            docs.push(RawDoc {
                source: None,
                object: serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace},
                }),
                unknown_paths: BTreeSet::new(),
                sensitive_paths: BTreeSet::new(),
                volatile_paths: BTreeSet::new(),
            });
        }
        docs.extend(output.documents.iter().map(|d| {
            // A placeholder render's "volatile" paths are the paths that differ between its
            // two variants: the fields known after apply.
            let (unknown_paths, volatile_paths) = if placeholder_render {
                (d.volatile_paths.clone(), BTreeSet::new())
            } else {
                (BTreeSet::new(), d.volatile_paths.clone())
            };
            RawDoc {
                source: d.source.clone(),
                object: d.object.clone(),
                unknown_paths,
                sensitive_paths: d.sensitive_paths.clone(),
                volatile_paths,
            }
        }));
        Ok(RawNode::Objects {
            docs,
            default_namespace: DefaultNamespace::Known(namespace.clone()),
            helm: Some(HelmRender {
                chart: chart.display.clone(),
                release: helm.release.clone(),
                namespace,
                cache_key: key,
                source,
                carry_over: carry,
                output,
            }),
            placeholders,
        })
    }

    /// The chart's output for known values: the previous render or the render cache when
    /// they have the key, else `helm template`. A chart that may generate material is rendered
    /// twice at once when the node has a previous render (to find the material, carried over
    /// from the previous render when it can be), once when it has none (nothing to carry over
    /// or compare with; see [`stability`]). Returns the key, the output, where it came from
    /// and what became of generated material (None when reused).
    async fn chart_output(
        &self,
        run: &ChartRun<'_>,
        values: &Json,
        previous: Option<&PreviousRender>,
        regenerate: bool,
        early_renders: Option<FreshRenders>,
    ) -> Result<(String, ChartOutput, RenderSource, Option<CarryOver>), RenderError> {
        let address = run.address;
        let key = run.key(values);
        let cache_err = |source| RenderError::Cache {
            node: address.clone(),
            source,
        };
        // Generated material is looked for only against a previous render: to carry it over,
        // or (regenerating) to report the objects that change only because of it.
        let has_previous = previous.is_some();
        let previous = previous.filter(|_| !regenerate);
        let reused_previous = previous
            .filter(|p| p.cache_key.as_deref() == Some(key.as_str()))
            .and_then(|p| p.chart_output.clone());
        if let Some(output) = reused_previous {
            return Ok((key, output, RenderSource::Previous, None));
        }
        // A real render serves a plan that is only shown as well as a stand-in render.
        let stand_in_key = stand_in_cache_key(&key);
        let cached_keys = std::iter::once(&key)
            .chain(self.options.stand_in_keys.then_some(&stand_in_key))
            .filter(|_| !regenerate);
        for cached_key in cached_keys {
            if let Some(output) = self
                .cache
                .get(cached_key)
                .map_err(cache_err)?
                .as_ref()
                .and_then(ChartOutput::from_json)
                // Rendered once without a previous render: its generated material was not
                // found, so it cannot be carried over from the previous render this node has
                // now.
                .filter(|o| !(o.volatile_unknown && has_previous))
            {
                return Ok((key, output, RenderSource::Cache, None));
            }
        }
        let generates = run.chart.generates.is_some() || values_generate(values);
        let find_volatile = generates && has_previous;
        let FreshRenders {
            first,
            second,
            canary,
            stand_in,
        } = match early_renders {
            Some(renders) => renders,
            None => self.fresh_renders(run, values, has_previous).await,
        };
        let first = first?;
        let volatile = match second? {
            Some(second) => stability::volatile_paths(&first, &second),
            None => vec![BTreeSet::new(); first.len()],
        };
        // Rendered once: the fields the canary render changes may be generated material as
        // well as derived from sensitive inputs. All are sensitive (over-masking generated
        // material is the safe direction).
        let mut sensitive = canary_sensitive(&first, canary.as_deref(), &volatile);
        if stand_in {
            // Stand-in keys are never shown: the apply generates its own.
            for (paths, generated) in sensitive.iter_mut().zip(&volatile) {
                paths.extend(generated.iter().cloned());
            }
        }
        let mut output = chart_output(first, volatile, sensitive);
        let carry = if generates && !find_volatile {
            output.volatile_unknown = true;
            CarryOver::Regenerated {
                reason: "no previous render to take generated material from".into(),
            }
        } else {
            stability::carry_over(&mut output, previous.and_then(|p| p.chart_output.as_ref()))
        };
        let carry = match carry {
            CarryOver::Regenerated { .. } if regenerate => CarryOver::Regenerated {
                reason: "regeneration was asked for".into(),
            },
            other => other,
        };
        let put_key = if stand_in { &stand_in_key } else { &key };
        self.cache
            .put(put_key, &output.to_json())
            .map_err(cache_err)?;
        Ok((key, output, RenderSource::Helm, Some(carry)))
    }

    /// The renders of a chart on a cache miss, all at the same time: the real one; a second
    /// one when the chart (or a value it may pass to `tpl`) may generate material and there
    /// is a previous render to carry it over from or compare it with; and one with canaries
    /// for the sensitive inputs, when there are any. `run`'s helm version is not used.
    async fn fresh_renders(
        &self,
        run: &ChartRun<'_>,
        values: &Json,
        has_previous: bool,
    ) -> FreshRenders {
        let generates = run.chart.generates.is_some() || values_generate(values);
        let find_volatile = generates && has_previous;
        let canary = run.canary_values(values, false);
        let stand_in = self
            .options
            .stand_in_keys
            .then(|| self.cheap_key_chart(run.chart))
            .flatten();
        // Stand-in keys are masked: the fields they make are found by the canary render, or
        // without one by a second render.
        let second_needed = find_volatile || (stand_in.is_some() && canary.is_none());
        let main = stand_in.as_ref().map_or(*run, |copy| run.on(&copy.chart));
        let ((first, second), canary) = futures::future::join(
            self.one_or_two_renders(&main, values, second_needed),
            self.canary_render(run, canary.as_ref()),
        )
        .await;
        if stand_in.is_some() && (first.is_err() || second.is_err()) {
            tracing::debug!(
                node = %run.address,
                "the chart refuses cheap keys: it is rendered with its own"
            );
            let (first, second) = self.one_or_two_renders(run, values, find_volatile).await;
            return FreshRenders {
                first,
                second,
                canary,
                stand_in: false,
            };
        }
        // The chart refused the canaries: a second render of the copy finds the stand-in
        // material instead.
        let second = match (&stand_in, &canary, second) {
            (Some(_), None, Ok(None)) if first.is_ok() => {
                self.template_with(&main, values).await.map(Some)
            }
            (_, _, second) => second,
        };
        FreshRenders {
            first,
            second,
            canary,
            stand_in: stand_in.is_some(),
        }
    }

    /// `helm template` of `run`, and a second one at the same time when `second` is asked.
    async fn one_or_two_renders(
        &self,
        run: &ChartRun<'_>,
        values: &Json,
        second: bool,
    ) -> (
        Result<Documents, RenderError>,
        Result<Option<Documents>, RenderError>,
    ) {
        let again = async {
            if second {
                self.template_with(run, values).await.map(Some)
            } else {
                Ok(None)
            }
        };
        futures::future::join(self.template_with(run, values), again).await
    }

    /// Whether helm's version is still to be asked: neither this run nor the render cache
    /// knows it for this helm binary.
    fn helm_version_unknown(&self) -> bool {
        self.helm_version.get().is_none()
            && !matches!(
                version_key(self.helm.as_ref()).map(|key| self.cache.get(&key)),
                Some(Ok(Some(Json::String(_))))
            )
    }

    /// The chart's output with placeholders: render A's documents, each with the paths that
    /// differ in render B as its volatile paths (the fields known after apply). Cached under
    /// the key of `values_a` (placeholders never occur in real values). The inner error is
    /// why the chart cannot be planned with placeholders: helm refused them, or the objects
    /// depend on the values. The output is never applied (the apply renders the node again
    /// with the values), so a chart that generates keys renders from its copy with cheap ones
    /// ([`cheap_keys`]) whatever [`RenderOptions::stand_in_keys`] says: the generated fields
    /// differ between A and B either way.
    async fn placeholder_output(
        &self,
        run: &ChartRun<'_>,
        values_a: &Json,
        values_b: &Json,
    ) -> Result<Result<(String, ChartOutput, RenderSource), String>, RenderError> {
        let address = run.address;
        let key = run.key(values_a);
        let cache_err = |source| RenderError::Cache {
            node: address.clone(),
            source,
        };
        if let Some(output) = self
            .cache
            .get(&key)
            .map_err(cache_err)?
            .as_ref()
            .and_then(ChartOutput::from_json)
        {
            return Ok(Ok((key, output, RenderSource::Cache)));
        }
        let refused = |e: RenderError| match e {
            RenderError::HelmFailed { stderr, .. } => Ok(format!(
                "the chart refuses a placeholder: {}",
                helm_message(&stderr)
            )),
            RenderError::BadOutput {
                source_file,
                message,
                ..
            } => Ok(format!(
                "with a placeholder the chart prints a document that is not an object{}: {message}",
                source_file.map(|s| format!(" ({s})")).unwrap_or_default()
            )),
            other => Err(other),
        };
        let canary = run.canary_values(values_a, true);
        let stand_in = self.cheap_key_chart(run.chart);
        let main = stand_in.as_ref().map_or(*run, |copy| run.on(&copy.chart));
        let (a, b, canary) = futures::future::join3(
            self.template_with(&main, values_a),
            self.template_with(&main, values_b),
            self.canary_render(run, canary.as_ref()),
        )
        .await;
        let (a, b) = if stand_in.is_some() && (a.is_err() || b.is_err()) {
            // The copy refused: the chart itself says whether it refuses the placeholders.
            futures::future::join(
                self.template_with(run, values_a),
                self.template_with(run, values_b),
            )
            .await
        } else {
            (a, b)
        };
        let a = match a {
            Ok(a) => a,
            Err(e) => return refused(e).map(Err),
        };
        let b = match b {
            Ok(b) => b,
            Err(e) => return refused(e).map(Err),
        };
        let unknown = match placeholder::unknown_paths(&a, &b) {
            Ok(unknown) => unknown,
            Err(e) => return Ok(Err(e.reason)),
        };
        let sensitive = canary_sensitive(&a, canary.as_deref(), &unknown);
        let output = chart_output(a, unknown, sensitive);
        self.cache.put(&key, &output.to_json()).map_err(cache_err)?;
        Ok(Ok((key, output, RenderSource::Helm)))
    }

    /// The render with canary values (see [`provenance`]); None when there is nothing to
    /// render or the chart refuses the canaries (the derived forms of [`masking`] are then
    /// the only net).
    async fn canary_render(
        &self,
        run: &ChartRun<'_>,
        canary: Option<&Json>,
    ) -> Option<Vec<(Option<String>, Json)>> {
        let canary = canary?;
        if let Some(cheap) = self.cheap_key_chart(run.chart) {
            match self.template_with(&run.on(&cheap.chart), canary).await {
                Ok(docs) => return Some(docs),
                Err(e) => tracing::debug!(
                    node = %run.address,
                    error = %e,
                    "the chart refuses cheap keys: the canary render runs with the chart itself"
                ),
            }
        }
        match self.template_with(run, canary).await {
            Ok(docs) => Some(docs),
            Err(e) => {
                tracing::warn!(
                    node = %run.address,
                    error = %e,
                    "the chart refuses the canary values: sensitive fields are found by their derived forms only"
                );
                None
            }
        }
    }

    /// The copy of `chart` with cheap keys for its canary renders ([`cheap_keys`]), made once
    /// per chart. None for a chart that is not local (a directory or a packaged chart), whose
    /// templates generate no key, or that cannot be copied (the canary render then runs with
    /// the chart itself).
    fn cheap_key_chart(&self, chart: &ResolvedChart) -> Option<Arc<CheapChart>> {
        let ChartIdentity::Local { content_digest, .. } = &chart.identity else {
            return None;
        };
        chart.generates.as_ref()?;
        let path = std::path::Path::new(&chart.reference);
        let mut copies = self.cheap_charts.lock().ok()?;
        copies
            .entry((chart.reference.clone(), content_digest.clone()))
            .or_insert_with(|| {
                let dir = tempfile::Builder::new()
                    .prefix("meshplan-chart-")
                    .tempdir()
                    .ok()?;
                match cheap_keys::cheap_copy(path, dir.path()) {
                    Ok(Some(copy)) => Some(Arc::new(CheapChart {
                        chart: ResolvedChart {
                            reference: copy.display().to_string(),
                            ..chart.clone()
                        },
                        _dir: dir,
                    })),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(chart = %chart.display, error = %e, "the chart could not be copied with cheap keys");
                        None
                    }
                }
            })
            .clone()
    }

    /// `helm template` of `run` with `values` (written to a temporary 0600 file).
    async fn template_with(
        &self,
        run: &ChartRun<'_>,
        values: &Json,
    ) -> Result<Vec<(Option<String>, Json)>, RenderError> {
        let values_file = ValuesFile::write(values).map_err(|source| RenderError::ValuesFile {
            node: run.address.clone(),
            source,
        })?;
        let args = helm::template_args(
            run.chart,
            &TemplateArgs {
                release: &run.helm.release,
                namespace: run.namespace,
                values_file: &values_file.path,
                include_crds: run.helm.include_crds,
                api_versions: run.api_versions,
                kube_version: run.kube_version,
            },
        );
        let out = self
            .template(run.processes, run.address, run.chart, args)
            .await;
        drop(values_file);
        out
    }

    /// Runs `helm template` (holding one of the `processes` permits) and parses its output.
    async fn template(
        &self,
        processes: &Semaphore,
        node: &Address,
        chart: &ResolvedChart,
        args: Vec<String>,
    ) -> Result<Vec<(Option<String>, Json)>, RenderError> {
        let permit = processes.acquire().await.ok();
        let stdout = self
            .run_helm(node, &chart.display, chart.repo_url.as_deref(), args)
            .await?;
        drop(permit);
        helm::parse_documents(&stdout).map_err(|e| RenderError::BadOutput {
            node: node.clone(),
            source_file: e.source,
            message: meshplan_k8s::text::clip_message(&e.message),
        })
    }
}

/// Why helm's version could not be asked.
enum VersionFailure {
    Run(HelmRunError),
    Failed(HelmOutput),
}

/// helm's version: from `cache` when the same binary (path, size, modification time)
/// answered before, else `helm version` (kept in `cache`).
async fn ask_helm_version(
    helm: &dyn HelmRunner,
    cache: &dyn RenderCache,
) -> Result<String, VersionFailure> {
    let key = version_key(helm);
    if let Some(key) = &key
        && let Ok(Some(Json::String(version))) = cache.get(key)
    {
        return Ok(version);
    }
    let args = vec![
        "version".to_string(),
        "--template".to_string(),
        "{{.Version}}".to_string(),
    ];
    let out = helm.run(args).await.map_err(VersionFailure::Run)?;
    if !out.success {
        return Err(VersionFailure::Failed(out));
    }
    let version = out.stdout.trim().to_string();
    if let Some(key) = &key {
        // Only a cache: a failure to keep it costs the next run one `helm version`.
        let _ = cache.put(key, &Json::String(version.clone()));
    }
    Ok(version)
}

/// The render cache key of helm's version: the helm binary (path, size, modification time).
fn version_key(helm: &dyn HelmRunner) -> Option<String> {
    helm.binary()
        .map(|b| format!("helm-version:{}", blake3::hash(b.as_bytes()).to_hex()))
}

/// The renders of a chart on a cache miss ([`Renderer::fresh_renders`]).
struct FreshRenders {
    first: Result<Documents, RenderError>,
    second: Result<Option<Documents>, RenderError>,
    canary: Option<Documents>,
    /// The first and second renders are of the chart's copy with cheap keys
    /// ([`RenderOptions::stand_in_keys`]).
    stand_in: bool,
}

/// The documents of one `helm template`: `(source, object)`, in order.
type Documents = Vec<(Option<String>, Json)>;

/// Where the render cache keeps a chart's output with stand-in keys
/// ([`RenderOptions::stand_in_keys`]): apart from the real output under `key`, which an
/// apply may take.
fn stand_in_cache_key(key: &str) -> String {
    format!("{key}+stand-in-keys")
}

/// Asks helm's version into `version` ahead of the render that needs it (the cache key of
/// every helm node holds it), so that `helm version` runs while the caller does other work
/// (connecting, discovery) instead of before the first `helm template`. A failure leaves
/// `version` empty: the render asks again and reports it for its nodes.
pub async fn prime_helm_version(
    helm: Arc<dyn HelmRunner>,
    cache: Arc<dyn RenderCache>,
    version: Arc<OnceCell<String>>,
) {
    let _ = version
        .get_or_try_init(|| ask_helm_version(helm.as_ref(), cache.as_ref()))
        .await;
}

/// The error of helm that could not be run for `node`.
fn run_error(node: &Address, e: HelmRunError) -> RenderError {
    match e {
        HelmRunError::NotFound { program } => RenderError::HelmNotFound {
            node: node.clone(),
            program,
            nodes: vec![node.clone()],
        },
        HelmRunError::Io { program, source } => RenderError::HelmIo {
            node: node.clone(),
            program,
            source,
        },
    }
}

/// The error of a helm `command` that failed for `node`.
fn helm_failed(
    node: &Address,
    chart: &str,
    repo_url: Option<&str>,
    command: &str,
    out: &HelmOutput,
) -> RenderError {
    RenderError::HelmFailed {
        node: node.clone(),
        chart: chart.to_string(),
        command: command.to_string(),
        help: helm::unreachable_repo_help(chart, repo_url, &out.stderr).map(Box::new),
        stderr: meshplan_k8s::text::clip_message(out.stderr.trim_end()),
    }
}

/// Whether a string of the values holds a template action that generates material (a chart
/// may render values with `tpl`).
fn values_generate(values: &Json) -> bool {
    match values {
        Json::String(s) => stability::generating_call(s).is_some(),
        Json::Array(items) => items.iter().any(values_generate),
        Json::Object(map) => map.values().any(values_generate),
        _ => false,
    }
}

/// A missing helm binary reported once, for every node that needed it (the first such error
/// takes the nodes of the others; the other errors stay as they are).
fn helm_missing_once(errors: Vec<RenderError>) -> Vec<RenderError> {
    let mut out: Vec<RenderError> = Vec::new();
    let mut first: Option<usize> = None;
    for e in errors {
        match (e, first) {
            (RenderError::HelmNotFound { nodes: more, .. }, Some(i)) => {
                if let RenderError::HelmNotFound { nodes, .. } = &mut out[i] {
                    nodes.extend(more);
                }
            }
            (e @ RenderError::HelmNotFound { .. }, None) => {
                first = Some(out.len());
                out.push(e);
            }
            (e, _) => out.push(e),
        }
    }
    out
}

/// What one `helm template` of a node needs besides its values.
#[derive(Clone, Copy)]
struct ChartRun<'a> {
    /// Permits for helm processes (at most `parallelism` at once).
    processes: &'a Semaphore,
    address: &'a Address,
    chart: &'a ResolvedChart,
    helm: &'a Helm,
    helm_version: &'a str,
    api_versions: &'a [String],
    kube_version: Option<&'a str>,
    namespace: &'a str,
    /// The paths of the values built from sensitive inputs.
    sensitive_inputs: &'a BTreeSet<String>,
    /// The sensitive values known (for the canaries).
    secrets: &'a [String],
}

impl<'a> ChartRun<'a> {
    /// This run with another chart: the copy with cheap keys ([`cheap_keys`]).
    fn on<'b>(&self, chart: &'b ResolvedChart) -> ChartRun<'b>
    where
        'a: 'b,
    {
        ChartRun { chart, ..*self }
    }

    /// `values` with canaries for the sensitive inputs (see [`provenance`]). `known_only`:
    /// only the paths that hold a known sensitive value (a placeholder render: the paths of
    /// placeholders are known after apply, not sensitive now).
    fn canary_values(&self, values: &Json, known_only: bool) -> Option<Json> {
        let paths: BTreeSet<String> = self
            .sensitive_inputs
            .iter()
            .filter(|p| {
                !known_only
                    || values
                        .pointer(p)
                        .is_some_and(|v| holds_any(v, self.secrets))
            })
            .cloned()
            .collect();
        provenance::canary_values(values, &paths, self.secrets)
    }

    /// The render cache key of the chart with `values`.
    fn key(&self, values: &Json) -> String {
        cache_key(&KeyInputs {
            chart: &self.chart.identity,
            values,
            helm_version: self.helm_version,
            api_versions: self.api_versions,
            kube_version: self.kube_version,
            namespace: self.namespace,
            release: &self.helm.release,
            include_crds: self.helm.include_crds,
            sensitive_inputs: self.sensitive_inputs,
        })
    }
}

/// Whether a value (or a string inside it) holds one of `secrets`.
fn holds_any(value: &Json, secrets: &[String]) -> bool {
    match value {
        Json::String(s) => secrets
            .iter()
            .any(|x| !x.is_empty() && s.contains(x.as_str())),
        Json::Number(n) => secrets.iter().any(|x| *x == n.to_string()),
        Json::Array(items) => items.iter().any(|v| holds_any(v, secrets)),
        Json::Object(map) => map.values().any(|v| holds_any(v, secrets)),
        _ => false,
    }
}

/// Per document of `real`, the paths the canary render says were derived from sensitive
/// inputs, without the paths that differ anyway (`differ_anyway`: generated material, or the
/// placeholders' fields, known after apply); nothing without a canary render.
fn canary_sensitive(
    real: &[(Option<String>, Json)],
    canary: Option<&[(Option<String>, Json)]>,
    differ_anyway: &[BTreeSet<String>],
) -> Vec<BTreeSet<String>> {
    let Some(canary) = canary else {
        return vec![BTreeSet::new(); real.len()];
    };
    provenance::sensitive_paths(real, canary)
        .into_iter()
        .enumerate()
        .map(|(i, paths)| {
            let anyway = differ_anyway.get(i);
            paths
                .into_iter()
                .filter(|p| {
                    anyway.is_none_or(|a| {
                        !a.iter().any(|x| p == x || p.starts_with(&format!("{x}/")))
                    })
                })
                .collect()
        })
        .collect()
}

/// A chart output from one render's documents and, per document, its volatile and sensitive
/// paths.
fn chart_output(
    docs: Vec<(Option<String>, Json)>,
    volatile: Vec<BTreeSet<String>>,
    sensitive: Vec<BTreeSet<String>>,
) -> ChartOutput {
    ChartOutput {
        documents: docs
            .into_iter()
            .zip(volatile)
            .zip(sensitive)
            .map(
                |(((source, object), volatile_paths), sensitive_paths)| ChartDocument {
                    source,
                    object,
                    volatile_paths,
                    sensitive_paths,
                },
            )
            .collect(),
        carried_over: false,
        volatile_unknown: false,
    }
}

/// The first line of what helm printed on failure, without its `Error: ` prefix.
fn helm_message(stderr: &str) -> String {
    let line = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("helm failed");
    line.strip_prefix("Error: ").unwrap_or(line).to_owned()
}

fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn resolve_chart_for(
    plan: &Plan,
    address: &Address,
    helm: &Helm,
    version: Option<&str>,
    options: &RenderOptions,
) -> Result<ResolvedChart, RenderError> {
    helm::resolve_chart(&helm.chart, version, &plan.base_dir, &options.repo_dirs).map_err(|p| {
        let chart = match &helm.chart {
            crate::model::Chart::Repo { repo, name, .. } => format!("{repo}/{name}"),
            crate::model::Chart::Oci(url) => url.clone(),
            crate::model::Chart::Local(path) => path.display().to_string(),
        };
        match p {
            ChartProblem::NotFound { path } => RenderError::ChartNotFound {
                node: address.clone(),
                help: helm::chart_not_found_help(&chart, &path),
                chart,
                path,
            },
            ChartProblem::VersionMismatch {
                path,
                wanted,
                found,
            } => RenderError::ChartVersionMismatch {
                node: address.clone(),
                path,
                wanted,
                found,
            },
            ChartProblem::Unreadable { path, message } => RenderError::ChartUnreadable {
                node: address.clone(),
                path,
                message,
            },
        }
    })
}

/// Renders a manifest node's objects (pure).
fn render_manifest(
    node: &Node,
    manifest: &Manifest,
    scope: &RenderScope<'_>,
) -> Result<RawNode, RenderError> {
    let eval_err = |source| RenderError::Eval {
        node: node.address.clone(),
        source: Box::new(source),
    };
    let default_namespace = match &node.namespace {
        None => DefaultNamespace::Known("default".into()),
        Some(t) => {
            let mut marks = Marked::default();
            let v = evaluate_template_marked(t, scope, "", &mut marks).map_err(eval_err)?;
            if marks.unknown_paths.is_empty() {
                DefaultNamespace::Known(json_text(&v))
            } else {
                DefaultNamespace::Unknown
            }
        }
    };
    let source = match &manifest.source {
        crate::model::ManifestSource::File { written, .. } => Some(written.clone()),
        _ => None,
    };
    let mut docs = Vec::new();
    for object in &manifest.objects {
        let marked = evaluate_marked(&object.value, scope).map_err(eval_err)?;
        docs.push(RawDoc {
            source: source.clone(),
            object: marked.value,
            unknown_paths: marked.unknown_paths,
            sensitive_paths: marked.sensitive_paths,
            volatile_paths: BTreeSet::new(),
        });
    }
    Ok(RawNode::Objects {
        docs,
        default_namespace,
        helm: None,
        placeholders: Vec::new(),
    })
}

/// What finishing a node's objects needs besides the node.
struct FinishInputs<'a> {
    kinds: &'a PlanKinds<'a>,
    sensitive_forms: &'a SensitiveForms,
    ignore_rules: &'a [&'a crate::model::IgnoreRule],
    ignore_facts: &'a crate::model::ignore::IgnoreFacts,
}

fn finish_node(
    plan_name: &str,
    address: &Address,
    node: RawNode,
    inputs: &FinishInputs<'_>,
    previous: Option<&PreviousRender>,
) -> Result<NodeRender, RenderError> {
    let (docs, default_namespace, helm, placeholders) = match node {
        RawNode::DuringApply {
            unknown_references,
            known_values,
            unknown_paths,
            sensitive_paths,
            refused_placeholders,
        } => {
            return Ok(NodeRender {
                address: address.clone(),
                status: NodeStatus::RenderedDuringApply {
                    unknown_references,
                    known_values,
                    unknown_paths,
                    sensitive_paths,
                    refused_placeholders,
                },
                objects: Vec::new(),
                hooks: Vec::new(),
                helm: None,
            });
        }
        RawNode::Objects {
            docs,
            default_namespace,
            helm,
            placeholders,
        } => (docs, default_namespace, helm, placeholders),
    };
    let node_text = address.to_string();
    let ctx = FinishContext {
        plan_name,
        node: &node_text,
        default_namespace,
        kinds: inputs.kinds,
        sensitive_forms: inputs.sensitive_forms,
        ignore_rules: inputs.ignore_rules,
        ignore_facts: inputs.ignore_facts,
    };
    let previous_objects: BTreeMap<ObjectRef, &Json> = previous
        .map(|p| {
            p.objects
                .iter()
                .map(|o| (objects::identity(o), o))
                .collect()
        })
        .unwrap_or_default();
    let mut out = NodeRender {
        address: address.clone(),
        status: if placeholders.is_empty() {
            NodeStatus::Rendered
        } else {
            NodeStatus::RenderedWithPlaceholders {
                unknown_references: placeholders,
            }
        },
        objects: Vec::new(),
        hooks: Vec::new(),
        helm,
    };
    for doc in docs {
        let hook = objects::hook_of(&doc.object).map_err(|bad| RenderError::BadHook {
            node: address.clone(),
            object: objects::identity(&doc.object).short().to_string(),
            annotation: bad.annotation,
            value: meshplan_k8s::text::clip(&bad.value, meshplan_k8s::text::ECHO_LIMIT)
                .into_owned(),
        })?;
        let finished = objects::finish(doc.object, doc.unknown_paths, doc.sensitive_paths, &ctx);
        let since_previous = match previous_objects.get(&objects::identity(&finished.object)) {
            None => SincePrevious::New,
            Some(before) if **before == finished.object => SincePrevious::Same,
            Some(before)
                if !doc.volatile_paths.is_empty()
                    && json::equal_outside(before, &finished.object, &doc.volatile_paths) =>
            {
                SincePrevious::OnlyRegeneratedMaterial
            }
            Some(_) => SincePrevious::Changed,
        };
        let rendered = RenderedObject {
            object_ref: finished.object_ref,
            scope: finished.scope,
            object: finished.object,
            source: doc.source,
            hook: hook.clone(),
            digest: finished.digest,
            unknown_paths: finished.unknown_paths,
            sensitive_paths: finished.sensitive_paths,
            volatile_paths: doc.volatile_paths,
            since_previous,
        };
        if hook.is_some() {
            out.hooks.push(rendered);
        } else {
            out.objects.push(rendered);
        }
    }
    Ok(out)
}

/// A temporary values file (mode 0600), removed when dropped.
struct ValuesFile {
    path: PathBuf,
}

impl ValuesFile {
    fn write(values: &Json) -> std::io::Result<Self> {
        use std::io::Write;
        let path =
            std::env::temp_dir().join(format!("meshplan-values-{}.json", uuid::Uuid::new_v4()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        let file_guard = Self { path };
        file.write_all(values.to_string().as_bytes())?;
        Ok(file_guard)
    }
}

impl Drop for ValuesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
