//! The Kubernetes vocabulary that meshplan and its API sandbox share, free of I/O (kube-rs keeps
//! the same kind of vocabulary in `kube-core`).
//!
//! - [`object`]: references to objects and kinds ([`ObjectRef`], [`KindRef`]).
//! - [`discovery`]: what a cluster serves ([`Discovery`], [`ApiResourceInfo`]).
//! - [`fields_v1`]: managedFields: FieldsV1 path elements and field sets, entries, the field
//!   set of a value, paths walked against an object.
//! - [`lists`]: how lists and maps merge and are owned (structured-merge-diff's list types).
//! - [`schema`]: CRD structural schemas: pruning, defaulting, validation with the API server's
//!   messages ([`Structural`]).
//! - [`go`]: values formatted as the API server's Go code formats them in messages.
//! - [`duration`]: durations as Go writes them (`metav1.Duration`, `--timeout`).
//! - [`text`]: values echoed in messages, clipped ([`text::clip`]).
//!
//! Everything here is a pure function of its inputs; the crate depends on serde, serde_json,
//! regex and thiserror only.

pub mod discovery;
pub mod duration;
pub mod fields_v1;
pub mod go;
pub mod lists;
pub mod object;
pub mod schema;
pub mod text;

pub use discovery::{ApiResourceInfo, Discovery};
pub use duration::{GoDurationError, format_go_duration, parse_go_duration};
pub use fields_v1::{FieldSet, ManagedFieldsEntry, PathElement};
pub use lists::{BuiltinListTypes, ListType, ListTypes};
pub use object::{KindRef, ObjectRef, split_api_version};
pub use schema::{CustomResourceListTypes, Structural};
