//! Server-side apply and managed fields, as structured-merge-diff does them.
//!
//! Pure functions over `serde_json::Value` objects (no I/O, no store): the HTTP layer calls
//! [`apply`] for `application/apply-patch+yaml` PATCHes and [`update`] for every other write
//! (POST, PUT, merge/json/strategic patches) so that `metadata.managedFields` is always
//! maintained as a real API server maintains it.
//!
//! CONTRACT (stable; the HTTP layer is written against it):
//! - Objects are full Kubernetes objects (`apiVersion`, `kind`, `metadata`, ...).
//! - Never tracked in field sets: `apiVersion`, `kind`, `metadata.name`, `metadata.namespace`,
//!   `metadata.uid`, `metadata.resourceVersion`, `metadata.generation`,
//!   `metadata.creationTimestamp`, `metadata.deletionTimestamp`, `metadata.managedFields`,
//!   `metadata.selfLink`; `status` too when `ignore_status` is set (resource with a status
//!   subresource, written on the main endpoint).
//! - The caller sets server fields (uid, resourceVersion, ...) afterwards; these functions
//!   only merge content and maintain `metadata.managedFields`.
//!
//! How it works (the structured-merge-diff algorithm, without an OpenAPI schema):
//! - A field set is a tree of path elements: `f:<field>`, `k:<key fields>` (items of
//!   associative lists), `v:<value>` (items of set lists) and `i:<index>`. A node is a
//!   *member* when the path itself is owned; FieldsV1 writes a member that also has owned
//!   children as `".": {}`.
//! - The shape of a value comes from [`ListTypes`]: lists are atomic, sets or maps keyed by
//!   some fields; objects are granular unless [`ListTypes::map_is_atomic`] says otherwise.
//!   Object keys are declared fields unless [`ListTypes::keys_are_map_keys`] says they are
//!   map keys (which are owned themselves, like in a schemaless object).
//! - Apply: `merged = live ⊕ config`; the applier's set becomes the fields of `config`;
//!   fields it applied last time and nobody (the applier included) owns any more are pruned;
//!   the differences between `live` and the result are conflicts for other managers that own
//!   a modified or added field (moved to the applier with `force`), and removed fields leave
//!   every set. The fields of an existing object without managedFields first go to an
//!   `Update` entry of `before-first-apply`.
//! - Update: the differences between `old` and `new` (modified and added fields) move to the
//!   writer's `Update` entry and leave all other entries; removed fields leave every entry.
//!   Beyond ten `Update` entries the oldest merge into `ancient-changes`.
//! - Entries are sorted as the API server sorts them: `Apply` before `Update`, then by time,
//!   manager, apiVersion and subresource. One entry exists per manager, operation and
//!   subresource. An `Apply` entry's `time` changes only when the entry is created, when its
//!   field set changes or when the apply changed the object; an `Update` entry's when the
//!   write gave it fields.

use std::collections::{BTreeMap, BTreeSet};

use meshplan_k8s::fields_v1::{
    self, FieldSet, ManagedFieldsEntry, OPERATION_APPLY as OP_APPLY, OPERATION_UPDATE as OP_UPDATE,
    PathElement as Pe, Shape, path_string, quote,
};
use meshplan_k8s::lists::ListTypes;
use serde_json::{Map, Value};

/// One conflicting field: who owns it and where it is, in the path form real API servers use
/// (`.data.a`, `.spec.containers[name="nginx"].image`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub manager: String,
    pub path: String,
}

/// Request context common to both operations.
pub(crate) struct Context<'a> {
    /// The field manager (`fieldManager` query parameter).
    pub manager: &'a str,
    /// `apiVersion` recorded in the managedFields entry (the request's group/version).
    pub api_version: &'a str,
    /// RFC 3339 whole-seconds `Z` timestamp recorded in the entry.
    pub now: &'a str,
    /// `Some("status")` when writing the status subresource.
    pub subresource: Option<&'a str>,
    /// Ignore `status` (main endpoint of a resource that has a status subresource).
    pub ignore_status: bool,
    pub list_types: &'a dyn ListTypes,
}

/// Server-side apply of `config` by `ctx.manager` onto `live` (None: the object is created).
///
/// Returns the merged object with `metadata.managedFields` updated, or the conflicts when
/// `force` is false and another manager owns a field whose value `config` changes. With
/// `force`, ownership of conflicting fields moves to the applier. Fields the manager applied
/// last time and no longer applies are removed unless another manager also owns them.
/// When nothing changes, the returned object equals `live` exactly (managedFields included),
/// so the caller can detect a no-op with `==`.
pub(crate) fn apply(
    live: Option<&Value>,
    config: &Value,
    force: bool,
    ctx: &Context<'_>,
) -> Result<Value, Vec<Conflict>> {
    let types = Types { lt: ctx.list_types };
    let ignored = ignored_set(ctx);
    let live_content = live.map_or_else(|| Value::Object(Map::new()), strip_managed_fields);
    let original = live.map(decode_entries).unwrap_or_default();
    let mut entries = original.clone();
    if live.is_some() && entries.is_empty() {
        // An existing object without managedFields: its fields become the fields of an
        // Update by `before-first-apply`, so that applying different values conflicts.
        record_update(
            &types,
            &mut entries,
            &zero_object(&live_content),
            &live_content,
            &ignored,
            BEFORE_FIRST_APPLY,
            ctx,
        );
    }

    // The config without what this endpoint never writes and without the server's metadata
    // (a `creationTimestamp: null` from a generated manifest must not look like a change).
    let mut config = strip_managed_fields(config);
    if let Value::Object(map) = &mut config {
        for top in ignored.members.iter().filter_map(Pe::field_name) {
            map.remove(top);
        }
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for field in SERVER_METADATA {
                meta.remove(*field);
            }
        }
    }

    let merged = types.merge(Some(&live_content), &config, &mut Vec::new());
    let key = (ctx.manager, OP_APPLY, ctx.subresource);
    let position = entries.iter().position(|e| e.has_key(key));
    let last_set = position.map(|i| entries[i].set.clone());
    let new_set = types.to_set(&config).recursive_difference(&ignored);
    let applier = match position {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: ctx.manager.to_string(),
                operation: OP_APPLY.to_string(),
                api_version: ctx.api_version.to_string(),
                time: None,
                subresource: ctx.subresource.map(str::to_string),
                set: FieldSet::default(),
            });
            entries.len() - 1
        }
    };
    entries[applier].set = new_set;

    let (mut result, emptied) = match &last_set {
        Some(last) if !last.is_empty() => types.prune(&merged, &entries, last),
        _ => (merged, FieldSet::default()),
    };

    // Ownership changes caused by the differences between live and the result.
    let comparison = types
        .compare_objects(&live_content, &result)
        .exclude(&ignored);
    let changed = comparison.modified.union(&comparison.added);
    let mut conflicts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if i == applier {
            continue;
        }
        let owned = entry.set.intersection(&changed);
        for path in owned.paths() {
            let conflict = Conflict {
                manager: entry.manager.clone(),
                path: path_string(&path),
            };
            if !conflicts.contains(&conflict) {
                conflicts.push(conflict);
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort_by(|a, b| a.manager.cmp(&b.manager));
        return Err(conflicts);
    }
    for (i, entry) in entries.iter_mut().enumerate() {
        if i != applier {
            entry.set = entry
                .set
                .difference(&changed)
                .difference(&comparison.removed);
        }
    }

    types.drop_nulls(&mut result, &emptied, &mut Vec::new());

    let strip = untracked_set();
    for entry in &mut entries {
        entry.set = entry.set.difference(&strip);
    }

    let object_changed = result != live_content;
    let set_changed = last_set.as_ref() != Some(&entries[applier].set);
    let applier_entry = &mut entries[applier];
    if object_changed || set_changed || applier_entry.time.is_none() {
        applier_entry.time = Some(ctx.now.to_string());
    }
    applier_entry.api_version = ctx.api_version.to_string();
    entries.retain(|e| !e.set.is_empty());

    if !object_changed
        && entries_equal(&entries, &original)
        && let Some(live) = live
    {
        return Ok(live.clone());
    }
    Ok(with_entries(result, entries, live, &original))
}

/// A non-apply write (`operation: Update`) by `ctx.manager`: `new` is the object as it will be
/// stored; the manager takes ownership of every field whose value differs from `old` (or every
/// field, on create) and other managers lose those fields. Never conflicts. Returns `new` with
/// `metadata.managedFields` set (any managedFields in `new` from the client are replaced by the
/// server's bookkeeping based on `old`, except that a client may clear them with an empty list).
pub(crate) fn update(old: Option<&Value>, new: &Value, ctx: &Context<'_>) -> Value {
    if !new.is_object() {
        return new.clone();
    }
    let types = Types { lt: ctx.list_types };
    let ignored = ignored_set(ctx);
    let old_content = old.map_or_else(|| zero_object(new), strip_managed_fields);
    let new_content = strip_managed_fields(new);
    let original = if clears_managed_fields(new) {
        Vec::new()
    } else {
        old.map(decode_entries).unwrap_or_default()
    };
    let mut entries = original.clone();
    record_update(
        &types,
        &mut entries,
        &old_content,
        &new_content,
        &ignored,
        ctx.manager,
        ctx,
    );
    cap_update_managers(&mut entries);
    with_entries(new_content, entries, old, &original)
}

