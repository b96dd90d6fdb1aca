//! API errors as `meta/v1 Status` bodies, worded the way apimachinery words them.
//!
//! Every failure the HTTP layer returns is an [`ApiError`]; [`ApiError::body`] renders the
//! Status object (`"status": "Failure"`, `reason`, `code`, `details`).

use serde_json::{Map, Value, json};

/// One `details.causes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// `details` of a Status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Details {
    pub name: Option<String>,
    pub group: Option<String>,
    /// The plural resource for NotFound/AlreadyExists/Conflict, the Kind for Invalid.
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
}

/// A failed request, rendered as a Status body with the same HTTP code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub(crate) struct ApiError {
    pub code: u16,
    /// Empty for the few errors the API server sends without a reason (500 of apply).
    pub reason: String,
    pub message: String,
    pub details: Option<Box<Details>>,
}

/// `configmaps` or `deployments.apps`: how the API server names a group resource in messages.
pub(crate) fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    fn plain(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        let details = self.details.get_or_insert_with(Box::default);
        details.name = Some(name.to_string());
        details.group = Some(group.to_string());
        details.kind = Some(kind.to_string());
        self
    }

    /// Adds `details.causes`.
    pub(crate) fn with_causes(mut self, causes: Vec<Cause>) -> Self {
        self.details.get_or_insert_with(Box::default).causes = causes;
        self
    }

    /// 404 `configmaps "x" not found`.
    pub(crate) fn not_found(resource: &str, group: &str, name: &str) -> Self {
        Self::plain(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(resource, group)),
        )
        .with_details(name, group, resource)
    }

    /// 404 for paths and resources the server does not serve.
    pub(crate) fn no_route() -> Self {
        let mut err = Self::plain(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        err.details = Some(Box::default());
        err
    }

    /// 409 `configmaps "x" already exists`.
    pub(crate) fn already_exists(resource: &str, group: &str, name: &str) -> Self {
        Self::plain(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(resource, group)),
        )
        .with_details(name, group, resource)
    }

    /// 409 Conflict on a stale resourceVersion.
    pub(crate) fn stale(resource: &str, group: &str, name: &str) -> Self {
        Self::plain(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(resource, group)
            ),
        )
        .with_details(name, group, resource)
    }

    /// 409 Conflict of server-side apply, one cause per conflicting field.
    pub(crate) fn apply_conflict(
        message: String,
        resource: &str,
        group: &str,
        name: &str,
        causes: Vec<Cause>,
    ) -> Self {
        Self::plain(409, "Conflict", message)
            .with_details(name, group, resource)
            .with_causes(causes)
    }

    /// 422 Invalid: `Widget.example.com "w1" is invalid: spec.size: Invalid value: ...`.
    /// `causes` carry the field and the message without the field prefix.
    pub(crate) fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let full: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let joined = if full.len() == 1 {
            full[0].clone()
        } else {
            format!("[{}]", full.join(", "))
        };
        Self::plain(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {joined}", qualified(kind, group)),
        )
        .with_details(name, group, kind)
        .with_causes(causes)
    }

    /// A 422 Invalid with one cause.
    pub(crate) fn invalid_field(
        kind: &str,
        group: &str,
        name: &str,
        reason: &str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::invalid(
            kind,
            group,
            name,
            vec![Cause {
                reason: reason.to_string(),
                message: message.into(),
                field: field.to_string(),
            }],
        )
    }

    /// 413 `Request entity too large: limit is 3145728`.
    pub(crate) fn entity_too_large(detail: impl std::fmt::Display) -> Self {
        Self::plain(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: {detail}"),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::plain(400, "BadRequest", message)
    }

    pub(crate) fn forbidden(resource: &str, group: &str, name: &str, why: &str) -> Self {
        Self::plain(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: {why}",
                qualified(resource, group)
            ),
        )
        .with_details(name, group, resource)
    }

    pub(crate) fn method_not_allowed() -> Self {
        let mut err = Self::plain(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
        err.details = Some(Box::default());
        err
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::plain(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    pub(crate) fn not_acceptable() -> Self {
        Self::plain(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )
    }

    /// 410 Expired, sent inside a watch stream.
    pub(crate) fn expired(message: impl Into<String>) -> Self {
        Self::plain(410, "Expired", message)
    }

    /// 500 with no reason (what the API server answers when apply meets an undeclared field).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::plain(500, "", message)
    }

    /// 500 InternalError for things that should not happen.
    pub(crate) fn internal_error(message: impl Into<String>) -> Self {
        Self::plain(500, "InternalError", message)
    }

    /// The Status object.
    pub(crate) fn body(&self) -> Value {
        let mut status = Map::new();
        status.insert("kind".into(), json!("Status"));
        status.insert("apiVersion".into(), json!("v1"));
        status.insert("metadata".into(), json!({}));
        status.insert("status".into(), json!("Failure"));
        status.insert("message".into(), json!(self.message));
        if !self.reason.is_empty() {
            status.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            let mut details = Map::new();
            if let Some(name) = &d.name {
                details.insert("name".into(), json!(name));
            }
            if let Some(group) = &d.group
                && !group.is_empty()
            {
                details.insert("group".into(), json!(group));
            }
            if let Some(kind) = &d.kind {
                details.insert("kind".into(), json!(kind));
            }
            if !d.causes.is_empty() {
                let causes: Vec<Value> = d
                    .causes
                    .iter()
                    .map(|c| {
                        let mut cause = Map::new();
                        for (k, v) in [
                            ("reason", &c.reason),
                            ("message", &c.message),
                            ("field", &c.field),
                        ] {
                            if !v.is_empty() {
                                cause.insert(k.into(), json!(v));
                            }
                        }
                        Value::Object(cause)
                    })
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            status.insert("details".into(), Value::Object(details));
        }
        status.insert("code".into(), json!(self.code));
        Value::Object(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_worded_like_apimachinery() {
        let body = ApiError::not_found("deployments", "apps", "web").body();
        assert_eq!(body["message"], "deployments.apps \"web\" not found");
        assert_eq!(body["details"]["kind"], "deployments");
        assert_eq!(body["status"], "Failure");
        assert_eq!(body["code"], 404);
    }

    #[test]
    fn invalid_joins_field_and_message() {
        let err = ApiError::invalid_field(
            "Widget",
            "example.com",
            "w1",
            "FieldValueInvalid",
            "spec.size",
            "Invalid value: \"x\": bad",
        );
        assert_eq!(
            err.message,
            "Widget.example.com \"w1\" is invalid: spec.size: Invalid value: \"x\": bad"
        );
    }

    #[test]
    fn internal_apply_error_has_no_reason() {
        let body = ApiError::internal("boom").body();
        assert!(body.get("reason").is_none());
        assert_eq!(body["code"], 500);
    }
}
