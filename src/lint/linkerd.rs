//! Linkerd's rules as the checks need them (the proxy injector's, and the control plane's
//! configuration), shared by `lint` (what would be applied) and `check` (what runs).
//!
//! - [`injection`]: whether the proxy injector adds a proxy to a pod template in a namespace:
//!   the template's `linkerd.io/inject` wins over the namespace's; `enabled` and `ingress`
//!   inject; pods with `hostNetwork: true` never get a proxy.
//! - [`native_sidecar_annotation`]: the per-pod / per-namespace switch that makes the proxy a
//!   native sidecar (an init container Kubernetes stops when the pod's containers end), in its
//!   `config.alpha` and `config.beta` spellings.
//! - [`control_plane_settings`]: from a control plane's values (its chart's defaults merged
//!   with what the plan sets, or the `values` of the installed `linkerd-config`): whether
//!   proxies are native sidecars (`proxy.nativeSidecar`; charts changed its default across
//!   versions, and charts that do not declare it have no native sidecars) and the identity
//!   trust domain.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

/// The inject annotation.
pub const INJECT_ANNOTATION: &str = "linkerd.io/inject";
/// The per-pod / per-namespace native sidecar annotations (Linkerd 2.15 introduced the alpha
/// spelling; later versions read the beta one).
pub const NATIVE_SIDECAR_ANNOTATIONS: [&str; 2] = [
    "config.alpha.linkerd.io/proxy-enable-native-sidecar",
    "config.beta.linkerd.io/proxy-enable-native-sidecar",
];
/// The label of the control plane namespace.
pub const CONTROL_PLANE_LABEL: &str = "linkerd.io/is-control-plane";
/// The name of the control plane's configuration ConfigMap.
pub const LINKERD_CONFIG: &str = "linkerd-config";
/// The Secret the identity controller reads its issuer from (scheme `kubernetes.io/tls`).
pub const ISSUER_SECRET: &str = "linkerd-identity-issuer";

/// The labels and annotations of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl NamespaceMeta {
    /// From a Namespace object.
    pub fn of(object: &Json) -> Self {
        let map = |p: &str| -> BTreeMap<String, String> {
            object
                .pointer(p)
                .and_then(Json::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let v = match v {
                                Json::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (k.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            labels: map("/metadata/labels"),
            annotations: map("/metadata/annotations"),
        }
    }
}

/// Where the inject annotation that decides a pod's injection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectOrigin {
    Template,
    Namespace(String),
}

/// The injection decision for a pod template: `Some((value, origin))` when the injector adds
/// a proxy (value `enabled` or `ingress`).
pub fn injection(
    template: &Json,
    namespace: &str,
    ns: Option<&NamespaceMeta>,
) -> Option<(String, InjectOrigin)> {
    if template
        .pointer("/spec/hostNetwork")
        .and_then(Json::as_bool)
        == Some(true)
    {
        return None;
    }
    let on_template = template
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(INJECT_ANNOTATION))
        .and_then(Json::as_str);
    let (value, origin) = match on_template {
        Some(v) => (v.to_string(), InjectOrigin::Template),
        None => (
            ns?.annotations.get(INJECT_ANNOTATION)?.clone(),
            InjectOrigin::Namespace(namespace.to_string()),
        ),
    };
    matches!(value.as_str(), "enabled" | "ingress").then_some((value, origin))
}

/// The native sidecar annotation set to `true` on the pod template or the namespace, if any.
pub fn native_sidecar_annotation(
    template: &Json,
    ns: Option<&NamespaceMeta>,
) -> Option<&'static str> {
    NATIVE_SIDECAR_ANNOTATIONS.into_iter().find(|key| {
        let on_template = template
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(*key))
            .and_then(Json::as_str);
        let on_ns = ns.and_then(|n| n.annotations.get(*key)).map(String::as_str);
        on_template
            .or(on_ns)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    })
}

/// What matters about a control plane's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneSettings {
    /// Proxies run as native sidecars (`proxy.nativeSidecar: true`, in a chart that has it).
    pub native_sidecar: bool,
    /// Why `native_sidecar` is what it is, for messages (`proxy.nativeSidecar is false`).
    pub native_sidecar_reason: String,
    /// The identity trust domain (`identityTrustDomain`, else `clusterDomain`).
    pub trust_domain: String,
}

