//! Faults during apply: a write refused at every position of an apply (exhaustive), an
//! admission webhook that is not reachable yet, an overall timeout, and Ctrl-C (graceful,
//! then at once). Faults are injected by a cluster wrapper around the real kube cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use meshplan::apply::{
    self, ApplyInput, Event, Interrupt, ObjectAction, RecordingReporter, ResumeChoice, RunOptions,
    RunOutcome,
};
use meshplan::cluster::{
    ApplyOptions, Cluster, ClusterError, Condition, DeleteOptions, DeleteOutcome, Discovery,
    KindRef, KubeCluster, ObjectList, ObjectRef, ServerVersion, Target, WaitOutcome, WriteOptions,
};
use meshplan::state::StateStore;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use meshplan_sandbox::SandboxConfig;

use crate::apply::{
    Fixture, cm, deployment, fixture, fixture_with, input, namespace, node, object, quick,
    run_apply, widget, widget_crd,
};

/// The real cluster, with injected failures: the write with index `fail_at` (0-based, over
/// applies, creates, replaces and deletes) fails with a 500, and the first
/// `webhook_failures` applies fail as an unreachable admission webhook does.
struct Faulty {
    inner: Arc<KubeCluster>,
    writes: AtomicUsize,
    fail_at: Option<usize>,
    webhook_failures: AtomicUsize,
}

impl Faulty {
    fn new(inner: Arc<KubeCluster>, fail_at: Option<usize>, webhook_failures: usize) -> Self {
        Self {
            inner,
            writes: AtomicUsize::new(0),
            fail_at,
            webhook_failures: AtomicUsize::new(webhook_failures),
        }
    }

    fn status(code: u16, message: &str) -> ClusterError {
        let mut status = kube::core::Status::failure(message, "InternalError");
        status.code = code;
        ClusterError::Other {
            target: Box::new(Target::Cluster),
            status: Box::new(status),
        }
    }

    fn write(&self) -> Result<(), ClusterError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if Some(n) == self.fail_at {
            return Err(Self::status(500, "injected failure"));
        }
        Ok(())
    }
}

impl Cluster for Faulty {
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn server_version(&self) -> BoxFuture<'_, Result<ServerVersion, ClusterError>> {
        self.inner.server_version()
    }
    fn discover(&self) -> BoxFuture<'_, Result<Discovery, ClusterError>> {
        self.inner.discover()
    }
    fn prime_discovery(&self, discovery: Discovery) -> BoxFuture<'_, ()> {
        self.inner.prime_discovery(discovery)
    }
    fn get<'a>(&'a self, o: &'a ObjectRef) -> BoxFuture<'a, Result<Option<Value>, ClusterError>> {
        self.inner.get(o)
    }
    fn list<'a>(
        &'a self,
        kind: &'a KindRef,
        namespace: Option<&'a str>,
        selector: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ObjectList, ClusterError>> {
        self.inner.list(kind, namespace, selector)
    }
    fn apply<'a>(
        &'a self,
        body: &'a Value,
        options: &'a ApplyOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>> {
        Box::pin(async move {
            let left = self.webhook_failures.load(Ordering::SeqCst);
            if left > 0 {
                self.webhook_failures.store(left - 1, Ordering::SeqCst);
                return Err(Self::status(
                    500,
                    "Internal error occurred: failed calling webhook \"webhook.example.com\": connection refused",
                ));
            }
            self.write()?;
            self.inner.apply(body, options).await
        })
    }
    fn create<'a>(
        &'a self,
        body: &'a Value,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>> {
        Box::pin(async move {
            self.write()?;
            self.inner.create(body, options).await
        })
    }
    fn replace<'a>(
        &'a self,
        body: &'a Value,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ClusterError>> {
        Box::pin(async move {
            self.write()?;
            self.inner.replace(body, options).await
        })
    }
    fn delete<'a>(
        &'a self,
        o: &'a ObjectRef,
        options: &'a DeleteOptions,
    ) -> BoxFuture<'a, Result<DeleteOutcome, ClusterError>> {
        Box::pin(async move {
            self.write()?;
            self.inner.delete(o, options).await
        })
    }
    fn wait_for<'a>(
        &'a self,
        o: &'a ObjectRef,
        condition: &'a Condition,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<WaitOutcome, ClusterError>> {
        self.inner.wait_for(o, condition, timeout)
    }
}