/// Formats conflicts as the API server does in the 409 message:
/// `Apply failed with 1 conflict: conflict with "kubectl": .data.a` or, for several,
/// `Apply failed with 2 conflicts: conflicts with "a":\n- .p1\n- .p2` (grouped per manager).
pub(crate) fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            quote(&only.manager),
            only.path
        );
    }
    let mut grouped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for conflict in conflicts {
        grouped
            .entry(conflict.manager.as_str())
            .or_default()
            .push(conflict.path.as_str());
    }
    let mut lines = Vec::new();
    for (manager, paths) in grouped {
        lines.push(format!("conflicts with {}:", quote(manager)));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The cause message of one conflict in the 409 body: `conflict with "kubectl"`.
pub(crate) fn conflict_cause_message(conflict: &Conflict) -> String {
    format!("conflict with {}", quote(&conflict.manager))
}

// ---------------------------------------------------------------------------------------
// Update bookkeeping
// ---------------------------------------------------------------------------------------

/// What a create is compared against: the zero value of the object's type as the API server
/// sees it (the non-optional structs of built-in kinds exist empty, so creating them does not
/// own them as a whole), or an empty object for other kinds.
fn zero_object(object: &Value) -> Value {
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    let pod_template = || {
        json_object([
            (
                "metadata",
                json_object([("creationTimestamp", Value::Null)]),
            ),
            ("spec", json_object([("containers", Value::Null)])),
        ])
    };
    let spec = match (api_version, kind) {
        (Some("apps/v1"), Some("Deployment")) => json_object([
            ("selector", Value::Null),
            ("template", pod_template()),
            ("strategy", json_object([])),
        ]),
        (Some("apps/v1"), Some("StatefulSet" | "DaemonSet")) => json_object([
            ("selector", Value::Null),
            ("template", pod_template()),
            ("updateStrategy", json_object([])),
        ]),
        (Some("apps/v1"), Some("ReplicaSet")) => {
            json_object([("selector", Value::Null), ("template", pod_template())])
        }
        (Some("batch/v1"), Some("Job")) => json_object([("template", pod_template())]),
        (Some("batch/v1"), Some("CronJob")) => json_object([(
            "jobTemplate",
            json_object([
                (
                    "metadata",
                    json_object([("creationTimestamp", Value::Null)]),
                ),
                ("spec", json_object([("template", pod_template())])),
            ]),
        )]),
        (Some("v1"), Some("Pod")) => json_object([("containers", Value::Null)]),
        (Some("v1"), Some("Service" | "Namespace")) => json_object([]),
        _ => Value::Null,
    };
    let mut zero = json_object([("metadata", json_object([]))]);
    if let (Value::Object(map), false) = (&mut zero, spec.is_null()) {
        map.insert("spec".to_string(), spec);
    }
    zero
}

fn json_object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

/// The bookkeeping of an `Update` write by `manager` from `old` to `new`: the changed fields
/// leave every entry and join the manager's `Update` entry (created if needed, time `now`);
/// removed fields leave every entry.
fn record_update(
    types: &Types<'_>,
    entries: &mut Vec<Entry>,
    old: &Value,
    new: &Value,
    ignored: &FieldSet,
    manager: &str,
    ctx: &Context<'_>,
) {
    let comparison = types.compare_objects(old, new).exclude(ignored);
    let changed = comparison.modified.union(&comparison.added);
    for entry in entries.iter_mut() {
        entry.set = entry
            .set
            .difference(&changed)
            .difference(&comparison.removed);
    }
    entries.retain(|e| !e.set.is_empty());

    let taken = changed
        .difference(&comparison.removed)
        .recursive_difference(ignored)
        .difference(&untracked_set());
    if taken.is_empty() {
        return;
    }
    let key = (manager, OP_UPDATE, ctx.subresource);
    match entries.iter_mut().find(|e| e.has_key(key)) {
        Some(entry) => {
            entry.set = entry.set.union(&taken);
            entry.api_version = ctx.api_version.to_string();
            entry.time = Some(ctx.now.to_string());
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: OP_UPDATE.to_string(),
            api_version: ctx.api_version.to_string(),
            time: Some(ctx.now.to_string()),
            subresource: ctx.subresource.map(str::to_string),
            set: taken,
        }),
    }
}

/// At most this many `Update` entries are kept; older ones merge into
/// [`ANCIENT_CHANGES`] entries (one per apiVersion), as the API server does.
const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager of the entry that collects the oldest updates.
const ANCIENT_CHANGES: &str = "ancient-changes";

/// The manager that owns the fields of an object that had no managedFields when it is
/// first applied to.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Merges the oldest `Update` entries, per apiVersion, into an `ancient-changes` entry until
/// at most [`MAX_UPDATE_MANAGERS`] remain.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<Entry> = entries
        .iter()
        .filter(|e| e.operation == OP_UPDATE)
        .cloned()
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|a, b| {
        a.time
            .cmp(&b.time)
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let same = |a: &Entry, b: &Entry| {
        a.manager == b.manager
            && a.operation == b.operation
            && a.api_version == b.api_version
            && a.subresource == b.subresource
    };
    let is_bucket = |e: &Entry, version: &str| {
        e.manager == ANCIENT_CHANGES
            && e.operation == OP_UPDATE
            && e.api_version == version
            && e.subresource.is_none()
    };
    let mut first_of_version: BTreeMap<String, Entry> = BTreeMap::new();
    let mut length = updaters.len();
    for updater in &updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = updater.api_version.clone();
        let Some(first) = first_of_version.get(&version) else {
            first_of_version.insert(version, updater.clone());
            continue;
        };
        if is_bucket(updater, &version) {
            continue;
        }
        let bucket = match entries.iter().position(|e| is_bucket(e, &version)) {
            Some(i) => Some(i),
            None => entries.iter().position(|e| same(e, first)).inspect(|&i| {
                entries[i].manager = ANCIENT_CHANGES.to_string();
                entries[i].subresource = None;
            }),
        };
        let Some(bucket) = bucket else {
            continue;
        };
        entries[bucket].set = entries[bucket].set.union(&updater.set);
        entries[bucket].time = updater.time.clone();
        entries.retain(|e| !same(e, updater));
        length -= 1;
    }
}

/// Metadata the server sets; never taken from an applied configuration.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "selfLink",
];

/// The paths never tracked (removed from every set, non-recursively).
fn untracked_set() -> FieldSet {
    let mut set = FieldSet::default();
    for top in ["apiVersion", "kind", "metadata"] {
        set.insert(&[Pe::Field(top.to_string())]);
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "managedFields",
        "selfLink",
    ] {
        set.insert(&[
            Pe::Field("metadata".to_string()),
            Pe::Field(field.to_string()),
        ]);
    }
    set
}

/// The fields this request may not write (reset by the endpoint).
fn ignored_set(ctx: &Context<'_>) -> FieldSet {
    let mut set = FieldSet::default();
    if ctx.subresource == Some("status") {
        // The status endpoint writes status only (as the API server's status strategies
        // reset `spec`); `ignore_status` concerns the main endpoint.
        set.insert(&[Pe::Field("spec".to_string())]);
    } else if ctx.ignore_status {
        set.insert(&[Pe::Field("status".to_string())]);
    }
    set
}

// ---------------------------------------------------------------------------------------
// Typed walks over values
// ---------------------------------------------------------------------------------------

/// Differences between two objects as field sets.
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn exclude(self, ignored: &FieldSet) -> Comparison {
        Comparison {
            added: self.added.recursive_difference(ignored),
            modified: self.modified.recursive_difference(ignored),
            removed: self.removed.recursive_difference(ignored),
        }
    }
}

struct Types<'a> {
    lt: &'a dyn ListTypes,
}

fn refs(fpath: &[String]) -> Vec<&str> {
    fpath.iter().map(String::as_str).collect()
}

