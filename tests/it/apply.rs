//! The apply engine against a sandbox: ordering inside a node, independent nodes in
//! parallel, readiness waits, hooks, conflicts and the writer lock. Inputs are built here as
//! the executor's own `ApplyInput` (the change set of the plan stage translates into it).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use meshplan::apply::{
    self, ApplyInput, ApplyNode, ApplyObject, Event, HookObject, Interrupt, ObjectAction,
    RecordingReporter, Reporter, RunOptions, RunOutcome, StepAction, Summary,
};
use meshplan::cluster::{ApplyOptions, Cluster, ConnectOptions, KindRef, KubeCluster, ObjectRef};
use meshplan::render::{HookDeletePolicy, HookPhase};
use meshplan::state::{SledStore, StateError, StateStore};
use meshplan_sandbox::{self as sandbox, Controller, Sandbox, SandboxConfig};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const PLAN: &str = "demo";

pub struct Fixture {
    pub sandbox: Sandbox,
    pub cluster: Arc<KubeCluster>,
    pub client: kube::Client,
    pub dir: tempfile::TempDir,
}

pub async fn fixture() -> Fixture {
    fixture_with(SandboxConfig::default()).await
}

pub async fn fixture_with(config: SandboxConfig) -> Fixture {
    let sandbox = sandbox::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox.write_kubeconfig(&kubeconfig).unwrap();
    let cluster = KubeCluster::connect(&ConnectOptions {
        kubeconfig: Some(kubeconfig.clone()),
        context: None,
        ..ConnectOptions::default()
    })
    .await
    .unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    Fixture {
        sandbox,
        cluster: Arc::new(cluster),
        client,
        dir,
    }
}

impl Fixture {
    /// The sequence number of the last request the sandbox has seen (0: none yet).
    pub fn audit_mark(&self) -> u64 {
        self.sandbox.audit().last().map_or(0, |e| e.seq)
    }

    /// The requests on `resource` the sandbox has seen since `mark` ([`Fixture::audit_mark`]).
    pub fn requests_since(&self, mark: u64, resource: &str) -> Vec<sandbox::AuditEntry> {
        self.sandbox
            .audit()
            .into_iter()
            .filter(|e| e.seq > mark && e.resource == resource)
            .collect()
    }

    /// Pauses (or resumes) the simulated workload controller: rollouts and Jobs stand still.
    pub fn pause_workloads(&self, paused: bool) {
        self.sandbox.set_paused(Controller::Workloads, paused);
    }

    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    pub fn open_state(&self) -> SledStore {
        SledStore::open(&self.state_dir(), "apply").unwrap()
    }

    pub async fn stop(self) {
        self.sandbox.shutdown().await.unwrap();
    }

    /// Sets the status of an object through its status subresource (what a controller does).
    pub async fn set_status(&self, object: &ObjectRef, status: Value) {
        let (group, version) = match object.api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), object.api_version.clone()),
        };
        let plural = format!("{}s", object.kind.to_lowercase());
        let resource = ApiResource {
            group,
            version,
            api_version: object.api_version.clone(),
            kind: object.kind.clone(),
            plural,
        };
        let api: Api<DynamicObject> = match &object.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        api.patch_status(
            &object.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
    }

    /// Every object of the kinds these tests use, normalised: server-set fields that change
    /// with every write (resourceVersion, uid, timestamps, generation) removed. Sorted.
    pub async fn dump(&self) -> String {
        let kinds = [
            ("v1", "Namespace"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("apps/v1", "Deployment"),
            ("batch/v1", "Job"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ];
        let mut out = Vec::new();
        let mut all: Vec<KindRef> = kinds.iter().map(|(a, k)| KindRef::new(*a, *k)).collect();
        if self
            .cluster
            .get(&ObjectRef::new(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                "widgets.example.com",
            ))
            .await
            .unwrap()
            .is_some()
        {
            all.push(KindRef::new("example.com/v1", "Widget"));
        }
        for kind in all {
            let list = self.cluster.list(&kind, None, None).await.unwrap();
            for mut item in list.items {
                if let Some(meta) = item["metadata"].as_object_mut() {
                    for key in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
                        meta.remove(key);
                    }
                    if let Some(Value::Array(fields)) = meta.get_mut("managedFields") {
                        for f in fields {
                            if let Some(f) = f.as_object_mut() {
                                f.remove("time");
                            }
                        }
                    }
                }
                out.push(serde_json::to_string(&item).unwrap());
            }
        }
        out.sort();
        out.join("\n")
    }
}

