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

use serde_json::Value;

/// How a list at some path merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole (the default).
    Atomic,
    /// Items are scalars, merged as a set (`x-kubernetes-list-type: set`).
    Set,
    /// Items are objects identified by these keys (`x-kubernetes-list-type: map`).
    Map(Vec<String>),
}

/// Tells the merge how lists merge. `path` is the list's field path from the object root,
/// field names only (list items along the way are skipped), e.g.
/// `["spec", "template", "spec", "containers"]`.
pub trait ListTypes: Send + Sync {
    fn list_type(&self, path: &[&str]) -> ListType;
}

/// One conflicting field: who owns it and where it is, in the path form real API servers use
/// (`.data.a`, `.spec.containers[name="nginx"].image`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

/// Request context common to both operations.
pub struct Context<'a> {
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
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    force: bool,
    ctx: &Context<'_>,
) -> Result<Value, Vec<Conflict>> {
    let _ = (live, config, force, ctx);
    todo!("server-side apply")
}

/// A non-apply write (`operation: Update`) by `ctx.manager`: `new` is the object as it will be
/// stored; the manager takes ownership of every field whose value differs from `old` (or every
/// field, on create) and other managers lose those fields. Never conflicts. Returns `new` with
/// `metadata.managedFields` set (any managedFields in `new` from the client are replaced by the
/// server's bookkeeping based on `old`, except that a client may clear them with an empty list).
pub fn update(old: Option<&Value>, new: &Value, ctx: &Context<'_>) -> Value {
    let _ = (old, new, ctx);
    todo!("update managed fields")
}

/// Formats conflicts as the API server does in the 409 message:
/// `Apply failed with 1 conflict: conflict with "kubectl": .data.a` or, for several,
/// `Apply failed with 2 conflicts: conflicts with "a":\n- .p1\n- .p2` (grouped per manager).
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let _ = conflicts;
    todo!("conflict message")
}