async fn first_apply(f: &Fixture, store: &dyn StateStore) {
    let first = input(vec![node(
        "manifest.base",
        &[],
        vec![
            object("manifest.base", ObjectAction::Create, namespace("app")),
            object(
                "manifest.base",
                ObjectAction::Create,
                cm("app", "change", json!({"v": "1"})),
            ),
            object(
                "manifest.base",
                ObjectAction::Create,
                cm("app", "prune", json!({"v": "1"})),
            ),
            object("manifest.base", ObjectAction::Create, widget_crd()),
        ],
    )]);
    let (summary, _) = run_apply(f, store, &first, &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
}

fn second_apply() -> ApplyInput {
    input(vec![
        node(
            "manifest.base",
            &[],
            vec![
                object(
                    "manifest.base",
                    ObjectAction::Update,
                    cm("app", "change", json!({"v": "2"})),
                ),
                object(
                    "manifest.base",
                    ObjectAction::Create,
                    cm("app", "new", json!({"v": "1"})),
                ),
                object(
                    "manifest.base",
                    ObjectAction::Delete,
                    cm("app", "prune", json!({"v": "1"})),
                ),
            ],
        ),
        node(
            "manifest.widgets",
            &["manifest.base"],
            vec![object(
                "manifest.widgets",
                ObjectAction::Create,
                widget("app", "w", json!(1)),
            )],
        ),
        node(
            "manifest.more",
            &["manifest.widgets"],
            vec![
                object(
                    "manifest.more",
                    ObjectAction::Replace,
                    cm("app", "change", json!({"v": "3"})),
                ),
                object(
                    "manifest.more",
                    ObjectAction::Create,
                    cm("app", "more", json!({})),
                ),
            ],
        ),
    ])
}

#[tokio::test]
async fn a_failure_at_every_write_is_rolled_back_exactly() {
    let mut tried = 0;
    for n in 0.. {
        let f = fixture().await;
        let store = f.open_state();
        first_apply(&f, &store).await;
        let before = f.dump().await;
        let records = store.objects().unwrap();
        let faulty = Faulty::new(f.cluster.clone(), Some(n), 0);
        let reporter = RecordingReporter::new();
        let summary = apply::apply(
            &faulty,
            &store,
            &second_apply(),
            &quick(),
            &reporter,
            &Interrupt::new(),
        )
        .await
        .unwrap();
        if summary.outcome == RunOutcome::Succeeded {
            // Past the last write: the apply went through.
            assert!(
                n >= 6,
                "the apply makes at least six writes, it stopped at {n}"
            );
            drop(store);
            f.stop().await;
            break;
        }
        tried += 1;
        assert_eq!(
            summary.outcome,
            RunOutcome::RolledBack,
            "write {n}: {summary:#?}"
        );
        assert!(
            summary
                .root_cause
                .as_deref()
                .unwrap()
                .contains("injected failure"),
            "write {n}: {summary:#?}"
        );
        assert_eq!(f.dump().await, before, "write {n}: cluster restored");
        assert_eq!(
            store.objects().unwrap(),
            records,
            "write {n}: state restored"
        );
        assert!(store.unfinished_runs().unwrap().is_empty(), "write {n}");
        drop(store);
        f.stop().await;
    }
    assert!(tried >= 6, "{tried}");
}

#[tokio::test]
async fn writes_wait_for_an_unreachable_webhook_within_the_node_timeout() {
    let f = fixture().await;
    let store = f.open_state();
    let one = || {
        input(vec![node(
            "manifest.issuer",
            &[],
            vec![object(
                "manifest.issuer",
                ObjectAction::Create,
                cm("default", "issuer", json!({})),
            )],
        )])
    };
    let faulty = Faulty::new(f.cluster.clone(), None, 2);
    let reporter = RecordingReporter::new();
    let summary = apply::apply(
        &faulty,
        &store,
        &one(),
        &quick(),
        &reporter,
        &Interrupt::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let waits = reporter
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Waiting { reason, .. } if reason.contains("admission webhook is not reachable yet")))
        .count();
    assert_eq!(waits, 2, "each refused attempt is reported as waiting");
    let issuer = ObjectRef::new("v1", "ConfigMap", Some("default"), "issuer");
    assert!(f.cluster.get(&issuer).await.unwrap().is_some());

    // A webhook that never comes: the node's timeout ends the retries.
    let mut slow = one();
    slow.nodes[0].address = "manifest.issuer2".into();
    slow.nodes[0].objects = vec![object(
        "manifest.issuer2",
        ObjectAction::Create,
        cm("default", "issuer2", json!({})),
    )];
    slow.nodes[0].timeout = Some(Duration::from_millis(600));
    let faulty = Faulty::new(f.cluster.clone(), None, usize::MAX);
    let summary = apply::apply(
        &faulty,
        &store,
        &slow,
        &quick(),
        &apply::NoReporter,
        &Interrupt::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, RunOutcome::RolledBack);
    let cause = summary.root_cause.unwrap();
    assert!(
        cause.contains("admission webhook") && cause.contains("stayed unavailable"),
        "{cause}"
    );
    drop(store);
    f.stop().await;
}

