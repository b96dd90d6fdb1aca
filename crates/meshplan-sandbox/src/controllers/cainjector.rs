//! The simulated CA injector of cert-manager (cainjector): fills in the `caBundle` of the
//! objects annotated to ask for it.
//!
//! - Annotations: `cert-manager.io/inject-ca-from-secret: NAMESPACE/NAME` (the `ca.crt` of that
//!   Secret) and `cert-manager.io/inject-ca-from: NAMESPACE/NAME` (the `ca.crt` of the Secret
//!   of that Certificate, `spec.secretName` in its namespace).
//! - Targets, as cert-manager injects them: every webhook of a Mutating- or
//!   ValidatingWebhookConfiguration (`webhooks[].clientConfig.caBundle`), the conversion webhook
//!   of a CustomResourceDefinition whose conversion strategy is `Webhook`
//!   (`spec.conversion.webhook.clientConfig.caBundle`), and an APIService (`spec.caBundle`).
//! - [`injection`] returns the server-side apply configuration that sets the bundle (cert-manager
//!   applies it with field manager [`MANAGER`], forcing ownership), or None when there is
//!   nothing to inject or the bundle is already there.
//!
//! Pure: the loop hands in the objects and the lookups.

use serde_json::{Value, json};

/// cert-manager's CA injector's field manager.
pub(crate) const MANAGER: &str = "cert-manager-cainjector";

const FROM_SECRET: &str = "cert-manager.io/inject-ca-from-secret";
const FROM_CERTIFICATE: &str = "cert-manager.io/inject-ca-from";

/// What [`injection`] can fill in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    CustomResourceDefinition,
    ApiService,
}

impl Target {
    /// (API group, plural resource, apiVersion, kind) of the target.
    pub(crate) fn resource(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::MutatingWebhookConfiguration => (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
            ),
            Self::ValidatingWebhookConfiguration => (
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
            ),
            Self::CustomResourceDefinition => (
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
            ),
            Self::ApiService => (
                "apiregistration.k8s.io",
                "apiservices",
                "apiregistration.k8s.io/v1",
                "APIService",
            ),
        }
    }

    pub(crate) const ALL: [Target; 4] = [
        Self::MutatingWebhookConfiguration,
        Self::ValidatingWebhookConfiguration,
        Self::CustomResourceDefinition,
        Self::ApiService,
    ];
}

/// Whether `object` asks for a CA bundle.
pub(crate) fn wants_injection(object: &Value) -> bool {
    let annotations = object.pointer("/metadata/annotations");
    [FROM_SECRET, FROM_CERTIFICATE]
        .iter()
        .any(|k| annotations.and_then(|a| a.get(*k)).is_some())
}