/// The settings of a control plane from its effective values. `declares_native_sidecar` says
/// whether its chart knows `proxy.nativeSidecar` (None: unknown, e.g. the installed
/// `linkerd-config`, whose values carry every key the chart has).
pub fn control_plane_settings(
    values: &Json,
    declares_native_sidecar: Option<bool>,
) -> ControlPlaneSettings {
    let native = values.pointer("/proxy/nativeSidecar");
    let (native_sidecar, native_sidecar_reason) = match (declares_native_sidecar, native) {
        (Some(false), Some(_)) => (
            false,
            "its chart has no proxy.nativeSidecar: the value set is ignored".to_string(),
        ),
        (Some(false), None) => (
            false,
            "its chart has no native sidecar support (no proxy.nativeSidecar)".to_string(),
        ),
        (None, None) => (false, "proxy.nativeSidecar is not set".to_string()),
        (_, Some(Json::Bool(true))) => (true, "proxy.nativeSidecar is true".to_string()),
        (_, Some(Json::String(s))) if s.eq_ignore_ascii_case("true") => {
            (true, "proxy.nativeSidecar is true".to_string())
        }
        (_, Some(v)) => (false, format!("proxy.nativeSidecar is {v}")),
        (Some(true), None) => (false, "proxy.nativeSidecar is not set".to_string()),
    };
    let text = |p: &str| {
        values
            .pointer(p)
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let trust_domain = text("/identityTrustDomain")
        .or_else(|| text("/clusterDomain"))
        .unwrap_or_else(|| "cluster.local".to_string());
    ControlPlaneSettings {
        native_sidecar,
        native_sidecar_reason,
        trust_domain,
    }
}

/// Whether a helm chart name is Linkerd's control plane chart.
pub fn is_control_plane_chart(name: &str) -> bool {
    name == "linkerd-control-plane" || name == "linkerd2"
}

/// Whether a helm chart name is Linkerd's viz extension.
pub fn is_viz_chart(name: &str) -> bool {
    name == "linkerd-viz"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ns(annotations: Json) -> NamespaceMeta {
        NamespaceMeta::of(&json!({"metadata": {"annotations": annotations}}))
    }

    #[test]
    fn the_template_wins_over_the_namespace() {
        let on = ns(json!({"linkerd.io/inject": "enabled"}));
        let plain = json!({"metadata": {}});
        assert_eq!(
            injection(&plain, "apps", Some(&on)),
            Some(("enabled".into(), InjectOrigin::Namespace("apps".into())))
        );
        let off = json!({"metadata": {"annotations": {"linkerd.io/inject": "disabled"}}});
        assert_eq!(injection(&off, "apps", Some(&on)), None);
        let ingress = json!({"metadata": {"annotations": {"linkerd.io/inject": "ingress"}}});
        assert_eq!(
            injection(&ingress, "apps", None),
            Some(("ingress".into(), InjectOrigin::Template))
        );
        let host = json!({"metadata": {}, "spec": {"hostNetwork": true}});
        assert_eq!(injection(&host, "apps", Some(&on)), None);
    }

    #[test]
    fn native_sidecars_from_annotations_and_values() {
        let t = json!({"metadata": {"annotations": {
            "config.beta.linkerd.io/proxy-enable-native-sidecar": "true"}}});
        assert!(native_sidecar_annotation(&t, None).is_some());
        let n = ns(json!({"config.alpha.linkerd.io/proxy-enable-native-sidecar": "true"}));
        assert!(native_sidecar_annotation(&json!({}), Some(&n)).is_some());
        let values = json!({"proxy": {"nativeSidecar": true}, "clusterDomain": "example.org"});
        let s = control_plane_settings(&values, Some(true));
        assert!(s.native_sidecar);
        assert_eq!(s.trust_domain, "example.org");
        // A chart without the key ignores it.
        assert!(!control_plane_settings(&values, Some(false)).native_sidecar);
        // The installed configuration says it itself.
        assert!(control_plane_settings(&values, None).native_sidecar);
        let off = control_plane_settings(&json!({"proxy": {"nativeSidecar": false}}), Some(true));
        assert_eq!(off.native_sidecar_reason, "proxy.nativeSidecar is false");
        assert_eq!(off.trust_domain, "cluster.local");
    }
}