#[tokio::test]
async fn the_overall_timeout_bounds_every_wait() {
    let f = fixture().await;
    let store = f.open_state();
    f.pause_workloads(true);
    let input = input(vec![node(
        "manifest.web",
        &[],
        vec![object(
            "manifest.web",
            ObjectAction::Create,
            deployment("default", "web"),
        )],
    )]);
    let options = RunOptions {
        overall_timeout: Some(Duration::from_millis(600)),
        object_timeout: Duration::from_secs(300),
        ..RunOptions::default()
    };
    let (summary, _) = run_apply(&f, &store, &input, &options).await;
    assert_eq!(summary.outcome, RunOutcome::RolledBack);
    let cause = summary.root_cause.unwrap();
    assert!(
        cause.contains("was not ready after") && !cause.contains("after 5m"),
        "{cause}"
    );
    let web = ObjectRef::new("apps/v1", "Deployment", Some("default"), "web");
    assert!(f.cluster.get(&web).await.unwrap().is_none(), "rolled back");
    drop(store);
    f.stop().await;
}

struct ChannelReporter(mpsc::UnboundedSender<Event>);

impl apply::Reporter for ChannelReporter {
    fn event(&self, event: &Event) {
        let _ = self.0.send(event.clone());
    }
}

/// An apply whose second node waits for a Deployment that never rolls out, interrupted
/// (`twice`: at once) while it waits.
async fn interrupted_apply(twice: bool) {
    let f = fixture().await;
    let store = f.open_state();
    first_apply(&f, &store).await;
    let before = f.dump().await;
    let records = store.objects().unwrap();
    f.pause_workloads(true);
    let input = input(vec![
        node(
            "manifest.base",
            &[],
            vec![object(
                "manifest.base",
                ObjectAction::Update,
                cm("app", "change", json!({"v": "9"})),
            )],
        ),
        node(
            "manifest.web",
            &["manifest.base"],
            vec![object(
                "manifest.web",
                ObjectAction::Create,
                deployment("app", "web"),
            )],
        ),
        node(
            "manifest.after",
            &["manifest.web"],
            vec![object(
                "manifest.after",
                ObjectAction::Create,
                cm("app", "after", json!({})),
            )],
        ),
    ]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reporter = ChannelReporter(tx);
    let interrupt = Interrupt::new();
    let options = quick();
    let run = apply::apply(
        f.cluster.as_ref(),
        &store,
        &input,
        &options,
        &reporter,
        &interrupt,
    );
    let press = async {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .unwrap()
                .unwrap();
            if matches!(&event, Event::Waiting { object, .. } if object.name == "web") {
                break;
            }
        }
        interrupt.press();
        if twice {
            interrupt.press();
        }
    };
    let (summary, ()) = tokio::join!(run, press);
    let summary = summary.unwrap();
    if twice {
        assert_eq!(summary.outcome, RunOutcome::Aborted, "{summary:#?}");
        assert_eq!(
            store.unfinished_runs().unwrap().len(),
            1,
            "the journal is kept"
        );
        let resumed = apply::resume_unfinished(
            &store,
            f.cluster.as_ref(),
            ResumeChoice::RollBack,
            &quick(),
            &apply::NoReporter,
        )
        .await
        .unwrap();
        assert_eq!(
            resumed[0].outcome,
            RunOutcome::RolledBack,
            "{:#?}",
            resumed[0]
        );
    } else {
        assert_eq!(summary.outcome, RunOutcome::RolledBack, "{summary:#?}");
        let cause = summary.root_cause.clone().unwrap();
        assert!(
            cause.contains("interrupted while waiting for the rollout"),
            "{cause}"
        );
        assert_eq!(
            crate::apply::skipped(&summary),
            vec![(
                "manifest.after".to_owned(),
                "dependency manifest.web failed".to_owned()
            )]
        );
    }
    assert_eq!(f.dump().await, before);
    assert_eq!(store.objects().unwrap(), records);
    assert!(store.unfinished_runs().unwrap().is_empty());
    drop(store);
    f.stop().await;
}

