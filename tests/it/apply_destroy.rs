//! Destroy against a sandbox: reverse dependency order, custom resources before their CRD,
//! namespace contents before the namespace, prevent_destroy, ownership marks, and a
//! namespace holding objects the plan does not own.

use std::collections::BTreeSet;
use std::sync::Mutex;

use meshplan::apply::{
    self, ApplyError, DestroyNode, DestroyRequest, Event, Interrupt, ObjectAction,
    RecordingReporter, RunOutcome, StepAction,
};
use meshplan::cluster::{ApplyOptions, Cluster, ObjectRef};
use meshplan::state::{
    DiscoveryCacheEntry, JournalEntry, JournalRecord, Mutation, ObjectRecord, RecordedObject,
    RenderCacheEntry, SledStore, Snapshot, StateCipher, StateError, StateMeta, StateStore,
    UnfinishedRun, WriteBatch, WriteOp,
};
use meshplan_sandbox::Sandbox;
use serde_json::json;

use crate::apply::{
    PLAN, cm, fixture, input, namespace, node, object, position, quick, run_apply, widget,
    widget_crd,
};

fn plan_nodes(prevent: bool) -> Vec<DestroyNode> {
    let n = |address: &str, deps: &[&str], prevent_destroy: bool| DestroyNode {
        address: address.to_owned(),
        depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
        prevent_destroy,
    };
    vec![
        n("manifest.crds", &[], prevent),
        n("manifest.ns", &[], false),
        n("manifest.app", &["manifest.crds", "manifest.ns"], false),
    ]
}

async fn apply_stack(f: &crate::apply::Fixture, store: &dyn StateStore) {
    let stack = input(vec![
        node(
            "manifest.crds",
            &[],
            vec![object("manifest.crds", ObjectAction::Create, widget_crd())],
        ),
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
            "manifest.app",
            &["manifest.crds", "manifest.ns"],
            vec![
                object(
                    "manifest.app",
                    ObjectAction::Create,
                    widget("app", "w1", json!(1)),
                ),
                object(
                    "manifest.app",
                    ObjectAction::Create,
                    cm("app", "settings", json!({})),
                ),
            ],
        ),
    ]);
    let (summary, _) = run_apply(f, store, &stack, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
}

async fn run_destroy(
    f: &crate::apply::Fixture,
    store: &dyn StateStore,
    request: &DestroyRequest,
) -> Result<(meshplan::apply::Summary, Vec<Event>), ApplyError> {
    let reporter = RecordingReporter::new();
    let summary = apply::destroy(
        f.cluster.as_ref(),
        store,
        request,
        &quick(),
        &reporter,
        &Interrupt::new(),
    )
    .await?;
    Ok((summary, reporter.events()))
}

