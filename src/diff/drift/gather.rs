//! Every request `meshplan drift` sends, in one place; all of them reads.
//!
//! 1. **Kinds.** One LIST per kind the state records, in all namespaces, of the objects
//!    labelled `app.kubernetes.io/managed-by=meshplan` (at most `parallelism` at a time): the
//!    live objects of the records and the candidates for unmanaged objects, managedFields
//!    included. A kind the server no longer serves has no objects.
//! 2. **Records not listed** (their label was removed, or they are gone): one GET each.
//! 3. **Schemas** of custom kinds whose CRD the state does not record: one GET of the CRD
//!    each, for the list types that key their fields.
//!
//! No dry run and no render: what was applied comes from the state.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt as _;
use serde_json::Value;

use crate::cluster::{Cluster, ClusterError, Discovery, KindRef, ObjectRef};
use crate::render::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

use super::DriftError;

/// What the reads found.
#[derive(Debug, Default)]
pub(super) struct Live {
    /// The live object of each record (None: absent).
    pub(super) objects: BTreeMap<ObjectRef, Option<Value>>,
    /// Objects labelled as meshplan's that are not the live object of a record, by kind
    /// (the candidates for unmanaged ones).
    pub(super) labelled: Vec<Value>,
    /// Kinds the server does not serve (any more).
    pub(super) gone_kinds: BTreeSet<KindRef>,
    /// CRDs read for their schemas, by (group, kind).
    pub(super) crds: BTreeMap<(String, String), Value>,
}

/// Reads the live objects of `records`, the labelled objects of their kinds, and the CRDs
/// of `custom_kinds` (looked up in `discovery` for their plural).
pub(super) async fn gather(
    cluster: &dyn Cluster,
    records: &[&ObjectRef],
    custom_kinds: &BTreeSet<KindRef>,
    discovery: &Discovery,
    parallelism: usize,
) -> Result<Live, DriftError> {
    let parallelism = parallelism.max(1);
    let kinds: BTreeSet<KindRef> = records.iter().map(|r| r.kind_ref()).collect();
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    let selector = selector.as_str();
    let listed: Vec<(KindRef, Result<Vec<Value>, ClusterError>)> =
        futures::stream::iter(kinds.into_iter().map(|kind| async move {
            let answer = cluster.list(&kind, None, Some(selector)).await;
            (kind, answer.map(|l| l.items))
        }))
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let mut live = Live::default();
    let mut listed: Vec<_> = listed;
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let wanted: BTreeSet<&ObjectRef> = records.iter().copied().collect();
    let mut found: BTreeMap<ObjectRef, Value> = BTreeMap::new();
    for (kind, answer) in listed {
        let items = match answer {
            Ok(items) => items,
            Err(e) if kind_is_gone(&e) => {
                live.gone_kinds.insert(kind);
                continue;
            }
            Err(source) => {
                return Err(DriftError::List {
                    kind: kind.to_string(),
                    source,
                });
            }
        };
        for item in items {
            match ObjectRef::from_object(&item) {
                Some(mut r) => {
                    // Lists name the kind at the version asked for.
                    r.api_version = kind.api_version.clone();
                    // A recorded object is never unmanaged: it is kept once, as the live
                    // object of its record.
                    if wanted.contains(&r) {
                        found.insert(r, item);
                    } else {
                        live.labelled.push(item);
                    }
                }
                None => live.labelled.push(item),
            }
        }
    }
    let missing: Vec<&ObjectRef> = records
        .iter()
        .copied()
        .filter(|r| !found.contains_key(*r) && !live.gone_kinds.contains(&r.kind_ref()))
        .collect();
    let fetched: Vec<(ObjectRef, Result<Option<Value>, ClusterError>)> = futures::stream::iter(
        missing
            .into_iter()
            .map(|r| async move { (r.clone(), cluster.get(r).await) }),
    )
    .buffer_unordered(parallelism)
    .collect()
    .await;
    let mut fetched = fetched;
    fetched.sort_by(|a, b| a.0.cmp(&b.0));
    for (r, answer) in fetched {
        match answer {
            Ok(object) => {
                live.objects.insert(r, object);
            }
            Err(e) if kind_is_gone(&e) => {
                live.gone_kinds.insert(r.kind_ref());
                live.objects.insert(r, None);
            }
            Err(source) => {
                return Err(DriftError::Read {
                    object: Box::new(r),
                    source,
                });
            }
        }
    }
    for r in records {
        if let Some(object) = found.remove(*r) {
            live.objects.insert((*r).clone(), Some(object));
        } else {
            live.objects.entry((*r).clone()).or_insert(None);
        }
    }
    let crds: Vec<((String, String), Option<ObjectRef>)> = custom_kinds
        .iter()
        .map(|k| {
            let name = discovery
                .find(k)
                .map(|info| format!("{}.{}", info.plural, info.group));
            (
                (k.group().to_owned(), k.kind.clone()),
                name.map(|n| {
                    ObjectRef::new(
                        "apiextensions.k8s.io/v1",
                        "CustomResourceDefinition",
                        None,
                        n,
                    )
                }),
            )
        })
        .collect();
    let read: Vec<((String, String), Option<Value>)> =
        futures::stream::iter(crds.into_iter().map(|(key, crd)| async move {
            // A CRD that cannot be read leaves its kind's lists atomic: fewer fields are
            // told apart, nothing fails.
            let object = match crd {
                Some(r) => cluster.get(&r).await.ok().flatten(),
                None => None,
            };
            (key, object)
        }))
        .buffer_unordered(parallelism)
        .collect()
        .await;
    live.crds = read
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    Ok(live)
}

/// Whether a read failed because the server does not serve the kind.
fn kind_is_gone(e: &ClusterError) -> bool {
    e.is_not_found() || matches!(e, ClusterError::KindNotInstalled { .. })
}
