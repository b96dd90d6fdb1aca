//! A deterministic text dump of a render, for reading and for snapshots. Digests and cache
//! keys are left out when they depend on generated material or on the machine (chart paths).

use std::fmt::Write;

use super::{
    CarryOver, NodeRender, NodeStatus, PlanRender, RenderSource, RenderedObject, SincePrevious,
};

/// What [`dump_render`] prints besides the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DumpOptions {
    /// Print each object's digest (only stable for charts without generated material).
    pub digests: bool,
}

/// One block per node in address order, one line per object (hooks after the objects), with
/// its scope, hook marks and the unknown, sensitive and volatile paths.
pub fn dump_render(render: &PlanRender, options: DumpOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "plan {}", render.plan);
    for node in render.nodes.values() {
        dump_node(&mut out, node, options);
    }
    out
}

fn dump_node(out: &mut String, node: &NodeRender, options: DumpOptions) {
    match &node.status {
        NodeStatus::Rendered | NodeStatus::RenderedWithPlaceholders { .. } => {
            let _ = write!(out, "{}: {} object(s)", node.address, node.objects.len());
            if !node.hooks.is_empty() {
                let _ = write!(out, ", {} hook(s)", node.hooks.len());
            }
            if let Some(h) = &node.helm {
                let _ = write!(out, " [release {} in {}", h.release, h.namespace);
                match h.source {
                    RenderSource::Helm => {}
                    RenderSource::Cache => out.push_str(", from the render cache"),
                    RenderSource::Previous => out.push_str(", reused from the previous render"),
                }
                out.push(']');
            }
            if let NodeStatus::RenderedWithPlaceholders { unknown_references } = &node.status {
                let _ = write!(
                    out,
                    " with placeholders for {} (known after apply)",
                    unknown_references.join(", ")
                );
            }
            out.push('\n');
            if let Some(carry) = node.helm.as_ref().and_then(|h| h.carry_over.as_ref()) {
                match carry {
                    CarryOver::NothingVolatile => {}
                    CarryOver::CarriedOver => {
                        out.push_str("  generated material carried over from the previous render\n")
                    }
                    CarryOver::Regenerated { reason } => {
                        let _ = writeln!(out, "  generated material regenerated: {reason}");
                    }
                }
            }
        }
        NodeStatus::RenderedDuringApply {
            unknown_references,
            refused_placeholders,
            ..
        } => {
            let _ = write!(
                out,
                "{}: rendered during apply (uses {})",
                node.address,
                unknown_references.join(", ")
            );
            if let Some(why) = refused_placeholders {
                let _ = write!(out, ": {why}");
            }
            out.push('\n');
        }
    }
    for object in node.objects.iter().chain(&node.hooks) {
        dump_object(out, object, options);
    }
}

fn dump_object(out: &mut String, o: &RenderedObject, options: DumpOptions) {
    let _ = write!(
        out,
        "  {} {} ({})",
        o.object_ref.api_version,
        o.object_ref.short(),
        o.scope.as_str()
    );
    if let Some(h) = &o.hook {
        let phases: Vec<&str> = h.phases.iter().map(|p| p.as_str()).collect();
        let policies: Vec<&str> = h.delete_policies.iter().map(|p| p.as_str()).collect();
        let _ = write!(
            out,
            " hook {} weight {} delete {}",
            phases.join(","),
            h.weight,
            policies.join(",")
        );
    }
    match o.since_previous {
        SincePrevious::New => {}
        SincePrevious::Same => out.push_str(" unchanged"),
        SincePrevious::Changed => out.push_str(" changed"),
        SincePrevious::OnlyRegeneratedMaterial => {
            out.push_str(" changed (regenerated material only)")
        }
    }
    if options.digests {
        let _ = write!(out, " digest {}", &o.digest[..o.digest.len().min(16)]);
    }
    out.push('\n');
    for (label, paths) in [
        ("known after apply", &o.unknown_paths),
        ("sensitive", &o.sensitive_paths),
        ("generated", &o.volatile_paths),
    ] {
        if !paths.is_empty() {
            let list: Vec<&str> = paths.iter().map(String::as_str).collect();
            let _ = writeln!(out, "    {label}: {}", list.join(" "));
        }
    }
}