#[tokio::test]
async fn destroy_deletes_in_reverse_order_and_honours_prevent_destroy() {
    let f = fixture().await;
    let store = f.open_state();
    apply_stack(&f, &store).await;
    let before = f.dump().await;

    let refused = run_destroy(
        &f,
        &store,
        &DestroyRequest {
            plan: PLAN.into(),
            nodes: plan_nodes(true),
            targets: None,
            take_foreign: false,
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, ApplyError::PreventDestroy { nodes } if nodes == &["manifest.crds"])
    );
    assert!(
        refused
            .to_string()
            .contains("manifest.crds has prevent_destroy = true"),
        "{refused}"
    );
    assert_eq!(f.dump().await, before, "nothing was deleted");
    assert!(store.unfinished_runs().unwrap().is_empty());

    // --target manifest.app leaves the others (and their prevent_destroy does not matter).
    let (summary, _) = run_destroy(
        &f,
        &store,
        &DestroyRequest {
            plan: PLAN.into(),
            nodes: plan_nodes(true),
            targets: Some(BTreeSet::from(["manifest.app".to_owned()])),
            take_foreign: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    assert_eq!(summary.actions.len(), 2);
    assert_eq!(store.objects().unwrap().len(), 2);

    apply_stack(&f, &store).await;
    let (summary, events) = run_destroy(
        &f,
        &store,
        &DestroyRequest {
            plan: PLAN.into(),
            nodes: plan_nodes(false),
            targets: None,
            take_foreign: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let deleted = |kind: &str, name: &str| {
        let (kind, name) = (kind.to_owned(), name.to_owned());
        move |e: &Event| {
            matches!(e, Event::StepDone { object, action: StepAction::Delete, .. }
                if object.kind == kind && object.name == name)
        }
    };
    let widget_gone = position(&events, deleted("Widget", "w1"));
    let settings_gone = position(&events, deleted("ConfigMap", "settings"));
    let crd_gone = position(
        &events,
        deleted("CustomResourceDefinition", "widgets.example.com"),
    );
    let ns_gone = position(&events, deleted("Namespace", "app"));
    assert!(widget_gone < crd_gone, "custom resources before their CRD");
    assert!(
        widget_gone < ns_gone && settings_gone < ns_gone,
        "contents before the namespace"
    );
    assert!(store.objects().unwrap().is_empty());
    assert!(store.unfinished_runs().unwrap().is_empty());
    for o in [
        ObjectRef::new("v1", "Namespace", None, "app"),
        ObjectRef::new(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "widgets.example.com",
        ),
    ] {
        assert!(f.cluster.get(&o).await.unwrap().is_none(), "{o} is gone");
    }
    drop(store);
    f.stop().await;
}

#[tokio::test]
async fn destroy_keeps_what_the_plan_does_not_own() {
    let f = fixture().await;
    let store = f.open_state();
    apply_stack(&f, &store).await;
    // Someone else's ConfigMap in the plan's namespace.
    f.cluster
        .apply(
            &cm("app", "theirs", json!({"x": "1"})),
            &ApplyOptions {
                field_manager: "kubectl".into(),
                ..ApplyOptions::default()
            },
        )
        .await
        .unwrap();
    let request = |take_foreign| DestroyRequest {
        plan: PLAN.into(),
        nodes: plan_nodes(false),
        targets: None,
        take_foreign,
    };
    let (summary, _) = run_destroy(&f, &store, &request(false)).await.unwrap();
    let ns = ObjectRef::new("v1", "Namespace", None, "app");
    let left: Vec<(ObjectRef, String)> = summary
        .left_in_place
        .iter()
        .map(|l| (l.object.clone(), l.reason.clone()))
        .collect();
    assert_eq!(left.len(), 1, "{summary:#?}");
    assert_eq!(left[0].0, ns);
    assert!(
        left[0].1.contains("v1 ConfigMap app/theirs"),
        "{}",
        left[0].1
    );
    assert!(
        f.cluster.get(&ns).await.unwrap().is_some(),
        "the namespace stays"
    );
    let theirs = ObjectRef::new("v1", "ConfigMap", Some("app"), "theirs");
    assert!(f.cluster.get(&theirs).await.unwrap().is_some());
    let remaining: Vec<String> = store
        .objects()
        .unwrap()
        .into_iter()
        .map(|r| r.object.to_string())
        .collect();
    assert_eq!(remaining, vec!["v1 Namespace app".to_owned()]);

    // With the explicit flag the namespace goes, and what it holds with it.
    let (summary, _) = run_destroy(&f, &store, &request(true)).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    assert!(f.cluster.get(&ns).await.unwrap().is_none());
    assert!(store.objects().unwrap().is_empty());
    drop(store);
    f.stop().await;
}

#[tokio::test]
async fn destroy_leaves_objects_without_the_ownership_marks() {
    let f = fixture().await;
    let store = f.open_state();
    let stack = input(vec![node(
        "manifest.cfg",
        &[],
        vec![object(
            "manifest.cfg",
            ObjectAction::Create,
            cm("default", "cfg", json!({})),
        )],
    )]);
    let (summary, _) = run_apply(&f, &store, &stack, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    // Another tool took the object over and removed the marks.
    let cfg = ObjectRef::new("v1", "ConfigMap", Some("default"), "cfg");
    let mut live = f.cluster.get(&cfg).await.unwrap().unwrap();
    live["metadata"]["labels"] = json!({});
    live["metadata"]["annotations"] = json!({});
    f.cluster
        .replace(&live, &meshplan::cluster::WriteOptions::default())
        .await
        .unwrap();
    let (summary, _) = run_destroy(
        &f,
        &store,
        &DestroyRequest {
            plan: PLAN.into(),
            nodes: vec![],
            targets: None,
            take_foreign: false,
        },
    )
    .await
    .unwrap();
    assert!(summary.actions.is_empty(), "{summary:#?}");
    assert_eq!(summary.left_in_place.len(), 1);
    assert!(summary.left_in_place[0].reason.contains("ownership marks"));
    assert!(f.cluster.get(&cfg).await.unwrap().is_some());
    drop(store);
    f.stop().await;
}

/// Many objects of one kind and namespace: listed once instead of read one by one, each
/// deleted once, and waited for through a watch, which also sees an object that a finalizer
/// of someone else holds until it lets go.
/// Applies namespace `app` (node `manifest.ns`) and `count` ConfigMaps in it (node
/// `manifest.app`); their names.
async fn apply_many(
    f: &crate::apply::Fixture,
    store: &dyn StateStore,
    count: usize,
) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("c{i:02}")).collect();
    let stack = input(vec![
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
            "manifest.app",
            &["manifest.ns"],
            names
                .iter()
                .map(|n| {
                    object(
                        "manifest.app",
                        ObjectAction::Create,
                        cm("app", n, json!({ "k": n })),
                    )
                })
                .collect(),
        ),
    ]);
    let (summary, _) = run_apply(f, store, &stack, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    names
}

/// The destroy of what [`apply_many`] applied.
fn many_request() -> DestroyRequest {
    DestroyRequest {
        plan: PLAN.into(),
        nodes: vec![
            DestroyNode {
                address: "manifest.ns".into(),
                depends_on: BTreeSet::new(),
                prevent_destroy: false,
            },
            DestroyNode {
                address: "manifest.app".into(),
                depends_on: BTreeSet::from(["manifest.ns".to_owned()]),
                prevent_destroy: false,
            },
        ],
        targets: None,
        take_foreign: false,
    }
}

/// A state that notes, for each commit, the ConfigMaps it journals a deletion of and the
/// ConfigMaps the sandbox had already deleted by then.
struct Watched<'a> {
    inner: SledStore,
    sandbox: &'a Sandbox,
    commits: Mutex<Vec<(Vec<String>, BTreeSet<String>)>>,
}

impl Watched<'_> {
    fn note(&self, batch: &WriteBatch) {
        let journaled: Vec<String> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Journal(JournalEntry {
                    object,
                    mutation: Mutation::Delete,
                    record: JournalRecord::Before { .. },
                    ..
                }) if object.kind == "ConfigMap" => Some(object.name.clone()),
                _ => None,
            })
            .collect();
        let deleted = self
            .sandbox
            .audit()
            .into_iter()
            .filter(|e| e.verb == "delete" && e.resource == "configmaps")
            .map(|e| e.name)
            .collect();
        self.commits.lock().unwrap().push((journaled, deleted));
    }
}

