//! Label and field selectors as the API server parses them.
//!
//! CONTRACT: `LabelSelector::parse("app=web,tier!=db,env in (a,b),!legacy,release")`
//! understands `=`, `==`, `!=`, `in`, `notin`, exists (`key`) and not-exists (`!key`);
//! a syntax error is an Err with the message the API server gives
//! (e.g. `unable to parse requirement: ...`). `matches` takes `metadata.labels` (may be absent).
//! `FieldSelector::parse("metadata.name=x,metadata.namespace!=y")` supports `=`, `==`, `!=` on
//! any dotted path; `matches` reads the path from the whole object (strings compared as strings,
//! other scalars by their JSON text).
//!
//! Label selectors follow apimachinery's lexer and parser (`labels/selector.go`): whitespace
//! is insignificant between tokens, `in`/`notin` value sets may be empty (`()` means the empty
//! value), `gt`/`lt` (`>`/`<`) compare integers, keys must be qualified names and values valid
//! label values (the messages are apimachinery's field errors, including its `<nil>` path for a
//! bad key). Requirements are kept sorted by key, so two selectors that differ only in order are
//! equal. Field selectors follow `fields/selector.go`: terms split on unescaped commas, `\,`,
//! `\=` and `\\` escapes in values, no whitespace trimming, a missing field reads as `""`.

use std::fmt;

use serde_json::Value;

use meshplan_k8s::go::go_quote;

use super::names::{is_qualified_name, is_valid_label_value};

/// A label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operator {
    /// `key` alone.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key=value`.
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value` (also matches objects without the label).
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)` (also matches objects without the label).
    NotIn,
    /// `key>5` (`gt`): integer comparison.
    GreaterThan,
    /// `key<5` (`lt`): integer comparison.
    LessThan,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted, without duplicates (empty for exists/not-exists).
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement (apimachinery `Requirement.Matches`).
    pub(crate) fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        let has = labels.is_some_and(|l| l.contains_key(&self.key));
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotEquals | Operator::NotIn => {
                !value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::Exists => has,
            Operator::DoesNotExist => !has,
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={}", self.key, self.values.join(",")),
            Operator::DoubleEquals => write!(f, "{}=={}", self.key, self.values.join(",")),
            Operator::NotEquals => write!(f, "{}!={}", self.key, self.values.join(",")),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, self.values.join(",")),
            Operator::LessThan => write!(f, "{}<{}", self.key, self.values.join(",")),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
        }
    }
}