fn is_empty_collection(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

impl Types<'_> {
    fn shape(&self, fpath: &[String], value: &Value) -> Shape {
        fields_v1::shape(self.lt, fpath, value)
    }

    /// The path element of a list item.
    fn item_pe(&self, shape: &Shape, fpath: &[String], item: &Value) -> Pe {
        fields_v1::item_element(self.lt, shape, fpath, item)
    }

    fn items(&self, shape: &Shape, fpath: &[String], list: Option<&Value>) -> Vec<(Pe, Value)> {
        fields_v1::items(self.lt, shape, fpath, list)
    }

    /// The fields set by `value` (structured-merge-diff `ToFieldSet`).
    fn to_set(&self, value: &Value) -> FieldSet {
        fields_v1::field_set(self.lt, value)
    }

    /// `set` where every declared field on the way to an owned path is a member too
    /// (structured-merge-diff `EnsureNamedFieldsAreMembers`); map keys are not.
    fn ensure_named(&self, set: &FieldSet) -> FieldSet {
        self.ensure_named_at(set, &mut Vec::new())
    }

    fn ensure_named_at(&self, set: &FieldSet, fpath: &mut Vec<String>) -> FieldSet {
        let mut members = set.members.clone();
        let mut children = BTreeMap::new();
        let keys_are_map_keys = self.lt.keys_are_map_keys(&refs(fpath));
        for (pe, child) in &set.children {
            let sub = match pe {
                Pe::Field(name) => {
                    if !keys_are_map_keys {
                        members.insert(pe.clone());
                    }
                    fpath.push(name.clone());
                    let sub = self.ensure_named_at(child, fpath);
                    fpath.pop();
                    sub
                }
                _ => self.ensure_named_at(child, fpath),
            };
            children.insert(pe.clone(), sub);
        }
        FieldSet { members, children }
    }

    /// `live` merged with `config` (structured-merge-diff `Merge`).
    fn merge(&self, live: Option<&Value>, config: &Value, fpath: &mut Vec<String>) -> Value {
        let Some(live) = live else {
            return config.clone();
        };
        let shape = self.shape(fpath, config);
        let live_shape = self.shape(fpath, live);
        if config.is_null() && live_shape != Shape::Leaf {
            // null is no opinion about the items of a granular object or list.
            return live.clone();
        }
        if live_shape != shape {
            return config.clone();
        }
        match (&shape, live, config) {
            (Shape::Struct, Value::Object(lmap), Value::Object(cmap)) => {
                let mut out = lmap.clone();
                for (key, cvalue) in cmap {
                    fpath.push(key.clone());
                    let merged = self.merge(lmap.get(key), cvalue, fpath);
                    fpath.pop();
                    out.insert(key.clone(), merged);
                }
                Value::Object(out)
            }
            (Shape::Set | Shape::Assoc(_), Value::Array(_), Value::Array(_)) => {
                Value::Array(self.merge_list(&shape, live, config, fpath))
            }
            _ => config.clone(),
        }
    }

    /// Merges list items by identity: items only in live keep their place, shared items
    /// follow the config's order, new items come where the config puts them.
    fn merge_list(
        &self,
        shape: &Shape,
        live: &Value,
        config: &Value,
        fpath: &mut Vec<String>,
    ) -> Vec<Value> {
        let lhs = self.items(shape, fpath, Some(live));
        let rhs = self.items(shape, fpath, Some(config));
        let mut lhs_index: BTreeMap<Pe, usize> = BTreeMap::new();
        for (i, (pe, _)) in lhs.iter().enumerate() {
            lhs_index.entry(pe.clone()).or_insert(i);
        }
        let mut rhs_index: BTreeMap<Pe, usize> = BTreeMap::new();
        for (i, (pe, _)) in rhs.iter().enumerate() {
            rhs_index.entry(pe.clone()).or_insert(i);
        }
        let mut shared = rhs
            .iter()
            .filter(|(pe, _)| lhs_index.contains_key(pe))
            .map(|(pe, _)| pe.clone());
        let mut next_shared = shared.next();
        let mut merged_rhs: BTreeSet<Pe> = BTreeSet::new();
        let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
        let item = |pe: &Pe, fpath: &mut Vec<String>| -> Value {
            let l = lhs_index.get(pe).map(|&i| &lhs[i].1);
            match rhs_index.get(pe) {
                Some(&r) => self.merge(l, &rhs[r].1, fpath),
                None => l.cloned().unwrap_or(Value::Null),
            }
        };
        let (mut li, mut ri) = (0, 0);
        while li < lhs.len() || ri < rhs.len() {
            if li < lhs.len() && ri < rhs.len() {
                let pe = &lhs[li].0;
                if *pe == rhs[ri].0 {
                    merged_rhs.insert(pe.clone());
                    out.push(item(pe, fpath));
                    li += 1;
                    ri += 1;
                    next_shared = shared.next();
                    continue;
                }
                if rhs_index.contains_key(pe) && next_shared.as_ref().is_some_and(|n| n != pe) {
                    li += 1;
                    continue;
                }
            }
            if li < lhs.len() {
                let pe = &lhs[li].0;
                if !rhs_index.contains_key(pe) {
                    out.push(lhs[li].1.clone());
                    li += 1;
                    continue;
                }
                if merged_rhs.contains(pe) {
                    li += 1;
                    continue;
                }
            }
            if ri < rhs.len() {
                let pe = rhs[ri].0.clone();
                merged_rhs.insert(pe.clone());
                out.push(item(&pe, fpath));
                ri += 1;
                if next_shared.as_ref() == Some(&pe) {
                    next_shared = shared.next();
                }
            }
        }
        out
    }

    fn compare_objects(&self, old: &Value, new: &Value) -> Comparison {
        let mut comparison = Comparison::default();
        self.compare(
            Some(old),
            Some(new),
            &mut Vec::new(),
            &mut Vec::new(),
            &mut comparison,
        );
        comparison
    }

    /// Records added, modified and removed paths (structured-merge-diff `Compare`).
    fn compare(
        &self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        fpath: &mut Vec<String>,
        path: &mut Vec<Pe>,
        out: &mut Comparison,
    ) {
        let shape = match (lhs, rhs) {
            (Some(l), Some(r)) => {
                let (sl, sr) = (self.shape(fpath, l), self.shape(fpath, r));
                if sl == sr || l.is_null() {
                    sr
                } else if r.is_null() {
                    sl
                } else {
                    Shape::Leaf
                }
            }
            (Some(v), None) | (None, Some(v)) => self.shape(fpath, v),
            (None, None) => return,
        };
        let leaf = shape == Shape::Leaf || (is_empty_collection(lhs) && is_empty_collection(rhs));
        if leaf {
            match (lhs, rhs) {
                (None, _) => out.added.insert(path),
                (_, None) => out.removed.insert(path),
                (Some(l), Some(r)) if l != r => out.modified.insert(path),
                _ => {}
            }
            return;
        }
        match shape {
            Shape::Struct => {
                let empty = Map::new();
                let lmap = lhs.and_then(Value::as_object).unwrap_or(&empty);
                let rmap = rhs.and_then(Value::as_object).unwrap_or(&empty);
                let keys = lmap
                    .keys()
                    .chain(rmap.keys().filter(|k| !lmap.contains_key(*k)));
                for key in keys {
                    fpath.push(key.clone());
                    path.push(Pe::Field(key.clone()));
                    self.compare(lmap.get(key), rmap.get(key), fpath, path, out);
                    path.pop();
                    fpath.pop();
                }
            }
            Shape::Set | Shape::Assoc(_) => {
                self.compare_items(&shape, lhs, rhs, fpath, path, out);
            }
            Shape::Leaf => {}
        }
        match (lhs, rhs) {
            (None, _) => out.added.insert(path),
            (_, None) => out.removed.insert(path),
            _ => {}
        }
    }

    fn compare_items(
        &self,
        shape: &Shape,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        fpath: &mut Vec<String>,
        path: &mut Vec<Pe>,
        out: &mut Comparison,
    ) {
        let mut order: Vec<Pe> = Vec::new();
        let mut lvalues: BTreeMap<Pe, Vec<Value>> = BTreeMap::new();
        let mut rvalues: BTreeMap<Pe, Vec<Value>> = BTreeMap::new();
        for (pe, item) in self.items(shape, fpath, lhs) {
            if !lvalues.contains_key(&pe) {
                order.push(pe.clone());
            }
            lvalues.entry(pe).or_default().push(item);
        }
        for (pe, item) in self.items(shape, fpath, rhs) {
            if !lvalues.contains_key(&pe) && !rvalues.contains_key(&pe) {
                order.push(pe.clone());
            }
            rvalues.entry(pe).or_default().push(item);
        }
        for pe in order {
            let l = lvalues.get(&pe).map(Vec::as_slice).unwrap_or_default();
            let r = rvalues.get(&pe).map(Vec::as_slice).unwrap_or_default();
            path.push(pe);
            if l.len() >= 2 || r.len() >= 2 {
                if l.is_empty() {
                    out.added.insert(path);
                } else if r.is_empty() {
                    out.removed.insert(path);
                } else if l != r {
                    out.modified.insert(path);
                }
            } else {
                self.compare(l.first(), r.first(), fpath, path, out);
            }
            path.pop();
        }
    }

    /// `value` without the paths in `set` (structured-merge-diff `RemoveItems`). An object or
    /// list whose entries all go becomes null, its path recorded in `emptied`; a list item
    /// whose fields all go disappears.
    fn remove_items(
        &self,
        value: &Value,
        set: &FieldSet,
        fpath: &mut Vec<String>,
        path: &mut Vec<Pe>,
        emptied: &mut FieldSet,
    ) -> Value {
        let shape = self.shape(fpath, value);
        match (&shape, value) {
            (Shape::Struct, Value::Object(map)) if !map.is_empty() => {
                let mut out = Map::new();
                for (key, child) in map {
                    let pe = Pe::Field(key.clone());
                    if set.members.contains(&pe) {
                        continue;
                    }
                    match set.children.get(&pe) {
                        Some(sub) if !sub.is_empty() => {
                            fpath.push(key.clone());
                            path.push(pe);
                            let kept = self.remove_items(child, sub, fpath, path, emptied);
                            path.pop();
                            fpath.pop();
                            out.insert(key.clone(), kept);
                        }
                        _ => {
                            out.insert(key.clone(), child.clone());
                        }
                    }
                }
                if out.is_empty() {
                    emptied.insert(path);
                    Value::Null
                } else {
                    Value::Object(out)
                }
            }
            (Shape::Set | Shape::Assoc(_), Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for item in items {
                    let pe = self.item_pe(&shape, fpath, item);
                    if set.members.contains(&pe) {
                        continue;
                    }
                    match set.children.get(&pe) {
                        Some(sub) if !sub.is_empty() => {
                            path.push(pe);
                            let kept = self.remove_items(item, sub, fpath, path, emptied);
                            path.pop();
                            if !kept.is_null() {
                                out.push(kept);
                            }
                        }
                        _ => out.push(item.clone()),
                    }
                }
                if out.is_empty() {
                    emptied.insert(path);
                    Value::Null
                } else {
                    Value::Array(out)
                }
            }
            _ => value.clone(),
        }
    }

    fn remove(&self, value: &Value, set: &FieldSet) -> Value {
        self.remove_recording(value, set, &mut FieldSet::default())
    }

    fn remove_recording(&self, value: &Value, set: &FieldSet, emptied: &mut FieldSet) -> Value {
        if set.is_empty() {
            return value.clone();
        }
        match self.remove_items(value, set, &mut Vec::new(), &mut Vec::new(), emptied) {
            Value::Null => Value::Object(Map::new()),
            kept => kept,
        }
    }

    /// Removes what the applier applied last time (`last`) and nobody owns any more
    /// (structured-merge-diff `prune`, `addBackOwnedItems`, `addBackDanglingItems`).
    /// Returns the pruned object and the paths that pruning left null.
    fn prune(&self, merged: &Value, entries: &[Entry], last: &FieldSet) -> (Value, FieldSet) {
        let last = self.ensure_named(last);
        let pruned = self.remove(merged, &last);
        let managed = self.ensure_named(
            &entries
                .iter()
                .fold(FieldSet::default(), |acc, e| acc.union(&e.set)),
        );
        let merged_set = self.ensure_named(&self.to_set(merged));
        let pruned_set = self.ensure_named(&self.to_set(&pruned));
        let pruned = self.remove(merged, &merged_set.difference(&pruned_set.union(&managed)));
        let pruned_set = self.ensure_named(&self.to_set(&pruned));
        let mut emptied = FieldSet::default();
        let result = self.remove_recording(
            merged,
            &merged_set.difference(&pruned_set).intersection(&last),
            &mut emptied,
        );
        (result, emptied)
    }

    /// Drops the null values at the paths of `set` (what the API server's conversion of the
    /// stored object does with the nulls that pruning leaves).
    fn drop_nulls(&self, value: &mut Value, set: &FieldSet, fpath: &mut Vec<String>) {
        let shape = self.shape(fpath, value);
        match (&shape, value) {
            (Shape::Struct, Value::Object(map)) => {
                map.retain(|key, child| {
                    !(child.is_null() && set.members.contains(&Pe::Field(key.clone())))
                });
                for (key, child) in map.iter_mut() {
                    if let Some(sub) = set.children.get(&Pe::Field(key.clone())) {
                        fpath.push(key.clone());
                        self.drop_nulls(child, sub, fpath);
                        fpath.pop();
                    }
                }
            }
            (Shape::Set | Shape::Assoc(_), Value::Array(items)) => {
                for item in items.iter_mut() {
                    let pe = self.item_pe(&shape, fpath, item);
                    if let Some(sub) = set.children.get(&pe) {
                        self.drop_nulls(item, sub, fpath);
                    }
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------

type Entry = ManagedFieldsEntry;

fn managed_fields(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

fn decode_entries(object: &Value) -> Vec<Entry> {
    fields_v1::managed_fields(object)
}

/// A client clears managedFields by sending an empty list (or a list of empty entries).
fn clears_managed_fields(object: &Value) -> bool {
    match managed_fields(object) {
        Some(Value::Array(items)) => items
            .iter()
            .all(|item| item.as_object().is_some_and(Map::is_empty)),
        _ => false,
    }
}

fn strip_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        meta.remove("managedFields");
    }
    object
}

fn entries_equal(a: &[Entry], b: &[Entry]) -> bool {
    let mut a: Vec<&Entry> = a.iter().collect();
    let mut b: Vec<&Entry> = b.iter().collect();
    a.sort_by(|x, y| x.api_order(y));
    b.sort_by(|x, y| x.api_order(y));
    a == b
}

/// `content` with `entries` as its managedFields; when the entries are those of `previous`
/// unchanged, its managedFields are kept byte for byte.
fn with_entries(
    mut content: Value,
    mut entries: Vec<Entry>,
    previous: Option<&Value>,
    original: &[Entry],
) -> Value {
    let encoded = match previous.and_then(managed_fields) {
        Some(kept) if entries_equal(&entries, original) && !entries.is_empty() => kept.clone(),
        _ => {
            entries.sort_by(|a, b| a.api_order(b));
            Value::Array(entries.iter().map(Entry::encode).collect())
        }
    };
    let Value::Object(root) = &mut content else {
        return content;
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        if encoded.as_array().is_some_and(Vec::is_empty) {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), encoded);
        }
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplan_k8s::lists::{BuiltinListTypes, ListType};
    use serde_json::json;

    static BUILTIN: BuiltinListTypes = BuiltinListTypes;

    fn ctx<'a>(manager: &'a str, now: &'a str) -> Context<'a> {
        Context {
            manager,
            api_version: "v1",
            now,
            subresource: None,
            ignore_status: false,
            list_types: &BUILTIN,
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cm1", "namespace": "default"}, "data": data})
    }

    fn entries(object: &Value) -> Vec<Value> {
        object["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn fields_of(object: &Value, manager: &str, operation: &str) -> Option<Value> {
        entries(object)
            .into_iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
            .map(|e| e["fieldsV1"].clone())
    }

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn create_by_apply_records_one_apply_entry_with_kubernetes_fields_v1() {
        let out = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            entries(&out),
            vec![
                json!({"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                        "time": "T1", "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}})
            ]
        );
        let text = serde_json::to_string(&entries(&out)[0]).unwrap();
        assert_eq!(
            text,
            r#"{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":"T1","fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:a":{},"f:b":{}}}}"#
        );
    }

    #[test]
    fn labels_are_plain_children_in_an_apply_set() {
        let mut config = cm(json!({"a": "1"}));
        config["metadata"]["labels"] = json!({"app": "web"});
        let out = apply(None, &config, false, &ctx("kubectl", "T1")).unwrap();
        assert_eq!(
            fields_of(&out, "kubectl", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
        );
    }

    #[test]
    fn deployment_container_items_are_keyed_by_name_with_dot() {
        let config = deployment(json!([{"name": "nginx", "image": "nginx:1"}]));
        let out = apply(None, &config, false, &ctx("kubectl", "T1")).unwrap();
        let fields = fields_of(&out, "kubectl", "Apply").unwrap();
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            r#"{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#
        );
    }

    #[test]
    fn container_ports_key_with_defaulted_protocol() {
        let config = deployment(json!([{"name": "nginx", "image": "nginx:1",
                                         "ports": [{"containerPort": 80}]}]));
        let out = apply(None, &config, false, &ctx("kubectl", "T1")).unwrap();
        let fields = fields_of(&out, "kubectl", "Apply").unwrap();
        let container =
            &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
        assert_eq!(
            container["f:ports"],
            json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
        );
        // The object itself is not defaulted.
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80}])
        );
    }

    #[test]
    fn atomic_selector_is_owned_as_a_whole() {
        let mut config = deployment(json!([{"name": "nginx", "image": "nginx:1"}]));
        config["spec"]["selector"] = json!({"matchLabels": {"app": "web"}});
        let out = apply(None, &config, false, &ctx("kubectl", "T1")).unwrap();
        let fields = fields_of(&out, "kubectl", "Apply").unwrap();
        assert_eq!(fields["f:spec"]["f:selector"], json!({}));
    }

    #[test]
    fn reapplying_the_same_config_returns_live_unchanged() {
        let config = cm(json!({"a": "1", "b": "2"}));
        let live = apply(None, &config, false, &ctx("kubectl", "T1")).unwrap();
        let again = apply(Some(&live), &config, false, &ctx("kubectl", "T2")).unwrap();
        assert_eq!(again, live);
        assert_eq!(entries(&again)[0]["time"], "T1");
    }

    #[test]
    fn reapplying_a_deployment_is_a_no_op_too() {
        let config = deployment(json!([{"name": "nginx", "image": "nginx:1",
                                         "ports": [{"containerPort": 80}]}]));
        let live = apply(None, &config, false, &ctx("kubectl", "T1")).unwrap();
        let again = apply(Some(&live), &config, false, &ctx("kubectl", "T2")).unwrap();
        assert_eq!(again, live);
    }

    #[test]
    fn dropping_a_key_removes_it_and_adding_one_adds_it() {
        let live = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let out = apply(
            Some(&live),
            &cm(json!({"a": "1", "c": "3"})),
            false,
            &ctx("kubectl", "T2"),
        )
        .unwrap();
        assert_eq!(out["data"], json!({"a": "1", "c": "3"}));
        assert_eq!(
            fields_of(&out, "kubectl", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}, "f:c": {}}})
        );
        assert_eq!(entries(&out)[0]["time"], "T2");
    }

    #[test]
    fn dropping_every_key_removes_the_whole_map() {
        let live = apply(None, &cm(json!({"a": "1"})), false, &ctx("kubectl", "T1")).unwrap();
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "cm1", "namespace": "default"}});
        let out = apply(Some(&live), &config, false, &ctx("kubectl", "T2")).unwrap();
        assert!(out.get("data").is_none(), "{out}");
        assert!(out["metadata"].get("managedFields").is_none(), "{out}");
        assert_eq!(out["metadata"]["name"], "cm1");
    }

    #[test]
    fn same_value_is_shared_and_survives_one_owner_dropping_it() {
        let live = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let shared = apply(
            Some(&live),
            &cm(json!({"a": "1"})),
            false,
            &ctx("other", "T2"),
        )
        .unwrap();
        assert_eq!(
            fields_of(&shared, "other", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}}})
        );
        assert_eq!(
            fields_of(&shared, "kubectl", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        );
        assert_eq!(shared["data"], live["data"]);
        // kubectl no longer applies a: other still owns it, so it stays; b goes.
        let out = apply(
            Some(&shared),
            &cm(json!({"c": "3"})),
            false,
            &ctx("kubectl", "T3"),
        )
        .unwrap();
        assert_eq!(out["data"], json!({"a": "1", "c": "3"}));
    }

    #[test]
    fn changing_a_field_owned_by_another_manager_conflicts() {
        let live = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let err = apply(
            Some(&live),
            &cm(json!({"a": "2"})),
            false,
            &ctx("other", "T2"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "kubectl".into(),
                path: ".data.a".into()
            }]
        );
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .data.a"
        );
        assert_eq!(conflict_cause_message(&err[0]), "conflict with \"kubectl\"");
    }

    #[test]
    fn force_moves_ownership() {
        let live = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let out = apply(
            Some(&live),
            &cm(json!({"a": "2"})),
            true,
            &ctx("other", "T2"),
        )
        .unwrap();
        assert_eq!(out["data"], json!({"a": "2", "b": "2"}));
        assert_eq!(
            fields_of(&out, "kubectl", "Apply").unwrap(),
            json!({"f:data": {"f:b": {}}})
        );
        assert_eq!(
            fields_of(&out, "other", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}}})
        );
        // Taking the last field empties and removes the old entry.
        let all = apply(
            Some(&out),
            &cm(json!({"a": "2", "b": "3"})),
            true,
            &ctx("other", "T3"),
        )
        .unwrap();
        assert_eq!(entries(&all).len(), 1);
        assert_eq!(entries(&all)[0]["manager"], "other");
    }

    #[test]
    fn update_takes_changed_fields_from_appliers() {
        let live = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let mut edited = live.clone();
        edited["data"]["a"] = json!("9");
        let out = update(Some(&live), &edited, &ctx("kubectl-edit", "T2"));
        assert_eq!(out["data"]["a"], "9");
        assert_eq!(
            fields_of(&out, "kubectl", "Apply").unwrap(),
            json!({"f:data": {"f:b": {}}})
        );
        assert_eq!(
            entries(&out)[1],
            json!({"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
                   "time": "T2", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}})
        );
        // Applying a back now conflicts with the updater.
        let err = apply(
            Some(&out),
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T3"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "kubectl-edit".into(),
                path: ".data.a".into()
            }]
        );
        // With force kubectl owns it again and the Update entry disappears.
        let forced = apply(
            Some(&out),
            &cm(json!({"a": "1", "b": "2"})),
            true,
            &ctx("kubectl", "T3"),
        )
        .unwrap();
        assert_eq!(entries(&forced).len(), 1);
        assert_eq!(forced["data"]["a"], "1");
    }

    #[test]
    fn update_on_create_owns_everything_with_dots_on_new_maps() {
        let mut object = cm(json!({"a": "1"}));
        object["metadata"]["labels"] = json!({"x": "y"});
        let out = update(None, &object, &ctx("kubectl-create", "T1"));
        assert_eq!(
            fields_of(&out, "kubectl-create", "Update").unwrap(),
            json!({"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}})
        );
    }

    #[test]
    fn update_that_removes_a_field_drops_it_from_every_entry() {
        let live = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let mut edited = live.clone();
        edited["data"].as_object_mut().unwrap().remove("b");
        let out = update(Some(&live), &edited, &ctx("editor", "T2"));
        assert_eq!(
            fields_of(&out, "kubectl", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}}})
        );
        // Nothing was added or changed: no Update entry.
        assert!(fields_of(&out, "editor", "Update").is_none());
    }

    #[test]
    fn update_without_changes_keeps_managed_fields_and_times() {
        let live = apply(None, &cm(json!({"a": "1"})), false, &ctx("kubectl", "T1")).unwrap();
        let out = update(Some(&live), &live, &ctx("editor", "T2"));
        assert_eq!(out, live);
        // A client sending managedFields of its own does not change the bookkeeping.
        let mut forged = live.clone();
        forged["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Update",
            "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]);
        assert_eq!(update(Some(&live), &forged, &ctx("editor", "T2")), live);
    }

    #[test]
    fn update_accumulates_fields_of_the_same_manager() {
        let created = update(None, &cm(json!({"a": "1"})), &ctx("ed", "T1"));
        let mut next = created.clone();
        next["data"]["b"] = json!("2");
        let out = update(Some(&created), &next, &ctx("ed", "T2"));
        assert_eq!(entries(&out).len(), 1);
        assert_eq!(
            fields_of(&out, "ed", "Update").unwrap(),
            json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}})
        );
        assert_eq!(entries(&out)[0]["time"], "T2");
    }

    #[test]
    fn client_may_clear_managed_fields_with_an_empty_list() {
        let live = apply(None, &cm(json!({"a": "1"})), false, &ctx("kubectl", "T1")).unwrap();
        let mut cleared = live.clone();
        cleared["metadata"]["managedFields"] = json!([]);
        let out = update(Some(&live), &cleared, &ctx("editor", "T2"));
        assert!(out["metadata"].get("managedFields").is_none(), "{out}");
        cleared["metadata"]["managedFields"] = json!([{}]);
        let out = update(Some(&live), &cleared, &ctx("editor", "T2"));
        assert!(out["metadata"].get("managedFields").is_none(), "{out}");
    }

    #[test]
    fn map_list_merges_by_key_and_keeps_items_of_others() {
        let live = apply(
            None,
            &deployment(json!([{"name": "nginx", "image": "nginx:1"}])),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let sidecar = apply(
            Some(&live),
            &deployment(json!([{"name": "sidecar", "image": "envoy:1"}])),
            false,
            &ctx("mesh", "T2"),
        )
        .unwrap();
        assert_eq!(
            sidecar["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:1"}, {"name": "sidecar", "image": "envoy:1"}])
        );
        let bumped = apply(
            Some(&sidecar),
            &deployment(json!([{"name": "nginx", "image": "nginx:2"}])),
            false,
            &ctx("kubectl", "T3"),
        )
        .unwrap();
        assert_eq!(
            bumped["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:2"}, {"name": "sidecar", "image": "envoy:1"}])
        );
        // mesh changing nginx's image conflicts, with the real path form.
        let err = apply(
            Some(&bumped),
            &deployment(json!([{"name": "nginx", "image": "nginx:3"}])),
            false,
            &ctx("mesh", "T4"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "kubectl".into(),
                path: ".spec.template.spec.containers[name=\"nginx\"].image".into()
            }]
        );
    }

    #[test]
    fn dropped_items_and_item_fields_are_removed() {
        let live = apply(
            None,
            &deployment(
                json!([{"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
                               {"name": "b", "image": "b:1"}]),
            ),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let out = apply(
            Some(&live),
            &deployment(json!([{"name": "a", "image": "a:1"}])),
            false,
            &ctx("kubectl", "T2"),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "a:1"}])
        );
    }

    #[test]
    fn set_lists_merge_as_sets_and_remove_own_items() {
        let with = |items: Value| {
            let mut object = cm(json!({"a": "1"}));
            object["metadata"]["finalizers"] = items;
            object
        };
        let live = apply(None, &with(json!(["x/a"])), false, &ctx("m1", "T1")).unwrap();
        assert_eq!(
            fields_of(&live, "m1", "Apply").unwrap()["f:metadata"],
            json!({"f:finalizers": {"v:\"x/a\"": {}}})
        );
        let both = apply(Some(&live), &with(json!(["x/b"])), false, &ctx("m2", "T2")).unwrap();
        assert_eq!(both["metadata"]["finalizers"], json!(["x/a", "x/b"]));
        let mut config = cm(json!({"a": "1"}));
        config["metadata"]["labels"] = json!({"k": "v"});
        let out = apply(Some(&both), &config, false, &ctx("m1", "T3")).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["x/b"]));
        assert_eq!(out["metadata"]["labels"], json!({"k": "v"}));
    }

    #[test]
    fn removed_label_goes_but_labels_of_others_stay() {
        let with = |labels: Value, data: Value| {
            let mut object = cm(data);
            object["metadata"]["labels"] = labels;
            object
        };
        let live = apply(
            None,
            &with(json!({"a": "1", "b": "2"}), json!({"x": "1"})),
            false,
            &ctx("m1", "T1"),
        )
        .unwrap();
        let other = apply(
            Some(&live),
            &with(json!({"c": "3"}), json!({"x": "1"})),
            false,
            &ctx("m2", "T2"),
        )
        .unwrap();
        let out = apply(
            Some(&other),
            &cm(json!({"x": "1"})),
            false,
            &ctx("m1", "T3"),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
        let err = apply(
            Some(&out),
            &with(json!({"c": "4"}), json!({"x": "1"})),
            false,
            &ctx("m1", "T4"),
        )
        .unwrap_err();
        assert_eq!(err[0].path, ".metadata.labels.c");
    }

    #[test]
    fn status_is_ignored_on_the_main_endpoint() {
        let mut context = ctx("kubectl", "T1");
        context.ignore_status = true;
        let mut config = cm(json!({"a": "1"}));
        config["status"] = json!({"phase": "Ready"});
        let out = apply(None, &config, false, &context).unwrap();
        assert!(out.get("status").is_none());
        assert_eq!(
            fields_of(&out, "kubectl", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}}})
        );
        // Live status stays whatever the config says, and updates of it are not tracked.
        let mut live = out.clone();
        live["status"] = json!({"phase": "Running"});
        let again = apply(Some(&live), &config, false, &context).unwrap();
        assert_eq!(again, live);
        let mut changed = live.clone();
        changed["status"]["phase"] = json!("Done");
        let updated = update(Some(&live), &changed, &context);
        assert_eq!(entries(&updated).len(), 1);
    }

    #[test]
    fn status_subresource_writes_get_their_own_entries() {
        let live = apply(None, &cm(json!({"a": "1"})), false, &ctx("kubectl", "T1")).unwrap();
        let mut next = live.clone();
        next["status"] = json!({"phase": "Ready"});
        let mut context = ctx("controller", "T2");
        context.subresource = Some("status");
        let out = update(Some(&live), &next, &context);
        let entry = entries(&out)
            .into_iter()
            .find(|e| e["manager"] == "controller")
            .unwrap();
        assert_eq!(entry["subresource"], "status");
        assert_eq!(
            entry["fieldsV1"],
            json!({"f:status": {".": {}, "f:phase": {}}})
        );
        // An Apply to the status subresource is a separate entry from the main one.
        let mut config = cm(json!({}));
        config["status"] = json!({"phase": "Done"});
        let mut context = ctx("kubectl", "T3");
        context.subresource = Some("status");
        context.ignore_status = true;
        let err = apply(Some(&out), &config, false, &context).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "controller".into(),
                path: ".status.phase".into()
            }]
        );
        // The status endpoint does not write spec.
        let mut config = cm(json!({}));
        config.as_object_mut().unwrap().remove("data");
        config["spec"] = json!({"replicas": 3});
        config["status"] = json!({"phase": "Ready"});
        let applied = apply(Some(&out), &config, false, &context).unwrap();
        assert!(applied.get("spec").is_none());
        let entry = entries(&applied)
            .into_iter()
            .find(|e| e["manager"] == "kubectl" && e["subresource"] == "status")
            .unwrap();
        assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
    }

    #[test]
    fn entries_sort_apply_before_update_then_by_time() {
        let created = update(None, &cm(json!({"a": "1"})), &ctx("creator", "T1"));
        let out = apply(
            Some(&created),
            &cm(json!({"b": "2"})),
            false,
            &ctx("kubectl", "T2"),
        )
        .unwrap();
        let names: Vec<Value> = entries(&out).iter().map(|e| e["manager"].clone()).collect();
        assert_eq!(names, vec![json!("kubectl"), json!("creator")]);
        let later = apply(
            Some(&out),
            &cm(json!({"c": "3"})),
            false,
            &ctx("another", "T3"),
        )
        .unwrap();
        let names: Vec<Value> = entries(&later)
            .iter()
            .map(|e| e["manager"].clone())
            .collect();
        assert_eq!(
            names,
            vec![json!("kubectl"), json!("another"), json!("creator")]
        );
    }

    #[test]
    fn several_conflicts_are_grouped_per_manager() {
        let conflicts = vec![
            Conflict {
                manager: "b".into(),
                path: ".data.x".into(),
            },
            Conflict {
                manager: "a".into(),
                path: ".p1".into(),
            },
            Conflict {
                manager: "a".into(),
                path: ".p2".into(),
            },
        ];
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .p1\n- .p2\nconflicts with \"b\":\n- .data.x"
        );
        let live = apply(
            None,
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        let err = apply(
            Some(&live),
            &cm(json!({"a": "3", "b": "4"})),
            false,
            &ctx("x", "T2"),
        )
        .unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .data.a\n- .data.b"
        );
    }

    #[test]
    fn fields_v1_round_trips() {
        let text = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                          "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}},
                                     "f:x": {"v:\"a\"": {}, "v:3": {}}}});
        let set = FieldSet::from_fields_v1(&text).unwrap();
        assert!(set.has(&[Pe::Field("metadata".into()), Pe::Field("labels".into())]));
        assert!(!set.has(&[Pe::Field("metadata".into())]));
        assert_eq!(set.to_fields_v1(), text);
        // Keys are sorted, numbers order numerically.
        let mut set = FieldSet::default();
        for port in [443, 80] {
            set.insert(&[Pe::Key(vec![("port".into(), json!(port))])]);
        }
        let keys: Vec<String> = set
            .to_fields_v1()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, vec!["k:{\"port\":80}", "k:{\"port\":443}"]);
    }

    #[test]
    fn service_ports_merge_by_port_and_protocol() {
        let svc = |ports: Value| {
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s"}, "spec": {"ports": ports}})
        };
        let live = apply(
            None,
            &svc(json!([{"port": 80, "name": "http"}])),
            false,
            &ctx("a", "T1"),
        )
        .unwrap();
        let out = apply(
            Some(&live),
            &svc(json!([{"port": 443, "protocol": "TCP"}])),
            false,
            &ctx("b", "T2"),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 443, "protocol": "TCP"}])
        );
    }

    #[test]
    fn merge_follows_config_order_for_shared_items() {
        let types = Types { lt: &BUILTIN };
        let items =
            |names: &[&str]| Value::Array(names.iter().map(|n| json!({"name": n})).collect());
        let mut fpath = vec!["spec".to_string(), "containers".to_string()];
        let merged = types.merge(
            Some(&items(&["a", "b", "c"])),
            &items(&["c", "a"]),
            &mut fpath,
        );
        assert_eq!(merged, items(&["b", "c", "a"]));
        let merged = types.merge(Some(&items(&["a", "b"])), &items(&["x", "b"]), &mut fpath);
        assert_eq!(merged, items(&["a", "x", "b"]));
    }

    #[test]
    fn applying_to_an_object_without_managed_fields_records_before_first_apply() {
        let live = cm(json!({"a": "1"}));
        let err = apply(
            Some(&live),
            &cm(json!({"a": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "before-first-apply".into(),
                path: ".data.a".into()
            }]
        );
        let out = apply(
            Some(&live),
            &cm(json!({"a": "1", "b": "2"})),
            false,
            &ctx("kubectl", "T1"),
        )
        .unwrap();
        assert_eq!(
            fields_of(&out, "kubectl", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        );
        assert_eq!(
            fields_of(&out, "before-first-apply", "Update").unwrap(),
            json!({"f:data": {".": {}, "f:a": {}}})
        );
    }

    #[test]
    fn more_than_ten_update_managers_merge_into_ancient_changes() {
        let mut live = update(None, &cm(json!({"k0": "0"})), &ctx("m0", "T00"));
        for i in 1..12 {
            let mut next = live.clone();
            next["data"][format!("k{i}")] = json!("x");
            let manager = format!("m{i}");
            let now = format!("T{i:02}");
            live = update(Some(&live), &next, &ctx(&manager, &now));
        }
        let all = entries(&live);
        assert_eq!(all.len(), 10, "{all:#?}");
        assert_eq!(all[0]["manager"], "ancient-changes");
        assert_eq!(all[0]["time"], "T02");
        assert_eq!(
            all[0]["fieldsV1"],
            json!({"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}})
        );
        assert_eq!(all[9]["manager"], "m11");
    }

    #[test]
    fn server_metadata_in_a_config_is_not_a_change() {
        let live = apply(None, &cm(json!({"a": "1"})), false, &ctx("kubectl", "T1")).unwrap();
        let mut stored = live.clone();
        stored["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        stored["metadata"]["uid"] = json!("u-1");
        stored["metadata"]["resourceVersion"] = json!("7");
        let mut config = cm(json!({"a": "1"}));
        config["metadata"]["creationTimestamp"] = Value::Null;
        let again = apply(Some(&stored), &config, false, &ctx("kubectl", "T2")).unwrap();
        assert_eq!(again, stored);
    }

    /// `list` is a set of scalars, everything else as built in.
    struct SetList;

    impl ListTypes for SetList {
        fn list_type(&self, path: &[&str]) -> ListType {
            if path == ["list"] {
                ListType::Set
            } else {
                BuiltinListTypes.list_type(path)
            }
        }
    }

    static SET_LIST: SetList = SetList;

    fn set_ctx<'a>(manager: &'a str, now: &'a str) -> Context<'a> {
        Context {
            list_types: &SET_LIST,
            ..ctx(manager, now)
        }
    }

    fn list(items: &[&str]) -> Value {
        json!({"list": items})
    }

    fn set_fields(items: &[&str]) -> Value {
        let mut map = Map::new();
        for item in items {
            map.insert(format!("v:\"{item}\""), json!({}));
        }
        json!({"f:list": map})
    }

    #[test]
    fn set_apply_twice_adds_items_in_config_order() {
        let live = apply(None, &list(&["a", "c"]), false, &set_ctx("default", "T1")).unwrap();
        let out = apply(
            Some(&live),
            &list(&["a", "b", "c", "d"]),
            false,
            &set_ctx("default", "T2"),
        )
        .unwrap();
        assert_eq!(out["list"], json!(["a", "b", "c", "d"]));
        assert_eq!(
            fields_of(&out, "default", "Apply").unwrap(),
            set_fields(&["a", "b", "c", "d"])
        );
    }

    #[test]
    fn set_apply_update_apply_without_overlap_keeps_controller_items() {
        let live = apply(None, &list(&["a", "c"]), false, &set_ctx("default", "T1")).unwrap();
        let mut next = live.clone();
        next["list"] = json!(["a", "b", "c", "d"]);
        let updated = update(Some(&live), &next, &set_ctx("controller", "T2"));
        let out = apply(
            Some(&updated),
            &list(&["a", "aprime", "c", "cprime"]),
            false,
            &set_ctx("default", "T3"),
        )
        .unwrap();
        let mut items: Vec<String> = out["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        items.sort();
        assert_eq!(items, ["a", "aprime", "b", "c", "cprime", "d"]);
        assert_eq!(
            fields_of(&out, "default", "Apply").unwrap(),
            set_fields(&["a", "aprime", "c", "cprime"])
        );
        assert_eq!(
            fields_of(&out, "controller", "Update").unwrap(),
            set_fields(&["b", "d"])
        );
    }

    #[test]
    fn set_apply_update_apply_with_overlap_shares_items() {
        let live = apply(None, &list(&["a", "c"]), false, &set_ctx("default", "T1")).unwrap();
        let mut next = live.clone();
        next["list"] = json!(["a", "b", "c", "d"]);
        let updated = update(Some(&live), &next, &set_ctx("controller", "T2"));
        let out = apply(
            Some(&updated),
            &list(&["a", "b", "c"]),
            false,
            &set_ctx("default", "T3"),
        )
        .unwrap();
        assert_eq!(out["list"], json!(["a", "b", "c", "d"]));
        assert_eq!(
            fields_of(&out, "default", "Apply").unwrap(),
            set_fields(&["a", "b", "c"])
        );
        assert_eq!(
            fields_of(&out, "controller", "Update").unwrap(),
            set_fields(&["b", "d"])
        );
    }

    #[test]
    fn set_reorders_follow_the_applier_and_updates_that_only_reorder_own_nothing() {
        let live = apply(
            None,
            &list(&["a", "b", "c", "d"]),
            false,
            &set_ctx("default", "T1"),
        )
        .unwrap();
        let reordered = apply(
            Some(&live),
            &list(&["a", "d", "c", "b"]),
            false,
            &set_ctx("default", "T2"),
        )
        .unwrap();
        assert_eq!(reordered["list"], json!(["a", "d", "c", "b"]));
        let mut next = live.clone();
        next["list"] = json!(["a", "d", "c", "b"]);
        let updated = update(Some(&live), &next, &set_ctx("controller", "T2"));
        assert!(fields_of(&updated, "controller", "Update").is_none());
        let out = apply(
            Some(&updated),
            &list(&["a", "b", "c", "d"]),
            false,
            &set_ctx("default", "T3"),
        )
        .unwrap();
        assert_eq!(out["list"], json!(["a", "b", "c", "d"]));
        assert_eq!(entries(&out).len(), 1);
    }

    #[test]
    fn set_apply_twice_removes_dropped_items() {
        let live = apply(
            None,
            &list(&["a", "b", "c", "d"]),
            false,
            &set_ctx("default", "T1"),
        )
        .unwrap();
        let out = apply(
            Some(&live),
            &list(&["a", "c"]),
            false,
            &set_ctx("default", "T2"),
        )
        .unwrap();
        assert_eq!(out["list"], json!(["a", "c"]));
        assert_eq!(
            fields_of(&out, "default", "Apply").unwrap(),
            set_fields(&["a", "c"])
        );
    }

    /// `list` and `listOfLists` are keyed by name, `listOfLists[].value` is a set.
    struct Nested;

    impl ListTypes for Nested {
        fn list_type(&self, path: &[&str]) -> ListType {
            match path {
                ["list"] | ["listOfLists"] => ListType::Map(vec!["name".to_string()]),
                ["listOfLists", "value"] => ListType::Set,
                _ => ListType::Atomic,
            }
        }
    }

    static NESTED: Nested = Nested;

    fn nested_ctx<'a>(manager: &'a str, now: &'a str) -> Context<'a> {
        Context {
            list_types: &NESTED,
            ..ctx(manager, now)
        }
    }

    /// Applies or updates in sequence from an empty start: `(manager, is_apply, object)`.
    fn run(ops: &[(&str, bool, Value)]) -> Value {
        let mut live: Option<Value> = None;
        for (n, (manager, is_apply, object)) in ops.iter().enumerate() {
            let now = format!("T{n}");
            let context = nested_ctx(manager, &now);
            let next = if *is_apply {
                apply(live.as_ref(), object, false, &context).unwrap()
            } else {
                update(live.as_ref(), object, &context)
            };
            live = Some(next);
        }
        live.unwrap()
    }

    #[test]
    fn appliers_remove_only_their_own_list_items() {
        let out = run(&[
            (
                "one",
                true,
                json!({"list": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
            ),
            ("two", true, json!({"list": [{"name": "c"}, {"name": "d"}]})),
            ("one", true, json!({"list": [{"name": "a"}]})),
        ]);
        assert_eq!(
            out["list"],
            json!([{"name": "a"}, {"name": "c"}, {"name": "d"}])
        );
        assert_eq!(
            fields_of(&out, "one", "Apply").unwrap(),
            json!({"f:list": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}}}})
        );
        assert_eq!(
            fields_of(&out, "two", "Apply").unwrap(),
            json!({"f:list": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}},
                              "k:{\"name\":\"d\"}": {".": {}, "f:name": {}}}})
        );
    }

    #[test]
    fn same_value_in_a_list_item_is_shared_and_a_change_conflicts() {
        let live = run(&[
            ("one", true, json!({"list": [{"name": "a", "value": 0}]})),
            ("two", true, json!({"list": [{"name": "a", "value": 0}]})),
        ]);
        assert_eq!(
            fields_of(&live, "one", "Apply"),
            fields_of(&live, "two", "Apply")
        );
        let err = apply(
            Some(&live),
            &json!({"list": [{"name": "a", "value": 1}]}),
            false,
            &nested_ctx("three", "T9"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![
                Conflict {
                    manager: "one".into(),
                    path: ".list[name=\"a\"].value".into()
                },
                Conflict {
                    manager: "two".into(),
                    path: ".list[name=\"a\"].value".into()
                },
            ]
        );
    }

    #[test]
    fn unsetting_a_field_shared_with_an_updater_keeps_it() {
        let out = run(&[
            (
                "updater",
                false,
                json!({"struct": {"name": "a", "scalarField": "a"}}),
            ),
            (
                "applier",
                true,
                json!({"struct": {"name": "a", "scalarField": "a"}}),
            ),
            ("applier", true, json!({"struct": {"name": "a"}})),
        ]);
        assert_eq!(out["struct"], json!({"name": "a", "scalarField": "a"}));
        assert_eq!(
            fields_of(&out, "updater", "Update").unwrap(),
            json!({"f:struct": {".": {}, "f:name": {}, "f:scalarField": {}}})
        );
        assert_eq!(
            fields_of(&out, "applier", "Apply").unwrap(),
            json!({"f:struct": {"f:name": {}}})
        );
    }

    #[test]
    fn an_updater_claims_the_field_it_changes() {
        let out = run(&[
            (
                "applier",
                true,
                json!({"struct": {"name": "a", "scalarField": "a"}}),
            ),
            (
                "updater",
                false,
                json!({"struct": {"name": "a", "scalarField": "b"}}),
            ),
        ]);
        assert_eq!(
            fields_of(&out, "updater", "Update").unwrap(),
            json!({"f:struct": {"f:scalarField": {}}})
        );
        assert_eq!(
            fields_of(&out, "applier", "Apply").unwrap(),
            json!({"f:struct": {"f:name": {}}})
        );
    }

    #[test]
    fn unsetting_a_nested_object_removes_it_unless_shared() {
        let sole = run(&[
            (
                "one",
                true,
                json!({"struct": {"name": "a", "complexField": {"name": "b"}}}),
            ),
            ("one", true, json!({"struct": {"name": "a"}})),
        ]);
        assert_eq!(sole["struct"], json!({"name": "a"}));
        let shared = run(&[
            (
                "one",
                true,
                json!({"struct": {"name": "a", "complexField": {"name": "b"}}}),
            ),
            (
                "two",
                true,
                json!({"struct": {"complexField": {"name": "b"}}}),
            ),
            ("one", true, json!({"struct": {"name": "a"}})),
        ]);
        assert_eq!(
            shared["struct"],
            json!({"name": "a", "complexField": {"name": "b"}})
        );
        assert_eq!(
            fields_of(&shared, "two", "Apply").unwrap(),
            json!({"f:struct": {"f:complexField": {"f:name": {}}}})
        );
    }

    #[test]
    fn nested_set_items_of_others_survive_their_parent_being_unapplied() {
        let out = run(&[
            (
                "one",
                true,
                json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c"]}]}),
            ),
            (
                "two",
                true,
                json!({"listOfLists": [{"name": "b", "value": ["d"]}]}),
            ),
            (
                "controller",
                false,
                json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c", "d", "e"]}]}),
            ),
            ("one", true, json!({"listOfLists": [{"name": "a"}]})),
        ]);
        assert_eq!(
            out["listOfLists"],
            json!([{"name": "a"}, {"name": "b", "value": ["d", "e"]}])
        );
        assert_eq!(
            fields_of(&out, "controller", "Update").unwrap(),
            json!({"f:listOfLists": {"k:{\"name\":\"b\"}": {"f:value": {"v:\"e\"": {}}}}})
        );
    }

    #[test]
    fn an_unapplied_item_goes_even_if_an_updater_owns_a_sub_item() {
        let out = run(&[
            (
                "one",
                true,
                json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c"]}]}),
            ),
            (
                "two",
                true,
                json!({"listOfLists": [{"name": "a", "value": ["b"]}]}),
            ),
            (
                "controller",
                false,
                json!({"listOfLists": [{"name": "a", "value": ["b"]}, {"name": "b", "value": ["c", "d"]}]}),
            ),
            ("one", true, json!({"listOfLists": [{"name": "a"}]})),
        ]);
        assert_eq!(out["listOfLists"], json!([{"name": "a", "value": ["b"]}]));
    }

    #[test]
    fn empty_objects_and_nulls_are_owned_and_null_keeps_live_items() {
        let config = deployment(json!([{"name": "nginx", "image": "nginx:1", "resources": {}}]));
        let out = apply(None, &config, false, &ctx("kubectl", "T1")).unwrap();
        let fields = fields_of(&out, "kubectl", "Apply").unwrap();
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:resources"],
            json!({})
        );
        let live = run(&[
            ("one", true, json!({"struct": {"a": {"b": "1"}, "c": "2"}})),
            ("two", true, json!({"struct": {"a": {"x": "3"}}})),
        ]);
        let out = apply(
            Some(&live),
            &json!({"struct": {"a": null, "c": "2"}}),
            false,
            &nested_ctx("one", "T9"),
        )
        .unwrap();
        assert_eq!(out["struct"], json!({"a": {"x": "3"}, "c": "2"}));
        assert_eq!(
            fields_of(&out, "one", "Apply").unwrap(),
            json!({"f:struct": {"f:a": {}, "f:c": {}}})
        );
    }

    /// A schemaless object: every key is a map key, every list atomic.
    struct Deduced;

    impl ListTypes for Deduced {
        fn list_type(&self, _: &[&str]) -> ListType {
            ListType::Atomic
        }

        fn keys_are_map_keys(&self, _: &[&str]) -> bool {
            true
        }
    }

    static DEDUCED: Deduced = Deduced;

    #[test]
    fn deduced_maps_own_their_keys_and_prune_like_structured_merge_diff() {
        let ops = [
            (
                "apply-one",
                true,
                json!({"a": {"b": null}, "c": {"d": null}}),
            ),
            ("apply-two", true, json!({"a": null, "c": {"d": null}})),
            (
                "controller-one",
                false,
                json!({"a": {"b": {"c": null}}, "c": {"d": {"e": null}}}),
            ),
            (
                "controller-two",
                false,
                json!({"a": {"b": {"c": {"d": null}}}, "c": {"d": {"e": {"f": null}}}}),
            ),
            (
                "controller-one",
                false,
                json!({"a": {"b": {"c": {"d": {"e": null}}}}, "c": {"d": {"e": {"f": {"g": null}}}}}),
            ),
            ("apply-one", true, json!({})),
        ];
        let mut live: Option<Value> = None;
        for (n, (manager, is_apply, object)) in ops.iter().enumerate() {
            let now = format!("T{n}");
            let context = Context {
                list_types: &DEDUCED,
                ..ctx(manager, &now)
            };
            live = Some(if *is_apply {
                apply(live.as_ref(), object, false, &context).unwrap()
            } else {
                update(live.as_ref(), object, &context)
            });
        }
        let out = live.unwrap();
        // structured-merge-diff leaves `a: null`; the stored object drops that null.
        assert_eq!(out["c"], json!({"d": {"e": {"f": {"g": null}}}}));
        assert!(out.get("a").is_none(), "{out}");
        assert!(fields_of(&out, "apply-one", "Apply").is_none());
        assert_eq!(
            fields_of(&out, "apply-two", "Apply").unwrap(),
            json!({"f:a": {}, "f:c": {".": {}, "f:d": {}}})
        );
        assert_eq!(
            fields_of(&out, "controller-one", "Update").unwrap(),
            json!({"f:c": {"f:d": {"f:e": {".": {}, "f:f": {"f:g": {}}}}}})
        );
        assert_eq!(
            fields_of(&out, "controller-two", "Update").unwrap(),
            json!({"f:c": {"f:d": {"f:e": {"f:f": {}}}}})
        );
    }

    #[test]
    fn creating_a_deployment_owns_fields_like_kubectl_create_on_a_real_server() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                           "resources": {}}],
                                           "restartPolicy": "Always"}}}});
        let out = update(None, &object, &ctx("kubectl-create", "T1"));
        assert_eq!(
            fields_of(&out, "kubectl-create", "Update").unwrap(),
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                                   "f:type": {}},
                    "f:template": {
                        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {
                            "f:containers": {"k:{\"name\":\"nginx\"}": {
                                ".": {}, "f:image": {}, "f:name": {}, "f:resources": {}}},
                            "f:restartPolicy": {}
                        }
                    }
                }
            })
        );
        // Custom resources have no such zero value: their spec is owned as a whole too.
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1"}, "spec": {"size": 1}});
        let out = update(None, &widget, &ctx("kubectl-create", "T1"));
        assert_eq!(
            fields_of(&out, "kubectl-create", "Update").unwrap(),
            json!({"f:spec": {".": {}, "f:size": {}}})
        );
    }

    #[test]
    fn conflict_paths_name_keys_and_set_values_like_the_api_server() {
        let with_port = |protocol: Option<&str>, name: &str| {
            let mut port = json!({"containerPort": 80, "name": name});
            if let Some(protocol) = protocol {
                port["protocol"] = json!(protocol);
            }
            deployment(json!([{"name": "nginx", "image": "nginx:1", "ports": [port]}]))
        };
        let live = apply(None, &with_port(None, "http"), false, &ctx("kubectl", "T1")).unwrap();
        // An explicit TCP is the same item as the defaulted one.
        let err = apply(
            Some(&live),
            &with_port(Some("TCP"), "web"),
            false,
            &ctx("other", "T2"),
        )
        .unwrap_err();
        assert_eq!(
            err[0].path,
            ".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].name"
        );
        let mut owned = cm(json!({}));
        owned["metadata"]["ownerReferences"] =
            json!([{"uid": "u1", "kind": "A", "name": "a", "apiVersion": "v1"}]);
        let live = apply(None, &owned, false, &ctx("kubectl", "T1")).unwrap();
        assert_eq!(
            fields_of(&live, "kubectl", "Apply").unwrap()["f:metadata"],
            json!({"f:ownerReferences": {"k:{\"uid\":\"u1\"}": {}}})
        );
        owned["metadata"]["ownerReferences"][0]["name"] = json!("b");
        let err = apply(Some(&live), &owned, false, &ctx("other", "T2")).unwrap_err();
        assert_eq!(err[0].path, ".metadata.ownerReferences[uid=\"u1\"]");
        let mut finalized = cm(json!({}));
        finalized["metadata"]["finalizers"] = json!(["x/a"]);
        let live = update(None, &finalized, &ctx("controller", "T1"));
        let mut config = cm(json!({}));
        config["metadata"]["finalizers"] = json!([]);
        let out = apply(Some(&live), &config, false, &ctx("kubectl", "T2")).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["x/a"]));
        let paths: Vec<String> =
            FieldSet::from_fields_v1(&fields_of(&out, "controller", "Update").unwrap())
                .unwrap()
                .paths()
                .iter()
                .map(|p| path_string(p))
                .collect();
        assert!(
            paths.contains(&".metadata.finalizers[=\"x/a\"]".to_string()),
            "{paths:?}"
        );
    }
}