impl StateStore for Watched<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn export(&self) -> Result<Snapshot, StateError> {
        self.inner.export()
    }
    fn meta(&self) -> Result<StateMeta, StateError> {
        self.inner.meta()
    }
    fn objects(&self) -> Result<Vec<ObjectRecord>, StateError> {
        self.inner.objects()
    }
    fn recorded_objects(&self) -> Result<Vec<RecordedObject>, StateError> {
        self.inner.recorded_objects()
    }
    fn node_objects(&self, node: &str) -> Result<Vec<ObjectRecord>, StateError> {
        self.inner.node_objects(node)
    }
    fn object(&self, node: &str, object: &ObjectRef) -> Result<Option<ObjectRecord>, StateError> {
        self.inner.object(node, object)
    }
    fn render_cache(&self, digest: &str) -> Result<Option<RenderCacheEntry>, StateError> {
        self.inner.render_cache(digest)
    }
    fn discovery_cache(&self) -> Result<Option<DiscoveryCacheEntry>, StateError> {
        self.inner.discovery_cache()
    }
    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>, StateError> {
        self.inner.unfinished_runs()
    }
    fn commit(&self, batch: WriteBatch) -> Result<StateMeta, StateError> {
        self.note(&batch);
        self.inner.commit(batch)
    }
    fn commit_borrowed(&self, batch: &WriteBatch) -> Result<StateMeta, StateError> {
        self.note(batch);
        self.inner.commit_borrowed(batch)
    }
    fn cipher(&self) -> &StateCipher {
        self.inner.cipher()
    }
    fn dump(&self) -> Result<String, StateError> {
        self.inner.dump()
    }
}

