//! managedFields as the API server keeps them: FieldsV1 path elements and field sets, the
//! entries of `metadata.managedFields`, the field set of a value, and paths walked against an
//! object.
//!
//! - [`PathElement`]: one step of a field path, as FieldsV1 writes it: `f:<field>` (a field of
//!   an object), `k:<json>` (an item of an associative list, by its key fields), `v:<json>` (an
//!   item of a set list) and `i:<n>` (an item by position).
//! - [`FieldSet`]: a set of field paths (structured-merge-diff's `fieldpath.Set`), parsed from
//!   and written to FieldsV1 JSON, with the set operations server-side apply needs. A *member*
//!   is a path that is owned itself; FieldsV1 writes a member that also has owned children as
//!   `".": {}`.
//! - [`ManagedFieldsEntry`]: one entry of `metadata.managedFields` (manager, operation, time,
//!   subresource, field set), decoded and encoded.
//! - [`field_set`]: the fields a value sets (structured-merge-diff's `ToFieldSet`), with list
//!   and map types from [`ListTypes`]; [`resolve`]: the value at a path of an object.
//!
//! Pure functions over `serde_json::Value`; the API sandbox maintains managedFields with them
//! and meshplan reads them to tell which fields it owns.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::lists::{ListType, ListTypes};

/// `operation` of an entry written by server-side apply.
pub const OPERATION_APPLY: &str = "Apply";
/// `operation` of an entry written by any other write (create, update, patch).
pub const OPERATION_UPDATE: &str = "Update";

