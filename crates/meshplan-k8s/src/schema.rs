//! CustomResource structural schemas: pruning, defaulting and validation, as the API server
//! applies them to custom resources (`openAPIV3Schema` of a CRD version).
//!
//! Pure functions over `serde_json::Value`; the HTTP layer compiles one [`Structural`] per
//! served CRD version and calls it on every write of a custom resource.
//!
//! CONTRACT (stable; the HTTP layer is written against it):
//! - Paths are dotted from the object root, list items as `[i]`:
//!   `spec.endpoints[0].relabelings[1].sourceLabels`.
//! - `apiVersion`, `kind` and `metadata` are never pruned or reported unknown (metadata is
//!   validated by the caller, not here).
//! - `x-kubernetes-preserve-unknown-fields: true` keeps unknown fields below that node;
//!   `x-kubernetes-int-or-string`, `x-kubernetes-embedded-resource`, `additionalProperties`
//!   (schema or bool), `nullable` are honoured.
//!
//! Behaviour, following apiextensions-apiserver and kube-openapi:
//! - [`Structural::compile`] checks the structural rules that matter for the rest (a `type`
//!   everywhere outside value validations unless int-or-string or preserve-unknown-fields,
//!   `object` at the root, `items` present and a single schema, `properties` and
//!   `additionalProperties` not both, valid `pattern`s, list-type markers consistent). Errors
//!   are worded like the CRD validation's, with paths from `openAPIV3Schema`
//!   (`openAPIV3Schema.properties[spec].type: Required value: ...`); the caller prefixes
//!   `spec.versions[i].schema.`. [`compile_errors`] gives them one by one.
//! - Pruning drops every field that no `properties`/`additionalProperties` declares, unless a
//!   `x-kubernetes-preserve-unknown-fields` node (or `additionalProperties: true`) keeps it;
//!   embedded resources keep `apiVersion`, `kind` and `metadata`.
//! - Defaulting (after pruning) sets `default` where a property is absent, or null while not
//!   `nullable`, then recurses into the result (nested defaults apply too); a non-nullable
//!   null without default is dropped, as the API server does.
//! - Validation messages are kube-openapi's, converted to field errors as apiextensions does:
//!   a wrong type reports the observed type (`spec.size: Invalid value: "string": spec.size in
//!   body must be of type integer: "string"`), `required` → `spec.name: Required value`,
//!   `enum` → `Unsupported value: "x": supported values: "a", "b"`, bounds → `should be less
//!   than or equal to 10`, `maxItems` → `Too many: 5: must have at most 3 items`, `maxLength`
//!   → `Too long: may not be more than 5 bytes`, set/map lists with duplicates → `Duplicate
//!   value: ...`. A wrong type stops the checks below that node (only `enum` still runs).
//!   Strings stop at their first failing check (maxLength, minLength, pattern), as
//!   kube-openapi's string validator does.
//! - `allOf`/`anyOf`/`oneOf`/`not` are validated loosely: allOf reports every branch's errors;
//!   anyOf (and oneOf with no valid branch) reports `"<path>" must validate at least one
//!   schema (anyOf)` (resp. `one and only one schema (oneOf). Found none valid`) plus the
//!   errors of the branch closest to matching; `not` reports `must not validate the schema
//!   (not)`. Real API servers put these composite messages on a `<nil>` field; here the field
//!   is the node's path.
//! - Formats: `date-time` (RFC 3339, loosely), `date`, `uuid` and `byte` are checked on
//!   strings; `int32`, `int64`, `float`, `double` and unknown formats are accepted (as the API
//!   server does: it does not range-check int32).
//! - Field ownership ([`ListTypes`]): `x-kubernetes-list-type` and `-list-map-keys` for
//!   lists, `x-kubernetes-map-type: atomic` for objects owned as a whole, and map keys for
//!   objects of `additionalProperties` (or preserve-unknown-fields without properties).
//! - Not implemented: CEL rules (`x-kubernetes-validations`), validation and pruning of
//!   `default` values at compile time, the ObjectMeta pruning of embedded resources' `metadata`, ratcheting of unchanged
//!   invalid values on update.

use regex::Regex;
use serde_json::{Map, Value};

use crate::go::{go_float, go_quote, go_sharp, go_value};
use crate::lists::{BuiltinListTypes, ListType, ListTypes};

/// One validation failure, in the shape of a `StatusCause` of a 422 Invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueTypeInvalid`
    /// (also `FieldValueTooLong`, `FieldValueTooMany`, `FieldValueDuplicate`).
    pub reason: &'static str,
    /// Dotted path, e.g. `spec.size`.
    pub field: String,
    /// The message as the API server words it, e.g.
    /// `spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"`
    /// or `spec.name: Required value`.
    pub message: String,
}

impl FieldError {
    fn new(reason: &'static str, field: &str, body: String) -> Self {
        FieldError {
            reason,
            field: field.to_string(),
            message: format!("{field}: {body}"),
        }
    }

    fn required(field: &str, detail: &str) -> Self {
        let body = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Self::new("FieldValueRequired", field, body)
    }

    fn invalid(field: &str, value: &str, detail: &str) -> Self {
        Self::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {value}: {detail}"),
        )
    }

    fn type_invalid(field: &str, value: &str, detail: &str) -> Self {
        Self::new(
            "FieldValueTypeInvalid",
            field,
            format!("Invalid value: {value}: {detail}"),
        )
    }
}

/// The kind of a schema node (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "boolean" => Type::Boolean,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::Boolean => "boolean",
        }
    }
}

/// `additionalProperties`.
#[derive(Debug, Clone)]
enum Additional {
    /// Not given: undeclared fields are unknown.
    Absent,
    /// `true`: any field is kept as is.
    Any,
    /// `false`: no other field.
    Forbidden,
    /// A schema for every field not in `properties` (maps).
    Schema(Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Atomic,
    Set,
    Map,
}

#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    regex: Regex,
}

/// One compiled schema node.
#[derive(Debug, Clone)]
struct Node {
    ty: Option<Type>,
    properties: Vec<(String, Node)>,
    additional: Additional,
    items: Option<Box<Node>>,
    preserve_unknown: bool,
    int_or_string: bool,
    embedded: bool,
    nullable: bool,
    required: Vec<String>,
    enumeration: Option<Vec<Value>>,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    multiple_of: Option<f64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    pattern: Option<Pattern>,
    format: Option<String>,
    default: Option<Value>,
    list_kind: Option<ListKind>,
    list_map_keys: Vec<String>,
    /// `x-kubernetes-map-type: atomic`.
    map_atomic: bool,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
}

impl Node {
    fn empty() -> Self {
        Node {
            ty: None,
            properties: Vec::new(),
            additional: Additional::Absent,
            items: None,
            preserve_unknown: false,
            int_or_string: false,
            embedded: false,
            nullable: false,
            required: Vec::new(),
            enumeration: None,
            minimum: None,
            exclusive_minimum: false,
            maximum: None,
            exclusive_maximum: false,
            multiple_of: None,
            min_length: None,
            max_length: None,
            min_items: None,
            max_items: None,
            unique_items: false,
            min_properties: None,
            max_properties: None,
            pattern: None,
            format: None,
            default: None,
            list_kind: None,
            list_map_keys: Vec::new(),
            map_atomic: false,
            all_of: Vec::new(),
            any_of: Vec::new(),
            one_of: Vec::new(),
            not: None,
        }
    }

    fn property(&self, name: &str) -> Option<&Node> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, node)| node)
    }

    /// The schema of field `name` of an object of this node: its property, or the
    /// `additionalProperties` schema.
    fn field_schema(&self, name: &str) -> Option<&Node> {
        self.property(name).or(match &self.additional {
            Additional::Schema(node) => Some(node),
            _ => None,
        })
    }

    /// Whether undeclared fields of an object of this node are kept.
    fn keeps_unknown(&self) -> bool {
        self.preserve_unknown || matches!(self.additional, Additional::Any)
    }
}

/// A compiled structural schema of one CRD version.
#[derive(Debug, Clone)]
pub struct Structural {
    root: Node,
}

/// Fields of an object root (and of embedded resources) that the schema never prunes.
const RESOURCE_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

impl Structural {
    /// Compiles `openAPIV3Schema`. Err: a message saying what is not structural.
    pub fn compile(open_api_v3_schema: &Value) -> Result<Self, String> {
        let mut errors = Vec::new();
        let root = compile_root(open_api_v3_schema, &mut errors);
        if errors.is_empty() {
            Ok(Structural { root })
        } else if errors.len() == 1 {
            Err(errors.remove(0))
        } else {
            Err(format!("[{}]", errors.join(", ")))
        }
    }

