//! `crd-schema`: every custom resource against its CRD's structural schema — the plan's CRDs
//! first, else the cluster's — reporting every violation of every object at once: fields the
//! schema does not declare (with "did you mean" among the fields declared there, e.g.
//! `source_labels` → `sourceLabels`), and what validation refuses after pruning and
//! defaulting, in the API server's words.

use std::collections::BTreeMap;

use meshplan_k8s::schema::Structural;
use serde_json::Value as Json;

use crate::lint::Finding;
use crate::lint::context::{Context, Obj};
use crate::lint::path::{self, Seg};
use crate::model::lint_checks::CheckId;
use crate::planfile::did_you_mean;

const ID: CheckId = CheckId::CrdSchema;

/// (group, version, kind) → the compiled schema of that CRD version.
type Schemas = BTreeMap<(String, String, String), Structural>;

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let mut schemas = Schemas::new();
    if let Some(cluster) = ctx.input.cluster {
        for crd in &cluster.crds {
            learn(ctx, crd, "the cluster", &mut schemas);
        }
    }
    for obj in &ctx.objects {
        if obj.kind() == "CustomResourceDefinition" && obj.group() == "apiextensions.k8s.io" {
            learn(ctx, obj.body(), &obj.node.address.to_string(), &mut schemas);
        }
    }
    for obj in &ctx.objects {
        let object_ref = &obj.rendered.object_ref;
        let (group, version) = crate::cluster::split_api_version(&object_ref.api_version);
        if group.is_empty()
            || crate::render::kinds::builtin_scope(&object_ref.api_version, &object_ref.kind)
                .is_some()
        {
            continue;
        }
        let key = (
            group.to_string(),
            version.to_string(),
            object_ref.kind.clone(),
        );
        let Some(schema) = schemas.get(&key) else {
            let whence = if ctx.input.cluster.is_some() {
                "neither the plan nor the cluster has its CRD"
            } else {
                "the plan does not create its CRD and the cluster was not read (--offline)"
            };
            ctx.note(format!(
                "{}: `{ID}` not checked for {} objects ({}): {whence}",
                obj.node.address, object_ref.kind, object_ref.api_version
            ));
            continue;
        };
        check_object(ctx, obj, schema, out);
    }
}

/// Compiles the schema of every served version of a CRD.
fn learn(ctx: &Context<'_>, crd: &Json, whence: &str, schemas: &mut Schemas) {
    let text = |p: &str| crd.pointer(p).and_then(Json::as_str).unwrap_or_default();
    let (group, kind) = (text("/spec/group"), text("/spec/names/kind"));
    if group.is_empty() || kind.is_empty() {
        return;
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    for v in versions {
        let Some(name) = v.get("name").and_then(Json::as_str) else {
            continue;
        };
        let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
            continue;
        };
        match Structural::compile(schema) {
            Ok(s) => {
                schemas.insert((group.to_string(), name.to_string(), kind.to_string()), s);
            }
            Err(e) => ctx.note(format!(
                "`{ID}`: the schema of {kind} ({group}/{name}) from {whence} is not structural, \
                 its objects are not checked: {e}"
            )),
        }
    }
}

fn check_object(ctx: &Context<'_>, obj: &Obj<'_>, schema: &Structural, out: &mut Vec<Finding>) {
    let object_ref = &obj.rendered.object_ref;
    let who = format!("{} {}", object_ref.kind, short(obj));
    for unknown in schema.unknown_fields(obj.body()) {
        let segs = path::parse(&unknown);
        let parent = &segs[..segs.len().saturating_sub(1)];
        let declared = schema.declared_fields(&path::keys(parent));
        let name = match segs.last() {
            Some(Seg::Key(k)) => k.clone(),
            _ => unknown.clone(),
        };
        let fix = match did_you_mean(&name, declared.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`? Rename the field"),
            None if declared.is_empty() => "remove the field".to_string(),
            None => format!(
                "remove the field; the schema declares here: {}",
                declared
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push(ctx.at_object(
            ID,
            obj,
            Some(&segs),
            format!("{who}: .{unknown}: field not declared in schema"),
            fix,
        ));
    }
    let mut prepared = obj.body().clone();
    schema.prune(&mut prepared);
    schema.apply_defaults(&mut prepared);
    for error in schema.validate(&prepared) {
        let segs = path::parse(&error.field);
        let pointer: String = segs
            .iter()
            .map(|s| match s {
                Seg::Key(k) => format!("/{k}"),
                Seg::Index(i) => format!("/{i}"),
            })
            .collect();
        if obj.is_unknown(&pointer) {
            continue;
        }
        let fix = match error.reason {
            "FieldValueRequired" => format!("set `{}`", error.field),
            "FieldValueNotSupported" => "use one of the supported values".to_string(),
            "FieldValueTypeInvalid" => {
                format!("give `{}` the type the schema declares", error.field)
            }
            _ => format!("change `{}` to a value the schema accepts", error.field),
        };
        out.push(ctx.at_object(
            ID,
            obj,
            Some(&segs),
            format!("{who}: {}", error.message),
            fix,
        ));
    }
}

fn short(obj: &Obj<'_>) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name()),
        None => obj.name().to_string(),
    }
}
