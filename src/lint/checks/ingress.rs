//! Ingress to meshed services:
//! - `viz-dashboard-host`: an Ingress to the viz dashboard (`web` in the viz namespace) whose
//!   host the dashboard's `-enforced-host` regexp (the rendered `web` Deployment's, else
//!   `dashboard.enforcedHostRegexp` or the chart's default) does not match;
//! - `ingress-dst-override`: a Traefik Ingress to a meshed Service without a Middleware
//!   setting `l5d-dst-override` to that Service (or setting it to another one);
//! - `ingress-inject-mode`: Traefik (in the plan, or in the cluster when read) meshed with
//!   `linkerd.io/inject: enabled` instead of `ingress`.

use serde_json::Value as Json;

use crate::lint::Finding;
use crate::lint::context::{Context, Obj, is_placeholder};
use crate::lint::linkerd::{INJECT_ANNOTATION, InjectOrigin, NamespaceMeta, injection};
use crate::lint::path::{self, Seg};
use crate::model::lint_checks::CheckId;

const MIDDLEWARES_ANNOTATION: &str = "traefik.ingress.kubernetes.io/router.middlewares";
const DST_OVERRIDE: &str = "l5d-dst-override";

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let ingresses: Vec<&Obj<'_>> = ctx
        .objects
        .iter()
        .filter(|o| o.kind() == "Ingress" && o.group() == "networking.k8s.io")
        .collect();
    for ing in &ingresses {
        dashboard_host(ctx, ing, out);
        if is_traefik(ing) {
            dst_override(ctx, ing, out);
        }
    }
    if let Some(first) = ingresses.iter().find(|i| is_traefik(i)) {
        inject_mode(ctx, first, out);
    }
}

fn is_traefik(ing: &Obj<'_>) -> bool {
    let body = ing.body();
    body.pointer("/spec/ingressClassName")
        .and_then(Json::as_str)
        == Some("traefik")
        || body
            .pointer("/metadata/annotations")
            .and_then(|a| a.get("kubernetes.io/ingress.class"))
            .and_then(Json::as_str)
            == Some("traefik")
}

/// Every backend of an Ingress: (path to it, service name, port number if numeric).
fn backends(ing: &Obj<'_>) -> Vec<(Vec<Seg>, String, Option<i64>)> {
    let mut out = Vec::new();
    let mut push = |path: Vec<Seg>, b: &Json| {
        if let Some(name) = b.pointer("/service/name").and_then(Json::as_str) {
            let port = b.pointer("/service/port/number").and_then(Json::as_i64);
            out.push((path, name.to_string(), port));
        }
    };
    if let Some(b) = ing.body().pointer("/spec/defaultBackend") {
        push(path::parse("spec.defaultBackend"), b);
    }
    let rules = ing
        .body()
        .pointer("/spec/rules")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let paths = rule
            .pointer("/http/paths")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for (j, p) in paths.iter().enumerate() {
            if let Some(b) = p.get("backend") {
                push(
                    path::parse(&format!("spec.rules[{i}].http.paths[{j}].backend")),
                    b,
                );
            }
        }
    }
    out
}

fn dashboard_host(ctx: &Context<'_>, ing: &Obj<'_>, out: &mut Vec<Finding>) {
    let Some(viz) = &ctx.viz else {
        return;
    };
    if ing.namespace() != Some(viz.namespace.as_str())
        || !backends(ing).iter().any(|(_, name, _)| name == "web")
    {
        return;
    }
    let Some(pattern) = enforced_host(ctx, &viz.namespace, &viz.values) else {
        return;
    };
    let Ok(regex) = regex::Regex::new(&pattern) else {
        ctx.note(format!(
            "{}: `{}` not checked: the dashboard's enforced host regexp `{pattern}` is not one \
             meshplan can read",
            ing.node.address,
            CheckId::VizDashboardHost
        ));
        return;
    };
    let rules = ing
        .body()
        .pointer("/spec/rules")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let Some(host) = rule.get("host").and_then(Json::as_str) else {
            continue;
        };
        if is_placeholder(&Json::String(host.to_string())) || regex.is_match(host) {
            continue;
        }
        let suggestion = widened(&pattern, host);
        out.push(ctx.at_object(
            CheckId::VizDashboardHost,
            ing,
            Some(&path::parse(&format!("spec.rules[{i}].host"))),
            format!(
                "Ingress {}/{} sends host {host} to the viz dashboard, whose enforced host \
                 regexp `{pattern}` refuses it",
                ing.namespace().unwrap_or_default(),
                ing.name()
            ),
            format!(
                "set dashboard.enforcedHostRegexp in the values of {} to a regexp that matches \
                 {host}, e.g. '{suggestion}'",
                viz.node.address
            ),
        ));
    }
}

