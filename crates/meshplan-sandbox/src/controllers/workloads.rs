//! Simulated workload controllers: the status a finished rollout leaves on each kind.
//!
//! Every function takes the object as stored and "now", and returns the status to write, or
//! None when the stored status already says that (so a loop can call them repeatedly without
//! writing). Conditions keep their `lastTransitionTime` while their status does not change,
//! as the real controllers do.
//!
//! - [`rollout_needed`]: `status.observedGeneration != metadata.generation` (a new object or a
//!   template change); the loop waits its delay, then applies [`settled_status`].
//! - Deployments get `Available` (MinimumReplicasAvailable) and `Progressing`
//!   (NewReplicaSetAvailable, naming the ReplicaSet `<name>-<pod-template-hash>`);
//!   [`deployment_progressing_status`] is the in-between state right after a change.
//! - StatefulSets get `currentRevision == updateRevision`; DaemonSets are scheduled on
//!   [`SIMULATED_NODES`] node; ReplicaSets report their replicas ready.
//! - Jobs complete ([`job_complete_status`]: `succeeded`, `Complete` and, as 1.32 writes it,
//!   `SuccessCriteriaMet` first) or stay running ([`job_running_status`]) when a Linkerd proxy
//!   would keep their pod alive (see `linkerd::is_meshed_job`).
//! - Namespaces are `Active`; APIServices `Available`.

use jiff::Timestamp;
use serde_json::{Map, Value, json};

/// How many nodes the simulated cluster has (DaemonSets schedule one pod per node).
pub(crate) const SIMULATED_NODES: i64 = 1;

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

fn i64_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

fn generation(obj: &Value) -> i64 {
    i64_at(obj, &["metadata", "generation"]).unwrap_or(1)
}

