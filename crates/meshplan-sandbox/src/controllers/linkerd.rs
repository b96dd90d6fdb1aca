//! Linkerd's proxy and Jobs: a Job whose pod Linkerd would inject never completes while a
//! control plane runs, because the proxy container keeps the pod alive after the Job's own
//! container exits. The simulated Job controller asks [`is_meshed_job_with`] and, when it answers
//! true, keeps the Job running (`workloads::job_running_status`) instead of completing it.
//!
//! The rules follow Linkerd's proxy injector:
//! - the pod template's `linkerd.io/inject` annotation wins over the namespace's; `enabled` and
//!   `ingress` inject, `disabled` (or any other value) does not; without either, no injection;
//! - pods with `hostNetwork: true` are never injected;
//! - with the proxy as a native sidecar (annotation
//!   `config.alpha.linkerd.io/proxy-enable-native-sidecar: "true"` — or its `config.beta`
//!   spelling — on the template or the namespace, or the control plane's `proxy.nativeSidecar`
//!   value) the proxy is an init container that Kubernetes stops when the Job's containers end,
//!   so the Job completes.
//!
//! [`control_plane`] tells whether a control plane runs: a namespace labelled
//! `linkerd.io/is-control-plane: "true"` whose `linkerd-destination` and
//! `linkerd-proxy-injector` Deployments are available.

use serde_json::Value;

use super::workloads;

/// The inject annotation.
pub(crate) const INJECT_ANNOTATION: &str = "linkerd.io/inject";
/// The native sidecar annotations (alpha spelling first, as Linkerd 2.15 introduced it).
pub(crate) const NATIVE_SIDECAR_ANNOTATIONS: [&str; 2] = [
    "config.alpha.linkerd.io/proxy-enable-native-sidecar",
    "config.beta.linkerd.io/proxy-enable-native-sidecar",
];
/// The label of the control plane namespace.
pub(crate) const CONTROL_PLANE_LABEL: &str = "linkerd.io/is-control-plane";
/// Deployments that must be available for the control plane to inject proxies.
pub(crate) const CONTROL_PLANE_DEPLOYMENTS: [&str; 2] =
    ["linkerd-destination", "linkerd-proxy-injector"];

/// What matters about the Linkerd control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ControlPlane {
    /// A control plane runs (see [`control_plane`]).
    pub running: bool,
    /// Its configuration makes every proxy a native sidecar (`proxy.nativeSidecar: true`).
    pub native_sidecar: bool,
}

fn annotation<'a>(obj: Option<&'a Value>, path: &[&str], key: &str) -> Option<&'a str> {
    let mut cur = obj?;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

fn native_sidecar_annotated(obj: Option<&Value>, path: &[&str]) -> bool {
    NATIVE_SIDECAR_ANNOTATIONS
        .iter()
        .any(|k| annotation(obj, path, k).is_some_and(|v| v.eq_ignore_ascii_case("true")))
}

/// Would Linkerd's injector add a proxy to this pod template (in this namespace)?
pub(crate) fn would_inject(job: &Value, namespace: Option<&Value>) -> bool {
    let tpl = ["spec", "template"];
    let host_network = job
        .pointer("/spec/template/spec/hostNetwork")
        .and_then(Value::as_bool)
        == Some(true);
    if host_network {
        return false;
    }
    let value = annotation(Some(job), &tpl, INJECT_ANNOTATION)
        .or_else(|| annotation(namespace, &[], INJECT_ANNOTATION));
    matches!(value, Some("enabled" | "ingress"))
}

/// A Job that never completes: injected with a classic (non-native) proxy while a control plane
/// runs. Same as [`is_meshed_job_with`] with no control plane native-sidecar setting.
#[cfg(test)]
pub(crate) fn is_meshed_job(
    job: &Value,
    namespace: Option<&Value>,
    control_plane_running: bool,
) -> bool {
    is_meshed_job_with(
        job,
        namespace,
        ControlPlane {
            running: control_plane_running,
            native_sidecar: false,
        },
    )
}