/// Adds the ownership marks of [`PLAN`].
pub fn owned(mut body: Value, node: &str) -> Value {
    let meta = body["metadata"].as_object_mut().unwrap();
    meta.entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .unwrap()
        .insert("app.kubernetes.io/managed-by".into(), json!("meshplan"));
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .unwrap();
    annotations.insert("meshplan.io/plan".into(), json!(PLAN));
    annotations.insert("meshplan.io/node".into(), json!(node));
    body
}

pub fn cm(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns}, "data": data})
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]
        }
    })
}

pub fn widget(ns: &str, name: &str, size: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "namespace": ns}, "spec": {"size": size}})
}

pub fn deployment(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}})
}

/// An object of `node` to apply with `action`, marked as owned.
pub fn object(node: &str, action: ObjectAction, body: Value) -> ApplyObject {
    let body = owned(body, node);
    ApplyObject {
        object: ObjectRef::from_object(&body).unwrap(),
        action,
        desired: Some(body.into()),
        digest: None,
        sensitive_paths: Default::default(),
    }
}

pub fn node(address: &str, deps: &[&str], objects: Vec<ApplyObject>) -> ApplyNode {
    ApplyNode {
        depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
        objects,
        ..ApplyNode::new(address)
    }
}

/// The node `manifest.ns` writing namespace `app` with `action`.
pub fn app_namespace_node(action: ObjectAction) -> ApplyNode {
    node(
        "manifest.ns",
        &[],
        vec![object("manifest.ns", action, namespace("app"))],
    )
}

pub fn input(nodes: Vec<ApplyNode>) -> ApplyInput {
    ApplyInput {
        plan: PLAN.to_owned(),
        nodes,
    }
}

pub fn quick() -> RunOptions {
    RunOptions {
        object_timeout: Duration::from_secs(20),
        ..RunOptions::default()
    }
}

pub async fn run_apply(
    f: &Fixture,
    store: &dyn StateStore,
    input: &ApplyInput,
    options: &RunOptions,
) -> (Summary, Vec<Event>) {
    let reporter = RecordingReporter::new();
    let summary = apply::apply(
        f.cluster.as_ref(),
        store,
        input,
        options,
        &reporter,
        &Interrupt::new(),
    )
    .await
    .unwrap();
    (summary, reporter.events())
}

/// The position of the first event matching `pred`.
pub fn position(events: &[Event], pred: impl Fn(&Event) -> bool) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no such event in {events:#?}"))
}

pub fn done(kind: &str, name: &str) -> impl Fn(&Event) -> bool {
    let (kind, name) = (kind.to_owned(), name.to_owned());
    move |e| matches!(e, Event::StepDone { object, .. } if object.kind == kind && object.name == name)
}

pub fn started(kind: &str, name: &str) -> impl Fn(&Event) -> bool {
    let (kind, name) = (kind.to_owned(), name.to_owned());
    move |e| matches!(e, Event::StepStarted { object, .. } if object.kind == kind && object.name == name)
}