fn name(obj: &Value) -> &str {
    at(obj, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// True when the controller has not yet observed the current spec: the object is new or its
/// spec (template) changed since the last status.
pub(crate) fn rollout_needed(obj: &Value) -> bool {
    i64_at(obj, &["status", "observedGeneration"]) != Some(generation(obj))
}

/// Serializes JSON with object keys sorted, so that equal values hash equally.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A `pod-template-hash`-like value of `spec.template`: FNV-32a of the template, rendered
/// with Kubernetes' SafeEncodeString alphabet (deterministic; the real one hashes the Go
/// struct, so values differ from a real cluster's but change exactly when the template does).
pub(crate) fn template_hash(obj: &Value) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut text = String::new();
    canonical(
        at(obj, &["spec", "template"]).unwrap_or(&Value::Null),
        &mut text,
    );
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The name of a Deployment's current ReplicaSet: `<name>-<pod-template-hash>`.
pub(crate) fn replicaset_name(deployment: &Value) -> String {
    format!("{}-{}", name(deployment), template_hash(deployment))
}

/// One condition to set (always status True); the [`Style`] decides the time fields.
struct Cond<'a> {
    type_: &'a str,
    reason: &'a str,
    message: String,
}

/// Conditions, all status True, keeping times from `previous` when nothing changed.
fn conditions(previous: Option<&Value>, conds: &[Cond<'_>], now: Timestamp, style: Style) -> Value {
    let prev: Vec<&Value> = previous
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let now_s = Value::String(rfc3339(now));
    Value::Array(
        conds
            .iter()
            .map(|c| {
                let old = prev.iter().find(|p| {
                    p.get("type").and_then(Value::as_str) == Some(c.type_)
                        && p.get("status").and_then(Value::as_str) == Some("True")
                });
                let ltt = old
                    .and_then(|p| p.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| now_s.clone());
                let same_text = old.is_some_and(|p| {
                    p.get("reason").and_then(Value::as_str) == Some(c.reason)
                        && p.get("message").and_then(Value::as_str) == Some(c.message.as_str())
                });
                let mut m = Map::new();
                match style {
                    Style::Deployment => {
                        m.insert("type".into(), json!(c.type_));
                        m.insert("status".into(), json!("True"));
                        let lut = if same_text {
                            old.and_then(|p| p.get("lastUpdateTime").cloned())
                                .unwrap_or_else(|| now_s.clone())
                        } else {
                            now_s.clone()
                        };
                        m.insert("lastUpdateTime".into(), lut);
                        m.insert("lastTransitionTime".into(), ltt);
                    }
                    Style::Job => {
                        m.insert("type".into(), json!(c.type_));
                        m.insert("status".into(), json!("True"));
                        let probe = old
                            .and_then(|p| p.get("lastProbeTime").cloned())
                            .unwrap_or_else(|| now_s.clone());
                        m.insert("lastProbeTime".into(), probe);
                        m.insert("lastTransitionTime".into(), ltt);
                    }
                    Style::Plain => {
                        m.insert("type".into(), json!(c.type_));
                        m.insert("status".into(), json!("True"));
                        m.insert("lastTransitionTime".into(), ltt);
                    }
                }
                m.insert("reason".into(), json!(c.reason));
                m.insert("message".into(), json!(c.message));
                Value::Object(m)
            })
            .collect(),
    )
}

#[derive(Clone, Copy)]
enum Style {
    Deployment,
    Job,
    Plain,
}

fn changed(obj: &Value, status: Value) -> Option<Value> {
    (obj.get("status") != Some(&status)).then_some(status)
}

fn insert_nonzero(m: &mut Map<String, Value>, key: &str, v: i64) {
    if v != 0 {
        m.insert(key.into(), json!(v));
    }
}

fn spec_replicas(obj: &Value) -> i64 {
    i64_at(obj, &["spec", "replicas"]).unwrap_or(1).max(0)
}

/// A Deployment after a completed rollout: all replicas updated, ready and available.
pub(crate) fn deployment_status(obj: &Value, now: Timestamp) -> Option<Value> {
    let n = spec_replicas(obj);
    let rs = replicaset_name(obj);
    let mut m = Map::new();
    m.insert("observedGeneration".into(), json!(generation(obj)));
    insert_nonzero(&mut m, "replicas", n);
    insert_nonzero(&mut m, "updatedReplicas", n);
    insert_nonzero(&mut m, "readyReplicas", n);
    insert_nonzero(&mut m, "availableReplicas", n);
    m.insert(
        "conditions".into(),
        conditions(
            obj.get("status"),
            &[
                Cond {
                    type_: "Available",
                    reason: "MinimumReplicasAvailable",
                    message: "Deployment has minimum availability.".into(),
                },
                Cond {
                    type_: "Progressing",
                    reason: "NewReplicaSetAvailable",
                    message: format!("ReplicaSet \"{rs}\" has successfully progressed."),
                },
            ],
            now,
            Style::Deployment,
        ),
    );
    changed(obj, Value::Object(m))
}

/// A Deployment right after a template change: the new ReplicaSet is progressing and no
/// replica is updated yet (`kubectl rollout status` keeps waiting). The previous replicas stay
/// available.
pub(crate) fn deployment_progressing_status(obj: &Value, now: Timestamp) -> Option<Value> {
    let n = spec_replicas(obj);
    let rs = replicaset_name(obj);
    let prev_available = i64_at(obj, &["status", "availableReplicas"]).unwrap_or(0);
    let mut m = Map::new();
    m.insert("observedGeneration".into(), json!(generation(obj)));
    insert_nonzero(&mut m, "replicas", n.max(prev_available));
    insert_nonzero(&mut m, "readyReplicas", prev_available);
    insert_nonzero(&mut m, "availableReplicas", prev_available);
    insert_nonzero(&mut m, "unavailableReplicas", n - prev_available.min(n));
    let mut conds = Vec::new();
    if prev_available > 0 || n == 0 {
        conds.push(Cond {
            type_: "Available",
            reason: "MinimumReplicasAvailable",
            message: "Deployment has minimum availability.".into(),
        });
    }
    conds.push(Cond {
        type_: "Progressing",
        reason: "ReplicaSetUpdated",
        message: format!("ReplicaSet \"{rs}\" is progressing."),
    });
    m.insert(
        "conditions".into(),
        conditions(obj.get("status"), &conds, now, Style::Deployment),
    );
    changed(obj, Value::Object(m))
}

/// A StatefulSet after a completed rolling update.
pub(crate) fn statefulset_status(obj: &Value) -> Option<Value> {
    let n = spec_replicas(obj);
    let revision = format!("{}-{}", name(obj), template_hash(obj));
    let mut m = Map::new();
    m.insert("observedGeneration".into(), json!(generation(obj)));
    m.insert("replicas".into(), json!(n));
    insert_nonzero(&mut m, "readyReplicas", n);
    insert_nonzero(&mut m, "currentReplicas", n);
    insert_nonzero(&mut m, "updatedReplicas", n);
    m.insert("currentRevision".into(), json!(revision));
    m.insert("updateRevision".into(), json!(revision));
    m.insert(
        "collisionCount".into(),
        json!(i64_at(obj, &["status", "collisionCount"]).unwrap_or(0)),
    );
    m.insert("availableReplicas".into(), json!(n));
    changed(obj, Value::Object(m))
}

/// A DaemonSet scheduled and ready on every simulated node.
pub(crate) fn daemonset_status(obj: &Value) -> Option<Value> {
    let n = SIMULATED_NODES;
    let mut m = Map::new();
    m.insert("currentNumberScheduled".into(), json!(n));
    m.insert("numberMisscheduled".into(), json!(0));
    m.insert("desiredNumberScheduled".into(), json!(n));
    m.insert("numberReady".into(), json!(n));
    m.insert("observedGeneration".into(), json!(generation(obj)));
    insert_nonzero(&mut m, "updatedNumberScheduled", n);
    insert_nonzero(&mut m, "numberAvailable", n);
    changed(obj, Value::Object(m))
}

/// A ReplicaSet whose replicas are all ready.
pub(crate) fn replicaset_status(obj: &Value) -> Option<Value> {
    let n = spec_replicas(obj);
    let mut m = Map::new();
    m.insert("replicas".into(), json!(n));
    insert_nonzero(&mut m, "fullyLabeledReplicas", n);
    insert_nonzero(&mut m, "readyReplicas", n);
    insert_nonzero(&mut m, "availableReplicas", n);
    m.insert("observedGeneration".into(), json!(generation(obj)));
    changed(obj, Value::Object(m))
}

fn job_start(obj: &Value, now: Timestamp) -> Value {
    at(obj, &["status", "startTime"])
        .cloned()
        .unwrap_or_else(|| json!(rfc3339(now)))
}

fn job_finished(obj: &Value) -> bool {
    at(obj, &["status", "conditions"])
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("Complete" | "Failed")
                ) && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn job_suspended(obj: &Value) -> bool {
    at(obj, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true)
}

/// A Job whose pods all succeeded, as the 1.32 job controller writes it. None when the Job
/// already finished or is suspended.
pub(crate) fn job_complete_status(obj: &Value, now: Timestamp) -> Option<Value> {
    if job_finished(obj) || job_suspended(obj) {
        return None;
    }
    let completions = i64_at(obj, &["spec", "completions"]).unwrap_or(1).max(1);
    let msg = "Reached expected number of succeeded pods".to_string();
    let mut m = Map::new();
    m.insert(
        "conditions".into(),
        conditions(
            obj.get("status"),
            &[
                Cond {
                    type_: "SuccessCriteriaMet",
                    reason: "CompletionsReached",
                    message: msg.clone(),
                },
                Cond {
                    type_: "Complete",
                    reason: "CompletionsReached",
                    message: msg,
                },
            ],
            now,
            Style::Job,
        ),
    );
    m.insert("startTime".into(), job_start(obj, now));
    m.insert("completionTime".into(), json!(rfc3339(now)));
    m.insert("succeeded".into(), json!(completions));
    if at(obj, &["spec", "completionMode"]).and_then(Value::as_str) == Some("Indexed") {
        let idx = if completions == 1 {
            "0".to_string()
        } else {
            format!("0-{}", completions - 1)
        };
        m.insert("completedIndexes".into(), json!(idx));
    }
    m.insert("ready".into(), json!(0));
    m.insert("terminating".into(), json!(0));
    m.insert("uncountedTerminatedPods".into(), json!({}));
    changed(obj, Value::Object(m))
}

/// A Job whose pods run and never finish (a meshed Job: the proxy keeps the pod alive).
pub(crate) fn job_running_status(obj: &Value, now: Timestamp) -> Option<Value> {
    if job_finished(obj) || job_suspended(obj) {
        return None;
    }
    let parallelism = i64_at(obj, &["spec", "parallelism"]).unwrap_or(1).max(0);
    let completions = i64_at(obj, &["spec", "completions"]).unwrap_or(1).max(1);
    let active = parallelism.min(completions);
    let mut m = Map::new();
    m.insert("startTime".into(), job_start(obj, now));
    insert_nonzero(&mut m, "active", active);
    m.insert("ready".into(), json!(active));
    m.insert("terminating".into(), json!(0));
    m.insert("uncountedTerminatedPods".into(), json!({}));
    changed(obj, Value::Object(m))
}

/// A Namespace is Active (unless it is being deleted, which the store handles).
pub(crate) fn namespace_status(obj: &Value) -> Option<Value> {
    if at(obj, &["metadata", "deletionTimestamp"]).is_some() {
        return None;
    }
    changed(obj, json!({"phase": "Active"}))
}

/// An APIService is Available: `Local` for a built-in group, `Passed` for a service-backed one.
pub(crate) fn apiservice_status(obj: &Value, now: Timestamp) -> Option<Value> {
    let local = at(obj, &["spec", "service"]).is_none_or(Value::is_null);
    let (reason, message) = if local {
        ("Local", "Local APIServices are always available")
    } else {
        ("Passed", "all checks passed")
    };
    let conds = conditions(
        obj.get("status"),
        &[Cond {
            type_: "Available",
            reason,
            message: message.into(),
        }],
        now,
        Style::Plain,
    );
    changed(obj, json!({ "conditions": conds }))
}

/// The settled status of any simulated kind (Jobs complete), or None when nothing changes or
/// the kind is not simulated (CronJobs are accepted as they are).
pub(crate) fn settled_status(obj: &Value, now: Timestamp) -> Option<Value> {
    match obj.get("kind").and_then(Value::as_str)? {
        "Deployment" => deployment_status(obj, now),
        "StatefulSet" => statefulset_status(obj),
        "DaemonSet" => daemonset_status(obj),
        "ReplicaSet" => replicaset_status(obj),
        "Job" => job_complete_status(obj, now),
        "Namespace" => namespace_status(obj),
        "APIService" => apiservice_status(obj, now),
        _ => None,
    }
}

/// True when a Deployment reports a finished rollout of its current generation with every
/// replica available: what `kubectl rollout status` waits for, and what the webhook
/// simulation needs before it starts its availability delay.
pub(crate) fn deployment_available(obj: &Value) -> bool {
    let n = spec_replicas(obj);
    let status_n = |k: &str| i64_at(obj, &["status", k]).unwrap_or(0);
    !rollout_needed(obj)
        && status_n("updatedReplicas") >= n
        && status_n("availableReplicas") >= n
        && status_n("replicas") == status_n("updatedReplicas")
        && at(obj, &["status", "conditions"])
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Available")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn deployment(replicas: Option<i64>, image: &str, generation: i64) -> Value {
        let mut d = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"web","namespace":"default","generation":generation},
            "spec":{"selector":{"matchLabels":{"app":"web"}},
                    "template":{"metadata":{"labels":{"app":"web"}},
                                "spec":{"containers":[{"name":"web","image":image}]}}}});
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    }

    fn apply(mut obj: Value, status: Option<Value>) -> Value {
        obj["status"] = status.expect("a status change");
        obj
    }

    #[test]
    fn deployment_rollout_completes_and_is_stable() {
        let d = deployment(Some(3), "nginx:1.27", 1);
        assert!(rollout_needed(&d));
        assert!(!deployment_available(&d));
        let now = t("2026-02-01T10:00:00Z");
        let st = deployment_status(&d, now).unwrap();
        let rs = replicaset_name(&d);
        assert!(rs.starts_with("web-") && rs.len() > 5);
        assert_eq!(
            st,
            json!({"observedGeneration":1,"replicas":3,"updatedReplicas":3,"readyReplicas":3,
                "availableReplicas":3,"conditions":[
                {"type":"Available","status":"True","lastUpdateTime":"2026-02-01T10:00:00Z",
                 "lastTransitionTime":"2026-02-01T10:00:00Z","reason":"MinimumReplicasAvailable",
                 "message":"Deployment has minimum availability."},
                {"type":"Progressing","status":"True","lastUpdateTime":"2026-02-01T10:00:00Z",
                 "lastTransitionTime":"2026-02-01T10:00:00Z","reason":"NewReplicaSetAvailable",
                 "message":format!("ReplicaSet \"{rs}\" has successfully progressed.")}]})
        );
        assert!(st.get("unavailableReplicas").is_none());
        let d = apply(d, Some(st));
        assert!(!rollout_needed(&d));
        assert!(deployment_available(&d));
        assert_eq!(deployment_status(&d, t("2026-02-01T11:00:00Z")), None);
    }

    #[test]
    fn template_change_starts_a_new_rollout_with_a_new_replicaset() {
        let now = t("2026-02-01T10:00:00Z");
        let d1 = deployment(None, "nginx:1.27", 1);
        let d1 = apply(d1.clone(), deployment_status(&d1, now));
        let rs1 = replicaset_name(&d1);
        // Same template, different key order → same hash.
        let reordered = json!({"spec":{"template":{"spec":{"containers":[{"image":"nginx:1.27","name":"web"}]},
                                                   "metadata":{"labels":{"app":"web"}}}}});
        assert_eq!(template_hash(&reordered), template_hash(&d1));

        // The API server bumps generation on a template change.
        let mut d2 = deployment(None, "nginx:1.28", 2);
        d2["status"] = d1["status"].clone();
        assert!(rollout_needed(&d2));
        let rs2 = replicaset_name(&d2);
        assert_ne!(rs1, rs2);
        let later = t("2026-02-01T10:05:00Z");
        let d2p = apply(d2.clone(), deployment_progressing_status(&d2, later));
        assert!(!deployment_available(&d2p), "rollout status keeps waiting");
        assert_eq!(d2p["status"]["observedGeneration"], 2);
        assert_eq!(
            d2p["status"]["conditions"][1]["message"],
            format!("ReplicaSet \"{rs2}\" is progressing.")
        );
        assert_eq!(
            d2p["status"]["conditions"][1]["reason"],
            "ReplicaSetUpdated"
        );
        let done = t("2026-02-01T10:05:02Z");
        let d2d = apply(d2p.clone(), deployment_status(&d2p, done));
        assert!(deployment_available(&d2d));
        let progressing = &d2d["status"]["conditions"][1];
        assert_eq!(
            progressing["message"],
            format!("ReplicaSet \"{rs2}\" has successfully progressed.")
        );
        // Progressing stayed True throughout: transition time from the first rollout, update
        // time from this one.
        assert_eq!(progressing["lastTransitionTime"], "2026-02-01T10:00:00Z");
        assert_eq!(progressing["lastUpdateTime"], "2026-02-01T10:05:02Z");
        assert_eq!(
            d2d["status"]["conditions"][0]["lastUpdateTime"],
            "2026-02-01T10:00:00Z"
        );
    }

    #[test]
    fn zero_replica_deployment_omits_counts() {
        let d = deployment(Some(0), "x", 4);
        let st = deployment_status(&d, t("2026-02-01T10:00:00Z")).unwrap();
        assert_eq!(st["observedGeneration"], 4);
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ] {
            assert!(st.get(k).is_none(), "{k} omitted when 0");
        }
        assert!(deployment_available(&apply(d, Some(st))));
    }

    #[test]
    fn statefulset_daemonset_replicaset_settle() {
        let sts = json!({"kind":"StatefulSet","metadata":{"name":"db","generation":2},
            "spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"db","image":"pg"}]}}}});
        let st = statefulset_status(&sts).unwrap();
        assert_eq!(st["currentRevision"], st["updateRevision"]);
        assert!(st["currentRevision"].as_str().unwrap().starts_with("db-"));
        assert_eq!(st["readyReplicas"], 2);
        assert_eq!(st["updatedReplicas"], 2);
        assert_eq!(st["observedGeneration"], 2);
        assert_eq!(statefulset_status(&apply(sts, Some(st))), None);

        let ds = json!({"kind":"DaemonSet","metadata":{"name":"agent","generation":1},"spec":{}});
        let st = daemonset_status(&ds).unwrap();
        assert_eq!(
            st,
            json!({"currentNumberScheduled":1,"numberMisscheduled":0,"desiredNumberScheduled":1,
                   "numberReady":1,"observedGeneration":1,"updatedNumberScheduled":1,"numberAvailable":1})
        );
        let rs = json!({"kind":"ReplicaSet","metadata":{"name":"web-abc","generation":1},"spec":{"replicas":2}});
        let st = replicaset_status(&rs).unwrap();
        assert_eq!(st["replicas"], 2);
        assert_eq!(st["availableReplicas"], 2);
        assert_eq!(
            settled_status(&apply(rs, Some(st)), t("2026-02-01T10:00:00Z")),
            None
        );
    }

    #[test]
    fn job_completes_with_1_32_conditions() {
        let job = json!({"kind":"Job","metadata":{"name":"migrate","generation":1},
            "spec":{"completions":2,"template":{"spec":{"restartPolicy":"Never"}}}});
        let start = t("2026-02-01T10:00:00Z");
        let running = apply(job.clone(), job_running_status(&job, start));
        assert_eq!(running["status"]["active"], 1);
        assert_eq!(running["status"]["startTime"], "2026-02-01T10:00:00Z");
        assert!(running["status"].get("conditions").is_none());
        // Running again changes nothing.
        assert_eq!(
            job_running_status(&running, t("2026-02-01T10:10:00Z")),
            None
        );

        let end = t("2026-02-01T10:00:03Z");
        let done = apply(running.clone(), job_complete_status(&running, end));
        let st = &done["status"];
        assert_eq!(st["succeeded"], 2);
        assert_eq!(st["startTime"], "2026-02-01T10:00:00Z");
        assert_eq!(st["completionTime"], "2026-02-01T10:00:03Z");
        assert_eq!(st["conditions"][0]["type"], "SuccessCriteriaMet");
        assert_eq!(st["conditions"][1]["type"], "Complete");
        for c in st["conditions"].as_array().unwrap() {
            assert_eq!(c["status"], "True");
            assert_eq!(c["reason"], "CompletionsReached");
            assert_eq!(c["message"], "Reached expected number of succeeded pods");
            assert_eq!(c["lastProbeTime"], "2026-02-01T10:00:03Z");
        }
        assert!(st.get("active").is_none());
        // Finished Jobs are left alone.
        assert_eq!(job_complete_status(&done, t("2026-02-02T00:00:00Z")), None);
        assert_eq!(job_running_status(&done, t("2026-02-02T00:00:00Z")), None);
    }

    #[test]
    fn indexed_and_suspended_jobs() {
        let job = json!({"kind":"Job","metadata":{"name":"i"},
            "spec":{"completions":3,"completionMode":"Indexed"}});
        let st = settled_status(&job, t("2026-02-01T10:00:00Z")).unwrap();
        assert_eq!(st["completedIndexes"], "0-2");
        let job = json!({"kind":"Job","metadata":{"name":"s"},"spec":{"suspend":true}});
        assert_eq!(job_complete_status(&job, t("2026-02-01T10:00:00Z")), None);
    }

    #[test]
    fn namespaces_and_apiservices() {
        let ns = json!({"kind":"Namespace","metadata":{"name":"apps"}});
        assert_eq!(namespace_status(&ns), Some(json!({"phase":"Active"})));
        let ns = json!({"kind":"Namespace","metadata":{"name":"apps"},"status":{"phase":"Active"}});
        assert_eq!(settled_status(&ns, t("2026-02-01T10:00:00Z")), None);
        let terminating = json!({"kind":"Namespace","metadata":{"name":"x","deletionTimestamp":"2026-02-01T10:00:00Z"},
                                 "status":{"phase":"Terminating"}});
        assert_eq!(namespace_status(&terminating), None);

        let local =
            json!({"kind":"APIService","metadata":{"name":"v1.apps"},"spec":{"service":null}});
        let st = apiservice_status(&local, t("2026-02-01T10:00:00Z")).unwrap();
        assert_eq!(st["conditions"][0]["type"], "Available");
        assert_eq!(st["conditions"][0]["status"], "True");
        assert_eq!(st["conditions"][0]["reason"], "Local");
        let remote = json!({"kind":"APIService","metadata":{"name":"v1beta1.metrics.k8s.io"},
                            "spec":{"service":{"name":"metrics-server","namespace":"kube-system"}}});
        let st = apiservice_status(&remote, t("2026-02-01T10:00:00Z")).unwrap();
        assert_eq!(st["conditions"][0]["reason"], "Passed");
        assert_eq!(st["conditions"][0]["message"], "all checks passed");
        assert_eq!(
            apiservice_status(&apply(remote, Some(st)), t("2026-02-01T12:00:00Z")),
            None
        );
        // CronJobs and unknown kinds are not touched.
        assert_eq!(
            settled_status(
                &json!({"kind":"CronJob","metadata":{"name":"c"}}),
                t("2026-02-01T10:00:00Z")
            ),
            None
        );
    }
}