/// `is_meshed_job` with the control plane's native-sidecar setting.
pub(crate) fn is_meshed_job_with(job: &Value, namespace: Option<&Value>, cp: ControlPlane) -> bool {
    cp.running
        && would_inject(job, namespace)
        && !cp.native_sidecar
        && !native_sidecar_annotated(Some(job), &["spec", "template"])
        && !native_sidecar_annotated(namespace, &[])
}

/// The control plane's state from the namespaces, the Deployments (any namespaces) and, if
/// present, the `linkerd-config` ConfigMap of the control plane namespace (its `values` YAML,
/// as the chart writes it: `proxy.nativeSidecar: true` makes every proxy a native sidecar).
pub(crate) fn control_plane(
    namespaces: &[Value],
    deployments: &[Value],
    linkerd_config: Option<&Value>,
) -> ControlPlane {
    let name = |v: &Value| {
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let cp_namespaces: Vec<String> = namespaces
        .iter()
        .filter(|ns| {
            ns.pointer("/metadata/labels")
                .and_then(|l| l.get(CONTROL_PLANE_LABEL))
                .and_then(Value::as_str)
                == Some("true")
                && ns.pointer("/metadata/deletionTimestamp").is_none()
        })
        .filter_map(name)
        .collect();
    let running = cp_namespaces.iter().any(|ns| {
        CONTROL_PLANE_DEPLOYMENTS.iter().all(|wanted| {
            deployments.iter().any(|d| {
                d.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns.as_str())
                    && name(d).as_deref() == Some(*wanted)
                    && workloads::deployment_available(d)
            })
        })
    });
    let native_sidecar = linkerd_config
        .and_then(|cm| cm.pointer("/data/values"))
        .and_then(Value::as_str)
        .and_then(|values| serde_saphyr::from_str::<Value>(values).ok())
        .and_then(|values| values.pointer("/proxy/nativeSidecar").cloned())
        .is_some_and(|v| v == Value::Bool(true) || v.as_str() == Some("true"));
    ControlPlane {
        running,
        native_sidecar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(annotations: Value) -> Value {
        json!({"kind":"Job","metadata":{"name":"migrate","namespace":"apps"},
               "spec":{"template":{"metadata":{"annotations":annotations},
                                   "spec":{"restartPolicy":"Never","containers":[{"name":"m","image":"x"}]}}}})
    }

    fn ns(annotations: Value) -> Value {
        json!({"kind":"Namespace","metadata":{"name":"apps","annotations":annotations}})
    }

    #[test]
    fn template_or_namespace_injection_meshes_the_job() {
        let enabled = json!({"linkerd.io/inject":"enabled"});
        assert!(is_meshed_job(&job(enabled.clone()), None, true));
        assert!(is_meshed_job(
            &job(json!({})),
            Some(&ns(enabled.clone())),
            true
        ));
        assert!(is_meshed_job(
            &job(json!({"linkerd.io/inject":"ingress"})),
            None,
            true
        ));
        // Nothing annotated: not meshed.
        assert!(!is_meshed_job(&job(json!({})), Some(&ns(json!({}))), true));
        assert!(!is_meshed_job(&job(json!({})), None, true));
    }

    #[test]
    fn disabled_on_the_template_wins() {
        let ns_on = ns(json!({"linkerd.io/inject":"enabled"}));
        assert!(!is_meshed_job(
            &job(json!({"linkerd.io/inject":"disabled"})),
            Some(&ns_on),
            true
        ));
        // And an enabled template wins over a disabled namespace.
        let ns_off = ns(json!({"linkerd.io/inject":"disabled"}));
        assert!(is_meshed_job(
            &job(json!({"linkerd.io/inject":"enabled"})),
            Some(&ns_off),
            true
        ));
    }

    #[test]
    fn no_control_plane_no_mesh() {
        assert!(!is_meshed_job(
            &job(json!({"linkerd.io/inject":"enabled"})),
            None,
            false
        ));
    }

    #[test]
    fn native_sidecar_lets_the_job_complete() {
        let on = json!({"linkerd.io/inject":"enabled",
                        "config.alpha.linkerd.io/proxy-enable-native-sidecar":"true"});
        assert!(!is_meshed_job(&job(on), None, true));
        let beta = json!({"linkerd.io/inject":"enabled",
                          "config.beta.linkerd.io/proxy-enable-native-sidecar":"true"});
        assert!(!is_meshed_job(&job(beta), None, true));
        let ns_native = ns(json!({"linkerd.io/inject":"enabled",
                                  "config.alpha.linkerd.io/proxy-enable-native-sidecar":"true"}));
        assert!(!is_meshed_job(&job(json!({})), Some(&ns_native), true));
        // "false" is not a native-sidecar setting.
        let off = json!({"linkerd.io/inject":"enabled",
                         "config.alpha.linkerd.io/proxy-enable-native-sidecar":"false"});
        assert!(is_meshed_job(&job(off.clone()), None, true));
        // The control plane value.
        let cp = ControlPlane {
            running: true,
            native_sidecar: true,
        };
        assert!(!is_meshed_job_with(&job(off), None, cp));
    }

    #[test]
    fn host_network_pods_are_not_injected() {
        let mut j = job(json!({"linkerd.io/inject":"enabled"}));
        j["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        assert!(!is_meshed_job(&j, None, true));
    }

    fn available_deployment(ns: &str, name: &str) -> Value {
        let d = json!({"kind":"Deployment","metadata":{"name":name,"namespace":ns,"generation":1},
                       "spec":{"replicas":1,"template":{"spec":{}}}});
        let status = workloads::deployment_status(&d, "2026-01-01T00:00:00Z".parse().unwrap());
        let mut d = d;
        d["status"] = status.unwrap();
        d
    }

    #[test]
    fn control_plane_runs_when_its_deployments_are_available() {
        let cp_ns = json!({"kind":"Namespace","metadata":{"name":"linkerd",
                           "labels":{"linkerd.io/is-control-plane":"true"}}});
        let plain_ns = json!({"kind":"Namespace","metadata":{"name":"linkerd"}});
        let dest = available_deployment("linkerd", "linkerd-destination");
        let inj = available_deployment("linkerd", "linkerd-proxy-injector");
        let both = [dest.clone(), inj.clone()];
        assert!(control_plane(std::slice::from_ref(&cp_ns), &both, None).running);
        // Not labelled.
        assert!(!control_plane(&[plain_ns], &both, None).running);
        // Injector missing.
        assert!(
            !control_plane(
                std::slice::from_ref(&cp_ns),
                std::slice::from_ref(&dest),
                None
            )
            .running
        );
        // Injector not yet available (no status).
        let mut unready = inj.clone();
        unready.as_object_mut().unwrap().remove("status");
        assert!(
            !control_plane(std::slice::from_ref(&cp_ns), &[dest.clone(), unready], None).running
        );
        // In another namespace.
        let elsewhere = available_deployment("other", "linkerd-proxy-injector");
        assert!(!control_plane(std::slice::from_ref(&cp_ns), &[dest, elsewhere], None).running);

        let config = json!({"kind":"ConfigMap","metadata":{"name":"linkerd-config","namespace":"linkerd"},
            "data":{"values":"proxy:\n  image:\n    name: proxy\n  nativeSidecar: true\n"}});
        let cp = control_plane(std::slice::from_ref(&cp_ns), &both, Some(&config));
        assert!(cp.running && cp.native_sidecar);
        let config_off = json!({"data":{"values":"proxy:\n  nativeSidecar: false\n"}});
        assert!(
            !control_plane(std::slice::from_ref(&cp_ns), &both, Some(&config_off)).native_sidecar
        );
        // Only the proxy's setting counts, not a key of the same name elsewhere.
        let elsewhere = json!({"data":{"values":"proxyInit:\n  nativeSidecar: true\nproxy:\n  logLevel: info\n"}});
        assert!(!control_plane(&[cp_ns], &both, Some(&elsewhere)).native_sidecar);
    }
}
