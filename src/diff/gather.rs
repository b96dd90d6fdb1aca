//! Every request the diff sends, in one place: the refresh of live objects and the
//! server-side apply dry runs. What comes back is plain data ([`Gathered`]) for the decide
//! step.
//!
//! 1. **Refresh.** The scope's reads, with the fewest requests: one LIST per kind and
//!    namespace holding two or more wanted objects, one GET otherwise, at most `parallelism`
//!    at a time. managedFields are dropped (never compared, often the largest part). A kind
//!    the discovery listed but the server no longer serves (a CRD deleted since) leaves its
//!    objects absent when a CRD of this plan defines it; otherwise the refresh fails.
//! 2. **Which objects need a dry run**: those for which [`decide::needs_dry_run`] holds over
//!    what the refresh found (absent objects, unknown content and the fast path need none).
//! 3. **Dry runs.** One server-side apply dry run per such object (manager `meshplan`, strict
//!    field validation, never forced), at most `parallelism` at a time. Every answer,
//!    refusals and failures included, is kept as a [`DryRun`]: what it means is decided
//!    later.
//!
//! A failed refresh fails the diff, naming the first object (in object order) that failed.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use serde_json::Value;

use crate::cluster::{ApplyOptions, Cluster, ClusterError, KindRef, ListKey, ObjectRef};

use super::decide::{self, DryRun};
use super::error::DiffError;
use super::input::DiffInput;
use super::scope::Scope;

/// What the requests found.
#[derive(Debug)]
pub(super) struct Gathered<'a> {
    /// Every read object: `None` when it does not exist (or its kind is gone and a CRD of the
    /// plan defines it). Objects not read (kinds not served) are missing.
    pub(super) live: BTreeMap<ObjectRef, Option<Value>>,
    /// The dry runs' answers, by (node, object).
    pub(super) dry_runs: BTreeMap<(&'a str, &'a ObjectRef), DryRun>,
}

impl Gathered<'_> {
    /// The live object, when it was read and exists.
    pub(super) fn live(&self, object: &ObjectRef) -> Option<&Value> {
        self.live.get(object).and_then(Option::as_ref)
    }
}

/// Sends the diff's requests: refresh, then the dry runs the refresh shows are needed.
pub(super) async fn gather<'a>(
    cluster: &dyn Cluster,
    scope: &Scope<'a>,
    input: DiffInput<'_>,
) -> Result<Gathered<'a>, DiffError> {
    let parallelism = input.parallelism.max(1);
    let started = std::time::Instant::now();
    let live = refresh(cluster, scope, input, parallelism).await?;
    tracing::info!(elapsed = ?started.elapsed(), objects = scope.reads.len(), "refreshed");
    let mut gathered = Gathered {
        live,
        dry_runs: BTreeMap::new(),
    };
    let asks: Vec<(&str, &ObjectRef, &Value)> = scope
        .objects
        .iter()
        .filter(|w| decide::needs_dry_run(w, gathered.live(&w.desired.object), scope.record(w)))
        .map(|w| (w.node, &w.desired.object, &w.desired.body))
        .collect();
    gathered.dry_runs = dry_runs(cluster, asks, parallelism).await;
    tracing::info!(elapsed = ?started.elapsed(), "dry runs done");
    Ok(gathered)
}

/// One server-side apply dry run per (node, object, body), at most `parallelism` at a time.
async fn dry_runs<'a>(
    cluster: &dyn Cluster,
    asks: Vec<(&'a str, &'a ObjectRef, &Value)>,
    parallelism: usize,
) -> BTreeMap<(&'a str, &'a ObjectRef), DryRun> {
    let options = ApplyOptions {
        dry_run: true,
        force: false,
        ..ApplyOptions::default()
    };
    let options = &options;
    futures::stream::iter(asks.into_iter().map(|(node, object, body)| async move {
        let answer = cluster.apply(body, options).await;
        ((node, object), DryRun::from(answer))
    }))
    .buffer_unordered(parallelism)
    .collect()
    .await
}

/// The refresh reads the objects of a kind and namespace with one LIST when it wants at least
/// this many of them, else with one GET each.
const LIST_FROM: usize = 2;

/// The kinds and namespaces that the refresh of `reads` lists (see [`LIST_FROM`]): a caller
/// may start these LISTs ahead ([`crate::cluster::ListsAhead`]).
pub fn list_keys<'a>(reads: impl IntoIterator<Item = &'a ObjectRef>) -> Vec<ListKey> {
    let reads: std::collections::BTreeSet<&ObjectRef> = reads.into_iter().collect();
    let mut counts: BTreeMap<ListKey, usize> = BTreeMap::new();
    for o in reads {
        *counts
            .entry((o.kind_ref(), o.namespace.clone()))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n >= LIST_FROM)
        .map(|(key, _)| key)
        .collect()
}