#[tokio::test]
async fn a_first_interrupt_stops_and_rolls_back() {
    interrupted_apply(false).await;
}

#[tokio::test]
async fn a_second_interrupt_stops_at_once_and_keeps_the_journal() {
    interrupted_apply(true).await;
}

#[tokio::test]
async fn a_fault_injected_by_the_sandbox_is_rolled_back() {
    let f = fixture().await;
    let store = f.open_state();
    first_apply(&f, &store).await;
    let before = f.dump().await;
    let records = store.objects().unwrap();
    // The second server-side apply of a ConfigMap in this run answers 500, on every attempt
    // (a single 500 is retried by the transport and does not fail the step).
    f.sandbox.add_fault(meshplan_sandbox::FaultRule {
        times: crate::apply_cmd::ATTEMPTS,
        ..meshplan_sandbox::FaultRule::new(
            "patch",
            "configmaps",
            2,
            meshplan_sandbox::FaultAction::Error { code: 500 },
        )
    });
    let (summary, _) = run_apply(&f, &store, &second_apply(), &quick()).await;
    assert_eq!(summary.outcome, RunOutcome::RolledBack, "{summary:#?}");
    assert!(
        summary.root_cause.as_deref().unwrap().contains("(500)"),
        "{summary:#?}"
    );
    assert_eq!(f.dump().await, before);
    assert_eq!(store.objects().unwrap(), records);
    drop(store);
    f.stop().await;
}