    /// Paths of fields not declared in the schema (what strict field validation reports
    /// and what pruning would remove), in document order.
    pub fn unknown_fields(&self, object: &Value) -> Vec<String> {
        let mut out = Vec::new();
        unknown_walk(&self.root, object, "", true, &mut out);
        out
    }

    /// Removes fields not declared in the schema (structural pruning).
    pub fn prune(&self, object: &mut Value) {
        prune_walk(&self.root, object, true);
    }

    /// Fills `default` values of the schema where fields are absent (after pruning).
    ///
    /// As the API server does, a `null` of a property that is not `nullable` counts as
    /// absent: it is replaced by the property's default, or dropped when there is none.
    pub fn apply_defaults(&self, object: &mut Value) {
        default_walk(&self.root, object, true);
    }

    /// Validates type, required, enum, minimum/maximum (exclusive too), minLength/maxLength,
    /// minItems/maxItems, pattern, format (int32/int64/date-time loosely), nullable.
    pub fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut list_errors = Vec::new();
        validate_node(&self.root, object, "", true, &mut errors, &mut list_errors);
        errors.extend(list_errors);
        errors
    }

    /// The schema's printer-independent list markers, for server-side apply
    /// (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`).
    pub fn list_types(&self) -> &dyn ListTypes {
        self
    }

    /// Whether the schema declares a field at `path` (field names only, list items skipped),
    /// e.g. `["status"]`.
    pub fn has_field(&self, path: &[&str]) -> bool {
        self.node_at(path).is_some()
    }

    /// The field names the schema declares for the object at `path` (field names only, list
    /// items skipped), in schema order; empty when the path is not declared or holds no
    /// object. For "did you mean" on unknown fields.
    pub fn declared_fields(&self, path: &[&str]) -> Vec<String> {
        let Some(mut node) = self.node_at(path) else {
            return Vec::new();
        };
        while node.ty == Some(Type::Array) {
            match &node.items {
                Some(items) => node = items,
                None => return Vec::new(),
            }
        }
        node.properties
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn node_at(&self, path: &[&str]) -> Option<&Node> {
        let mut node = &self.root;
        for segment in path {
            while node.ty == Some(Type::Array) {
                match &node.items {
                    Some(items) => node = items,
                    None => return None,
                }
            }
            node = node.field_schema(segment)?;
        }
        Some(node)
    }
}

impl ListTypes for Structural {
    fn list_type(&self, path: &[&str]) -> ListType {
        match self.node_at(path) {
            Some(node) => match node.list_kind {
                Some(ListKind::Set) => ListType::Set,
                Some(ListKind::Map) => ListType::Map(node.list_map_keys.clone()),
                Some(ListKind::Atomic) | None => ListType::Atomic,
            },
            None => ListType::Atomic,
        }
    }

    fn map_is_atomic(&self, path: &[&str]) -> bool {
        self.node_at(path).is_some_and(|node| node.map_atomic)
    }

    fn keys_are_map_keys(&self, path: &[&str]) -> bool {
        self.node_at(path).is_some_and(|node| {
            matches!(node.additional, Additional::Schema(_) | Additional::Any)
                || (node.preserve_unknown && node.properties.is_empty())
        })
    }
}

/// The list rules of a custom resource: object metadata's are built in
/// ([`BuiltinListTypes`]), the rest comes from the CRD's schema.
pub struct CustomResourceListTypes<'a> {
    pub schema: &'a Structural,
}

impl CustomResourceListTypes<'_> {
    /// The rules for `path`.
    fn rules(&self, path: &[&str]) -> &dyn ListTypes {
        if path.first() == Some(&"metadata") {
            &BuiltinListTypes
        } else {
            self.schema
        }
    }
}

impl ListTypes for CustomResourceListTypes<'_> {
    fn list_type(&self, path: &[&str]) -> ListType {
        self.rules(path).list_type(path)
    }

    fn map_is_atomic(&self, path: &[&str]) -> bool {
        self.rules(path).map_is_atomic(path)
    }

    fn keys_are_map_keys(&self, path: &[&str]) -> bool {
        self.rules(path).keys_are_map_keys(path)
    }

    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        self.rules(path).key_default(path, key)
    }
}

/// The structural-schema errors of `openAPIV3Schema`, one message each (empty when it
/// compiles).
pub fn compile_errors(open_api_v3_schema: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    compile_root(open_api_v3_schema, &mut errors);
    errors
}

// ---------------------------------------------------------------------------------------------
// Compilation

const ROOT_PATH: &str = "openAPIV3Schema";
const SUPPORTED_TYPES: &str =
    "\"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Root,
    Property,
    Items,
    AdditionalProperties,
    /// Inside `allOf`/`anyOf`/`oneOf`/`not`: value validation only, no type needed.
    ValueValidation,
}

fn compile_root(schema: &Value, errors: &mut Vec<String>) -> Node {
    if !schema.is_object() {
        errors.push(format!(
            "{ROOT_PATH}: Required value: must be a schema object"
        ));
        return Node::empty();
    }
    compile_node(schema, ROOT_PATH, Position::Root, errors)
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn non_negative(
    schema: &Map<String, Value>,
    key: &str,
    path: &str,
    errors: &mut Vec<String>,
) -> Option<u64> {
    let value = schema.get(key)?;
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    if let Some(f) = value.as_f64()
        && f >= 0.0
        && f.fract() == 0.0
    {
        return Some(f as u64);
    }
    errors.push(format!(
        "{path}.{key}: Invalid value: {}: must be a non-negative integer",
        go_value(value)
    ));
    None
}

fn number(
    schema: &Map<String, Value>,
    key: &str,
    path: &str,
    errors: &mut Vec<String>,
) -> Option<f64> {
    let value = schema.get(key)?;
    match value.as_f64() {
        Some(n) => Some(n),
        None => {
            errors.push(format!(
                "{path}.{key}: Invalid value: {}: must be a number",
                go_value(value)
            ));
            None
        }
    }
}

/// `exclusiveMinimum`/`exclusiveMaximum`: a bool (OpenAPI v3.0) or, leniently, a number
/// (newer JSON Schema) that replaces the bound.
fn exclusive(schema: &Map<String, Value>, key: &str, bound: &mut Option<f64>) -> bool {
    match schema.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(value) => match value.as_f64() {
            Some(n) => {
                *bound = Some(n);
                true
            }
            None => false,
        },
        None => false,
    }
}