/// A parsed label selector: all requirements must hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parser = Parser::new(text);
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    pub(crate) fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    #[cfg(test)]
    /// The requirements, sorted by key.
    pub(crate) fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    #[cfg(test)]
    /// Whether the selector selects everything.
    pub(crate) fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    #[cfg(test)]
    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`), as workloads and
    /// monitors carry them. `None`/null selects everything.
    pub(crate) fn from_label_selector(selector: Option<&Value>) -> Result<Self, String> {
        let Some(selector) = selector.filter(|s| !s.is_null()) else {
            return Ok(Self::default());
        };
        let Some(object) = selector.as_object() else {
            return Err("label selector must be an object".to_string());
        };
        let mut requirements = Vec::new();
        if let Some(match_labels) = object.get("matchLabels").filter(|v| !v.is_null()) {
            let Some(match_labels) = match_labels.as_object() else {
                return Err("matchLabels must be an object".to_string());
            };
            for (key, value) in match_labels {
                let Some(value) = value.as_str() else {
                    return Err(format!("matchLabels value of {key:?} must be a string"));
                };
                requirements.push(new_requirement(
                    key,
                    Operator::Equals,
                    vec![value.to_string()],
                )?);
            }
        }
        if let Some(expressions) = object.get("matchExpressions").filter(|v| !v.is_null()) {
            let Some(expressions) = expressions.as_array() else {
                return Err("matchExpressions must be a list".to_string());
            };
            for expression in expressions {
                let key = expression.get("key").and_then(Value::as_str).unwrap_or("");
                let operator = expression
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let values: Vec<String> = match expression.get("values") {
                    Some(Value::Array(values)) => values
                        .iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect(),
                    _ => Vec::new(),
                };
                let operator = match operator {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                requirements.push(new_requirement(key, operator, values)?);
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Lexer tokens (apimachinery `labels.Token`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    fn lex(&mut self) -> (Token, String) {
        while self.pos < self.chars.len() && is_whitespace(self.chars[self.pos]) {
            self.pos += 1;
        }
        let Some(&c) = self.chars.get(self.pos) else {
            return (Token::EndOfString, String::new());
        };
        if c == '\0' {
            return (Token::EndOfString, String::new());
        }
        if is_special_symbol(c) {
            self.scan_special_symbol()
        } else {
            self.scan_id_or_keyword()
        }
    }

    fn scan_special_symbol(&mut self) -> (Token, String) {
        let mut buffer = String::new();
        let mut last: Option<(Token, String)> = None;
        while let Some(&c) = self.chars.get(self.pos) {
            if !is_special_symbol(c) {
                break;
            }
            buffer.push(c);
            if let Some(token) = keyword(&buffer) {
                last = Some((token, buffer.clone()));
                self.pos += 1;
            } else if last.is_some() {
                break;
            } else {
                self.pos += 1;
            }
        }
        match last {
            Some(found) => found,
            None => (
                Token::Error,
                format!("error expected: keyword found '{buffer}'"),
            ),
        }
    }

    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let mut buffer = String::new();
        while let Some(&c) = self.chars.get(self.pos) {
            if c == '\0' || is_special_symbol(c) || is_whitespace(c) {
                break;
            }
            buffer.push(c);
            self.pos += 1;
        }
        match keyword(&buffer) {
            Some(token) => (token, buffer),
            None => (Token::Identifier, buffer),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(text: &str) -> Self {
        let mut lexer = Lexer {
            chars: text.chars().collect(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let (token, literal) = lexer.lex();
            let end = token == Token::EndOfString;
            items.push((token, literal));
            if end {
                break;
            }
        }
        Self { items, position: 0 }
    }

    fn item(&self, at: usize, context: Context) -> (Token, String) {
        let (token, literal) = self
            .items
            .get(at)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        if context == Context::Values && matches!(token, Token::In | Token::NotIn) {
            return (Token::Identifier, literal);
        }
        (token, literal)
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        self.item(self.position, context)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.item(self.position, context);
        if self.position < self.items.len() {
            self.position += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{next_literal}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            ));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = operator {
            return new_requirement(&key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(&key, operator, values)
    }

    /// The key and, for `key` / `!key`, the inferred unary operator.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        if let Some(err) = validate_label_key(&literal, "<nil>") {
            return Err(err);
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) {
            if operator.is_none() {
                operator = Some(Operator::Exists);
            }
        } else if operator == Some(Operator::DoesNotExist) {
            return Err(format!(
                "found '{literal}', expected: ',' or 'end of string'"
            ));
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{literal}', expected: {BINARY_OPERATORS}")),
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        let insert = |values: &mut Vec<String>, v: String| {
            if !values.contains(&v) {
                values.push(v);
            }
        };
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    insert(&mut values, literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return Err(format!("found '{next_literal}', expected: ',' or ')'"));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        insert(&mut values, String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        insert(&mut values, String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        self.consume(Context::Values);
                        insert(&mut values, String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            return Ok(vec![literal]);
        }
        Err(format!("found '{literal}', expected: identifier"))
    }
}

/// `field.Invalid(path, key, ...)` for a bad label key, or None.
fn validate_label_key(key: &str, path: &str) -> Option<String> {
    let errs = is_qualified_name(key);
    if errs.is_empty() {
        None
    } else {
        Some(format!(
            "{path}: Invalid value: {}: {}",
            go_quote(key),
            errs.join("; ")
        ))
    }
}

/// apimachinery `NewRequirement`: validates key, operator arity and values; values end up
/// sorted without duplicates.
fn new_requirement(
    key: &str,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, String> {
    let mut errs: Vec<String> = Vec::new();
    if let Some(err) = validate_label_key(key, "key") {
        errs.push(err);
    }
    let invalid_values = |detail: &str| {
        let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
        format!(
            "values: Invalid value: []string{{{}}}: {detail}",
            quoted.join(", ")
        )
    };
    match operator {
        Operator::In | Operator::NotIn => {
            if values.is_empty() {
                errs.push(invalid_values(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
            if values.len() != 1 {
                errs.push(invalid_values(
                    "exact-match compatibility requires one single value",
                ));
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !values.is_empty() {
                errs.push(invalid_values(
                    "values set must be empty for exists and does not exist",
                ));
            }
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(invalid_values(
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(format!(
                        "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                        go_quote(v)
                    ));
                }
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = is_valid_label_value(v);
        if !msgs.is_empty() {
            errs.push(format!(
                "values[{i}][{key}]: Invalid value: {}: {}",
                go_quote(v),
                msgs.join("; ")
            ));
        }
    }
    if !errs.is_empty() {
        return Err(aggregate(errs));
    }
    let mut values = values;
    values.sort();
    values.dedup();
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values,
    })
}

/// `utilerrors.NewAggregate(...).Error()`: one message alone, several in brackets.
fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = Vec::new();
    errs.retain(|e| {
        if seen.contains(e) {
            false
        } else {
            seen.push(e.clone());
            true
        }
    });
    if errs.len() == 1 {
        errs.remove(0)
    } else {
        format!("[{}]", errs.join(", "))
    }
}

/// A field selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldOperator {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One term of a field selector (value unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldRequirement {
    fn matches(&self, object: &Value) -> bool {
        let actual = field_value(object, &self.field);
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

/// The text of a dotted path of `object` for field selectors: strings as they are, other
/// scalars (and objects/lists) as JSON text, missing or null as `""`.
pub(crate) fn field_value(object: &Value, path: &str) -> String {
    let mut current = object;
    for part in path.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A parsed field selector: all terms must hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parts = split_terms(text);
        parts.sort();
        let mut requirements = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, operator, rhs)) = split_term(&part) else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                ));
            };
            let value = unescape_value(rhs)?;
            requirements.push(FieldRequirement {
                field: lhs.to_string(),
                operator,
                value,
            });
        }
        Ok(Self { requirements })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(object))
    }

    #[cfg(test)]
    /// The terms (sorted by their text), e.g. to check that every field is supported.
    pub(crate) fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    #[cfg(test)]
    /// Whether the selector selects everything.
    pub(crate) fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    #[cfg(test)]
    /// The value required by an `=`/`==` term on `field`, if any (e.g. `metadata.name` for a
    /// watch of one object).
    pub(crate) fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a field selector value (apimachinery `fields.EscapeValue`).
pub(crate) fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas not preceded by an escaping backslash.
fn split_terms(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == ',' {
            terms.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    terms.push(current);
    terms
}

/// Finds the first operator (`!=`, `==`, `=`, tried in that order at each position).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((&term[..i], operator, &term[i + op.len()..]));
            }
        }
    }
    None
}

/// apimachinery `fields.UnescapeValue`.
fn unescape_value(value: &str) -> Result<String, String> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    ));
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {c}"
                ));
            }
            other => out.push(other),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn sel(text: &str) -> LabelSelector {
        LabelSelector::parse(text).unwrap()
    }

    #[test]
    fn parses_every_operator() {
        let s = sel("app=web,tier!=db,env in (a,b),!legacy,release,x==y,n notin (p),g>5,l<3");
        let ops: Vec<(String, Operator, Vec<String>)> = s
            .requirements()
            .iter()
            .map(|r| (r.key.clone(), r.operator, r.values.clone()))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("app".into(), Operator::Equals, vec!["web".into()]),
                ("env".into(), Operator::In, vec!["a".into(), "b".into()]),
                ("g".into(), Operator::GreaterThan, vec!["5".into()]),
                ("l".into(), Operator::LessThan, vec!["3".into()]),
                ("legacy".into(), Operator::DoesNotExist, vec![]),
                ("n".into(), Operator::NotIn, vec!["p".into()]),
                ("release".into(), Operator::Exists, vec![]),
                ("tier".into(), Operator::NotEquals, vec!["db".into()]),
                ("x".into(), Operator::DoubleEquals, vec!["y".into()]),
            ]
        );
    }

    #[test]
    fn matching_semantics() {
        let l =
            labels(json!({"app": "web", "tier": "front", "env": "a", "release": "1", "g": "7"}));
        assert!(sel("app=web,tier!=db,env in (a,b),!legacy,release").matches(Some(&l)));
        assert!(!sel("app=api").matches(Some(&l)));
        assert!(!sel("env notin (a)").matches(Some(&l)));
        assert!(
            sel("missing!=x").matches(Some(&l)),
            "!= matches absent labels"
        );
        assert!(sel("missing notin (x)").matches(Some(&l)));
        assert!(!sel("missing in (x)").matches(Some(&l)));
        assert!(!sel("legacy").matches(Some(&l)));
        assert!(sel("!legacy").matches(None));
        assert!(!sel("app").matches(None));
        assert!(sel("g>5,g<8").matches(Some(&l)));
        assert!(!sel("g>7").matches(Some(&l)));
        assert!(
            !sel("app>1").matches(Some(&l)),
            "non-integer label never matches gt"
        );
        assert!(sel("").matches(None));
        assert!(sel("  ").is_empty());
    }

    #[test]
    fn whitespace_is_tolerated() {
        let a = sel(" app = web , env  in  ( a , b ) ,  ! legacy ");
        let b = sel("app=web,env in (a,b),!legacy");
        assert_eq!(a, b);
        assert_eq!(b.to_string(), "app=web,env in (a,b),!legacy");
    }

    #[test]
    fn empty_values() {
        let l = labels(json!({"a": ""}));
        assert!(sel("a=").matches(Some(&l)));
        assert!(sel("a in ()").matches(Some(&l)));
        assert!(sel("a in (,x)").matches(Some(&l)));
        assert_eq!(
            sel("a in (x,,y)").requirements()[0].values,
            vec!["", "x", "y"]
        );
        assert_eq!(sel("in in (notin)").requirements()[0].key, "in");
    }

    #[test]
    fn syntax_errors_word_like_apimachinery() {
        let cases = [
            ("app=web,", "found '', expected: identifier after ','"),
            ("app=web x", "found 'x', expected: ',' or 'end of string'"),
            (
                ",app",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "app x",
                "unable to parse requirement: found 'x', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "app in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "app in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "app in (a b)",
                "unable to parse requirement: found 'b', expected: ',' or ')'",
            ),
            (
                "app=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "!app=x",
                "unable to parse requirement: found 'app', expected: ',' or 'end of string'",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "app in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "app>x",
                "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(LabelSelector::parse(input).unwrap_err(), want, "{input}");
        }
    }

    #[test]
    fn invalid_key_and_value_messages() {
        assert_eq!(
            LabelSelector::parse("a_=x").unwrap_err(),
            "unable to parse requirement: <nil>: Invalid value: \"a_\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        assert_eq!(
            LabelSelector::parse("app=-x").unwrap_err(),
            "unable to parse requirement: values[0][app]: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
    }

    #[test]
    fn label_selector_object_form() {
        let s = LabelSelector::from_label_selector(Some(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]},
                                 {"key": "legacy", "operator": "DoesNotExist"}]
        })))
        .unwrap();
        assert_eq!(s, sel("app=web,tier notin (db),!legacy"));
        assert!(LabelSelector::from_label_selector(None).unwrap().is_empty());
        assert_eq!(
            LabelSelector::from_label_selector(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
            ))
            .unwrap_err(),
            "\"Foo\" is not a valid label selector operator"
        );
        assert!(
            LabelSelector::from_label_selector(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
            ))
            .is_err()
        );
    }

    #[test]
    fn field_selector_parse_and_match() {
        let obj = json!({"metadata": {"name": "cm1", "namespace": "default"}, "spec": {"replicas": 3, "paused": false}});
        let s = FieldSelector::parse("metadata.name=cm1,metadata.namespace!=kube-system").unwrap();
        assert!(s.matches(&obj));
        assert_eq!(s.exact_match("metadata.name"), Some("cm1"));
        assert!(
            !FieldSelector::parse("metadata.name==other")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("spec.replicas=3")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("spec.paused=false")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("metadata.uid=").unwrap().matches(&obj),
            "missing reads as empty"
        );
        assert!(FieldSelector::parse("").unwrap().matches(&obj));
        assert!(FieldSelector::parse(",,").unwrap().is_empty());
    }

    #[test]
    fn field_selector_escapes_and_errors() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert_eq!(s.requirements()[0].value, r"a,b=c\d");
        assert!(s.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(
            FieldSelector::parse("metadata.name").unwrap_err(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err(),
            "invalid field selector: unescaped character in value: ="
        );
        assert_eq!(
            FieldSelector::parse("a!=b").unwrap().requirements()[0].operator,
            FieldOperator::NotEquals
        );
    }
}
