//! The shape of a plan file, declared once: every top-level table, every node type's fields,
//! their types, whether they are required and what they mean.
//!
//! 1. The parser ([`super::parse`]) and the model's builder check field names against these
//!    declarations (`unknown field`, with "did you mean" among them).
//! 2. [`json_schema`] turns the same declarations into the JSON Schema of the plan file
//!    (`meshplan schema`, shipped as `docs/plan.schema.json`), so editors that read TOML through
//!    a schema (taplo, Even Better TOML) complete and check plan files.
//!
//! The schema checks shape (tables, field names, types, required fields, one source per
//! manifest, duration and address syntax); what needs more than one field or the cluster
//! (references, cycles, files, chart values) is the model's and `meshplan validate`'s.

use serde_json::{Map, Value, json};

/// One field of a table.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Type,
    pub required: bool,
    /// One sentence for people (the schema's `description`, shown by editors).
    pub doc: &'static str,
}

/// A closed table: its fields, and groups of which exactly one field must be present.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub fields: &'static [Field],
    /// Exactly one of these fields (empty: no such rule).
    pub exactly_one_of: &'static [&'static str],
}

impl Table {
    /// The names of the table's fields, in declaration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.name).collect()
    }
}

/// The type of a field's value.
#[derive(Debug, Clone, Copy)]
pub enum Type {
    /// A string; `${...}` references allowed where the plan language allows them.
    String,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A string matching a regular expression (JSON Schema `pattern`).
    Pattern(&'static str),
    Boolean,
    /// `true`, `false`, or a string that is one `${var.NAME}` reference.
    BooleanOrVar,
    /// A Go/kubectl duration: `90s`, `5m`, `1h30m`, `250ms`.
    Duration,
    /// An array of distinct node addresses `TYPE.NAME`.
    Addresses,
    /// An array of strings.
    Strings,
    /// An array of JSON pointers (`/spec/replicas`, `*` for any key).
    Pointers,
    /// Any table (chart values, a Kubernetes object).
    AnyTable,
    /// One table, or an array of tables, of any content (`objects`).
    AnyTables,
    /// A closed table.
    Table(&'static Table),
    /// One closed table, or an array of them (`[[x]]` or `x = [{...}]`).
    Tables(&'static Table),
    /// A boolean or a closed table (`wait`).
    BooleanOrTable(&'static Table),
    /// A lint check id (the list is the lint catalogue's).
    CheckId,
    /// Any TOML value (a variable's default).
    Any,
}

/// Names of nodes, variables and repositories: a letter or `_`, then letters, digits, `_`, `-`.
pub const IDENTIFIER: &str = "^[A-Za-z_][A-Za-z0-9_-]*$";
/// A DNS label (the plan's name, a release, a namespace of the state).
pub const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// A duration as kubectl and Go write it (whole numbers with units).
pub const DURATION: &str = "^([0-9]+(ms|s|m|h))+$";
/// A node address.
pub const ADDRESS: &str = "^(manifest|helm|read|check)\\.[A-Za-z_][A-Za-z0-9_-]*$";
/// A string that is one variable reference.
pub const VAR_REFERENCE: &str = "^\\$\\{\\s*var\\.[A-Za-z_][A-Za-z0-9_-]*\\s*\\}$";
/// A helm node's chart: `ALIAS/CHART`, `oci://...`, or a local path.
pub const CHART: &str = "^([A-Za-z_][A-Za-z0-9_-]*/[^/]+|oci://.+|\\.{1,2}/.*|/.*)$";
/// A release name: a DNS label of at most 53 characters (helm's limit).
pub const RELEASE: &str = "^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$";
/// A chart repository address.
pub const REPO_URL: &str = "^(https?|oci|file)://";

const fn field(name: &'static str, ty: Type, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        doc,
    }
}

const fn required(name: &'static str, ty: Type, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        doc,
    }
}

const fn table(fields: &'static [Field]) -> Table {
    Table {
        fields,
        exactly_one_of: &[],
    }
}

/// `[plan]`.
pub const PLAN: Table = table(&[required(
    "name",
    Type::Pattern(DNS_LABEL),
    "The plan's name (a DNS label): it names the state and marks the objects the plan owns.",
)]);

/// `[state]`.
pub const STATE: Table = table(&[
    field(
        "backend",
        Type::OneOf(&["local", "kubernetes"]),
        "Where the state lives: `local` (a directory, the default) or `kubernetes` (Secrets in the cluster).",
    ),
    field(
        "namespace",
        Type::Pattern(DNS_LABEL),
        "kubernetes: the namespace of the state's Secrets and Lease (default meshplan-system); local: of the apply's Lease (default kube-system).",
    ),
    field(
        "name",
        Type::Pattern(DNS_LABEL),
        "The state's name in the cluster (default: the plan name).",
    ),
    field(
        "dir",
        Type::Pattern(".+"),
        "local: the state directory, relative to the plan file (default state/<plan name>).",
    ),
    field(
        "lease_duration",
        Type::Duration,
        "How long a Lease lock lasts without renewal (whole seconds, default 30s).",
    ),
]);

const RULE_NAME: Field = field(
    "name",
    Type::String,
    "Only the object of this name (`${var.*}` allowed).",
);
const RULE_NAMESPACE: Field = field(
    "namespace",
    Type::String,
    "Only objects of this namespace (`${var.*}` allowed).",
);
const RULE_FIELDS: Field = required(
    "fields",
    Type::Pointers,
    "JSON pointers of the fields meshplan gives up (`*` for any key or index).",
);
const RULE_REASON: Field = field("reason", Type::String, "Why, shown in reports.");

/// A rule of `[[ignore]]` (plan-wide: `kind` is required).
pub const IGNORE_RULE: Table = table(&[
    required(
        "kind",
        Type::String,
        "The kind of the objects the rule covers.",
    ),
    RULE_NAME,
    RULE_NAMESPACE,
    RULE_FIELDS,
    RULE_REASON,
]);

/// A rule of a node's `ignore` (`kind` omitted: every object of the node).
pub const NODE_IGNORE_RULE: Table = table(&[
    field(
        "kind",
        Type::String,
        "The kind of the objects the rule covers (omitted: every object of the node).",
    ),
    RULE_NAME,
    RULE_NAMESPACE,
    RULE_FIELDS,
    RULE_REASON,
]);

/// An entry of a node's `suppress`.
pub const SUPPRESSION: Table = table(&[
    required(
        "check",
        Type::CheckId,
        "The id of the lint check (docs/checks.md).",
    ),
    required(
        "reason",
        Type::Pattern("\\S"),
        "Why the finding does not apply to this node (shown in reports).",
    ),
]);

/// `wait = { ... }`.
pub const WAIT: Table = table(&[
    field(
        "condition",
        Type::String,
        "A condition type that must become True (e.g. Ready).",
    ),
    field("timeout", Type::Duration, "How long to wait."),
]);

/// Fields every node type accepts.
pub const COMMON: &[Field] = &[
    field(
        "depends_on",
        Type::Addresses,
        "Nodes that must be done before this one, e.g. [\"helm.cert_manager\"].",
    ),
    field(
        "enabled",
        Type::BooleanOrVar,
        "false leaves the node out of the plan; may be \"${var.NAME}\".",
    ),
    field(
        "namespace",
        Type::String,
        "manifest: namespace of objects that set none; helm: the release namespace; read/check: the object's.",
    ),
    field(
        "prevent_destroy",
        Type::Boolean,
        "Destroy refuses to delete the node's objects.",
    ),
    field(
        "suppress",
        Type::Tables(&SUPPRESSION),
        "Lint findings of these checks on this node are reported as suppressed, with the reason.",
    ),
    field(
        "timeout",
        Type::Duration,
        "Upper bound for the whole node during apply.",
    ),
    field(
        "wait",
        Type::BooleanOrTable(&WAIT),
        "How apply waits for the node's objects: true (built-in readiness), false, or { condition, timeout }.",
    ),
];

/// `[manifest.NAME]`'s own fields.
pub const MANIFEST: Table = Table {
    fields: &[
        field(
            "file",
            Type::Pattern(".+"),
            "A YAML file of objects, relative to the plan file.",
        ),
        field("yaml", Type::String, "Inline YAML (one or more documents)."),
        field(
            "objects",
            Type::AnyTables,
            "Objects written as TOML tables ([[manifest.NAME.objects]]).",
        ),
        field(
            "ignore",
            Type::Tables(&NODE_IGNORE_RULE),
            "Fields of the node's objects that meshplan gives up.",
        ),
    ],
    exactly_one_of: &["file", "yaml", "objects"],
};

/// `[helm.NAME]`'s own fields.
pub const HELM: Table = table(&[
    required(
        "chart",
        Type::Pattern(CHART),
        "ALIAS/CHART (alias from [repos]), oci://registry/path/chart, or a local path starting with ./, ../ or /.",
    ),
    field(
        "version",
        Type::String,
        "The chart version (default: the latest); pin it.",
    ),
    field(
        "release",
        Type::Pattern(RELEASE),
        "The release name (default: the node name with _ as -): a DNS label of at most 53 characters.",
    ),
    field(
        "values",
        Type::AnyTable,
        "Chart values; references work in every string.",
    ),
    field(
        "values_files",
        Type::Strings,
        "YAML values files relative to the plan file, merged in order, values on top.",
    ),
    field(
        "include_crds",
        Type::Boolean,
        "Render the chart's crds/ directory (default true).",
    ),
    field(
        "create_namespace",
        Type::Boolean,
        "Create the release namespace if it does not exist (default false).",
    ),
    field(
        "ignore",
        Type::Tables(&NODE_IGNORE_RULE),
        "Fields of the chart's objects that meshplan gives up.",
    ),
]);

/// `[read.NAME]`'s own fields.
pub const READ: Table = Table {
    fields: &[
        required(
            "api_version",
            Type::String,
            "The apiVersion of the object to read.",
        ),
        required("kind", Type::String, "The kind of the object to read."),
        required("name", Type::String, "The name of the object to read."),
        field(
            "key",
            Type::Pattern(".+"),
            "A key of data (Secrets: base64-decoded) or of a ConfigMap's data.",
        ),
        field(
            "field",
            Type::Pattern(".+"),
            "A dotted field path, e.g. status.loadBalancer.ingress.",
        ),
        field(
            "sensitive",
            Type::Boolean,
            "Never store or print the value in clear (default true for Secrets).",
        ),
    ],
    exactly_one_of: &["key", "field"],
};

/// `[check.NAME]`'s own fields.
pub const CHECK: Table = table(&[
    required("api_version", Type::String, "The apiVersion of the object."),
    required("kind", Type::String, "The kind of the object."),
    required("name", Type::String, "The name of the object."),
    required("condition", Type::String, "The condition type, e.g. Ready."),
    field(
        "status",
        Type::String,
        "The status the condition must have (default \"True\").",
    ),
]);

/// The JSON Schema (draft 2020-12) of a plan file, read as TOML turned into JSON.
/// `check_ids` are the lint checks a `suppress` entry may name.
pub fn json_schema(check_ids: &[&str]) -> Value {
    use super::syntax::NodeKind;

    let mut defs = Map::new();
    let mut properties = Map::new();
    properties.insert(
        "plan".into(),
        described(table_schema(&PLAN, &[], check_ids), "The plan: its name."),
    );
    properties.insert(
        "vars".into(),
        json!({
            "description": "Variables and their defaults; a variable's type is its default's.",
            "type": "object",
            "propertyNames": { "pattern": IDENTIFIER },
        }),
    );
    properties.insert(
        "repos".into(),
        json!({
            "description": "Helm chart repository aliases: ALIAS = \"URL\".",
            "type": "object",
            "propertyNames": { "pattern": IDENTIFIER },
            "additionalProperties": { "type": "string", "pattern": REPO_URL },
        }),
    );
    properties.insert(
        "state".into(),
        described(
            table_schema(&STATE, &[], check_ids),
            "Where the plan's state lives (docs/state.md).",
        ),
    );
    properties.insert(
        "ignore".into(),
        described(
            type_schema(Type::Tables(&IGNORE_RULE), check_ids),
            "Plan-wide ignore rules: fields meshplan neither compares nor owns.",
        ),
    );
    for kind in NodeKind::ALL {
        let name = kind.as_str();
        defs.insert(name.into(), table_schema(kind.shape(), COMMON, check_ids));
        properties.insert(
            name.into(),
            json!({
                "description": format!("{name} nodes: [{name}.NAME]"),
                "type": "object",
                "propertyNames": { "pattern": IDENTIFIER },
                "additionalProperties": { "$ref": format!("#/$defs/{name}") },
            }),
        );
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "meshplan plan file",
        "description": "A meshplan plan (TOML): a Kubernetes service-mesh stack as nodes in dependency order. Generated by `meshplan schema`; see docs/plan-language.md.",
        "type": "object",
        "required": ["plan"],
        "additionalProperties": false,
        "properties": properties,
        "$defs": defs,
    })
}

fn described(mut schema: Value, doc: &str) -> Value {
    if let Some(map) = schema.as_object_mut() {
        map.insert("description".into(), Value::String(doc.into()));
    }
    schema
}

fn table_schema(table: &Table, common: &[Field], check_ids: &[&str]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in common.iter().chain(table.fields) {
        properties.insert(
            f.name.into(),
            described(type_schema(f.ty, check_ids), f.doc),
        );
        if f.required {
            required.push(Value::String(f.name.into()));
        }
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("additionalProperties".into(), json!(false));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    if !table.exactly_one_of.is_empty() {
        let one_of: Vec<Value> = table
            .exactly_one_of
            .iter()
            .map(|name| json!({ "required": [name] }))
            .collect();
        schema.insert("oneOf".into(), Value::Array(one_of));
    }
    Value::Object(schema)
}

fn type_schema(ty: Type, check_ids: &[&str]) -> Value {
    match ty {
        Type::String => json!({ "type": "string" }),
        Type::OneOf(values) => json!({ "type": "string", "enum": values }),
        Type::Pattern(p) => json!({ "type": "string", "pattern": p }),
        Type::Boolean => json!({ "type": "boolean" }),
        Type::BooleanOrVar => json!({
            "anyOf": [
                { "type": "boolean" },
                { "type": "string", "pattern": VAR_REFERENCE },
            ]
        }),
        Type::Duration => json!({ "type": "string", "pattern": DURATION }),
        Type::Addresses => json!({
            "type": "array",
            "uniqueItems": true,
            "items": { "type": "string", "pattern": ADDRESS },
        }),
        Type::Strings => json!({ "type": "array", "items": { "type": "string" } }),
        Type::Pointers => json!({
            "type": "array",
            "minItems": 1,
            "items": { "type": "string", "pattern": "^/" },
        }),
        Type::AnyTable => json!({ "type": "object" }),
        Type::AnyTables => json!({
            "anyOf": [
                { "type": "object" },
                { "type": "array", "items": { "type": "object" } },
            ]
        }),
        Type::Table(t) => table_schema(t, &[], check_ids),
        Type::Tables(t) => {
            let one = table_schema(t, &[], check_ids);
            json!({ "anyOf": [one.clone(), { "type": "array", "items": one }] })
        }
        Type::BooleanOrTable(t) => {
            json!({ "anyOf": [{ "type": "boolean" }, table_schema(t, &[], check_ids)] })
        }
        Type::CheckId => json!({ "type": "string", "enum": check_ids }),
        Type::Any => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planfile::syntax::NodeKind;

    #[test]
    fn every_node_type_declares_its_fields_once() {
        for kind in NodeKind::ALL {
            let mut names = kind.fields();
            let count = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), count, "{kind}: a field declared twice");
            for one in kind.shape().exactly_one_of {
                assert!(names.contains(one), "{kind}: `{one}` is not a field");
            }
        }
    }

    #[test]
    fn the_schema_closes_every_node_table_and_requires_the_plan() {
        let schema = json_schema(&["meshed-job"]);
        assert_eq!(schema["required"], json!(["plan"]));
        assert_eq!(schema["additionalProperties"], json!(false));
        for kind in NodeKind::ALL {
            let def = &schema["$defs"][kind.as_str()];
            assert_eq!(def["additionalProperties"], json!(false), "{kind}");
            let props = def["properties"].as_object().map(|p| p.len());
            assert_eq!(props, Some(kind.fields().len()), "{kind}");
        }
        assert_eq!(
            schema["$defs"]["manifest"]["oneOf"],
            json!([{ "required": ["file"] }, { "required": ["yaml"] }, { "required": ["objects"] }])
        );
    }
}