fn split(reference: &str) -> Option<(&str, &str)> {
    let (ns, name) = reference.split_once('/')?;
    (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
}

/// The base64 CA bundle `object` asks for: the `ca.crt` data of the Secret its annotation
/// names (directly, or through a Certificate). None when it asks for none, or the source does
/// not exist (yet).
pub(crate) fn wanted_bundle<'a>(
    object: &Value,
    secret: &dyn Fn(&str, &str) -> Option<&'a Value>,
    certificate: &dyn Fn(&str, &str) -> Option<&'a Value>,
) -> Option<String> {
    let annotation = |k: &str| {
        object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
    };
    let (ns, name) = match (annotation(FROM_SECRET), annotation(FROM_CERTIFICATE)) {
        (Some(r), _) => split(r)?,
        (None, Some(r)) => {
            let (ns, cert) = split(r)?;
            let secret_name = certificate(ns, cert)?
                .pointer("/spec/secretName")
                .and_then(Value::as_str)?;
            (ns, secret_name)
        }
        (None, None) => return None,
    };
    secret(ns, name)?
        .pointer("/data/ca.crt")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The apply configuration that puts `bundle` into `object` (of kind `target`), or None when
/// it is there already (or the object has no place for it).
pub(crate) fn injection(target: Target, object: &Value, bundle: &str) -> Option<Value> {
    let (_, _, api_version, kind) = target.resource();
    let name = object.pointer("/metadata/name").and_then(Value::as_str)?;
    let mut config = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
    match target {
        Target::MutatingWebhookConfiguration | Target::ValidatingWebhookConfiguration => {
            let webhooks = object.get("webhooks").and_then(Value::as_array)?;
            if webhooks.is_empty()
                || webhooks.iter().all(|w| {
                    w.pointer("/clientConfig/caBundle").and_then(Value::as_str) == Some(bundle)
                })
            {
                return None;
            }
            config["webhooks"] = webhooks
                .iter()
                .filter_map(|w| w.get("name"))
                .map(|name| json!({"name": name, "clientConfig": {"caBundle": bundle}}))
                .collect();
        }
        Target::CustomResourceDefinition => {
            if object
                .pointer("/spec/conversion/strategy")
                .and_then(Value::as_str)
                != Some("Webhook")
                || object
                    .pointer("/spec/conversion/webhook/clientConfig/caBundle")
                    .and_then(Value::as_str)
                    == Some(bundle)
            {
                return None;
            }
            config["spec"] =
                json!({"conversion": {"webhook": {"clientConfig": {"caBundle": bundle}}}});
        }
        Target::ApiService => {
            if object.pointer("/spec/caBundle").and_then(Value::as_str) == Some(bundle) {
                return None;
            }
            config["spec"] = json!({"caBundle": bundle});
        }
    }
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(annotation: (&str, &str), bundle: Option<&str>) -> Value {
        let mut client = json!({"service": {"name": "svc", "namespace": "apps"}});
        if let Some(b) = bundle {
            client["caBundle"] = json!(b);
        }
        json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "w", "annotations": {annotation.0: annotation.1}},
            "webhooks": [{"name": "a.example.com", "clientConfig": client.clone()},
                         {"name": "b.example.com", "clientConfig": client}]})
    }

    #[test]
    fn the_bundle_comes_from_the_secret_or_the_certificates_secret() {
        let secret = json!({"data": {"ca.crt": "Q0E="}});
        let cert = json!({"spec": {"secretName": "web-tls"}});
        let find_secret = |ns: &str, name: &str| {
            (ns == "apps" && (name == "ca" || name == "web-tls")).then_some(&secret)
        };
        let find_cert = |ns: &str, name: &str| (ns == "apps" && name == "web").then_some(&cert);
        for annotation in [(FROM_SECRET, "apps/ca"), (FROM_CERTIFICATE, "apps/web")] {
            let object = webhook(annotation, None);
            assert!(wants_injection(&object));
            assert_eq!(
                wanted_bundle(&object, &find_secret, &find_cert).as_deref(),
                Some("Q0E="),
                "{annotation:?}"
            );
        }
        let missing = webhook((FROM_SECRET, "apps/nope"), None);
        assert_eq!(wanted_bundle(&missing, &find_secret, &find_cert), None);
        let bad = webhook((FROM_SECRET, "nonamespace"), None);
        assert_eq!(wanted_bundle(&bad, &find_secret, &find_cert), None);
    }

    #[test]
    fn every_webhook_gets_the_bundle_once() {
        let object = webhook((FROM_SECRET, "apps/ca"), Some("placeholder"));
        let config = injection(Target::ValidatingWebhookConfiguration, &object, "Q0E=").unwrap();
        assert_eq!(
            config["webhooks"],
            json!([{"name": "a.example.com", "clientConfig": {"caBundle": "Q0E="}},
                   {"name": "b.example.com", "clientConfig": {"caBundle": "Q0E="}}])
        );
        let done = webhook((FROM_SECRET, "apps/ca"), Some("Q0E="));
        assert_eq!(
            injection(Target::ValidatingWebhookConfiguration, &done, "Q0E="),
            None
        );
        let api = json!({"metadata": {"name": "v1alpha1.tap.linkerd.io"}, "spec": {}});
        assert_eq!(
            injection(Target::ApiService, &api, "Q0E=").unwrap()["spec"],
            json!({"caBundle": "Q0E="})
        );
        let crd = json!({"metadata": {"name": "x.example.com"}, "spec": {"conversion": {"strategy": "None"}}});
        assert_eq!(
            injection(Target::CustomResourceDefinition, &crd, "Q0E="),
            None
        );
    }
}
