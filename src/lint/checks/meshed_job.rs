//! `meshed-job`: a Job, a CronJob's Jobs or a helm hook Job whose pod the proxy injector
//! would mesh while the control plane runs classic (not native) sidecar proxies. The proxy
//! keeps the pod running after the Job's containers exit, so the Job never completes.
//!
//! The control plane is the plan's (its chart's `proxy.nativeSidecar` default merged with the
//! plan's values), else the installed one (`linkerd-config`); offline with none in the plan,
//! classic proxies are assumed. Per-pod and per-namespace native sidecar annotations win.

use serde_json::Value as Json;

use crate::lint::context::{Context, Obj, Origin};
use crate::lint::linkerd::{INJECT_ANNOTATION, InjectOrigin, injection, native_sidecar_annotation};
use crate::lint::path::{self, Seg};
use crate::lint::{ChartInfo, Finding};
use crate::model::lint_checks::CheckId;

const ID: CheckId = CheckId::MeshedJob;

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    for obj in &ctx.objects {
        let template_path: &[&str] = match (obj.group(), obj.kind()) {
            ("batch", "Job") => &["spec", "template"],
            ("batch", "CronJob") => &["spec", "jobTemplate", "spec", "template"],
            _ => continue,
        };
        let pointer = format!("/{}", template_path.join("/"));
        let Some(template) = obj.body().pointer(&pointer) else {
            continue;
        };
        let ns_name = obj.namespace().unwrap_or("default");
        let ns = ctx.namespace_meta(ns_name);
        let Some((value, origin)) = injection(template, ns_name, ns) else {
            continue;
        };
        if native_sidecar_annotation(template, ns).is_some() {
            continue;
        }
        let proxies = match &ctx.control_plane {
            Some(cp) if cp.settings.native_sidecar => continue,
            Some(cp) => {
                let source = match &cp.origin {
                    Origin::Plan(address) => address.to_string(),
                    Origin::Cluster => format!("the installed control plane in {}", cp.namespace),
                };
                format!(
                    "the control plane runs classic proxies ({source}: {})",
                    cp.settings.native_sidecar_reason
                )
            }
            // Online with no control plane in the plan or the cluster: nothing injects.
            None if ctx.input.cluster.is_some() => continue,
            None => "classic proxies are assumed (no control plane in the plan; the cluster \
                     was not read)"
                .to_string(),
        };
        let subject = match (&obj.rendered.hook, obj.kind()) {
            (_, "CronJob") => format!("the Jobs of CronJob {} never complete", short_name(obj)),
            (Some(hook), _) => {
                let phases: Vec<&str> = hook.phases.iter().map(|p| p.as_str()).collect();
                format!(
                    "Job {} (helm hook, {}) never completes",
                    short_name(obj),
                    phases.join(", ")
                )
            }
            (None, _) => format!("Job {} never completes", short_name(obj)),
        };
        let by = match origin {
            InjectOrigin::Template => "on its pod template".to_string(),
            InjectOrigin::Namespace(n) => format!("on namespace {n}"),
        };
        let message = format!(
            "{subject}: Linkerd injects a proxy into the pod ({INJECT_ANNOTATION}: {value} {by}) \
             and {proxies}"
        );
        let annotations: Vec<Seg> = template_path
            .iter()
            .chain(&["metadata", "annotations"])
            .map(|k| Seg::Key((*k).to_string()))
            .collect();
        let fix = fix_text(ctx, obj, &annotations);
        out.push(ctx.at_object(ID, obj, Some(&annotations), message, fix));
    }
}

fn short_name(obj: &Obj<'_>) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name()),
        None => obj.name().to_string(),
    }
}

fn fix_text(ctx: &Context<'_>, obj: &Obj<'_>, annotations: &[Seg]) -> String {
    let native = "or run the proxy as a native sidecar (annotation \
                  config.beta.linkerd.io/proxy-enable-native-sidecar: \"true\" on the pod \
                  template, or proxy.nativeSidecar: true on a control plane that has it)";
    if obj.manifest.is_some() {
        return format!(
            "add `{INJECT_ANNOTATION}: disabled` to {} of the {}, {native}",
            path::text(annotations),
            obj.kind()
        );
    }
    let node = &obj.node.address;
    let chart = ctx.input.charts.get(node).and_then(|c| c.as_ref().ok());
    match chart.and_then(|c| pod_annotations_key(c, obj)) {
        Some(key) => format!(
            "set the chart value `{key}` to {{ \"{INJECT_ANNOTATION}\" = \"disabled\" }} in the \
             values of {node} (the {}'s pod annotations), {native}",
            obj.kind()
        ),
        None => format!(
            "the {} needs `{INJECT_ANNOTATION}: disabled` on its pod template; its chart has no \
             value for that, so disable injection for the namespace or override the template, \
             {native}",
            obj.kind()
        ),
    }
}

/// The chart value that sets the pod annotations of `obj`: a `…podAnnotations` map whose
/// parent key names the object (or its template file), else a top-level `podAnnotations`.
fn pod_annotations_key(chart: &ChartInfo, obj: &Obj<'_>) -> Option<String> {
    let mut candidates: Vec<Vec<String>> = Vec::new();
    collect_candidates(&chart.values, &mut Vec::new(), &mut candidates);
    let norm = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let name = norm(obj.name());
    let file = obj
        .rendered
        .source
        .as_deref()
        .and_then(|s| s.rsplit('/').next())
        .map(|f| norm(f.trim_end_matches(".yaml").trim_end_matches(".yml")))
        .unwrap_or_default();
    let score = |path: &[String]| -> u8 {
        match path.len() {
            1 => 1,
            n => {
                let parent = norm(&path[n - 2]);
                if !parent.is_empty() && (name.contains(&parent) || file.contains(&parent)) {
                    2
                } else {
                    0
                }
            }
        }
    };
    candidates
        .into_iter()
        .map(|p| (score(&p), p))
        .filter(|(s, _)| *s > 0)
        .max_by(|(sa, a), (sb, b)| sa.cmp(sb).then(b.len().cmp(&a.len())).then(b.cmp(a)))
        .map(|(_, p)| p.join("."))
}

fn collect_candidates(value: &Json, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Json::Object(map) = value else {
        return;
    };
    for (k, v) in map {
        at.push(k.clone());
        let is_map = v.is_object() || v.is_null();
        if k.to_ascii_lowercase().ends_with("podannotations") && is_map {
            out.push(at.clone());
        } else {
            collect_candidates(v, at, out);
        }
        at.pop();
    }
}
