//! Whether a saved change set is still what `apply` would do: [`check_current`] compares it
//! with the state, the cluster and the inputs as they are now, and with the change set planned
//! now, and says what moved ([`StaleError`]).
//!
//! In order: the state's lineage and serial, the cluster's URL, the digests of the plan files
//! and variable values; then per saved object the live resourceVersion seen at plan time and
//! the action and desired digest planned now; then every change planned now that the saved
//! change set does not hold.

use std::collections::{BTreeMap, BTreeSet};

use super::{InputDigests, SavedChangeSet, StateRef};
use crate::cluster::ObjectRef;
use crate::diff::{Action, ChangeSet, ObjectChange};

/// What a saved change set is checked against.
pub struct Now<'a> {
    /// The state's lineage and serial.
    pub state: StateRef,
    /// The API server URL.
    pub cluster: &'a str,
    /// The digests of the inputs.
    pub inputs: &'a InputDigests,
    /// The change set planned now.
    pub change_set: &'a ChangeSet,
}

/// Why a saved change set is not applied: something moved since it was planned.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StaleError {
    #[error(
        "the saved change set is stale: it was planned against state lineage {} serial {}, the state is now lineage {} serial {}",
        planned.lineage, planned.serial, now.lineage, now.serial
    )]
    #[diagnostic(help("plan again (`meshplan plan --out FILE`) and apply the new change set"))]
    State { planned: StateRef, now: StateRef },

    #[error("the saved change set was planned against {planned}, not {now}")]
    #[diagnostic(help("plan again (`meshplan plan --out FILE`) and apply the new change set"))]
    Cluster { planned: String, now: String },

    #[error(
        "the saved change set is stale: the plan file or its variable values changed since it was planned"
    )]
    #[diagnostic(help("plan again (`meshplan plan --out FILE`) and apply the new change set"))]
    Inputs,

    #[error(
        "the saved change set is stale: {node}: {object} changed in the cluster since it was planned (resourceVersion {planned} then, {} now)",
        now.as_deref().unwrap_or("absent")
    )]
    #[diagnostic(help("plan again (`meshplan plan --out FILE`) and apply the new change set"))]
    LiveObject {
        node: String,
        object: Box<ObjectRef>,
        planned: String,
        /// None: the object is gone.
        now: Option<String>,
    },

    #[error("the saved change set is stale: {node}: {object} would now be {now}")]
    #[diagnostic(help("plan again (`meshplan plan --out FILE`) and apply the new change set"))]
    Action {
        node: String,
        object: Box<ObjectRef>,
        /// What the plan does to it now (`left alone` when nothing).
        now: &'static str,
    },

    #[error(
        "the saved change set is stale: {node}: {object} {action}, which the saved change set does not say"
    )]
    #[diagnostic(help("plan again (`meshplan plan --out FILE`) and apply the new change set"))]
    Unsaved {
        node: String,
        object: Box<ObjectRef>,
        /// What the plan does to it now.
        action: &'static str,
    },
}

