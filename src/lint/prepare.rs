//! Gathering the lint input: the one place the lint stage does I/O, before the pure checks.
//!
//! 1. Render every node ([`crate::render::Renderer`]; values read during apply stay
//!    `(known after apply)`).
//! 2. Read what each helm node's chart declares ([`crate::render::Renderer::chart_info`]); a
//!    chart that cannot be read is recorded with the reason (its node is not checked for
//!    unknown values).
//! 3. With a cluster, read the facts the checks use for this plan ([`super::facts::needs`],
//!    [`super::facts::gather`]).

use std::collections::BTreeMap;

use crate::cluster::{Cluster, ClusterError, Discovery};
use crate::model::{Address, NodeSpec, Plan};
use crate::render::{ChartInfo, PlanRender, RenderErrors, RenderInputs, Renderer};

use super::facts::{ClusterFacts, gather, needs};

/// Why the lint input could not be gathered.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PrepareError {
    #[error("cannot render the plan for lint")]
    #[diagnostic(code(lint::render))]
    Render(#[related] Vec<crate::render::RenderError>),
    #[error("cannot read the cluster for lint")]
    #[diagnostic(
        code(lint::cluster),
        help(
            "check the cluster connection, or lint with --offline (the checks then use the plan only)"
        )
    )]
    Cluster(#[source] ClusterError),
}

impl From<RenderErrors> for PrepareError {
    fn from(e: RenderErrors) -> Self {
        Self::Render(e.errors)
    }
}

/// The gathered input of [`super::run`] (besides the plan and its sources).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub render: PlanRender,
    pub charts: BTreeMap<Address, Result<ChartInfo, String>>,
    pub facts: Option<ClusterFacts>,
}

/// Renders the plan (with `inputs`: the previous renders, so that generated material is
/// carried over exactly as the change set's render does, and the targets), reads its charts
/// and (with a cluster) the cluster's facts.
pub async fn prepare(
    plan: &Plan,
    renderer: &Renderer,
    inputs: &RenderInputs,
    cluster: Option<(&dyn Cluster, &Discovery)>,
) -> Result<Prepared, PrepareError> {
    let render = renderer.render(plan, inputs).await?;
    let charts = read_charts(plan, renderer).await;
    let facts = match cluster {
        Some((c, discovery)) => Some(
            gather(c, &needs(plan, &render), Some(discovery))
                .await
                .map_err(PrepareError::Cluster)?,
        ),
        None => None,
    };
    Ok(Prepared {
        render,
        charts,
        facts,
    })
}

/// What each helm node's chart declares (or why it cannot be read).
pub async fn read_charts(
    plan: &Plan,
    renderer: &Renderer,
) -> BTreeMap<Address, Result<ChartInfo, String>> {
    let jobs = plan
        .nodes
        .values()
        .filter(|n| matches!(n.spec, NodeSpec::Helm(_)))
        .map(|node| async move { (node.address.clone(), renderer.chart_info(plan, node).await) });
    futures::future::join_all(jobs).await.into_iter().collect()
}
