//! The admin endpoint (`/_sandbox/...`): fault rules, watch closing, controller pauses, the
//! audit log and the counters, the cluster's clock, over the [`Observer`] and the controller [`Pauses`] of the
//! [`Shared`] state. The routes are listed in [`super::admin`]'s overview.
//!
//! [`Observer`]: super::admin::Observer
//! [`Pauses`]: super::config::Pauses

use axum::http::{Method, Uri};
use serde_json::{Value, json};

use super::admin::{FaultRule, counters_json};
use super::config::Controller;
use super::request::Query;
use super::shared::Shared;

/// Where the admin endpoint lives.
pub(crate) const PREFIX: &str = "/_sandbox/";

fn admin_error(code: u16, message: impl Into<String>) -> (u16, Value) {
    let reason = match code {
        404 => "NotFound",
        405 => "MethodNotAllowed",
        _ => "BadRequest",
    };
    (
        code,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message": message.into(),"reason": reason,"code": code}),
    )
}

/// Answers one admin request (the caller has checked the token).
pub(crate) fn handle(shared: &Shared, method: &Method, uri: &Uri, body: &[u8]) -> (u16, Value) {
    let path = uri.path().trim_start_matches(PREFIX).trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    let query = Query::parse(uri.query());
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["faults"]) => (200, json!({ "faults": shared.observer().faults() })),
        ("POST", ["faults"]) => match serde_json::from_slice::<FaultRule>(body) {
            Ok(rule) => {
                let id = shared.observer().add_fault(rule);
                (201, json!({ "id": id }))
            }
            Err(e) => admin_error(400, format!("invalid fault rule: {e}")),
        },
        ("DELETE", ["faults"]) => {
            shared.observer().clear_faults();
            (200, json!({ "faults": [] }))
        }
        ("POST", ["watches", "close"]) => {
            shared.close_watches.send_modify(|n| *n += 1);
            (200, json!({ "closed": true }))
        }
        ("GET", ["controllers"]) => (
            200,
            json!({
                "controllers": Controller::ALL.iter().map(|c| json!({
                    "name": c.name(),
                    "enabled": shared.controllers.enabled(*c),
                    "paused": shared.pauses.is_paused(*c),
                })).collect::<Vec<_>>()
            }),
        ),
        ("POST", ["controllers", name, action @ ("pause" | "resume")]) => {
            match Controller::parse(name) {
                Some(c) => {
                    shared.pauses.set(c, *action == "pause");
                    shared.wake_controllers.notify_one();
                    (
                        200,
                        json!({ "name": c.name(), "paused": *action == "pause" }),
                    )
                }
                None => admin_error(404, format!("no controller named {name:?}")),
            }
        }
        ("GET", ["audit"]) => {
            let since = query
                .get("since")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            (
                200,
                json!({ "entries": shared.observer().audit_since(since) }),
            )
        }
        ("GET", ["counters"]) => (200, counters_json(&shared.observer().counters())),
        ("GET", ["clock"]) => (200, clock_json(shared)),
        ("POST", ["clock", "advance"]) => {
            let seconds = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("seconds").and_then(Value::as_i64));
            match seconds {
                Some(s) if s >= 0 => {
                    shared.clock.advance(jiff::SignedDuration::from_secs(s));
                    shared.wake_controllers.notify_one();
                    (200, clock_json(shared))
                }
                _ => admin_error(
                    400,
                    "expected {\"seconds\": N} with N a whole number of seconds, 0 or more",
                ),
            }
        }
        (_, ["faults" | "audit" | "counters" | "controllers" | "clock"]) => {
            admin_error(405, "the method is not allowed here")
        }
        _ => admin_error(404, format!("no admin endpoint {}", uri.path())),
    }
}

/// The virtual clock as the admin endpoint shows it.
fn clock_json(shared: &Shared) -> Value {
    json!({
        "now": shared.clock.now().to_string(),
        "scale": shared.clock.get().scale,
    })
}