/// The `Before` entries of a group's deletions of listed objects are committed together,
/// ahead of the deletes: one commit for 40 ConfigMaps (deleted ten at a time, which journaled
/// at least one commit per round of deletes), made before any of them was deleted.
#[tokio::test]
async fn destroy_journals_a_group_ahead_of_its_deletes() {
    let f = fixture().await;
    let store = f.open_state();
    let names = apply_many(&f, &store, 40).await;
    let watched = Watched {
        inner: store,
        sandbox: &f.sandbox,
        commits: Mutex::new(Vec::new()),
    };
    let (summary, _) = run_destroy(&f, &watched, &many_request()).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    assert!(watched.objects().unwrap().is_empty());
    let commits = watched.commits.into_inner().unwrap();
    let journaling: Vec<&(Vec<String>, BTreeSet<String>)> =
        commits.iter().filter(|(j, _)| !j.is_empty()).collect();
    assert_eq!(journaling.len(), 1, "{journaling:#?}");
    let (journaled, deleted) = journaling[0];
    assert_eq!(
        journaled.iter().collect::<BTreeSet<_>>(),
        names.iter().collect::<BTreeSet<_>>()
    );
    assert!(
        deleted.is_empty(),
        "deleted before their entry: {deleted:?}"
    );
}

#[tokio::test]
async fn destroy_lists_once_deletes_each_once_and_waits_through_a_watch() {
    let f = fixture().await;
    let store = f.open_state();
    let names = apply_many(&f, &store, 40).await;
    // Someone else's finalizer holds one of them.
    let held = ObjectRef::new("v1", "ConfigMap", Some("app"), "c07");
    let hold = |finalizers: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c07", "namespace": "app", "finalizers": finalizers}})
    };
    let holder = ApplyOptions {
        field_manager: "holder".into(),
        ..ApplyOptions::default()
    };
    f.cluster
        .apply(&hold(json!(["example.com/hold"])), &holder)
        .await
        .unwrap();
    let since = f.audit_mark();

    let request = many_request();
    let destroy = run_destroy(&f, &store, &request);
    let release = async {
        // Once the destroy waits for the deleted ConfigMaps through a watch, the holder lets
        // go.
        while !f
            .sandbox
            .audit()
            .iter()
            .any(|e| e.seq > since && e.resource == "configmaps" && e.verb == "watch")
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            f.cluster
                .get(&held)
                .await
                .unwrap()
                .and_then(|o| o.pointer("/metadata/deletionTimestamp").cloned())
                .is_some(),
            "the held object is being deleted"
        );
        f.cluster.apply(&hold(json!([])), &holder).await.unwrap();
    };
    let (destroyed, ()) = tokio::join!(destroy, release);
    let (summary, _) = destroyed.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let deleted: BTreeSet<String> = summary
        .actions
        .iter()
        .filter(|a| a.action == StepAction::Delete && a.object.kind == "ConfigMap")
        .map(|a| a.object.name.clone())
        .collect();
    assert_eq!(deleted, names.iter().cloned().collect::<BTreeSet<_>>());
    assert!(store.objects().unwrap().is_empty());
    assert!(f.cluster.get(&held).await.unwrap().is_none());

    // The destroy's requests on ConfigMaps (the test's own reads of the held one aside).
    let requests: Vec<_> = f
        .sandbox
        .audit()
        .into_iter()
        .filter(|e| e.seq > since && e.resource == "configmaps")
        .filter(|e| !(matches!(e.verb.as_str(), "get" | "patch") && e.path.ends_with("/c07")))
        .collect();
    let count = |verb: &str| requests.iter().filter(|e| e.verb == verb).count();
    let deletes: BTreeSet<&str> = requests
        .iter()
        .filter(|e| e.verb == "delete")
        .map(|e| e.path.rsplit('/').next().unwrap_or_default())
        .collect();
    assert_eq!(count("delete"), names.len(), "{requests:#?}");
    assert_eq!(deletes.len(), names.len(), "each object deleted once");
    assert_eq!(count("get"), 0, "no object read one by one: {requests:#?}");
    // Only the held one is waited for (the others were gone with their DELETE), by name.
    let by_name = |e: &&meshplan_sandbox::AuditEntry| {
        e.query.contains("fieldSelector=metadata.name%3Dc07")
            || e.query.contains("fieldSelector=metadata.name=c07")
    };
    let watches: Vec<_> = requests.iter().filter(|e| e.verb == "watch").collect();
    assert_eq!(watches.len(), 1, "one watch: {requests:#?}");
    assert!(by_name(&watches[0]), "{:#?}", watches[0]);
    let lists: Vec<_> = requests.iter().filter(|e| e.verb == "list").collect();
    assert_eq!(
        lists.iter().filter(|e| !by_name(e)).count(),
        2,
        "one listing to read them, one to look for objects the plan does not own before the \
         namespace goes: {requests:#?}"
    );
    assert_eq!(
        lists.iter().filter(|e| by_name(e)).count(),
        1,
        "one listing of the held object to start its watch: {requests:#?}"
    );
}