/// Reads the live objects: a LIST per (kind, namespace) with two or more wanted objects, a
/// GET per other object.
async fn refresh(
    cluster: &dyn Cluster,
    scope: &Scope<'_>,
    input: DiffInput<'_>,
    parallelism: usize,
) -> Result<BTreeMap<ObjectRef, Option<Value>>, DiffError> {
    let mut groups: BTreeMap<(KindRef, Option<String>), Vec<&ObjectRef>> = BTreeMap::new();
    for o in &scope.reads {
        groups
            .entry((o.kind_ref(), o.namespace.clone()))
            .or_default()
            .push(o);
    }
    let owner = |o: &ObjectRef| -> String {
        input
            .nodes
            .iter()
            .find(|n| n.objects.iter().any(|d| &d.object == o))
            .map(|n| n.address.clone())
            .or_else(|| {
                input
                    .records
                    .iter()
                    .find(|r| &r.object == o)
                    .map(|r| r.node.clone())
            })
            .unwrap_or_default()
    };
    // The discovery said the kind was served, the server says it is not (a CRD deleted since
    // the discovery was fetched). When a CRD of this plan defines the kind, its objects are
    // absent and will be created after the CRD; otherwise the error stands (and a plan on a
    // cached discovery fetches a fresh one).
    let kind_gone = |kind: &KindRef, e: &ClusterError| {
        (e.is_not_found() || matches!(e, ClusterError::KindNotInstalled { .. }))
            && input.plan_crds.find(kind).is_some()
    };
    type Fetched = Result<Vec<(ObjectRef, Option<Value>)>, (ObjectRef, ClusterError)>;
    let fetched: Vec<Fetched> = futures::stream::iter(groups.into_iter().map(
        |((kind, namespace), objects)| async move {
            if objects.len() >= LIST_FROM {
                let items = match cluster.list_unmanaged(&kind, namespace.as_deref()).await {
                    Ok(list) => list.items,
                    Err(e) if kind_gone(&kind, &e) => Vec::new(),
                    Err(e) if e.is_not_found() => {
                        let kind = kind.clone();
                        return Err((
                            (*objects[0]).clone(),
                            ClusterError::KindNotInstalled { kind },
                        ));
                    }
                    Err(e) => return Err(((*objects[0]).clone(), e)),
                };
                let mut by_name: BTreeMap<String, Value> = items
                    .into_iter()
                    .filter_map(|item| {
                        let name = item.pointer("/metadata/name")?.as_str()?.to_owned();
                        Some((name, item))
                    })
                    .collect();
                Ok(objects
                    .into_iter()
                    .map(|o| ((*o).clone(), by_name.remove(&o.name).map(slim)))
                    .collect())
            } else {
                let mut out = Vec::new();
                for o in objects {
                    let got = match cluster.get(o).await {
                        Ok(got) => got,
                        Err(e) if kind_gone(&kind, &e) => None,
                        Err(e) => return Err(((*o).clone(), e)),
                    };
                    out.push(((*o).clone(), got.map(slim)));
                }
                Ok(out)
            }
        },
    ))
    .buffer_unordered(parallelism)
    .collect()
    .await;
    let mut live = BTreeMap::new();
    let mut first_error: Option<(ObjectRef, ClusterError)> = None;
    for f in fetched {
        match f {
            Ok(items) => live.extend(items),
            Err((o, e)) => {
                if first_error.as_ref().is_none_or(|(fo, _)| o < *fo) {
                    first_error = Some((o, e));
                }
            }
        }
    }
    if let Some((o, source)) = first_error {
        return Err(match source {
            ClusterError::KindNotInstalled { .. } => DiffError::kind_not_installed(owner(&o), o),
            source => DiffError::Cluster {
                node: owner(&o),
                object: Box::new(o),
                source,
            },
        });
    }
    Ok(live)
}

/// A live object without its managedFields (never compared, often the largest part).
fn slim(mut object: Value) -> Value {
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        meta.remove("managedFields");
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keys_are_the_kinds_and_namespaces_with_two_objects_or_more() {
        let cm = |ns: Option<&str>, name: &str| ObjectRef::new("v1", "ConfigMap", ns, name);
        let reads = [
            cm(Some("a"), "x"),
            cm(Some("a"), "y"),
            // The same object twice is read once.
            cm(Some("b"), "x"),
            cm(Some("b"), "x"),
            ObjectRef::new("v1", "Namespace", None, "a"),
            ObjectRef::new("v1", "Namespace", None, "b"),
            ObjectRef::new("v1", "Secret", Some("a"), "x"),
        ];
        assert_eq!(
            list_keys(&reads),
            vec![
                (KindRef::new("v1", "ConfigMap"), Some("a".to_owned())),
                (KindRef::new("v1", "Namespace"), None),
            ]
        );
    }
}
