//! `control-plane-namespace`: when the plan creates the namespace its control plane is
//! installed into (a manifest, or `create_namespace` on the helm node) instead of leaving it
//! to the chart, the namespace needs what Linkerd's own namespace template sets: the labels
//! `linkerd.io/is-control-plane: "true"`, `config.linkerd.io/admission-webhooks: disabled`,
//! `linkerd.io/control-plane-ns: <namespace>` and the annotation `linkerd.io/inject: disabled`.

use crate::lint::Finding;
use crate::lint::context::{Context, Origin};
use crate::lint::linkerd::{CONTROL_PLANE_LABEL, INJECT_ANNOTATION, NamespaceMeta};
use crate::lint::path;
use crate::model::lint_checks::CheckId;

const ID: CheckId = CheckId::ControlPlaneNamespace;

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let Some(cp) = &ctx.control_plane else {
        return;
    };
    let Origin::Plan(cp_node) = &cp.origin else {
        return;
    };
    let ns = cp.namespace.as_str();
    let Some(obj) = ctx
        .objects
        .iter()
        .find(|o| o.kind() == "Namespace" && o.group().is_empty() && o.name() == ns)
    else {
        return;
    };
    let meta = NamespaceMeta::of(obj.body());
    let labels = [
        (CONTROL_PLANE_LABEL, "true".to_string()),
        (
            "config.linkerd.io/admission-webhooks",
            "disabled".to_string(),
        ),
        ("linkerd.io/control-plane-ns", ns.to_string()),
    ];
    let annotations = [(INJECT_ANNOTATION, "disabled".to_string())];
    let mut missing = Vec::new();
    let mut wrong_field = None;
    for (what, wanted, have) in labels
        .iter()
        .map(|(k, v)| ("label", (k, v), meta.labels.get(*k)))
        .chain(
            annotations
                .iter()
                .map(|(k, v)| ("annotation", (k, v), meta.annotations.get(*k))),
        )
    {
        let (key, value) = wanted;
        match have {
            Some(v) if v == value => {}
            Some(v) => {
                missing.push(format!("{what} {key}: \"{value}\" (it is \"{v}\")"));
                wrong_field.get_or_insert(if what == "label" {
                    "metadata.labels"
                } else {
                    "metadata.annotations"
                });
            }
            None => {
                missing.push(format!("{what} {key}: \"{value}\""));
                wrong_field.get_or_insert(if what == "label" {
                    "metadata.labels"
                } else {
                    "metadata.annotations"
                });
            }
        }
    }
    if missing.is_empty() {
        return;
    }
    let created_by = if obj.manifest.is_some() {
        format!("{} creates", obj.node.address)
    } else {
        format!("{} creates (create_namespace)", obj.node.address)
    };
    let message = format!(
        "namespace {ns}, which {created_by} for the control plane of {cp_node}, lacks {}",
        missing.join(", ")
    );
    let yaml_labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    let fix = if obj.manifest.is_some() {
        format!(
            "set them on the Namespace: labels {{{}}}, annotations {{{INJECT_ANNOTATION}: \
             \"disabled\"}}",
            yaml_labels.join(", ")
        )
    } else {
        format!(
            "create the namespace with a manifest node instead of create_namespace, with labels \
             {{{}}} and annotations {{{INJECT_ANNOTATION}: \"disabled\"}}, and depend on it",
            yaml_labels.join(", ")
        )
    };
    let field = path::parse(wrong_field.unwrap_or("metadata"));
    out.push(ctx.at_object(ID, obj, Some(&field), message, fix));
}
