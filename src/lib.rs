//! meshplan: plan, apply and roll back a Kubernetes service-mesh stack from one TOML plan.
//!
//! The pipeline, one module per stage (folders follow the data):
//!
//! ```text
//! plan.toml ─► planfile (TOML → Raw* syntax with spans)
//!           ─► model    (validated nodes, vars, references; no I/O)
//!           ─► graph    (petgraph DAG: layers, reverse order, DOT / Mermaid)
//!           ─► render   (desired objects per node: manifests, helm template, digests)
//!           ─► lint     (Linkerd-aware checks of the rendered objects, + cluster facts)
//!           ─► diff     (gather: refresh + server-side dry runs; decide: a pure change
//!                        per object → change set; report/ shows it)
//!           ─► apply ─► state                              (later stages)
//! ```
//!
//! [`load::load`] runs the first three stages and is how every command gets a plan: it returns a
//! [`load::LoadedPlan`] (model + graph + sources) or every problem as
//! [`planfile::Diagnostics`].
//!
//! After apply, [`health`] (`meshplan check`) reads the running mesh: trust anchor, issuer
//! certificate, workloads, webhooks, stuck Jobs.
//!
//! `cli` holds the clap definitions and exit codes, `session` what the cluster commands share
//! once the plan is loaded (state, cluster connection, discovery cache, render settings), and
//! `commands` one orchestrating function per subcommand (glue: they call the stages and hand
//! the results to `report`). The Kubernetes vocabulary (object and kind references, discovery, structural
//! schemas) is the `meshplan-k8s` crate; the API sandbox behind `meshplan sandbox serve` is the
//! `meshplan-sandbox` crate (cargo feature `sandbox`, on by default), which nothing else here
//! imports.

pub mod apply;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod diff;
pub mod graph;
pub mod health;
pub mod lint;
pub mod load;
pub mod model;
pub mod planfile;
pub mod render;
pub mod report;
pub mod session;
pub mod state;