#[tokio::test]
async fn writes_guarded_by_a_webhook_wait_until_its_backend_serves() {
    // The webhook answers some seconds after its backend is Available: long enough for the
    // guarded write, sent right after the backend's node is ready, to meet the refusal even
    // on a loaded machine (with the default second, it sometimes came after).
    let mut config = SandboxConfig::default();
    config.controllers.webhook_delay = Duration::from_secs(4);
    let f = fixture_with(config).await;
    let store = f.open_state();
    let mut backend = deployment("hooks", "hook");
    backend["spec"]["template"]["metadata"]["labels"] = json!({"app": "hook"});
    backend["spec"]["selector"]["matchLabels"] = json!({"app": "hook"});
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hook", "namespace": "hooks"},
        "spec": {"selector": {"app": "hook"}, "ports": [{"port": 443, "targetPort": 8443}]}});
    let webhook = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "hook"},
        "webhooks": [{"name": "hook.example.com",
            "clientConfig": {"service": {"namespace": "hooks", "name": "hook", "path": "/validate"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["configmaps"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"guarded": "yes"}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
    let mut guarded = namespace("guarded");
    guarded["metadata"]["labels"] = json!({"guarded": "yes"});
    let input = input(vec![
        node(
            "manifest.webhook",
            &[],
            vec![
                object("manifest.webhook", ObjectAction::Create, namespace("hooks")),
                object("manifest.webhook", ObjectAction::Create, backend),
                object("manifest.webhook", ObjectAction::Create, service),
                object("manifest.webhook", ObjectAction::Create, webhook),
                object("manifest.webhook", ObjectAction::Create, guarded),
            ],
        ),
        node(
            "manifest.guarded",
            &["manifest.webhook"],
            vec![object(
                "manifest.guarded",
                ObjectAction::Create,
                cm("guarded", "checked", json!({})),
            )],
        ),
    ]);
    let reporter = RecordingReporter::new();
    let summary = apply::apply(
        f.cluster.as_ref(),
        &store,
        &input,
        &quick(),
        &reporter,
        &Interrupt::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    let waited = reporter.events().into_iter().any(|e| {
        matches!(&e, Event::Waiting { object, reason, .. }
            if object.name == "checked" && reason.contains("failed calling webhook \"hook.example.com\""))
    });
    assert!(
        waited,
        "the refused write was reported as waiting for the webhook"
    );
    let checked = ObjectRef::new("v1", "ConfigMap", Some("guarded"), "checked");
    assert!(f.cluster.get(&checked).await.unwrap().is_some());
    drop(store);
    f.stop().await;
}

/// Stops the run at once when the `at`-th event arrives (like a kill between two steps).
struct StopAt {
    at: usize,
    seen: AtomicUsize,
    interrupt: Interrupt,
}

impl apply::Reporter for StopAt {
    fn event(&self, _event: &Event) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            self.interrupt.stop_now();
        }
    }
}

#[tokio::test]
async fn a_run_stopped_at_any_point_is_rolled_back_by_resume() {
    let mut stopped = 0;
    for at in 1.. {
        let f = fixture().await;
        let store = f.open_state();
        first_apply(&f, &store).await;
        let before = f.dump().await;
        let records = store.objects().unwrap();
        let reporter = StopAt {
            at,
            seen: AtomicUsize::new(0),
            interrupt: Interrupt::new(),
        };
        let summary = apply::apply(
            f.cluster.as_ref(),
            &store,
            &second_apply(),
            &quick(),
            &reporter,
            &reporter.interrupt,
        )
        .await
        .unwrap();
        if summary.outcome == RunOutcome::Succeeded {
            // The stop came after the end.
            assert!(store.unfinished_runs().unwrap().is_empty());
            drop(store);
            f.stop().await;
            break;
        }
        stopped += 1;
        assert_eq!(
            summary.outcome,
            RunOutcome::Aborted,
            "event {at}: {summary:#?}"
        );
        // The next command finds the run and rolls it back.
        assert_eq!(store.unfinished_runs().unwrap().len(), 1, "event {at}");
        let resumed = apply::resume_unfinished(
            &store,
            f.cluster.as_ref(),
            ResumeChoice::RollBack,
            &quick(),
            &apply::NoReporter,
        )
        .await
        .unwrap();
        assert_eq!(
            resumed[0].outcome,
            RunOutcome::RolledBack,
            "event {at}: {:#?}",
            resumed[0]
        );
        assert_eq!(f.dump().await, before, "event {at}: cluster restored");
        assert_eq!(
            store.objects().unwrap(),
            records,
            "event {at}: state restored"
        );
        assert!(store.unfinished_runs().unwrap().is_empty(), "event {at}");
        drop(store);
        f.stop().await;
    }
    assert!(stopped >= 10, "{stopped}");
}