#[tokio::test]
async fn crds_and_namespaces_come_first_inside_a_node() {
    let f = fixture().await;
    let store = f.open_state();
    // Written in the worst order: the custom resource and the namespaced object first.
    let input = input(vec![node(
        "manifest.stack",
        &[],
        vec![
            object(
                "manifest.stack",
                ObjectAction::Create,
                widget("app", "w1", json!(3)),
            ),
            object(
                "manifest.stack",
                ObjectAction::Create,
                cm("app", "settings", json!({"a": "1"})),
            ),
            object("manifest.stack", ObjectAction::Create, namespace("app")),
            object("manifest.stack", ObjectAction::Create, widget_crd()),
        ],
    )]);
    let (summary, events) = run_apply(&f, &store, &input, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let crd_done = position(
        &events,
        done("CustomResourceDefinition", "widgets.example.com"),
    );
    let ns_done = position(&events, done("Namespace", "app"));
    assert!(crd_done < position(&events, started("Namespace", "app")));
    assert!(ns_done < position(&events, started("Widget", "w1")));
    assert!(ns_done < position(&events, started("ConfigMap", "settings")));
    let w = f
        .cluster
        .get(&ObjectRef::new(
            "example.com/v1",
            "Widget",
            Some("app"),
            "w1",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w["spec"]["size"], 3);
    assert_eq!(
        w["metadata"]["managedFields"][0]["manager"], "meshplan",
        "applied with field manager meshplan"
    );
    // Every object recorded, the run cleared from the journal.
    let records = store.objects().unwrap();
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|r| r.node == "manifest.stack" && r.uid.is_some())
    );
    assert!(store.unfinished_runs().unwrap().is_empty());
    let creates = summary
        .actions
        .iter()
        .filter(|a| a.action == StepAction::Create)
        .count();
    assert_eq!(creates, 4);
    drop(store);
    f.stop().await;
}

/// Forwards events to a channel, so the test can act while the apply runs.
struct ChannelReporter(mpsc::UnboundedSender<Event>);

impl Reporter for ChannelReporter {
    fn event(&self, event: &Event) {
        let _ = self.0.send(event.clone());
    }
}

async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    seen: &mut Vec<Event>,
    pred: impl Fn(&Event) -> bool,
) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the awaited event never came")
            .expect("the apply ended first");
        let hit = pred(&event);
        seen.push(event);
        if hit {
            return;
        }
    }
}

#[tokio::test]
async fn independent_nodes_run_while_another_waits_for_readiness() {
    let f = fixture().await;
    let store = f.open_state();
    let input = input(vec![
        node(
            "manifest.ns",
            &[],
            vec![object(
                "manifest.ns",
                ObjectAction::Create,
                namespace("app"),
            )],
        ),
        node(
            "manifest.web",
            &["manifest.ns"],
            vec![object(
                "manifest.web",
                ObjectAction::Create,
                deployment("app", "web"),
            )],
        ),
        node(
            "manifest.config",
            &["manifest.ns"],
            vec![object(
                "manifest.config",
                ObjectAction::Create,
                cm("app", "config", json!({"k": "v"})),
            )],
        ),
        node(
            "manifest.after_web",
            &["manifest.web"],
            vec![object(
                "manifest.after_web",
                ObjectAction::Create,
                cm("app", "after", json!({})),
            )],
        ),
    ]);
    // The rollout waits until the test lets the controller go on.
    f.pause_workloads(true);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reporter = ChannelReporter(tx);
    let options = quick();
    let interrupt = Interrupt::new();
    let cluster = f.cluster.clone();
    let store_ref: &dyn StateStore = &store;
    let run = apply::apply(
        cluster.as_ref(),
        store_ref,
        &input,
        &options,
        &reporter,
        &interrupt,
    );
    let drive = async {
        let mut seen = Vec::new();
        // The Deployment waits for its rollout, with the reason...
        next_matching(&mut rx, &mut seen, |e| {
            matches!(e, Event::Waiting { object, reason, .. }
                if object.name == "web" && reason.contains("rollout"))
        })
        .await;
        // ...while the independent node finishes (before or after the first report of the
        // wait: both run at once).
        let config_done =
            |e: &Event| matches!(e, Event::NodeDone { node } if node == "manifest.config");
        if !seen.iter().any(config_done) {
            next_matching(&mut rx, &mut seen, config_done).await;
        }
        assert!(
            !seen
                .iter()
                .any(|e| matches!(e, Event::NodeStarted { node } if node == "manifest.after_web")),
            "a dependent node started before its dependency was ready"
        );
        // The simulated controller rolls the Deployment out.
        f.pause_workloads(false);
        seen
    };
    let (summary, mut seen) = tokio::join!(run, drive);
    let summary = summary.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    while let Ok(e) = rx.try_recv() {
        seen.push(e);
    }
    let web_done = position(
        &seen,
        |e| matches!(e, Event::NodeDone { node } if node == "manifest.web"),
    );
    let after_started = position(
        &seen,
        |e| matches!(e, Event::NodeStarted { node } if node == "manifest.after_web"),
    );
    assert!(web_done < after_started);
    drop(store);
    f.stop().await;
}