/// One step of a field path.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// `f:<name>`: a field of an object.
    Field(String),
    /// `k:<json>`: an item of an associative list, by its key fields (sorted by name).
    Key(Vec<(String, Value)>),
    /// `v:<json>`: an item of a set list.
    Value(Value),
    /// `i:<n>`: an item by position.
    Index(usize),
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            Self::Field(_) => 0,
            Self::Key(_) => 1,
            Self::Value(_) => 2,
            Self::Index(_) => 3,
        }
    }

    /// The field name of an `f:` element.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Self::Field(name) => Some(name),
            _ => None,
        }
    }

    /// The FieldsV1 key of this element.
    pub fn encode(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(fields) => {
                let mut map = Map::new();
                for (name, value) in fields {
                    map.insert(name.clone(), value.clone());
                }
                format!("k:{}", Value::Object(map))
            }
            Self::Value(value) => format!("v:{value}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; None when it is not one.
    pub fn decode(text: &str) -> Option<Self> {
        let (prefix, rest) = text.split_at_checked(2)?;
        match prefix {
            "f:" => Some(Self::Field(rest.to_string())),
            "k:" => match serde_json::from_str::<Value>(rest).ok()? {
                Value::Object(map) => {
                    let mut fields: Vec<(String, Value)> = map.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    Some(Self::Key(fields))
                }
                _ => None,
            },
            "v:" => serde_json::from_str(rest).ok().map(Self::Value),
            "i:" => rest.parse().ok().map(Self::Index),
            _ => None,
        }
    }

    /// The element in the path form of the API server's conflict messages: `.name`,
    /// `[k="v",n=1]`, `[="v"]`, `[3]`.
    pub fn display(&self) -> String {
        match self {
            Self::Field(name) => format!(".{name}"),
            Self::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value_string(value)))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            Self::Value(value) => format!("[={}]", value_string(value)),
            Self::Index(i) => format!("[{i}]"),
        }
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Field(a), Self::Field(b)) => a.cmp(b),
            (Self::Key(a), Self::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Self::Value(a), Self::Value(b)) => compare_values(a, b),
            (Self::Index(a), Self::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// The ordering structured-merge-diff gives values: numbers, strings, booleans, lists, maps,
/// null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((xk, xv), (yk, yv)) in xs.iter().zip(ys.iter()) {
                let c = xk.cmp(yk).then_with(|| compare_values(xv, yv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A value in a path: strings quoted, numbers and booleans plain.
fn value_string(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// A Go `%q`-style quoted string (JSON escaping, which agrees for printable text).
pub fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A path as the API server writes it: `.spec.containers[name="nginx"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A set of field paths: `members` are owned paths ending here, `children` hold deeper
/// paths. Children are never empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    pub members: BTreeSet<PathElement>,
    pub children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path` as a member (the empty path adds nothing).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether `path` is a member or lies below one (a field inside an atomic value owned as
    /// a whole).
    pub fn covers(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [first, rest @ ..] => {
                self.members.contains(first)
                    || self.children.get(first).is_some_and(|c| c.covers(rest))
            }
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let theirs = other.children.get(pe)?;
                let both = child.intersection(theirs);
                (!both.is_empty()).then(|| (pe.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let rest = match other.children.get(pe) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Removes every path of `self` that is in `other` or below a member of `other`.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                if other.members.contains(pe) {
                    return None;
                }
                let rest = match other.children.get(pe) {
                    Some(theirs) => child.recursive_difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// All member paths: at each level the members first, then the children, in order.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        fn walk(set: &FieldSet, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
            for pe in &set.members {
                let mut path = prefix.clone();
                path.push(pe.clone());
                out.push(path);
            }
            for (pe, child) in &set.children {
                prefix.push(pe.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// The member paths that have no member below them: the leaves of what is owned.
    pub fn leaves(&self) -> Vec<Vec<PathElement>> {
        self.paths()
            .into_iter()
            .filter(|p| {
                let below = p
                    .split_last()
                    .and_then(|(last, parents)| {
                        let mut set = self;
                        for pe in parents {
                            set = set.children.get(pe)?;
                        }
                        set.children.get(last)
                    })
                    .is_some_and(|c| !c.is_empty());
                !below
            })
            .collect()
    }

    /// The FieldsV1 JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        self.emit(false)
    }

    fn emit(&self, owned: bool) -> Value {
        let mut map = Map::new();
        if owned {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            let member = self.members.contains(pe);
            let value = match self.children.get(pe) {
                Some(child) if !child.is_empty() => child.emit(member),
                _ => Value::Object(Map::new()),
            };
            map.insert(pe.encode(), value);
        }
        Value::Object(map)
    }

    /// Parses FieldsV1 JSON; None when it is malformed.
    pub fn from_fields_v1(value: &Value) -> Option<FieldSet> {
        let map = value.as_object()?;
        let mut set = FieldSet::default();
        for (key, child) in map {
            if key == "." {
                continue;
            }
            let pe = PathElement::decode(key)?;
            let child_map = child.as_object()?;
            if child_map.is_empty() || child_map.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let sub = FieldSet::from_fields_v1(child)?;
            if !sub.is_empty() {
                set.children.insert(pe, sub);
            }
        }
        Some(set)
    }
}

// ---------------------------------------------------------------------------------------
// Typed walks over values
// ---------------------------------------------------------------------------------------

/// How a value at some path behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Scalars, atomic lists and atomic objects.
    Leaf,
    /// A granular object: every key is a field.
    Struct,
    /// A list merged as a set of scalars.
    Set,
    /// A list merged by key fields.
    Assoc(Vec<String>),
}

fn refs(fpath: &[String]) -> Vec<&str> {
    fpath.iter().map(String::as_str).collect()
}

/// The shape of `value` at the field path `fpath` (field names only, as [`ListTypes`] takes
/// them).
pub fn shape(lt: &dyn ListTypes, fpath: &[String], value: &Value) -> Shape {
    match value {
        Value::Object(_) => {
            if lt.map_is_atomic(&refs(fpath)) {
                Shape::Leaf
            } else {
                Shape::Struct
            }
        }
        Value::Array(_) => match lt.list_type(&refs(fpath)) {
            ListType::Atomic => Shape::Leaf,
            ListType::Set => Shape::Set,
            ListType::Map(keys) => Shape::Assoc(keys),
        },
        _ => Shape::Leaf,
    }
}

/// The path element of an item of the list at `fpath` whose shape is `shape`.
pub fn item_element(
    lt: &dyn ListTypes,
    shape: &Shape,
    fpath: &[String],
    item: &Value,
) -> PathElement {
    match (shape, item) {
        (Shape::Assoc(keys), Value::Object(map)) => {
            let mut fields = Vec::new();
            for key in keys {
                if let Some(value) = map.get(key) {
                    fields.push((key.clone(), value.clone()));
                } else if let Some(default) = lt.key_default(&refs(fpath), key) {
                    fields.push((key.clone(), default));
                }
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            PathElement::Key(fields)
        }
        _ => PathElement::Value(item.clone()),
    }
}

/// The items of `list` with their path elements (none when it is not a list).
pub fn items(
    lt: &dyn ListTypes,
    shape: &Shape,
    fpath: &[String],
    list: Option<&Value>,
) -> Vec<(PathElement, Value)> {
    match list {
        Some(Value::Array(list)) => list
            .iter()
            .map(|item| (item_element(lt, shape, fpath, item), item.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The fields set by `value` (structured-merge-diff `ToFieldSet`): every leaf, every item of
/// a set or associative list, every map key, and every empty object.
pub fn field_set(lt: &dyn ListTypes, value: &Value) -> FieldSet {
    let mut set = FieldSet::default();
    collect(lt, value, &mut Vec::new(), &mut Vec::new(), &mut set);
    set
}

fn collect(
    lt: &dyn ListTypes,
    value: &Value,
    fpath: &mut Vec<String>,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) {
    let shape = shape(lt, fpath, value);
    match (&shape, value) {
        (Shape::Struct, Value::Object(map)) => {
            // An empty object is owned itself (like null), so that `{}` can be applied.
            if map.is_empty() {
                set.insert(path);
            }
            let keys_are_map_keys = lt.keys_are_map_keys(&refs(fpath));
            for (key, child) in map {
                fpath.push(key.clone());
                path.push(PathElement::Field(key.clone()));
                collect(lt, child, fpath, path, set);
                if keys_are_map_keys {
                    set.insert(path);
                }
                path.pop();
                fpath.pop();
            }
        }
        (Shape::Set | Shape::Assoc(_), Value::Array(list)) => {
            for item in list {
                path.push(item_element(lt, &shape, fpath, item));
                collect(lt, item, fpath, path, set);
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// The value at `path` in `object`: `f:` steps into object fields, `k:` into the item of a
/// list whose key fields have those values (a missing key field counts as its default, e.g.
/// `protocol: TCP`), `v:` into the item equal to the value, `i:` into the item at the index.
/// None when the path leads nowhere.
pub fn resolve<'v>(
    lt: &dyn ListTypes,
    object: &'v Value,
    path: &[PathElement],
) -> Option<&'v Value> {
    let mut current = object;
    let mut fpath: Vec<String> = Vec::new();
    for pe in path {
        current = match (pe, current) {
            (PathElement::Field(name), Value::Object(map)) => {
                fpath.push(name.clone());
                map.get(name)?
            }
            (PathElement::Key(keys), Value::Array(list)) => {
                let fields = refs(&fpath);
                list.iter().find(|item| {
                    keys.iter().all(|(k, v)| match item.get(k) {
                        Some(found) => found == v,
                        None => lt.key_default(&fields, k).as_ref() == Some(v),
                    })
                })?
            }
            (PathElement::Value(v), Value::Array(list)) => list.iter().find(|item| *item == v)?,
            (PathElement::Index(i), Value::Array(list)) => list.get(*i)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The JSON pointer (RFC 6901) of `path` in `object`: `k:` and `v:` steps become the index
/// of the item they name. None when the path leads nowhere.
pub fn pointer(lt: &dyn ListTypes, object: &Value, path: &[PathElement]) -> Option<String> {
    let mut out = String::new();
    let mut current = object;
    let mut fpath: Vec<String> = Vec::new();
    for pe in path {
        let (segment, next) = match (pe, current) {
            (PathElement::Field(name), Value::Object(map)) => {
                fpath.push(name.clone());
                (name.replace('~', "~0").replace('/', "~1"), map.get(name)?)
            }
            (PathElement::Key(keys), Value::Array(list)) => {
                let fields = refs(&fpath);
                let (i, item) = list.iter().enumerate().find(|(_, item)| {
                    keys.iter().all(|(k, v)| match item.get(k) {
                        Some(found) => found == v,
                        None => lt.key_default(&fields, k).as_ref() == Some(v),
                    })
                })?;
                (i.to_string(), item)
            }
            (PathElement::Value(v), Value::Array(list)) => {
                let (i, item) = list.iter().enumerate().find(|(_, item)| *item == v)?;
                (i.to_string(), item)
            }
            (PathElement::Index(i), Value::Array(list)) => (i.to_string(), list.get(*i)?),
            _ => return None,
        };
        out.push('/');
        out.push_str(&segment);
        current = next;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------

/// One `metadata.managedFields` entry, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedFieldsEntry {
    pub manager: String,
    /// [`OPERATION_APPLY`] or [`OPERATION_UPDATE`].
    pub operation: String,
    pub api_version: String,
    /// RFC 3339, when the entry last gained fields (or was applied with changes).
    pub time: Option<String>,
    /// `status`, `scale`, ...; None for the main resource.
    pub subresource: Option<String>,
    pub set: FieldSet,
}

impl ManagedFieldsEntry {
    /// Whether the entry is the one of (manager, operation, subresource).
    pub fn has_key(&self, (manager, operation, subresource): (&str, &str, Option<&str>)) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    /// Decodes one entry; None when it is not a FieldsV1 Apply or Update entry.
    pub fn decode(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
        if let Some(kind) = map.get("fieldsType")
            && kind.as_str() != Some("FieldsV1")
        {
            return None;
        }
        let operation = text("operation")?;
        if operation != OPERATION_APPLY && operation != OPERATION_UPDATE {
            return None;
        }
        Some(Self {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            set: FieldSet::from_fields_v1(map.get("fieldsV1")?)?,
        })
    }

    /// The entry as the API server writes it.
    pub fn encode(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), Value::String(self.manager.clone()));
        map.insert("operation".into(), Value::String(self.operation.clone()));
        map.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            map.insert("time".into(), Value::String(time.clone()));
        }
        map.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        map.insert("fieldsV1".into(), self.set.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            map.insert("subresource".into(), Value::String(subresource.clone()));
        }
        Value::Object(map)
    }

    /// The API server's order: operation, time, manager, apiVersion, subresource.
    pub fn api_order(&self, other: &Self) -> Ordering {
        self.operation
            .cmp(&other.operation)
            .then_with(|| self.time.cmp(&other.time))
            .then_with(|| self.manager.cmp(&other.manager))
            .then_with(|| self.api_version.cmp(&other.api_version))
            .then_with(|| self.subresource.cmp(&other.subresource))
    }
}

/// The decoded managedFields entries of `object` (entries that do not decode are skipped).
pub fn managed_fields(object: &Value) -> Vec<ManagedFieldsEntry> {
    match object.get("metadata").and_then(|m| m.get("managedFields")) {
        Some(Value::Array(list)) => list.iter().filter_map(ManagedFieldsEntry::decode).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::lists::BuiltinListTypes;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    #[test]
    fn fields_v1_round_trips_with_dots_for_owned_parents() {
        let text = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
            }}}}
        });
        let set = FieldSet::from_fields_v1(&text).unwrap();
        assert_eq!(set.to_fields_v1(), text);
        let web = PathElement::Key(vec![("name".into(), json!("web"))]);
        let container = [
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            web.clone(),
        ];
        assert!(set.has(&container), "an item with `.` is owned itself");
        let mut image = container.to_vec();
        image.push(f("image"));
        assert!(set.has(&image));
        assert!(!set.has(&[f("metadata"), f("labels")]));
        assert_eq!(
            path_string(&image),
            ".spec.template.spec.containers[name=\"web\"].image"
        );
        // Leaves: the image and name of the item, the label; not the item itself.
        let leaves: Vec<String> = set.leaves().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            leaves,
            [
                ".metadata.labels.app",
                ".spec.template.spec.containers[name=\"web\"].image",
                ".spec.template.spec.containers[name=\"web\"].name",
            ]
        );
        assert!(FieldSet::from_fields_v1(&json!({"x:bad": {}})).is_none());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_none());
    }

    #[test]
    fn elements_decode_every_form() {
        assert_eq!(PathElement::decode("f:a.b"), Some(f("a.b")));
        assert_eq!(
            PathElement::decode("k:{\"protocol\":\"TCP\",\"containerPort\":80}"),
            Some(PathElement::Key(vec![
                ("containerPort".into(), json!(80)),
                ("protocol".into(), json!("TCP"))
            ]))
        );
        assert_eq!(
            PathElement::decode("v:\"x\""),
            Some(PathElement::Value(json!("x")))
        );
        assert_eq!(PathElement::decode("i:3"), Some(PathElement::Index(3)));
        assert_eq!(PathElement::decode("q:1"), None);
        assert_eq!(PathElement::decode("k:[1]"), None);
    }

    #[test]
    fn the_field_set_of_a_deployment_keys_containers_and_ports() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx",
                    "ports": [{"containerPort": 80}]}]}}}});
        let set = field_set(&BuiltinListTypes, &deployment);
        let paths: Vec<String> = set.leaves().iter().map(|p| path_string(p)).collect();
        assert!(paths.contains(&".spec.replicas".to_string()), "{paths:?}");
        assert!(
            paths.contains(&".spec.selector".to_string()),
            "atomic: {paths:?}"
        );
        assert!(
            paths.contains(
                &".spec.template.spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"].containerPort"
                    .to_string()
            ),
            "{paths:?}"
        );
        // Every leaf resolves in the object it came from, the defaulted protocol included.
        for path in set.paths() {
            assert!(
                resolve(&BuiltinListTypes, &deployment, &path).is_some(),
                "{}",
                path_string(&path)
            );
        }
        let port = resolve(
            &BuiltinListTypes,
            &deployment,
            &[
                f("spec"),
                f("template"),
                f("spec"),
                f("containers"),
                PathElement::Key(vec![("name".into(), json!("web"))]),
                f("image"),
            ],
        );
        assert_eq!(port, Some(&json!("nginx")));
        let image = [
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            PathElement::Key(vec![("name".into(), json!("web"))]),
            f("ports"),
            PathElement::Key(vec![
                ("containerPort".into(), json!(80)),
                ("protocol".into(), json!("TCP")),
            ]),
            f("containerPort"),
        ];
        assert_eq!(
            pointer(&BuiltinListTypes, &deployment, &image).as_deref(),
            Some("/spec/template/spec/containers/0/ports/0/containerPort")
        );
        assert_eq!(
            pointer(
                &BuiltinListTypes,
                &json!({"a/b": {"c~": 1}}),
                &[f("a/b"), f("c~")]
            )
            .as_deref(),
            Some("/a~1b/c~0")
        );
        assert_eq!(
            resolve(&BuiltinListTypes, &deployment, &[f("spec"), f("paused")]),
            None
        );
    }

    #[test]
    fn entries_decode_and_encode_as_the_api_server_writes_them() {
        let object = json!({"metadata": {"managedFields": [
            {"manager": "meshplan", "operation": "Apply", "apiVersion": "apps/v1",
             "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl", "operation": "Update", "apiVersion": "autoscaling/v1",
             "time": "2025-01-02T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}, "subresource": "scale"},
            {"manager": "odd", "operation": "Patch", "fieldsV1": {}}
        ]}});
        let entries = managed_fields(&object);
        assert_eq!(entries.len(), 2, "an unknown operation is skipped");
        assert!(entries[1].has_key(("kubectl", OPERATION_UPDATE, Some("scale"))));
        assert!(entries[0].set.has(&[f("spec"), f("replicas")]));
        assert_eq!(entries[1].encode(), object["metadata"]["managedFields"][1]);
        assert_eq!(entries[0].api_order(&entries[1]), Ordering::Less);
    }

    #[test]
    fn covers_sees_fields_inside_an_owned_atomic_value() {
        let set = FieldSet::from_fields_v1(&json!({"f:spec": {"f:selector": {}}})).unwrap();
        assert!(set.covers(&[f("spec"), f("selector"), f("matchLabels"), f("app")]));
        assert!(!set.covers(&[f("spec"), f("replicas")]));
    }
}
