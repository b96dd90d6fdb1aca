//! The one integration test binary: a module per command or subsystem.

// A test binary: its `pub` items are for its own modules, and tests may print what they saw.
#![allow(unreachable_pub, clippy::print_stdout, clippy::print_stderr)]

mod apply;
mod apply_cmd;
mod apply_destroy;
mod apply_faults;
mod apply_rollback;
mod apply_signals;
mod check_cmd;
mod cli;
mod closed_output;
mod cluster;
mod drift_cmd;
mod graph_cmd;
mod install_helm;
mod large_inputs;
mod lint_cmd;
mod lost_state;
mod masking;
mod missing_kinds;
mod model_dump;
mod placeholders;
mod plan_cmd;
mod plan_errors;
mod plan_fuzz;
mod plan_schema;
mod render;
mod render_stability;
mod requests;
mod rollback_sweep;
mod sample_plan;
mod sandbox_serve;
mod size_limits;
mod state;
mod state_backend;
mod state_kube;
mod support;
mod validate_cmd;
