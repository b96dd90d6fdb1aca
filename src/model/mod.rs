//! Stage 2, the model: the validated plan. [`build()`] turns a [`crate::planfile::RawPlan`]
//! into a [`Plan`] (vars with their final values, repos, typed nodes, every `${...}`
//! reference checked) or the complete list of problems.
//!
//! The model does no I/O: manifest files, values files and var files are read by
//! [`crate::load`] and handed in as sources. Later stages use:
//! - [`Plan`], [`Node`], [`NodeSpec`] and the per-type specs ([`Manifest`], [`Helm`],
//!   [`Read`], [`Check`]);
//! - [`Template`] / [`Value`] with `evaluate(&dyn Scope)`: strings with references are
//!   evaluated against a scope ([`Plan::static_scope`] at plan time; apply adds read values);
//! - [`Address`] (`TYPE.NAME`) and [`Reference`];
//! - [`ObjectRef`] (the identity of a Kubernetes object; the cluster's type, re-exported)
//!   from manifest objects, reads and checks, and [`Helm::merged_values`] (values files,
//!   then `values`, deep-merged);
//! - [`ignore`]: the fields meshplan neither compares nor owns ([`IgnoreRule`]s of the plan,
//!   built-in rules), dropped by the render and skipped by plan and drift.

pub mod address;
pub mod build;
pub mod dump;
pub mod duration;
pub mod ignore;
pub mod lint_checks;
pub mod object_ref;
pub mod plan;
pub mod template;

pub use address::{Address, NodeKind};
pub use build::{BuildInput, LoadedFile, build, build_partial};
pub use dump::{dump_plan, value_json};
pub use duration::{format_duration, human_duration, parse_duration};
pub use ignore::{FieldPointer, IgnoreRule, IgnoredFields, is_ownership_mark};
pub use meshplan_k8s::ObjectRef;
pub use object_ref::deep_merge;
pub use plan::{
    Chart, Check, Dependency, Helm, Manifest, ManifestObject, ManifestSource, Node, NodeSpec, Plan,
    RawObject, Read, ReadSelect, Repo, StateBackend, StateSettings, StaticScope, Suppression,
    Value, ValuesFile, Var, VarOrigin, Wait,
};
pub use template::{EvalError, Lookup, Part, RefUse, Reference, Scope, Template};