/// The dashboard's `-enforced-host` regexp: from the rendered `web` Deployment, else the
/// values, else the chart's default for the namespace.
fn enforced_host(ctx: &Context<'_>, namespace: &str, values: &Json) -> Option<String> {
    let rendered = ctx.objects.iter().find(|o| {
        o.kind() == "Deployment" && o.name() == "web" && o.namespace() == Some(namespace)
    });
    if let Some(web) = rendered {
        let containers = web
            .body()
            .pointer("/spec/template/spec/containers")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for c in containers {
            let args = c
                .get("args")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            for a in args {
                if let Some(p) = a.as_str().and_then(|a| a.strip_prefix("-enforced-host=")) {
                    return Some(p.to_string());
                }
            }
        }
    }
    match values.pointer("/dashboard/enforcedHostRegexp") {
        Some(v) if is_placeholder(v) => None,
        Some(Json::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => {
            let domain = values
                .get("clusterDomain")
                .and_then(Json::as_str)
                .unwrap_or("cluster.local");
            let full = format!("web.{namespace}.svc.{domain}").replace('.', "\\.");
            let abbrev = format!("web.{namespace}.svc").replace('.', "\\.");
            Some(format!(
                "^(localhost|127\\.0\\.0\\.1|{full}|{abbrev}|\\[::1\\])(:\\d+)?$"
            ))
        }
    }
}

/// The regexp with `host` added to its alternatives (or one for `host` alone).
fn widened(pattern: &str, host: &str) -> String {
    let escaped = regex::escape(host);
    match pattern.strip_suffix(")(:\\d+)?$") {
        Some(head) if head.starts_with("^(") => format!("{head}|{escaped})(:\\d+)?$"),
        _ => format!("^({escaped})(:\\d+)?$"),
    }
}

fn dst_override(ctx: &Context<'_>, ing: &Obj<'_>, out: &mut Vec<Finding>) {
    let ns = ing.namespace().unwrap_or("default");
    let ns_meta = ctx.namespace_meta(ns);
    let middlewares: Vec<String> = ing
        .body()
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIDDLEWARES_ANNOTATION))
        .and_then(Json::as_str)
        .map(|s| {
            s.split(',')
                .map(|m| m.trim().trim_end_matches("@kubernetescrd").to_string())
                .filter(|m| !m.is_empty())
                .collect()
        })
        .unwrap_or_default();
    // Header values the Ingress' middlewares set, and middlewares the plan does not have.
    let mut headers: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for m in &middlewares {
        let found = ctx.objects.iter().find(|o| {
            o.kind() == "Middleware"
                && o.group().starts_with("traefik.")
                && format!("{}-{}", o.namespace().unwrap_or_default(), o.name()) == *m
        });
        match found {
            Some(o) => {
                if let Some(v) = o
                    .body()
                    .pointer("/spec/headers/customRequestHeaders")
                    .and_then(|h| h.get(DST_OVERRIDE))
                    .and_then(Json::as_str)
                {
                    headers.push(v.to_string());
                }
            }
            None => unknown.push(m.clone()),
        }
    }
    for (path, service, port) in backends(ing) {
        if !is_meshed_service(ctx, ns, ns_meta, &service) {
            continue;
        }
        let wanted_prefix = format!("{service}.{ns}.svc");
        let example = format!(
            "{service}.{ns}.svc.cluster.local:{}",
            port.map_or("PORT".to_string(), |p| p.to_string())
        );
        let who = format!(
            "Traefik Ingress {ns}/{} to the meshed Service {ns}/{service}",
            ing.name()
        );
        if headers.is_empty() {
            if !unknown.is_empty() {
                ctx.note(format!(
                    "{}: `{}` not checked for Ingress {ns}/{}: its middlewares {} are not in the \
                     plan",
                    ing.node.address,
                    CheckId::IngressDstOverride,
                    ing.name(),
                    unknown.join(", ")
                ));
                continue;
            }
            out.push(ctx.at_object(
                CheckId::IngressDstOverride,
                ing,
                Some(&[Seg::Key("metadata".into()), Seg::Key("annotations".into())]),
                format!("{who} has no middleware setting {DST_OVERRIDE}"),
                format!(
                    "add a Middleware with spec.headers.customRequestHeaders.{DST_OVERRIDE}: \
                     \"{example}\" and name it in the annotation {MIDDLEWARES_ANNOTATION} \
                     (`{ns}-NAME@kubernetescrd`)"
                ),
            ));
            continue;
        }
        let matches = headers.iter().any(|h| {
            let port_ok = port.is_none_or(|p| h.ends_with(&format!(":{p}")));
            (h.starts_with(&format!("{wanted_prefix}."))
                || h.starts_with(&format!("{wanted_prefix}:")))
                && port_ok
        });
        if !matches {
            out.push(ctx.at_object(
                CheckId::IngressDstOverride,
                ing,
                Some(&path),
                format!(
                    "{who} sets {DST_OVERRIDE} to {}, not to that Service",
                    headers.join(", ")
                ),
                format!("set {DST_OVERRIDE} to \"{example}\" in the Ingress' middleware"),
            ));
        }
    }
}

