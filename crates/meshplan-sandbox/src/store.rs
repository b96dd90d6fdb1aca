//! The object store: every object of the sandbox under one lock, one global resourceVersion.
//!
//! 1. Objects are `serde_json::Value`s keyed by group, resource (plural), namespace and name
//!    (cluster-scoped objects have an empty namespace), iterated in that order.
//! 2. Every write ([`State::put`], [`State::remove`]) takes the next resourceVersion, stores it
//!    in the object, appends a [`Event`] to the history and broadcasts it. Because all of this
//!    happens under the one lock, writes have one total order and watchers see them in it.
//! 3. The history keeps the most recent events so a watch from resourceVersion N can replay
//!    what happened after N; older starting points get `410 Expired`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::registry::Registry;

/// How many events the history keeps for watch replay.
pub(crate) const HISTORY_LIMIT: usize = 200_000;

/// `(group, resource, namespace, name)`.
pub(crate) type Key = (String, String, String, String);

pub(crate) fn key(group: &str, resource: &str, namespace: &str, name: &str) -> Key {
    (
        group.to_string(),
        resource.to_string(),
        namespace.to_string(),
        name.to_string(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed write.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub object: Value,
}

/// Everything behind the lock.
pub(crate) struct State {
    pub objects: BTreeMap<Key, Value>,
    /// The last resourceVersion handed out.
    pub rv: u64,
    pub history: VecDeque<Arc<Event>>,
    /// Events with a resourceVersion at or below this are no longer in the history.
    pub compacted: u64,
    pub registry: Registry,
    pub tx: broadcast::Sender<Arc<Event>>,
    /// Set on every write; the persister clears it.
    pub dirty: bool,
    /// Counts the writes that may leave an object without its owners (a removal, or an
    /// object stored with owner references): garbage collection runs only when it moved.
    pub owner_changes: u64,
    /// `owner_changes` when garbage was last collected.
    pub collected_at: u64,
}

impl State {
    pub(crate) fn new(tx: broadcast::Sender<Arc<Event>>) -> Self {
        Self {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            registry: Registry::new(),
            tx,
            dirty: false,
            // Collected once at the start (objects loaded from disk may be orphans).
            owner_changes: 1,
            collected_at: 0,
        }
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of one resource, optionally one namespace, in key order.
    pub(crate) fn list(&self, group: &str, resource: &str, namespace: Option<&str>) -> Vec<&Value> {
        let start = key(group, resource, namespace.unwrap_or(""), "");
        self.objects
            .range(start..)
            .take_while(|((g, r, ns, _), _)| {
                g == group && r == resource && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, v)| v)
            .collect()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.dirty = true;
        self.rv
    }

    fn record(&mut self, event: Event) {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        while self.history.len() > HISTORY_LIMIT {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(event);
    }

    /// Stores `object` under `key` with the next resourceVersion; returns the stored object.
    pub(crate) fn put(&mut self, key: Key, mut object: Value) -> Value {
        let rv = self.next_rv();
        set_rv(&mut object, rv);
        if object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|o| !o.is_empty())
        {
            self.owner_changes += 1;
        }
        let kind = if self.objects.contains_key(&key) {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.objects.insert(key.clone(), object.clone());
        self.record(Event {
            rv,
            kind,
            group: key.0,
            resource: key.1,
            namespace: key.2,
            object: object.clone(),
        });
        object
    }

    /// Removes the object under `key` (DELETED event carrying the new resourceVersion).
    pub(crate) fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.owner_changes += 1;
        let rv = self.next_rv();
        set_rv(&mut object, rv);
        self.record(Event {
            rv,
            kind: EventType::Deleted,
            group: key.0.clone(),
            resource: key.1.clone(),
            namespace: key.2.clone(),
            object: object.clone(),
        });
        Some(object)
    }

    /// Events after `rv` for a watch, or None when `rv` is older than the history.
    pub(crate) fn events_after(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.compacted {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Some(self.history.iter().skip(start).cloned().collect())
    }
}

/// Sets `metadata.resourceVersion`.
pub(crate) fn set_rv(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let (tx, _) = broadcast::channel(16);
        State::new(tx)
    }

    #[test]
    fn writes_take_increasing_resource_versions() {
        let mut s = state();
        let a = s.put(
            key("", "configmaps", "default", "a"),
            json!({"metadata": {}}),
        );
        let b = s.put(
            key("", "configmaps", "default", "a"),
            json!({"metadata": {}}),
        );
        assert_eq!(a["metadata"]["resourceVersion"], "1");
        assert_eq!(b["metadata"]["resourceVersion"], "2");
        let gone = s.remove(&key("", "configmaps", "default", "a"));
        assert_eq!(
            gone.map(|g| g["metadata"]["resourceVersion"].clone()),
            Some(json!("3"))
        );
        let kinds: Vec<EventType> = s.history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventType::Added, EventType::Modified, EventType::Deleted]
        );
        assert_eq!(s.events_after(1).map(|e| e.len()), Some(2));
    }

    #[test]
    fn list_filters_by_namespace_in_key_order() {
        let mut s = state();
        s.put(key("", "configmaps", "b", "x"), json!({"metadata": {}}));
        s.put(key("", "configmaps", "a", "y"), json!({"metadata": {}}));
        s.put(key("", "secrets", "a", "z"), json!({"metadata": {}}));
        assert_eq!(s.list("", "configmaps", None).len(), 2);
        assert_eq!(s.list("", "configmaps", Some("a")).len(), 1);
    }
}
