//! The checks, one module each; [`run_all`] runs them in catalogue order.

mod chart_values;
mod crd_schema;
mod ingress;
mod issuer;
mod meshed_job;
mod monitoring;
mod namespace;

use super::Finding;
use super::context::Context;

/// Runs every check over the context.
pub(super) fn run_all(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    meshed_job::check(ctx, out);
    chart_values::check(ctx, out);
    crd_schema::check(ctx, out);
    issuer::check(ctx, out);
    namespace::check(ctx, out);
    ingress::check(ctx, out);
    monitoring::check(ctx, out);
}