#[tokio::test]
async fn hooks_run_in_their_phase_only_when_the_node_changes() {
    let f = fixture().await;
    let store = f.open_state();
    let hook = |name: &str, phases: Vec<HookPhase>, policies: Vec<HookDeletePolicy>| {
        let body = owned(cm("default", name, json!({"hook": name})), "helm.app");
        HookObject {
            object: ObjectRef::from_object(&body).unwrap(),
            body,
            phases,
            weight: 0,
            delete_policies: policies,
        }
    };
    let make = |action: ObjectAction, data: &str| {
        let mut n = node(
            "helm.app",
            &[],
            vec![object(
                "helm.app",
                action,
                cm("default", "main", json!({"v": data})),
            )],
        );
        n.hooks = vec![
            hook(
                "post",
                vec![HookPhase::PostInstall, HookPhase::PostUpgrade],
                vec![HookDeletePolicy::BeforeHookCreation],
            ),
            hook(
                "pre",
                vec![HookPhase::PreInstall],
                vec![
                    HookDeletePolicy::BeforeHookCreation,
                    HookDeletePolicy::HookSucceeded,
                ],
            ),
        ];
        input(vec![n])
    };
    let (summary, events) = run_apply(&f, &store, &make(ObjectAction::Create, "1"), &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let pre_done = position(&events, done("ConfigMap", "pre"));
    let main_started = position(&events, started("ConfigMap", "main"));
    let main_done = position(&events, done("ConfigMap", "main"));
    let post_started = position(&events, started("ConfigMap", "post"));
    assert!(pre_done < main_started && main_done < post_started);
    let get = |name: &str| {
        let cluster = f.cluster.clone();
        let r = ObjectRef::new("v1", "ConfigMap", Some("default"), name);
        async move { cluster.get(&r).await.unwrap() }
    };
    assert!(
        get("pre").await.is_none(),
        "hook-succeeded deletes the hook"
    );
    let post_uid = get("post").await.unwrap()["metadata"]["uid"].clone();
    // Hooks are not state records.
    assert_eq!(store.objects().unwrap().len(), 1);

    // Unchanged node: no hook runs.
    let (summary, events) = run_apply(&f, &store, &make(ObjectAction::NoOp, "1"), &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert!(summary.actions.is_empty(), "{:#?}", summary.actions);
    assert!(!events.iter().any(started("ConfigMap", "post")));

    // Upgrade: only the post-upgrade hook runs; before-hook-creation replaces the old one.
    let (summary, _) = run_apply(&f, &store, &make(ObjectAction::Update, "2"), &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    assert!(
        get("pre").await.is_none(),
        "pre-install does not run on upgrade"
    );
    let post = get("post").await.unwrap();
    assert_ne!(
        post["metadata"]["uid"], post_uid,
        "the old hook object was deleted first"
    );
    drop(store);
    f.stop().await;
}

#[tokio::test]
async fn a_conflict_stops_the_step_naming_the_manager_unless_forced() {
    let f = fixture().await;
    let store = f.open_state();
    f.cluster
        .apply(
            &cm("default", "shared", json!({"a": "theirs"})),
            &ApplyOptions {
                field_manager: "kubectl".into(),
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    let before = f.dump().await;
    let make = || {
        input(vec![node(
            "manifest.shared",
            &[],
            vec![
                object(
                    "manifest.shared",
                    ObjectAction::Create,
                    cm("default", "mine", json!({})),
                ),
                object(
                    "manifest.shared",
                    ObjectAction::Update,
                    cm("default", "shared", json!({"a": "ours"})),
                ),
            ],
        )])
    };
    let (summary, _) = run_apply(&f, &store, &make(), &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::RolledBack, "{summary:#?}");
    let cause = summary.root_cause.clone().unwrap();
    assert!(
        cause.contains("kubectl") && cause.contains(".data.a"),
        "{cause}"
    );
    assert_eq!(
        f.dump().await,
        before,
        "the rollback removed the created ConfigMap"
    );
    let forced = RunOptions {
        force_conflicts: true,
        ..quick()
    };
    let (summary, _) = run_apply(&f, &store, &make(), &forced).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let shared = f
        .cluster
        .get(&ObjectRef::new(
            "v1",
            "ConfigMap",
            Some("default"),
            "shared",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shared["data"]["a"], "ours");
    drop(store);
    f.stop().await;
}

async fn open_and_apply(
    f: &Fixture,
    dir: &Path,
    input: &ApplyInput,
) -> Result<Summary, StateError> {
    let store = SledStore::open(dir, "apply")?;
    let summary = apply::apply(
        f.cluster.as_ref(),
        &store,
        input,
        &quick(),
        &apply::NoReporter,
        &Interrupt::new(),
    )
    .await
    .unwrap();
    Ok(summary)
}

#[tokio::test]
async fn of_two_applies_on_one_state_exactly_one_proceeds() {
    let f = fixture().await;
    let dir = f.state_dir();
    let input = input(vec![node(
        "manifest.a",
        &[],
        vec![object(
            "manifest.a",
            ObjectAction::Create,
            cm("default", "a", json!({})),
        )],
    )]);
    let (first, second) = tokio::join!(
        open_and_apply(&f, &dir, &input),
        open_and_apply(&f, &dir, &input)
    );
    let results = [first, second];
    let ok: Vec<&Summary> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "exactly one apply proceeds");
    assert_eq!(ok[0].outcome, RunOutcome::Succeeded);
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    match refused {
        StateError::Locked { holder, .. } => {
            assert_eq!(holder.pid, std::process::id());
            assert_eq!(holder.host, meshplan::state::lock::host_name());
            assert_eq!(holder.command, "apply");
            let message = refused.to_string();
            assert!(
                message.contains(&format!("pid {}", holder.pid)),
                "{message}"
            );
        }
        other => panic!("expected a lock error, got {other}"),
    }
    f.stop().await;
}

#[tokio::test]
async fn a_custom_condition_and_wait_false_are_honoured() {
    let f = fixture().await;
    let store = f.open_state();
    let crds = input(vec![node(
        "manifest.crds",
        &[],
        vec![object("manifest.crds", ObjectAction::Create, widget_crd())],
    )]);
    let (summary, _) = run_apply(&f, &store, &crds, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    // wait = false: done at once although nothing reports a condition.
    let mut off = node(
        "manifest.w",
        &[],
        vec![object(
            "manifest.w",
            ObjectAction::Create,
            widget("default", "w0", json!(1)),
        )],
    );
    off.wait.enabled = false;
    let (summary, _) = run_apply(&f, &store, &input(vec![off]), &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    // wait = { condition = "Synced" }: waits until the condition is True.
    let mut custom = node(
        "manifest.w2",
        &[],
        vec![object(
            "manifest.w2",
            ObjectAction::Create,
            widget("default", "w1", json!(1)),
        )],
    );
    custom.wait.condition = Some("Synced".into());
    let input = input(vec![custom]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reporter = ChannelReporter(tx);
    let options = quick();
    let interrupt = Interrupt::new();
    let run = apply::apply(
        f.cluster.as_ref(),
        &store,
        &input,
        &options,
        &reporter,
        &interrupt,
    );
    let drive = async {
        let mut seen = Vec::new();
        next_matching(&mut rx, &mut seen, |e| {
            matches!(e, Event::Waiting { reason, .. } if reason.contains("condition Synced=True"))
        })
        .await;
        f.set_status(
            &ObjectRef::new("example.com/v1", "Widget", Some("default"), "w1"),
            json!({"conditions": [{"type": "Synced", "status": "True"}]}),
        )
        .await;
    };
    let (summary, ()) = tokio::join!(run, drive);
    assert_eq!(summary.unwrap().outcome, RunOutcome::Succeeded);
    drop(store);
    f.stop().await;
}

/// Object references of a set of nodes' records, sorted.
pub fn recorded(store: &dyn StateStore) -> BTreeSet<(String, String)> {
    store
        .objects()
        .unwrap()
        .into_iter()
        .map(|r| (r.node, r.object.to_string()))
        .collect()
}

/// The skipped nodes of a summary as (node, reason).
pub fn skipped(summary: &Summary) -> Vec<(String, String)> {
    summary
        .skipped
        .iter()
        .map(|s| (s.node.clone(), s.reason.clone()))
        .collect()
}

#[tokio::test]
async fn an_unchanged_input_sends_no_write() {
    let f = fixture().await;
    let store = f.open_state();
    let make = |action| {
        input(vec![
            app_namespace_node(action),
            node(
                "manifest.web",
                &["manifest.ns"],
                vec![
                    object("manifest.web", action, deployment("app", "web")),
                    object("manifest.web", action, cm("app", "web", json!({"k": "v"}))),
                ],
            ),
        ])
    };
    let (summary, _) = run_apply(&f, &store, &make(ObjectAction::Create), &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let writes = |f: &Fixture| {
        f.sandbox
            .audit()
            .into_iter()
            .filter(|e| matches!(e.verb.as_str(), "create" | "update" | "patch" | "delete"))
            .count()
    };
    let after_first = writes(&f);
    assert_eq!(after_first, 3, "one server-side apply per object");
    let serial = store.meta().unwrap().serial;
    let (summary, _) = run_apply(&f, &store, &make(ObjectAction::NoOp), &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert!(summary.actions.is_empty());
    assert_eq!(writes(&f), after_first, "no write request");
    assert_eq!(
        store.meta().unwrap().serial,
        serial,
        "no state record changed"
    );
    drop(store);
    f.stop().await;
}

/// Applies the app namespace node (its Namespace created), as a first run does.
async fn create_app_namespace(f: &Fixture, store: &SledStore) {
    let (summary, _) = run_apply(
        f,
        store,
        &input(vec![app_namespace_node(ObjectAction::Create)]),
        &quick(),
    )
    .await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
}

/// Nodes writing objects of one kind in one namespace, started together, share one listing
/// (not one per node, each over what the others wrote meanwhile), and their snapshots are
/// still exact: a rollback puts back every node's existing objects as they were.
#[tokio::test]
async fn nodes_writing_one_kind_in_one_namespace_share_one_listing() {
    let f = fixture().await;
    let store = f.open_state();
    create_app_namespace(&f, &store).await;
    let someone = ApplyOptions {
        field_manager: "someone".into(),
        ..ApplyOptions::default()
    };
    // One existing object in each node.
    for name in ["a00", "b00"] {
        f.cluster
            .apply(&cm("app", name, json!({"old": "x"})), &someone)
            .await
            .unwrap();
    }
    let writer = |prefix: &str| {
        let address = format!("manifest.{prefix}");
        node(
            &address,
            &["manifest.ns"],
            (0..12)
                .map(|i| {
                    let action = if i == 0 {
                        ObjectAction::Update
                    } else {
                        ObjectAction::Create
                    };
                    let name = format!("{prefix}{i:02}");
                    object(&address, action, cm("app", &name, json!({ "k": name })))
                })
                .collect(),
        )
    };
    let failing = input(vec![
        app_namespace_node(ObjectAction::NoOp),
        writer("a"),
        writer("b"),
        node(
            "manifest.after",
            &["manifest.a", "manifest.b"],
            vec![object(
                "manifest.after",
                ObjectAction::Create,
                widget("app", "w", json!(1)),
            )],
        ),
    ]);
    let since = f.audit_mark();
    let (summary, _) = run_apply(&f, &store, &failing, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::RolledBack, "{summary:#?}");
    let requests: Vec<_> = f
        .requests_since(since, "configmaps")
        .into_iter()
        .filter(|e| e.verb != "delete")
        .collect();
    let before_rollback = |verb: &str| requests.iter().filter(|e| e.verb == verb).count();
    assert_eq!(
        before_rollback("list"),
        1,
        "one listing for both nodes: {requests:#?}"
    );
    for prefix in ["a", "b"] {
        for i in 0..12 {
            let name = format!("{prefix}{i:02}");
            let live = f
                .cluster
                .get(&ObjectRef::new("v1", "ConfigMap", Some("app"), &name))
                .await
                .unwrap();
            if i == 0 {
                assert_eq!(
                    live.map(|o| o["data"].clone()),
                    Some(json!({"old": "x"})),
                    "{name} put back as it was"
                );
            } else {
                assert_eq!(live, None, "{name} created by the run, removed");
            }
        }
    }
    drop(store);
    f.stop().await;
}

/// A node writing many objects of one kind in one namespace reads them with one listing, not
/// one GET each, and journals the same snapshots: a rollback puts back the objects that
/// existed (as they were) and removes the ones the run created.
#[tokio::test]
async fn many_objects_of_a_kind_are_listed_once_and_journaled_as_they_were() {
    let f = fixture().await;
    let store = f.open_state();
    create_app_namespace(&f, &store).await;
    // Three of the node's objects exist already (another manager's), one other object is not
    // the plan's.
    let someone = ApplyOptions {
        field_manager: "someone".into(),
        ..ApplyOptions::default()
    };
    for name in ["m00", "m01", "m02", "other"] {
        f.cluster
            .apply(&cm("app", name, json!({"old": "x"})), &someone)
            .await
            .unwrap();
    }
    let names: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    let app = || {
        node(
            "manifest.app",
            &["manifest.ns"],
            names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let action = if i < 3 {
                        ObjectAction::Update
                    } else {
                        ObjectAction::Create
                    };
                    object("manifest.app", action, cm("app", n, json!({ "k": n })))
                })
                .collect(),
        )
    };
    let data = |o: Option<Value>| o.map(|o| o["data"].clone());

    // A later node fails: everything is rolled back from the journal's snapshots.
    let failing = input(vec![
        app_namespace_node(ObjectAction::NoOp),
        app(),
        node(
            "manifest.after",
            &["manifest.app"],
            vec![object(
                "manifest.after",
                ObjectAction::Create,
                widget("app", "w", json!(1)),
            )],
        ),
    ]);
    let (summary, _) = run_apply(&f, &store, &failing, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::RolledBack, "{summary:#?}");
    assert_eq!(
        summary
            .actions
            .iter()
            .filter(|a| a.object.kind == "ConfigMap")
            .count(),
        30,
        "every ConfigMap was written before the failure: {summary:#?}"
    );
    for (i, name) in names.iter().enumerate() {
        let live = f
            .cluster
            .get(&ObjectRef::new("v1", "ConfigMap", Some("app"), name))
            .await
            .unwrap();
        if i < 3 {
            assert_eq!(data(live), Some(json!({"old": "x"})), "{name} put back");
        } else {
            assert_eq!(live, None, "{name} created by the run, removed");
        }
    }

    // The same node alone: one listing of the namespace's ConfigMaps, no GET, one write each.
    let since = f.audit_mark();
    let (summary, _) = run_apply(
        &f,
        &store,
        &input(vec![app_namespace_node(ObjectAction::NoOp), app()]),
        &quick(),
    )
    .await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let requests: Vec<_> = f.requests_since(since, "configmaps");
    let count = |verb: &str| requests.iter().filter(|e| e.verb == verb).count();
    assert_eq!(count("get"), 0, "no object read one by one: {requests:#?}");
    assert_eq!(count("list"), 1, "{requests:#?}");
    assert_eq!(count("patch"), names.len(), "{requests:#?}");
    assert_eq!(requests.len(), names.len() + 1, "{requests:#?}");
    assert_eq!(store.objects().unwrap().len(), names.len() + 1);
    let other = f
        .cluster
        .get(&ObjectRef::new("v1", "ConfigMap", Some("app"), "other"))
        .await
        .unwrap();
    assert_eq!(data(other), Some(json!({"old": "x"})));
    drop(store);
    f.stop().await;
}
