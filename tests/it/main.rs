//! The one integration test binary: a module per command or subsystem.

mod apply;
mod apply_cmd;
mod apply_destroy;
mod apply_faults;
mod apply_rollback;
mod apply_signals;
mod closed_output;
mod cluster;
mod graph_cmd;
mod model_dump;
mod plan_cmd;
mod plan_errors;
mod plan_fuzz;
mod render;
mod render_stability;
mod requests;
mod rollback_sweep;
mod sample_plan;
mod sandbox_serve;
mod state;
mod support;
mod validate_cmd;