fn compile_node(value: &Value, path: &str, position: Position, errors: &mut Vec<String>) -> Node {
    let mut node = Node::empty();
    let Some(schema) = value.as_object() else {
        errors.push(format!(
            "{path}: Invalid value: {}: must be a schema object",
            go_value(value)
        ));
        return node;
    };

    if schema.contains_key("$ref") {
        errors.push(format!("{path}.$ref: Forbidden: $ref is not supported"));
    }
    for forbidden in [
        "patternProperties",
        "additionalItems",
        "dependencies",
        "definitions",
    ] {
        if schema.contains_key(forbidden) {
            errors.push(format!(
                "{path}.{forbidden}: Forbidden: {forbidden} is not supported"
            ));
        }
    }

    node.preserve_unknown = flag(schema, "x-kubernetes-preserve-unknown-fields");
    node.map_atomic = schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
    node.int_or_string = flag(schema, "x-kubernetes-int-or-string");
    node.embedded = flag(schema, "x-kubernetes-embedded-resource");
    node.nullable = flag(schema, "nullable");
    node.unique_items = flag(schema, "uniqueItems");

    match schema.get("type") {
        None => {}
        Some(Value::String(t)) if t.is_empty() => {}
        Some(Value::String(t)) => match Type::parse(t) {
            Some(ty) => node.ty = Some(ty),
            None => errors.push(format!(
                "{path}.type: Unsupported value: {}: supported values: {SUPPORTED_TYPES}",
                go_quote(t)
            )),
        },
        Some(other) => errors.push(format!(
            "{path}.type: Invalid value: {}: must be a string",
            go_value(other)
        )),
    }

    // Structural rules.
    let type_missing = match schema.get("type") {
        None => true,
        Some(Value::String(t)) => t.is_empty(),
        Some(_) => false,
    };
    if position == Position::Root {
        match node.ty {
            None if !type_missing => {}
            None => errors.push(format!(
                "{path}.type: Required value: must not be empty at the root"
            )),
            Some(Type::Object) => {}
            Some(other) => errors.push(format!(
                "{path}.type: Invalid value: {}: must be object at the root",
                go_quote(other.name())
            )),
        }
    } else if position != Position::ValueValidation
        && type_missing
        && !node.int_or_string
        && !node.preserve_unknown
    {
        let what = match position {
            Position::Items => "must not be empty for specified array items",
            _ => "must not be empty for specified object fields",
        };
        errors.push(format!("{path}.type: Required value: {what}"));
    }
    if node.int_or_string
        && let Some(ty) = node.ty
    {
        errors.push(format!(
            "{path}.type: Invalid value: {}: must be empty if x-kubernetes-int-or-string is true",
            go_quote(ty.name())
        ));
    }
    if node.embedded && node.ty != Some(Type::Object) && position != Position::ValueValidation {
        errors.push(format!(
            "{path}.type: Required value: must be object if x-kubernetes-embedded-resource is true"
        ));
    }

    // Object keywords.
    if let Some(props) = schema.get("properties") {
        match props.as_object() {
            Some(props) => {
                for (name, prop) in props {
                    let child_path = format!("{path}.properties[{name}]");
                    let child = compile_node(
                        prop,
                        &child_path,
                        sub_position(position, Position::Property),
                        errors,
                    );
                    node.properties.push((name.clone(), child));
                }
            }
            None => errors.push(format!(
                "{path}.properties: Invalid value: {}: must be an object",
                go_value(props)
            )),
        }
    }
    match schema.get("additionalProperties") {
        None => {}
        Some(Value::Bool(true)) => node.additional = Additional::Any,
        Some(Value::Bool(false)) => node.additional = Additional::Forbidden,
        Some(sub) => {
            let child_path = format!("{path}.additionalProperties");
            let child = compile_node(
                sub,
                &child_path,
                sub_position(position, Position::AdditionalProperties),
                errors,
            );
            node.additional = Additional::Schema(Box::new(child));
        }
    }
    if !node.properties.is_empty()
        && matches!(node.additional, Additional::Schema(_) | Additional::Any)
    {
        errors.push(format!(
            "{path}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        ));
    }
    if let Some(required) = schema.get("required") {
        match required.as_array() {
            Some(names) => {
                for name in names {
                    match name.as_str() {
                        Some(n) => node.required.push(n.to_string()),
                        None => errors.push(format!(
                            "{path}.required: Invalid value: {}: must be a list of strings",
                            go_value(required)
                        )),
                    }
                }
            }
            None => errors.push(format!(
                "{path}.required: Invalid value: {}: must be a list of strings",
                go_value(required)
            )),
        }
    }
    node.min_properties = non_negative(schema, "minProperties", path, errors);
    node.max_properties = non_negative(schema, "maxProperties", path, errors);

    // Array keywords.
    match schema.get("items") {
        None => {
            if node.ty == Some(Type::Array) && position != Position::ValueValidation {
                errors.push(format!("{path}.items: Required value: must be specified"));
            }
        }
        Some(Value::Array(_)) => errors.push(format!(
            "{path}.items: Forbidden: items must be a schema object and not an array"
        )),
        Some(items) => {
            let child_path = format!("{path}.items");
            let child = compile_node(
                items,
                &child_path,
                sub_position(position, Position::Items),
                errors,
            );
            node.items = Some(Box::new(child));
        }
    }
    node.min_items = non_negative(schema, "minItems", path, errors);
    node.max_items = non_negative(schema, "maxItems", path, errors);

    // List markers.
    match schema.get("x-kubernetes-list-type") {
        None => {}
        Some(Value::String(kind)) => {
            node.list_kind = match kind.as_str() {
                "atomic" => Some(ListKind::Atomic),
                "set" => Some(ListKind::Set),
                "map" => Some(ListKind::Map),
                other => {
                    errors.push(format!(
                        "{path}.x-kubernetes-list-type: Unsupported value: {}: supported values: \"atomic\", \"set\", \"map\"",
                        go_quote(other)
                    ));
                    None
                }
            };
            if node.list_kind.is_some() && node.ty != Some(Type::Array) {
                errors.push(format!(
                    "{path}.x-kubernetes-list-type: Invalid value: {}: must only be used if type is array",
                    go_quote(kind)
                ));
            }
        }
        Some(other) => errors.push(format!(
            "{path}.x-kubernetes-list-type: Invalid value: {}: must be a string",
            go_value(other)
        )),
    }
    if let Some(keys) = schema.get("x-kubernetes-list-map-keys") {
        match keys.as_array() {
            Some(list) => {
                for key in list {
                    if let Some(k) = key.as_str() {
                        node.list_map_keys.push(k.to_string());
                    }
                }
            }
            None => errors.push(format!(
                "{path}.x-kubernetes-list-map-keys: Invalid value: {}: must be a list of strings",
                go_value(keys)
            )),
        }
    }
    check_list_markers(&node, path, errors);

    // Scalar keywords.
    node.minimum = number(schema, "minimum", path, errors);
    node.maximum = number(schema, "maximum", path, errors);
    node.exclusive_minimum = exclusive(schema, "exclusiveMinimum", &mut node.minimum);
    node.exclusive_maximum = exclusive(schema, "exclusiveMaximum", &mut node.maximum);
    node.multiple_of = number(schema, "multipleOf", path, errors);
    if let Some(factor) = node.multiple_of
        && factor <= 0.0
    {
        errors.push(format!(
            "{path}.multipleOf: Invalid value: {}: must be greater than zero",
            go_float(factor)
        ));
    }
    node.min_length = non_negative(schema, "minLength", path, errors);
    node.max_length = non_negative(schema, "maxLength", path, errors);
    if let Some(pattern) = schema.get("pattern") {
        match pattern.as_str() {
            Some(source) => match Regex::new(source) {
                Ok(regex) => {
                    node.pattern = Some(Pattern {
                        source: source.to_string(),
                        regex,
                    })
                }
                Err(e) => errors.push(format!(
                    "{path}.pattern: Invalid value: {}: must be a valid regular expression, but isn't: {}",
                    go_quote(source),
                    one_line(&e.to_string())
                )),
            },
            None => errors.push(format!(
                "{path}.pattern: Invalid value: {}: must be a string",
                go_value(pattern)
            )),
        }
    }
    node.format = schema
        .get("format")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
        .map(str::to_string);
    if let Some(values) = schema.get("enum") {
        match values.as_array() {
            Some(list) => node.enumeration = Some(list.clone()),
            None => errors.push(format!(
                "{path}.enum: Invalid value: {}: must be a list",
                go_value(values)
            )),
        }
    }
    node.default = schema.get("default").cloned();
    if node.default.is_some() && position == Position::ValueValidation {
        errors.push(format!(
            "{path}.default: Forbidden: must not be set inside allOf, anyOf, oneOf or not"
        ));
    }

    // Value validations.
    for (key, target) in [("allOf", 0), ("anyOf", 1), ("oneOf", 2)] {
        let Some(list) = schema.get(key) else {
            continue;
        };
        let Some(list) = list.as_array() else {
            errors.push(format!(
                "{path}.{key}: Invalid value: {}: must be a list",
                go_value(list)
            ));
            continue;
        };
        let compiled: Vec<Node> = list
            .iter()
            .enumerate()
            .map(|(i, sub)| {
                compile_node(
                    sub,
                    &format!("{path}.{key}[{i}]"),
                    Position::ValueValidation,
                    errors,
                )
            })
            .collect();
        match target {
            0 => node.all_of = compiled,
            1 => node.any_of = compiled,
            _ => node.one_of = compiled,
        }
    }
    if let Some(sub) = schema.get("not") {
        node.not = Some(Box::new(compile_node(
            sub,
            &format!("{path}.not"),
            Position::ValueValidation,
            errors,
        )));
    }
    node
}

fn sub_position(parent: Position, child: Position) -> Position {
    if parent == Position::ValueValidation {
        Position::ValueValidation
    } else {
        child
    }
}

fn check_list_markers(node: &Node, path: &str, errors: &mut Vec<String>) {
    match node.list_kind {
        Some(ListKind::Map) => {
            if node.list_map_keys.is_empty() {
                errors.push(format!(
                    "{path}.x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
                ));
            }
            if let Some(items) = &node.items {
                if items.ty != Some(Type::Object) {
                    errors.push(format!(
                        "{path}.items.type: Invalid value: {}: must be object if parent array's x-kubernetes-list-type is map",
                        go_quote(items.ty.map(Type::name).unwrap_or(""))
                    ));
                } else {
                    for key in &node.list_map_keys {
                        match items.property(key) {
                            None => errors.push(format!(
                                "{path}.x-kubernetes-list-map-keys: Invalid value: {}: entries must all be names of item properties",
                                go_quote(key)
                            )),
                            Some(prop) => {
                                if matches!(prop.ty, Some(Type::Object) | Some(Type::Array)) {
                                    errors.push(format!(
                                        "{path}.items.properties[{key}].type: Invalid value: {}: must be a scalar type if parent array's x-kubernetes-list-type is map",
                                        go_quote(prop.ty.map(Type::name).unwrap_or(""))
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        Some(ListKind::Set) => {
            if let Some(items) = &node.items
                && matches!(items.ty, Some(Type::Object) | Some(Type::Array))
            {
                errors.push(format!(
                    "{path}.items.type: Invalid value: {}: must be a scalar type if parent array's x-kubernetes-list-type is set",
                    go_quote(items.ty.map(Type::name).unwrap_or(""))
                ));
            }
            if !node.list_map_keys.is_empty() {
                errors.push(format!(
                    "{path}.x-kubernetes-list-map-keys: Forbidden: must not be set if x-kubernetes-list-type is not map"
                ));
            }
        }
        Some(ListKind::Atomic) | None => {
            if !node.list_map_keys.is_empty() {
                errors.push(format!(
                    "{path}.x-kubernetes-list-map-keys: Forbidden: must not be set if x-kubernetes-list-type is not map"
                ));
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// Pruning and unknown fields

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Whether `name` of an object at this node is one of the resource fields kept implicitly.
fn is_resource_field(node: &Node, root: bool, name: &str) -> bool {
    (root || node.embedded) && RESOURCE_FIELDS.contains(&name)
}

fn unknown_walk(node: &Node, value: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                if is_resource_field(node, root, name) {
                    if let Some(schema) = node.property(name).filter(|_| name != "metadata") {
                        unknown_walk(schema, child, &child_path(path, name), false, out);
                    }
                    continue;
                }
                match node.field_schema(name) {
                    Some(schema) => {
                        unknown_walk(schema, child, &child_path(path, name), false, out)
                    }
                    None => {
                        if !node.keeps_unknown() {
                            out.push(child_path(path, name));
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = &node.items {
                for (i, item) in items.iter().enumerate() {
                    unknown_walk(schema, item, &index_path(path, i), false, out);
                }
            }
        }
        _ => {}
    }
}

fn prune_walk(node: &Node, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let keep_unknown = node.keeps_unknown();
            map.retain(|name, _| {
                is_resource_field(node, root, name)
                    || keep_unknown
                    || node.field_schema(name).is_some()
            });
            for (name, child) in map.iter_mut() {
                if is_resource_field(node, root, name) {
                    if name != "metadata"
                        && let Some(schema) = node.property(name)
                    {
                        prune_walk(schema, child, false);
                    }
                    continue;
                }
                if let Some(schema) = node.field_schema(name) {
                    prune_walk(schema, child, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = &node.items {
                for item in items.iter_mut() {
                    prune_walk(schema, item, false);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Defaulting

fn default_walk(node: &Node, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            // A null of a non-nullable property without default is dropped (apiextensions
            // `PruneNonNullableNullsWithoutDefaults`); with a default it is defaulted below.
            map.retain(|name, child| {
                !(child.is_null()
                    && !(root && name == "metadata")
                    && node
                        .property(name)
                        .is_some_and(|p| p.default.is_none() && !p.nullable))
            });
            for (name, prop) in &node.properties {
                let Some(default) = &prop.default else {
                    continue;
                };
                if root && name == "metadata" {
                    continue;
                }
                let absent = match map.get(name) {
                    None => true,
                    Some(Value::Null) => !prop.nullable,
                    Some(_) => false,
                };
                if absent {
                    map.insert(name.clone(), default.clone());
                }
            }
            for (name, child) in map.iter_mut() {
                if root && name == "metadata" {
                    continue;
                }
                if let Some(schema) = node.field_schema(name) {
                    default_walk(schema, child, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(schema) = &node.items {
                for item in items.iter_mut() {
                    default_walk(schema, item, false);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// The JSON type name kube-openapi infers for a value.
fn observed_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(ty: Type, value: &Value) -> bool {
    match (ty, value) {
        (Type::Object, Value::Object(_)) => true,
        (Type::Array, Value::Array(_)) => true,
        (Type::String, Value::String(_)) => true,
        (Type::Boolean, Value::Bool(_)) => true,
        (Type::Number, Value::Number(_)) => true,
        (Type::Integer, Value::Number(n)) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => false,
    }
}

fn validate_node(
    node: &Node,
    value: &Value,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
    list_errors: &mut Vec<FieldError>,
) {
    if value.is_null() {
        if node.ty.is_some() && !node.nullable {
            let detail = format!(
                "{path} in body must be of type {}: \"null\"",
                node.ty.map(Type::name).unwrap_or("")
            );
            errors.push(FieldError::type_invalid(path, "\"null\"", &detail));
        }
        check_enum(node, value, path, errors);
        return;
    }

    if let Some(ty) = node.ty {
        if !type_matches(ty, value) {
            let observed = observed_type(value);
            let detail = format!(
                "{path} in body must be of type {}: \"{observed}\"",
                ty.name()
            );
            errors.push(FieldError::type_invalid(path, &go_quote(observed), &detail));
            check_enum(node, value, path, errors);
            return;
        }
    } else if node.int_or_string
        && node.any_of.is_empty()
        && node.one_of.is_empty()
        && !matches!(observed_type(value), "integer" | "string")
    {
        let observed = observed_type(value);
        let detail = format!("{path} in body must be of type integer,string: \"{observed}\"");
        errors.push(FieldError::type_invalid(path, &go_quote(observed), &detail));
        return;
    }

    validate_composites(node, value, path, errors);

    match value {
        Value::String(s) => {
            validate_string(node, s, path, errors);
            validate_format(node, s, path, errors);
        }
        Value::Number(_) => validate_number(node, value, path, errors),
        Value::Array(items) => validate_array(node, items, path, errors, list_errors),
        _ => {}
    }

    check_enum(node, value, path, errors);

    if let Value::Object(map) = value {
        validate_object(node, map, path, root, errors, list_errors);
    }
}

fn validate_composites(node: &Node, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let run = |sub: &Node| {
        let mut errs = Vec::new();
        let mut list_errs = Vec::new();
        validate_node(sub, value, path, false, &mut errs, &mut list_errs);
        errs.extend(list_errs);
        errs
    };
    for sub in &node.all_of {
        errors.extend(run(sub));
    }
    if !node.any_of.is_empty() {
        let results: Vec<Vec<FieldError>> = node.any_of.iter().map(run).collect();
        if !results.iter().any(Vec::is_empty) {
            errors.push(FieldError::invalid(
                path,
                "\"\"",
                &format!(
                    "{} must validate at least one schema (anyOf)",
                    go_quote(path)
                ),
            ));
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                errors.extend(best);
            }
        }
    }
    if !node.one_of.is_empty() {
        let results: Vec<Vec<FieldError>> = node.one_of.iter().map(run).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid == 0 {
            errors.push(FieldError::invalid(
                path,
                "\"\"",
                &format!(
                    "{} must validate one and only one schema (oneOf). Found none valid",
                    go_quote(path)
                ),
            ));
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                errors.extend(best);
            }
        } else if valid > 1 {
            errors.push(FieldError::invalid(
                path,
                "\"\"",
                &format!(
                    "{} must validate one and only one schema (oneOf). Found {valid} valid alternatives",
                    go_quote(path)
                ),
            ));
        }
    }
    if let Some(sub) = &node.not
        && run(sub).is_empty()
    {
        errors.push(FieldError::invalid(
            path,
            "\"\"",
            &format!("{} must not validate the schema (not)", go_quote(path)),
        ));
    }
}

fn validate_string(node: &Node, s: &str, path: &str, errors: &mut Vec<FieldError>) {
    let length = s.chars().count() as u64;
    if let Some(max) = node.max_length
        && length > max
    {
        errors.push(FieldError::new(
            "FieldValueTooLong",
            path,
            format!(
                "Too long: may not be more than {max} {}",
                if max == 1 { "byte" } else { "bytes" }
            ),
        ));
        return;
    }
    if let Some(min) = node.min_length
        && length < min
    {
        errors.push(FieldError::invalid(
            path,
            &go_quote(s),
            &format!("{path} in body should be at least {min} chars long"),
        ));
        return;
    }
    if let Some(pattern) = &node.pattern
        && !pattern.regex.is_match(s)
    {
        errors.push(FieldError::invalid(
            path,
            &go_quote(s),
            &format!("{path} in body should match '{}'", pattern.source),
        ));
    }
}

fn validate_format(node: &Node, s: &str, path: &str, errors: &mut Vec<FieldError>) {
    let Some(format) = node.format.as_deref() else {
        return;
    };
    let ok = match format {
        "date-time" | "datetime" => is_date_time(s),
        "date" => is_date(s),
        "uuid" => is_uuid(s),
        "byte" => is_base64(s),
        _ => true,
    };
    if !ok {
        errors.push(FieldError::type_invalid(
            path,
            &go_quote(s),
            &format!("{path} in body must be of type {format}: {}", go_quote(s)),
        ));
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    y.len() == 4
        && m.len() == 2
        && d.len() == 2
        && digits(y).is_some()
        && digits(m).is_some_and(|m| (1..=12).contains(&m))
        && digits(d).is_some_and(|d| (1..=31).contains(&d))
}

/// RFC 3339 date-time, loosely: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, `t`/space accepted as
/// separator, zone optional (kube-openapi accepts a local time too).
fn is_date_time(s: &str) -> bool {
    // ASCII only, which also keeps the byte slicing below on character boundaries.
    if !s.is_ascii() {
        return false;
    }
    let Some(split) = s.find(['T', 't', ' ']) else {
        return false;
    };
    let (date, rest) = (&s[..split], &s[split + 1..]);
    if !is_date(date) || rest.len() < 8 {
        return false;
    }
    let (clock, mut zone) = rest.split_at(8);
    let parts: Vec<&str> = clock.split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return false;
    };
    let valid_clock = h.len() == 2
        && m.len() == 2
        && sec.len() == 2
        && digits(h).is_some_and(|h| h < 24)
        && digits(m).is_some_and(|m| m < 60)
        && digits(sec).is_some_and(|s| s <= 60);
    if !valid_clock {
        return false;
    }
    if let Some(frac) = zone.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if end == 0 {
            return false;
        }
        zone = &frac[end..];
    }
    if zone.is_empty() || zone == "Z" || zone == "z" {
        return true;
    }
    let Some(offset) = zone.strip_prefix(['+', '-']) else {
        return false;
    };
    let compact: String = offset.chars().filter(|c| *c != ':').collect();
    compact.len() == 4
        && digits(&compact[..2]).is_some_and(|h| h < 24)
        && digits(&compact[2..]).is_some_and(|m| m < 60)
        && (offset.len() == 4 || offset.as_bytes().get(2) == Some(&b':'))
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn validate_number(node: &Node, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Value::Number(n) = value else { return };
    let integer = n
        .as_i64()
        .or_else(|| n.as_u64().map(|u| u.min(i64::MAX as u64) as i64));
    let shown = go_value(value);

    if let Some(factor) = node.multiple_of {
        let bad = match integer {
            Some(i) if factor.fract() == 0.0 && factor >= 1.0 => i % (factor as i64) != 0,
            _ => {
                let data = n.as_f64().unwrap_or(0.0);
                let mult = data / factor;
                !(mult.is_finite() && mult.fract() == 0.0)
            }
        };
        if bad {
            let factor_text = match integer {
                Some(_) => format!("{}", factor as i64),
                None => go_float(factor),
            };
            errors.push(FieldError::invalid(
                path,
                &shown,
                &format!("{path} in body should be a multiple of {factor_text}"),
            ));
        }
    }
    if let Some(min) = node.minimum {
        let (bad, bound) = match integer {
            Some(i) => {
                let m = min as i64;
                (
                    if node.exclusive_minimum {
                        i <= m
                    } else {
                        i < m
                    },
                    m.to_string(),
                )
            }
            None => {
                let d = n.as_f64().unwrap_or(0.0);
                (
                    if node.exclusive_minimum {
                        d <= min
                    } else {
                        d < min
                    },
                    go_float(min),
                )
            }
        };
        if bad {
            let words = if node.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errors.push(FieldError::invalid(
                path,
                &shown,
                &format!("{path} in body should be {words} {bound}"),
            ));
        }
    }
    if let Some(max) = node.maximum {
        let (bad, bound) = match integer {
            Some(i) => {
                let m = max as i64;
                (
                    if node.exclusive_maximum {
                        i >= m
                    } else {
                        i > m
                    },
                    m.to_string(),
                )
            }
            None => {
                let d = n.as_f64().unwrap_or(0.0);
                (
                    if node.exclusive_maximum {
                        d >= max
                    } else {
                        d > max
                    },
                    go_float(max),
                )
            }
        };
        if bad {
            let words = if node.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            errors.push(FieldError::invalid(
                path,
                &shown,
                &format!("{path} in body should be {words} {bound}"),
            ));
        }
    }
}

fn validate_array(
    node: &Node,
    items: &[Value],
    path: &str,
    errors: &mut Vec<FieldError>,
    list_errors: &mut Vec<FieldError>,
) {
    if let Some(schema) = &node.items {
        for (i, item) in items.iter().enumerate() {
            validate_node(
                schema,
                item,
                &index_path(path, i),
                false,
                errors,
                list_errors,
            );
        }
    }
    let size = items.len() as u64;
    if let Some(min) = node.min_items
        && size < min
    {
        errors.push(FieldError::invalid(
            path,
            &size.to_string(),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = node.max_items
        && size > max
    {
        errors.push(FieldError::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {size}: must have at most {max} items"),
        ));
    }
    if node.unique_items
        && items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].iter().any(|b| json_equal(a, b)))
    {
        errors.push(FieldError::invalid(
            path,
            "\"\"",
            &format!("{path} in body shouldn't contain duplicates"),
        ));
    }
    match node.list_kind {
        Some(ListKind::Set) => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].iter().any(|b| json_equal(item, b)) {
                    list_errors.push(FieldError::new(
                        "FieldValueDuplicate",
                        &index_path(path, i),
                        format!("Duplicate value: {}", go_value(item)),
                    ));
                }
            }
        }
        Some(ListKind::Map) => {
            let key_of = |item: &Value| -> Option<Map<String, Value>> {
                let object = item.as_object()?;
                let mut key = Map::new();
                for k in &node.list_map_keys {
                    if let Some(v) = object.get(k) {
                        key.insert(k.clone(), v.clone());
                    } else if let Some(default) = node
                        .items
                        .as_ref()
                        .and_then(|s| s.property(k))
                        .and_then(|p| p.default.clone())
                    {
                        key.insert(k.clone(), default);
                    }
                }
                Some(key)
            };
            let keys: Vec<Option<Map<String, Value>>> = items.iter().map(key_of).collect();
            for (i, key) in keys.iter().enumerate() {
                let Some(key) = key else { continue };
                if keys[..i].iter().flatten().any(|other| other == key) {
                    list_errors.push(FieldError::new(
                        "FieldValueDuplicate",
                        &index_path(path, i),
                        format!("Duplicate value: {}", go_sharp(&Value::Object(key.clone()))),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn validate_object(
    node: &Node,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
    list_errors: &mut Vec<FieldError>,
) {
    for name in &node.required {
        if !map.contains_key(name) {
            errors.push(FieldError::required(&child_path(path, name), ""));
        }
    }
    let count = map.len() as u64;
    if let Some(max) = node.max_properties
        && count > max
    {
        errors.push(FieldError::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {count}: must have at most {max} items"),
        ));
    }
    if let Some(min) = node.min_properties
        && count < min
    {
        errors.push(FieldError::invalid(
            path,
            &count.to_string(),
            &format!("{path} in body should have at least {min} properties"),
        ));
    }
    if node.embedded {
        for key in ["apiVersion", "kind"] {
            let missing = match map.get(key) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if missing {
                errors.push(FieldError::required(
                    &child_path(path, key),
                    "must not be empty",
                ));
            }
        }
    }
    for (name, child) in map {
        if (root || node.embedded) && name == "metadata" {
            continue;
        }
        if let Some(schema) = node.property(name) {
            validate_node(
                schema,
                child,
                &child_path(path, name),
                false,
                errors,
                list_errors,
            );
        } else if let Additional::Schema(schema) = &node.additional {
            validate_node(
                schema,
                child,
                &child_path(path, name),
                false,
                errors,
                list_errors,
            );
        } else if matches!(node.additional, Additional::Forbidden)
            && !is_resource_field(node, root, name)
        {
            errors.push(FieldError::invalid(
                path,
                &go_quote(name),
                &format!("{path}.{name} in body is a forbidden property"),
            ));
        }
    }
}

fn check_enum(node: &Node, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(values) = &node.enumeration else {
        return;
    };
    if values.iter().any(|allowed| json_equal(allowed, value)) {
        return;
    }
    let supported: Vec<String> = values
        .iter()
        .map(|v| match v {
            Value::String(s) => go_quote(s),
            other => go_quote(&other.to_string()),
        })
        .collect();
    let detail = if supported.is_empty() {
        String::new()
    } else {
        format!(": supported values: {}", supported.join(", "))
    };
    errors.push(FieldError::new(
        "FieldValueNotSupported",
        path,
        format!("Unsupported value: {}{detail}", go_value(value)),
    ));
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(schema: Value) -> Structural {
        Structural::compile(&schema).unwrap()
    }

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(|e| e.message.clone()).collect()
    }

    fn widget() -> Structural {
        compile(json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 3, "maxLength": 8, "pattern": "^[a-z]+$"},
                        "size": {"type": "integer"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "exclusiveMaximum": true, "maximum": 1},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "note": {"type": "string", "nullable": true},
                        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "when": {"type": "string", "format": "date-time"},
                        "count": {"type": "integer", "format": "int32"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                 "properties": {"known": {"type": "integer"}}},
                        "settings": {"type": "object", "default": {},
                                     "properties": {"level": {"type": "string", "default": "info"},
                                                    "debug": {"type": "boolean"}}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                  "x-kubernetes-list-map-keys": ["port", "protocol"],
                                  "items": {"type": "object", "required": ["port"],
                                            "properties": {"port": {"type": "integer"},
                                                           "protocol": {"type": "string", "default": "TCP"},
                                                           "name": {"type": "string"}}}},
                        "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
                    }
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        }))
    }

    fn cr(spec: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": spec})
    }

    // ----- field ownership

    #[test]
    fn ownership_rules_come_from_the_schema_markers() {
        let s = widget();
        assert_eq!(
            s.list_type(&["spec", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(s.list_type(&["spec", "finalizers"]), ListType::Set);
        assert_eq!(s.list_type(&["spec", "tags"]), ListType::Atomic);
        assert!(
            s.keys_are_map_keys(&["spec", "labels"]),
            "additionalProperties"
        );
        assert!(
            !s.keys_are_map_keys(&["spec", "free"]),
            "declares properties"
        );
        assert!(!s.keys_are_map_keys(&["spec", "settings"]));
        assert!(!s.map_is_atomic(&["spec", "settings"]));
        let atomic = compile(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                             "properties": {"matchLabels": {"type": "object",
                                 "additionalProperties": {"type": "string"}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}));
        assert!(atomic.map_is_atomic(&["spec", "selector"]));
        assert!(atomic.keys_are_map_keys(&["spec", "extra"]));
    }

    #[test]
    fn declared_fields_name_the_fields_of_an_object_or_list_items() {
        let s = widget();
        assert_eq!(
            s.declared_fields(&["spec", "ports"]),
            ["port", "protocol", "name"]
        );
        assert!(
            s.declared_fields(&["spec"])
                .contains(&"replicas".to_string())
        );
        assert!(s.declared_fields(&["spec", "nope"]).is_empty());
        assert!(s.declared_fields(&["spec", "size"]).is_empty());
    }

    // ----- messages as the API server words them

    #[test]
    fn wrong_type_reports_observed_type() {
        let errors = widget().validate(&cr(json!({"name": "abc", "size": "big"})));
        assert_eq!(
            messages(&errors),
            vec![
                r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#
            ]
        );
        assert_eq!(errors[0].reason, "FieldValueTypeInvalid");
        assert_eq!(errors[0].field, "spec.size");
        let errors = widget().validate(&cr(json!({"name": "abc", "labels": ["x"]})));
        assert_eq!(
            messages(&errors),
            vec![
                r#"spec.labels: Invalid value: "array": spec.labels in body must be of type object: "array""#
            ]
        );
    }

    #[test]
    fn maximum_and_minimum_messages() {
        let errors = widget().validate(&cr(json!({"name": "abc", "replicas": 11})));
        assert_eq!(
            messages(&errors),
            vec![
                "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
            ]
        );
        assert_eq!(errors[0].reason, "FieldValueInvalid");
        let errors = widget().validate(&cr(json!({"name": "abc", "replicas": 0})));
        assert_eq!(
            messages(&errors),
            vec![
                "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"
            ]
        );
        let errors = widget().validate(&cr(json!({"name": "abc", "ratio": 1.0})));
        assert_eq!(
            messages(&errors),
            vec!["spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"]
        );
        let errors = widget().validate(&cr(json!({"name": "abc", "ratio": 0})));
        assert_eq!(
            messages(&errors),
            vec!["spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"]
        );
        assert!(
            widget()
                .validate(&cr(json!({"name": "abc", "ratio": 0.5})))
                .is_empty()
        );
    }

    #[test]
    fn required_message() {
        let errors = widget().validate(&cr(json!({"size": 1})));
        assert_eq!(messages(&errors), vec!["spec.name: Required value"]);
        assert_eq!(errors[0].reason, "FieldValueRequired");
    }

    #[test]
    fn enum_message() {
        let errors = widget().validate(&cr(json!({"name": "abc", "mode": "x"})));
        assert_eq!(
            messages(&errors),
            vec![r#"spec.mode: Unsupported value: "x": supported values: "a", "b""#]
        );
        assert_eq!(errors[0].reason, "FieldValueNotSupported");
        let errors = widget().validate(&cr(json!({"name": "abc", "mode": 5})));
        assert_eq!(
            messages(&errors),
            vec![
                r#"spec.mode: Invalid value: "integer": spec.mode in body must be of type string: "integer""#,
                r#"spec.mode: Unsupported value: 5: supported values: "a", "b""#
            ]
        );
    }

    #[test]
    fn string_checks_stop_at_first_failure() {
        let w = widget();
        assert_eq!(
            messages(&w.validate(&cr(json!({"name": "ab"})))),
            vec![
                r#"spec.name: Invalid value: "ab": spec.name in body should be at least 3 chars long"#
            ]
        );
        assert_eq!(
            messages(&w.validate(&cr(json!({"name": "ABCDEFGHIJ"})))),
            vec!["spec.name: Too long: may not be more than 8 bytes"]
        );
        assert_eq!(
            messages(&w.validate(&cr(json!({"name": "ABC"})))),
            vec!["spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"]
        );
        assert_eq!(
            w.validate(&cr(json!({"name": "ABCDEFGHIJ"})))[0].reason,
            "FieldValueTooLong"
        );
        // maxLength counts characters, not bytes.
        assert!(w.validate(&cr(json!({"name": "abcdefgh"}))).is_empty());
    }

    #[test]
    fn array_bounds() {
        let w = widget();
        let errors = w.validate(&cr(json!({"name": "abc", "tags": []})));
        assert_eq!(
            messages(&errors),
            vec!["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"]
        );
        let errors = w.validate(&cr(
            json!({"name": "abc", "tags": ["a", "b", "c", "d", "e"]}),
        ));
        assert_eq!(
            messages(&errors),
            vec!["spec.tags: Too many: 5: must have at most 3 items"]
        );
        assert_eq!(errors[0].reason, "FieldValueTooMany");
        let errors = w.validate(&cr(json!({"name": "abc", "tags": ["a", 1]})));
        assert_eq!(
            messages(&errors),
            vec![
                r#"spec.tags[1]: Invalid value: "integer": spec.tags[1] in body must be of type string: "integer""#
            ]
        );
    }

    #[test]
    fn null_and_nullable() {
        let w = widget();
        assert!(
            w.validate(&cr(json!({"name": "abc", "note": null})))
                .is_empty()
        );
        assert_eq!(
            messages(&w.validate(&cr(json!({"name": "abc", "size": null})))),
            vec![
                r#"spec.size: Invalid value: "null": spec.size in body must be of type integer: "null""#
            ]
        );
    }

    #[test]
    fn integral_floats_are_integers_and_ints_are_numbers() {
        let w = widget();
        assert!(
            w.validate(&cr(json!({"name": "abc", "size": 3.0})))
                .is_empty()
        );
        assert_eq!(
            messages(&w.validate(&cr(json!({"name": "abc", "size": 3.5})))),
            vec![
                r#"spec.size: Invalid value: "number": spec.size in body must be of type integer: "number""#
            ]
        );
        assert!(
            w.validate(&cr(json!({"name": "abc", "ratio": 0.25})))
                .is_empty()
        );
    }

    #[test]
    fn int_or_string() {
        let w = widget();
        assert!(
            w.validate(&cr(json!({"name": "abc", "port": 8080})))
                .is_empty()
        );
        assert!(
            w.validate(&cr(json!({"name": "abc", "port": "http"})))
                .is_empty()
        );
        let errors = w.validate(&cr(json!({"name": "abc", "port": true})));
        assert_eq!(
            messages(&errors)[0],
            r#"spec.port: Invalid value: "": "spec.port" must validate at least one schema (anyOf)"#
        );
        assert!(messages(&errors)[1].contains("must be of type integer: \"boolean\""));
        // Without anyOf the int-or-string marker alone still restricts the type.
        let s = compile(
            json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true}}}),
        );
        assert_eq!(
            messages(&s.validate(&json!({"p": {"a": 1}}))),
            vec![
                r#"p: Invalid value: "object": p in body must be of type integer,string: "object""#
            ]
        );
    }

    #[test]
    fn formats() {
        let w = widget();
        for ok in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.123+02:00",
            "2024-01-02t03:04:05-0700",
        ] {
            assert!(
                w.validate(&cr(json!({"name": "abc", "when": ok})))
                    .is_empty(),
                "{ok}"
            );
        }
        assert_eq!(
            messages(&w.validate(&cr(json!({"name": "abc", "when": "yesterday"})))),
            vec![
                r#"spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday""#
            ]
        );
        assert!(
            !w.validate(&cr(json!({"name": "abc", "when": "2024-13-02T03:04:05Z"})))
                .is_empty()
        );
        for bad in [
            "2024-01-02T03:04:05+1é1",
            "2024-01-02Té3:04:05Z",
            "2024-01-02T03:04:05+01:6é",
            "2024-01-02",
            "2024-01-02T03:04",
            "2024-01-02T03:04:05.Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(is_base64("aGVsbG8="));
        assert!(!is_base64("aGVsbG8"));
        assert!(is_date("2024-02-29"));
        assert!(!is_date("2024-2-29"));
        // int32 is not range-checked (the API server does not either).
        assert!(
            w.validate(&cr(json!({"name": "abc", "count": 9_999_999_999_i64})))
                .is_empty()
        );
    }

    #[test]
    fn additional_properties_schema_validates_map_values() {
        let errors = widget().validate(&cr(json!({"name": "abc", "labels": {"a": "x", "b": 2}})));
        assert_eq!(
            messages(&errors),
            vec![
                r#"spec.labels.b: Invalid value: "integer": spec.labels.b in body must be of type string: "integer""#
            ]
        );
    }

    #[test]
    fn list_duplicates_for_set_and_map() {
        let errors = widget().validate(&cr(json!({
            "name": "abc",
            "finalizers": ["a", "b", "a"],
            "ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}]
        })));
        assert_eq!(
            messages(&errors),
            vec![
                r#"spec.finalizers[2]: Duplicate value: "a""#,
                r#"spec.ports[1]: Duplicate value: map[string]interface {}{"port":80, "protocol":"TCP"}"#,
            ]
        );
        assert!(errors.iter().all(|e| e.reason == "FieldValueDuplicate"));
    }

    #[test]
    fn embedded_resource() {
        let w = widget();
        let object = cr(json!({"name": "abc", "template": {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"x": "y", "bogus": 1}
        }}));
        assert_eq!(w.unknown_fields(&object), vec!["spec.template.spec.bogus"]);
        assert!(w.validate(&object).is_empty());
        let mut pruned = object.clone();
        w.prune(&mut pruned);
        assert_eq!(
            pruned["spec"]["template"],
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"x": "y"}})
        );
        let errors = w.validate(&cr(json!({"name": "abc", "template": {"spec": {}}})));
        assert_eq!(
            messages(&errors),
            vec![
                "spec.template.apiVersion: Required value: must not be empty",
                "spec.template.kind: Required value: must not be empty"
            ]
        );
    }

    // ----- pruning and unknown fields

    #[test]
    fn unknown_fields_in_document_order() {
        let w = widget();
        let object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "whatever": true},
            "zeta": 1,
            "spec": {"name": "abc", "foo": 1, "labels": {"any": "x"}, "free": {"anything": {"deep": 1}, "known": 2},
                     "ports": [{"port": 1, "extra": true}], "settings": {"level": "x", "colour": "red"}},
            "status": {"phase": "Ok", "other": 1}
        });
        assert_eq!(
            w.unknown_fields(&object),
            vec![
                "zeta",
                "spec.foo",
                "spec.ports[0].extra",
                "spec.settings.colour",
                "status.other"
            ]
        );
    }

    #[test]
    fn prune_removes_unknown_and_keeps_resource_fields() {
        let w = widget();
        let mut object = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "whatever": true},
            "zeta": 1,
            "spec": {"name": "abc", "foo": 1, "free": {"anything": {"deep": 1}, "known": 2},
                     "ports": [{"port": 1, "extra": true}]}
        });
        w.prune(&mut object);
        assert_eq!(
            object,
            json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w1", "whatever": true},
                "spec": {"name": "abc", "free": {"anything": {"deep": 1}, "known": 2}, "ports": [{"port": 1}]}
            })
        );
        assert!(w.unknown_fields(&object).is_empty());
    }

    #[test]
    fn object_without_properties_prunes_everything() {
        let s = compile(json!({"type": "object", "properties": {"spec": {"type": "object"}}}));
        let mut object = json!({"spec": {"a": 1}});
        assert_eq!(s.unknown_fields(&object), vec!["spec.a"]);
        s.prune(&mut object);
        assert_eq!(object, json!({"spec": {}}));
    }

    #[test]
    fn additional_properties_true_keeps_fields() {
        let s = compile(
            json!({"type": "object", "properties": {"spec": {"type": "object", "additionalProperties": true}}}),
        );
        let object = json!({"spec": {"a": {"b": 1}}});
        assert!(s.unknown_fields(&object).is_empty());
    }

    // ----- defaults

    #[test]
    fn defaults_apply_where_absent_and_recursively() {
        let w = widget();
        let mut object = cr(json!({"name": "abc", "mode": null, "ports": [{"port": 80}]}));
        w.apply_defaults(&mut object);
        assert_eq!(object["spec"]["replicas"], json!(1));
        assert_eq!(
            object["spec"]["mode"],
            json!("a"),
            "null of a non-nullable field is defaulted"
        );
        assert_eq!(
            object["spec"]["settings"],
            json!({"level": "info"}),
            "defaults inside a defaulted object apply"
        );
        assert_eq!(
            object["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP"})
        );
        assert!(w.validate(&object).is_empty());

        let mut kept = cr(json!({"name": "abc", "replicas": 5, "settings": {"level": "debug"}}));
        w.apply_defaults(&mut kept);
        assert_eq!(kept["spec"]["replicas"], json!(5));
        assert_eq!(kept["spec"]["settings"], json!({"level": "debug"}));

        let mut nulls =
            cr(json!({"name": "abc", "size": null, "note": null, "labels": {"a": null}}));
        w.apply_defaults(&mut nulls);
        assert!(
            nulls["spec"].get("size").is_none(),
            "non-nullable null without default is dropped"
        );
        assert_eq!(nulls["spec"]["note"], Value::Null, "nullable null is kept");
        assert_eq!(
            nulls["spec"]["labels"],
            json!({"a": null}),
            "map entries are not properties"
        );

        let s = compile(
            json!({"type": "object", "properties": {"n": {"type": "string", "nullable": true, "default": "d"}}}),
        );
        let mut nullable = json!({"n": null});
        s.apply_defaults(&mut nullable);
        assert_eq!(
            nullable,
            json!({"n": null}),
            "null of a nullable field stays"
        );
    }

    // ----- list types

    #[test]
    fn list_types_by_path() {
        let w = widget();
        let lt = w.list_types();
        assert_eq!(
            lt.list_type(&["spec", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(lt.list_type(&["spec", "finalizers"]), ListType::Set);
        assert_eq!(lt.list_type(&["spec", "tags"]), ListType::Atomic);
        assert_eq!(lt.list_type(&["spec", "nothing"]), ListType::Atomic);
        assert!(w.has_field(&["status", "phase"]));
        assert!(!w.has_field(&["status", "nope"]));
        let nested = compile(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "groups": {"type": "array", "items": {"type": "object", "properties": {
                "rules": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}}}}}}),
        );
        assert_eq!(
            nested.list_type(&["spec", "groups", "rules"]),
            ListType::Map(vec!["name".into()])
        );
    }

    // ----- composite value validations

    #[test]
    fn composite_validations_are_tolerated_loosely() {
        let s = compile(json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            "not": {"required": ["c"]},
            "allOf": [{"properties": {"a": {"maxLength": 2}}}]
        }}}));
        assert!(s.validate(&json!({"spec": {"a": "x"}})).is_empty());
        assert_eq!(
            messages(&s.validate(&json!({"spec": {"a": "x", "b": "y"}}))),
            vec![
                r#"spec: Invalid value: "": "spec" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
            ]
        );
        let errors = messages(&s.validate(&json!({"spec": {}})));
        assert_eq!(
            errors[0],
            r#"spec: Invalid value: "": "spec" must validate one and only one schema (oneOf). Found none valid"#
        );
        assert_eq!(errors[1], "spec.a: Required value");
        assert_eq!(
            messages(&s.validate(&json!({"spec": {"a": "xyz"}}))),
            vec!["spec.a: Too long: may not be more than 2 bytes"]
        );
        let with_c = json!({"spec": {"a": "x", "c": 1}});
        assert_eq!(
            messages(&s.validate(&with_c)),
            vec![r#"spec: Invalid value: "": "spec" must not validate the schema (not)"#]
        );
    }

    // ----- compile errors

    #[test]
    fn compile_rejects_non_structural_schemas() {
        let cases = [
            (
                json!({"type": "string"}),
                r#"openAPIV3Schema.type: Invalid value: "string": must be object at the root"#,
            ),
            (
                json!({"properties": {}}),
                "openAPIV3Schema.type: Required value: must not be empty at the root",
            ),
            (
                json!({"type": "object", "properties": {"spec": {"properties": {}}}}),
                "openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
            ),
            (
                json!({"type": "object", "properties": {"l": {"type": "array"}}}),
                "openAPIV3Schema.properties[l].items: Required value: must be specified",
            ),
            (
                json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}}),
                "openAPIV3Schema.properties[l].items.type: Required value: must not be empty for specified array items",
            ),
            (
                json!({"type": "object", "properties": {"l": {"type": "array", "items": [{"type": "string"}]}}}),
                "openAPIV3Schema.properties[l].items: Forbidden: items must be a schema object and not an array",
            ),
            (
                json!({"type": "object", "properties": {"m": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
                "openAPIV3Schema.properties[m].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            ),
            (
                json!({"type": "object", "properties": {"t": {"type": "text"}}}),
                r#"openAPIV3Schema.properties[t].type: Unsupported value: "text": supported values: "array", "boolean", "integer", "number", "object", "string""#,
            ),
            (
                json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}}}}),
                "openAPIV3Schema.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
            ),
            (
                json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true, "type": "string"}}}),
                r#"openAPIV3Schema.properties[p].type: Invalid value: "string": must be empty if x-kubernetes-int-or-string is true"#,
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(compile_errors(&schema), vec![want.to_string()], "{schema}");
            assert_eq!(Structural::compile(&schema).unwrap_err(), want);
        }
        let bad_pattern =
            json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "("}}});
        let err = Structural::compile(&bad_pattern).unwrap_err();
        assert!(err.starts_with(r#"openAPIV3Schema.properties[s].pattern: Invalid value: "(": must be a valid regular expression, but isn't: "#), "{err}");
        let two = json!({"type": "object", "properties": {"a": {}, "b": {}}});
        assert_eq!(
            Structural::compile(&two)
                .unwrap_err()
                .matches("Required value")
                .count(),
            2
        );
        // Typeless nodes are fine with preserve-unknown-fields, and inside value validations.
        assert!(compile_errors(&json!({"type": "object", "properties": {"x": {"x-kubernetes-preserve-unknown-fields": true}},
                                      "anyOf": [{"required": ["x"]}]})).is_empty());
    }

    // ----- Go formatting helpers

    #[test]
    fn go_formatting() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_value(&json!(null)), "\"null\"");
        assert_eq!(
            go_value(&json!({"b": [1, "x"], "a": null})),
            r#"map[string]interface {}{"a":interface {}(nil), "b":[]interface {}{1, "x"}}"#
        );
    }

    // ----- the PodMonitor fixture

    fn podmonitor_crd() -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/crds/podmonitor.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        serde_saphyr::from_str::<Value>(&text).unwrap()
    }

    fn podmonitor_schema() -> Structural {
        let crd = podmonitor_crd();
        assert_eq!(crd["spec"]["names"]["kind"], "PodMonitor");
        assert_eq!(crd["spec"]["versions"][0]["name"], "v1");
        Structural::compile(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]).unwrap()
    }

    /// The proxy PodMonitor Linkerd's documentation publishes for a self-managed Prometheus.
    fn linkerd_proxy_podmonitor() -> Value {
        json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": "linkerd-proxy", "namespace": "linkerd-viz",
                         "labels": {"app": "linkerd", "release": "prometheus"}},
            "spec": {
                "selector": {"matchLabels": {"linkerd.io/control-plane-ns": "linkerd"}},
                "namespaceSelector": {"any": true},
                "podMetricsEndpoints": [{
                    "port": "linkerd-admin",
                    "relabelings": [
                        {"sourceLabels": ["__meta_kubernetes_pod_container_name"], "action": "keep", "regex": "^linkerd-proxy$"},
                        {"sourceLabels": ["__meta_kubernetes_namespace"], "action": "replace", "targetLabel": "namespace"},
                        {"sourceLabels": ["__meta_kubernetes_pod_name"], "action": "replace", "targetLabel": "pod"},
                        {"sourceLabels": ["__meta_kubernetes_pod_label_linkerd_io_proxy_job"], "action": "replace", "targetLabel": "k8s_job"},
                        {"action": "labeldrop", "regex": "__meta_kubernetes_pod_label_linkerd_io_proxy_job"},
                        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_linkerd_io_proxy_(.+)"},
                        {"action": "labeldrop", "regex": "__meta_kubernetes_pod_label_linkerd_io_proxy_(.+)"},
                        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_linkerd_io_(.+)"},
                        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)", "replacement": "__tmp_pod_label_$1"},
                        {"action": "labelmap", "regex": "__tmp_pod_label_linkerd_io_(.+)", "replacement": "__tmp_pod_label_$1"},
                        {"action": "labeldrop", "regex": "__tmp_pod_label_linkerd_io_(.+)"},
                        {"action": "labelmap", "regex": "__tmp_pod_label_(.+)"}
                    ]
                }]
            }
        })
    }

    #[test]
    fn podmonitor_fixture_compiles() {
        let schema = podmonitor_schema();
        assert_eq!(
            schema.list_type(&["status", "bindings"]),
            ListType::Map(vec![
                "group".into(),
                "resource".into(),
                "name".into(),
                "namespace".into()
            ])
        );
        assert_eq!(
            schema.list_type(&["spec", "scrapeProtocols"]),
            ListType::Set
        );
        assert_eq!(
            schema.list_type(&["spec", "podMetricsEndpoints", "relabelings"]),
            ListType::Atomic
        );
        assert!(schema.has_field(&["spec", "podMetricsEndpoints", "relabelings", "sourceLabels"]));
    }

    #[test]
    fn linkerd_podmonitor_validates_cleanly() {
        let schema = podmonitor_schema();
        let mut object = linkerd_proxy_podmonitor();
        assert!(
            schema.unknown_fields(&object).is_empty(),
            "{:?}",
            schema.unknown_fields(&object)
        );
        let before = object.clone();
        schema.prune(&mut object);
        assert_eq!(object, before, "nothing to prune");
        schema.apply_defaults(&mut object);
        assert_eq!(
            object["spec"]["podMetricsEndpoints"][0]["relabelings"][11]["action"],
            "labelmap"
        );
        assert!(
            schema.validate(&object).is_empty(),
            "{:?}",
            schema.validate(&object)
        );
    }

    #[test]
    fn misspelled_relabeling_field_is_unknown() {
        let schema = podmonitor_schema();
        let mut object = linkerd_proxy_podmonitor();
        let relabeling = &mut object["spec"]["podMetricsEndpoints"][0]["relabelings"][0];
        let labels = relabeling["sourceLabels"].take();
        let relabeling = relabeling.as_object_mut().unwrap();
        relabeling.remove("sourceLabels");
        relabeling.insert("sourceLabel".into(), labels);
        assert_eq!(
            schema.unknown_fields(&object),
            vec!["spec.podMetricsEndpoints[0].relabelings[0].sourceLabel"]
        );
        schema.prune(&mut object);
        assert!(
            object["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
                .get("sourceLabel")
                .is_none()
        );
        assert!(schema.unknown_fields(&object).is_empty());
    }

    #[test]
    fn podmonitor_defaults_and_violations() {
        let schema = podmonitor_schema();
        let mut object = json!({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "m"},
            "spec": {
                "selector": {},
                "podMetricsEndpoints": [{
                    "portNumber": 70000,
                    "scheme": "ftp",
                    "interval": "30 seconds",
                    "targetPort": 9090,
                    "relabelings": [{"sourceLabels": ["bad-label"]}],
                    "bearerTokenSecret": {"name": "s"}
                }]
            }
        });
        schema.apply_defaults(&mut object);
        assert_eq!(
            object["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"],
            "replace"
        );
        assert_eq!(
            object["spec"]["podMetricsEndpoints"][0]["bearerTokenSecret"]["name"],
            "s"
        );
        let errors = messages(&schema.validate(&object));
        let p = "spec.podMetricsEndpoints[0]";
        for want in [
            format!("{p}.bearerTokenSecret.key: Required value"),
            format!(
                "{p}.interval: Invalid value: \"30 seconds\": {p}.interval in body should match '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'"
            ),
            format!(
                "{p}.portNumber: Invalid value: 70000: {p}.portNumber in body should be less than or equal to 65535"
            ),
            format!(
                "{p}.relabelings[0].sourceLabels[0]: Invalid value: \"bad-label\": {p}.relabelings[0].sourceLabels[0] in body should match '^[a-zA-Z_][a-zA-Z0-9_]*$'"
            ),
            format!(
                "{p}.scheme: Unsupported value: \"ftp\": supported values: \"http\", \"https\""
            ),
        ] {
            assert!(errors.contains(&want), "missing {want}\nin {errors:#?}");
        }
        assert_eq!(errors.len(), 5, "{errors:#?}");
        let missing_selector = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "m"}, "spec": {}});
        assert_eq!(
            messages(&schema.validate(&missing_selector)),
            vec!["spec.selector: Required value"]
        );
        let no_spec = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "m"}});
        assert_eq!(
            messages(&schema.validate(&no_spec)),
            vec!["spec: Required value"]
        );
    }
}