/// A Service is meshed when the plan's workloads it selects get a proxy, or (Service or
/// workloads not in the plan) when its namespace injects.
fn is_meshed_service(
    ctx: &Context<'_>,
    ns: &str,
    ns_meta: Option<&NamespaceMeta>,
    service: &str,
) -> bool {
    let selector = ctx
        .objects
        .iter()
        .find(|o| {
            o.kind() == "Service"
                && o.group().is_empty()
                && o.name() == service
                && o.namespace() == Some(ns)
        })
        .and_then(|s| {
            s.body()
                .pointer("/spec/selector")
                .and_then(Json::as_object)
                .cloned()
        });
    if let Some(selector) = selector.filter(|s| !s.is_empty()) {
        let selected: Vec<&Obj<'_>> = ctx
            .objects
            .iter()
            .filter(|o| {
                o.group() == "apps"
                    && matches!(o.kind(), "Deployment" | "StatefulSet" | "DaemonSet")
                    && o.namespace() == Some(ns)
                    && selector.iter().all(|(k, v)| {
                        o.body()
                            .pointer("/spec/template/metadata/labels")
                            .and_then(|l| l.get(k))
                            == Some(v)
                    })
            })
            .collect();
        if !selected.is_empty() {
            return selected.iter().any(|w| {
                w.body()
                    .pointer("/spec/template")
                    .is_some_and(|t| injection(t, ns, ns_meta).is_some())
            });
        }
    }
    ns_meta.is_some_and(|m| {
        matches!(
            m.annotations.get(INJECT_ANNOTATION).map(String::as_str),
            Some("enabled" | "ingress")
        )
    })
}

fn is_traefik_workload(w: &Json) -> bool {
    let label = w
        .pointer("/metadata/labels")
        .and_then(|l| l.get("app.kubernetes.io/name"))
        .and_then(Json::as_str)
        == Some("traefik");
    let image = w
        .pointer("/spec/template/spec/containers")
        .and_then(Json::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("image")
                    .and_then(Json::as_str)
                    .is_some_and(|i| i.rsplit('/').next().unwrap_or(i).contains("traefik"))
            })
        });
    label || image
}

fn inject_mode(ctx: &Context<'_>, ingress: &Obj<'_>, out: &mut Vec<Finding>) {
    let mut seen = std::collections::BTreeSet::new();
    for w in ctx.objects.iter().filter(|o| {
        o.group() == "apps"
            && matches!(o.kind(), "Deployment" | "DaemonSet")
            && is_traefik_workload(o.body())
    }) {
        let ns = w.namespace().unwrap_or("default");
        seen.insert((ns.to_string(), w.name().to_string()));
        let Some(template) = w.body().pointer("/spec/template") else {
            continue;
        };
        if let Some((value, origin)) = injection(template, ns, ctx.namespace_meta(ns))
            && value == "enabled"
        {
            let field = match origin {
                InjectOrigin::Template => path::parse("spec.template.metadata.annotations"),
                InjectOrigin::Namespace(_) => path::parse("spec.template.metadata"),
            };
            out.push(ctx.at_object(
                CheckId::IngressInjectMode,
                w,
                Some(&field),
                format!(
                    "Traefik {} {ns}/{} is meshed with {INJECT_ANNOTATION}: enabled{}",
                    w.kind(),
                    w.name(),
                    by(&origin)
                ),
                format!("annotate its pod template with {INJECT_ANNOTATION}: ingress"),
            ));
        }
    }
    let Some(cluster) = ctx.input.cluster else {
        return;
    };
    for w in &cluster.traefik {
        let text = |p: &str| w.pointer(p).and_then(Json::as_str).unwrap_or_default();
        let (ns, name, kind) = (
            text("/metadata/namespace"),
            text("/metadata/name"),
            text("/kind"),
        );
        if seen.contains(&(ns.to_string(), name.to_string())) {
            continue;
        }
        let Some(template) = w.pointer("/spec/template") else {
            continue;
        };
        if let Some((value, origin)) = injection(template, ns, ctx.namespace_meta(ns))
            && value == "enabled"
        {
            out.push(ctx.at_object(
                CheckId::IngressInjectMode,
                ingress,
                None,
                format!(
                    "Traefik {kind} {ns}/{name} (in the cluster), which serves Ingress {}/{}, is \
                     meshed with {INJECT_ANNOTATION}: enabled{}",
                    ingress.namespace().unwrap_or_default(),
                    ingress.name(),
                    by(&origin)
                ),
                format!(
                    "annotate the pod template of {kind} {ns}/{name} with {INJECT_ANNOTATION}: \
                     ingress (on k3s, through its HelmChartConfig: deployment.podAnnotations)"
                ),
            ));
        }
    }
}

fn by(origin: &InjectOrigin) -> String {
    match origin {
        InjectOrigin::Template => String::new(),
        InjectOrigin::Namespace(n) => format!(" (from namespace {n})"),
    }
}