/// Refuses `saved` when its state or live objects moved since it was planned, or when the
/// change set planned now differs from it (see the module overview).
pub fn check_current(saved: &SavedChangeSet, now: &Now<'_>) -> Result<(), StaleError> {
    if saved.state != now.state {
        return Err(StaleError::State {
            planned: saved.state.clone(),
            now: now.state.clone(),
        });
    }
    if saved.cluster != now.cluster {
        return Err(StaleError::Cluster {
            planned: saved.cluster.clone(),
            now: now.cluster.to_owned(),
        });
    }
    if now.inputs.plan != saved.inputs.plan || now.inputs.values != saved.inputs.values {
        return Err(StaleError::Inputs);
    }
    let fresh: BTreeMap<(&str, &ObjectRef), &ObjectChange> = now
        .change_set
        .objects()
        .map(|(n, o)| ((n, &o.object), o))
        .collect();
    for (node, o) in saved.change_set.objects() {
        let planned_now = fresh.get(&(node, &o.object));
        if o.action != Action::Create
            && o.action != Action::Hook
            && let Some(planned) = &o.live_resource_version
        {
            let live = planned_now.and_then(|c| c.live_resource_version.clone());
            if live.as_ref() != Some(planned) {
                return Err(StaleError::LiveObject {
                    node: node.to_owned(),
                    object: Box::new(o.object.clone()),
                    planned: planned.clone(),
                    now: live,
                });
            }
        }
        let same = planned_now
            .is_some_and(|c| c.action == o.action && c.desired_digest == o.desired_digest);
        if !same && o.action != Action::KnownAfterApply {
            return Err(StaleError::Action {
                node: node.to_owned(),
                object: Box::new(o.object.clone()),
                now: planned_now.map_or("left alone", |c| c.action.verb()),
            });
        }
    }
    let saved_objects: BTreeSet<(&str, &ObjectRef)> = saved
        .change_set
        .objects()
        .map(|(n, o)| (n, &o.object))
        .collect();
    for (node, o) in now.change_set.objects() {
        if o.action.is_change() && !saved_objects.contains(&(node, &o.object)) {
            return Err(StaleError::Unsaved {
                node: node.to_owned(),
                object: Box::new(o.object.clone()),
                action: o.action.verb(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{NodeChange, NodeStatus};

    fn object(name: &str) -> ObjectRef {
        ObjectRef::new("v1", "ConfigMap", Some("app"), name)
    }

    fn change_set(objects: Vec<ObjectChange>) -> ChangeSet {
        ChangeSet {
            plan: "p".into(),
            nodes: vec![NodeChange {
                address: "manifest.a".into(),
                status: NodeStatus::Planned,
                objects,
                render_key: None,
                unknown_inputs: Vec::new(),
            }],
        }
    }

    fn update(name: &str, rv: &str, digest: &str) -> ObjectChange {
        let mut c = ObjectChange::new(object(name), Action::Update);
        c.live_resource_version = Some(rv.into());
        c.desired_digest = Some(digest.into());
        c
    }

    fn saved(objects: Vec<ObjectChange>) -> SavedChangeSet {
        SavedChangeSet::new(
            "plan.toml".into(),
            InputDigests {
                plan: "p1".into(),
                values: "v1".into(),
                charts: BTreeMap::new(),
            },
            StateRef {
                lineage: "l".into(),
                serial: 3,
            },
            "https://127.0.0.1:1".into(),
            Vec::new(),
            change_set(objects),
        )
    }

    fn check(saved: &SavedChangeSet, fresh: &ChangeSet) -> Result<(), StaleError> {
        check_current(
            saved,
            &Now {
                state: saved.state.clone(),
                cluster: &saved.cluster,
                inputs: &saved.inputs,
                change_set: fresh,
            },
        )
    }

    #[test]
    fn the_same_plan_is_current() {
        let s = saved(vec![update("a", "7", "d")]);
        check(&s, &s.change_set).unwrap();
    }

    #[test]
    fn a_moved_state_another_cluster_or_changed_inputs_are_stale() {
        let s = saved(vec![update("a", "7", "d")]);
        let inputs = s.inputs.clone();
        let now = |state: StateRef, cluster: &'static str| Now {
            state,
            cluster,
            inputs: &inputs,
            change_set: &s.change_set,
        };
        let moved = StateRef {
            lineage: "l".into(),
            serial: 4,
        };
        let e = check_current(&s, &now(moved, "https://127.0.0.1:1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the saved change set is stale: it was planned against state lineage l serial 3, the state is now lineage l serial 4"
        );
        let e = check_current(&s, &now(s.state.clone(), "https://10.0.0.1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the saved change set was planned against https://127.0.0.1:1, not https://10.0.0.1"
        );
        let other = InputDigests {
            values: "v2".into(),
            ..inputs.clone()
        };
        let e = check_current(
            &s,
            &Now {
                inputs: &other,
                ..now(s.state.clone(), "https://127.0.0.1:1")
            },
        )
        .unwrap_err();
        assert!(matches!(e, StaleError::Inputs), "{e}");
    }

    #[test]
    fn a_live_change_another_action_or_an_unsaved_change_are_stale() {
        let s = saved(vec![update("a", "7", "d")]);
        let e = check(&s, &change_set(vec![update("a", "8", "d")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the saved change set is stale: manifest.a: v1 ConfigMap app/a changed in the cluster since it was planned (resourceVersion 7 then, 8 now)"
        );
        let e = check(&s, &change_set(vec![])).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("(resourceVersion 7 then, absent now)"),
            "{e}"
        );
        let e = check(&s, &change_set(vec![update("a", "7", "other")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the saved change set is stale: manifest.a: v1 ConfigMap app/a would now be will be updated in place"
        );
        let added = ObjectChange::new(object("b"), Action::Create);
        let e = check(&s, &change_set(vec![update("a", "7", "d"), added])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the saved change set is stale: manifest.a: v1 ConfigMap app/b will be created, which the saved change set does not say"
        );
    }
}