/// Objects the API server removes at once (its answer to the DELETE is a Status) are done
/// then: no listing or watch waits for them, however many there are.
#[tokio::test]
async fn destroy_does_not_wait_for_objects_gone_with_their_delete() {
    let f = fixture().await;
    let store = f.open_state();
    let names: Vec<String> = (0..30).map(|i| format!("c{i:02}")).collect();
    let nodes = ["manifest.a", "manifest.b"];
    let stack = input(
        nodes
            .iter()
            .map(|address| {
                node(
                    address,
                    &[],
                    names
                        .iter()
                        .map(|n| {
                            object(
                                address,
                                ObjectAction::Create,
                                cm("default", &format!("{}-{n}", &address[9..]), json!({})),
                            )
                        })
                        .collect(),
                )
            })
            .collect(),
    );
    let (summary, _) = run_apply(&f, &store, &stack, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let since = f.audit_mark();

    let request = DestroyRequest {
        plan: PLAN.into(),
        nodes: nodes
            .iter()
            .map(|address| DestroyNode {
                address: (*address).into(),
                depends_on: BTreeSet::new(),
                prevent_destroy: false,
            })
            .collect(),
        targets: None,
        take_foreign: false,
    };
    let (summary, events) = run_destroy(&f, &store, &request).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let done = events
        .iter()
        .filter(|e| {
            matches!(e, Event::StepDone { action: StepAction::Delete, object, .. }
                if object.kind == "ConfigMap")
        })
        .count();
    assert_eq!(done, 2 * names.len());
    assert!(store.objects().unwrap().is_empty());
    // The destroy's requests (before the test's own listing below).
    let requests: Vec<_> = f.requests_since(since, "configmaps");
    let left = f
        .cluster
        .list(
            &meshplan::cluster::KindRef::new("v1", "ConfigMap"),
            Some("default"),
            None,
        )
        .await
        .unwrap();
    assert!(
        left.items
            .iter()
            .all(|o| o["metadata"]["name"] == "kube-root-ca.crt"),
        "{:#?}",
        left.items
    );

    let count = |verb: &str| requests.iter().filter(|e| e.verb == verb).count();
    assert_eq!(count("delete"), 2 * names.len(), "{requests:#?}");
    assert_eq!(count("watch"), 0, "nothing waited for: {requests:#?}");
    assert_eq!(
        count("list"),
        1,
        "one listing to read them, shared by both nodes: {requests:#?}"
    );
    assert_eq!(count("get"), 0, "{requests:#?}");
    f.stop().await;
}
