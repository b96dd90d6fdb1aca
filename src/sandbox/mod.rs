//! The Kubernetes API sandbox: an API server emulator that the real kubectl and kube-rs accept
//! (specification: SANDBOX.md of the project's shared design documents; summary in
//! `docs/sandbox.md`).

pub mod fieldmanager;
pub mod names;
pub mod schema;
pub mod selector;
