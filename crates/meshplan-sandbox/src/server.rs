//! HTTP layer: one fallback handler routes every request (discovery, OpenAPI, resources),
//! negotiates JSON or Table, and turns [`ApiError`]s into Status bodies.
//!
//! Flow of a resource request:
//! 1. [`route`] the path, find the [`ResourceType`] (404 Status when not served);
//! 2. pick the verb from the method, the name and `watch`;
//! 3. run it under the store lock (writes: [`super::write`]), release the lock;
//! 4. wake the persister (writes) and the namespace/CRD cleanup (deletes).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::admin::RequestInfo;
use super::admin_api;
use super::config::{AuthMode, CONTEXT_NAME, Controller};
use super::controllers::webhooks::Operation;
use super::discovery;
use super::limits;
use super::openapi;
use super::reconciler;
use super::registry::ResourceType;
use super::request::{FieldValidation, Query, ResourcePath, Route, parse_body, route};
use super::selector::{FieldSelector, LabelSelector};
use super::shared::Shared;
use super::status::ApiError;
use super::store::{Event, EventType};
use super::table::{self, IncludeObject};
use super::transport::ConnInfo;
use super::write::{self, DeleteOptions, PatchKind, WriteOptions};

/// Largest request body the admin endpoint accepts (the API itself has the API server's
/// limit, [`limits::MAX_REQUEST_BODY`]).
const ADMIN_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How much of a body over the limit is still read (and dropped) so that the client, still
/// writing it, gets the 413 instead of a reset connection.
const DRAIN_LIMIT: usize = 256 * 1024 * 1024;

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// The request body, at most `limit` bytes. A longer one is read to its end (up to
/// [`DRAIN_LIMIT`]) and dropped, as the API server answers 413 only once the client can read
/// the answer.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT {
            return Err(BodyError::TooLarge);
        }
        if seen <= limit {
            kept.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(kept.freeze())
}

/// Paths any client may read without credentials (as with anonymous auth on real clusters).
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
}

/// The authentication of one request (see [`AuthMode`]): credentials that are present must be
/// right; none at all is anonymous, allowed only over plain HTTP in the default mode.
fn authorized(shared: &Shared, headers: &HeaderMap, conn: Option<&ConnInfo>) -> bool {
    authenticate(shared, headers, conn).is_some()
}

/// The user a request is served as (`meshplan-sandbox` with credentials,
/// `system:anonymous` without), or None for a 401.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> Option<&'static str> {
    const USER: &str = CONTEXT_NAME;
    const ANONYMOUS: &str = "system:anonymous";
    let Some(header_value) = headers.get(header::AUTHORIZATION) else {
        let tls = conn.is_some_and(|c| c.tls);
        return if conn.is_some_and(|c| c.client_cert) {
            Some(USER)
        } else if shared.auth == AuthMode::Anonymous || (!tls && shared.auth == AuthMode::Token) {
            Some(ANONYMOUS)
        } else {
            None
        };
    };
    let right = header_value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == shared.token);
    match (right, shared.auth) {
        (true, _) => Some(USER),
        (false, AuthMode::Anonymous) => Some(ANONYMOUS),
        (false, _) => None,
    }
}

fn unauthorized() -> Response {
    ok(
        401,
        &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Unauthorized","reason":"Unauthorized","code":401}),
    )
}

/// Classifies a request for the counters, faults and audit log.
fn request_info(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> RequestInfo {
    let query = Query::parse(uri.query());
    let mut info = RequestInfo {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        ..RequestInfo::default()
    };
    let is_write = !matches!(*method, Method::GET | Method::HEAD);
    if is_write && *method != Method::DELETE {
        info.field_manager = Some(
            query
                .get("fieldManager")
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| {
                    write::default_manager(
                        headers
                            .get(header::USER_AGENT)
                            .and_then(|v| v.to_str().ok()),
                    )
                }),
        );
    }
    match route(uri.path()) {
        Route::Resource(rp) => {
            info.is_resource = true;
            info.verb = match (method.clone(), rp.name.is_some()) {
                (Method::GET, false) if query.flag("watch") => "watch",
                (Method::GET, false) => "list",
                (Method::GET, true) => "get",
                (Method::POST, _) => "create",
                (Method::PUT, _) => "update",
                (Method::PATCH, _) => "patch",
                (Method::DELETE, true) => "delete",
                (Method::DELETE, false) => "deletecollection",
                _ => "unknown",
            }
            .to_string();
            info.resource = match &rp.sub {
                Some(sub) => format!("{}/{sub}", rp.plural),
                None => rp.plural.clone(),
            };
            info.namespace = rp.namespace.clone().unwrap_or_default();
            info.name = rp.name.clone().unwrap_or_default();
        }
        _ => {
            info.verb = method.as_str().to_ascii_lowercase();
            info.resource = uri.path().to_string();
        }
    }
    info
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let mut resp = handle_request(&shared, req).await;
    // Like real API servers, every answer carries the server's clock (the virtual one) and
    // `Cache-Control: no-cache, private`: kubectl's HTTP cache must revalidate, whatever the
    // Date says (a Date ahead of the client's clock would otherwise keep a cached discovery
    // fresh for ever).
    if let Ok(date) = HeaderValue::from_str(&shared.clock.http_date()) {
        resp.headers_mut().insert(header::DATE, date);
    }
    resp.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache, private"));
    resp
}

async fn handle_request(shared: &Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let conn = parts
        .extensions
        .get::<ConnectInfo<ConnInfo>>()
        .map(|c| c.0.clone());
    // The API server's body limit (the admin endpoint, with snapshots and fault plans, has a
    // larger one). A body over it is drained before the 413, unless it declares a length not
    // worth reading at all.
    let admin = parts.uri.path().starts_with(admin_api::PREFIX);
    let limit = if admin {
        ADMIN_BODY_LIMIT
    } else {
        limits::MAX_REQUEST_BODY
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        if admin {
            ApiError::entity_too_large(format!("limit is {ADMIN_BODY_LIMIT}"))
        } else {
            limits::body_too_large()
        }
    };
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return error_response(&too_large());
    }
    // Read the body first: a connection whose request body is left unread cannot be reused.
    let bytes = match read_body(body, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return error_response(&too_large()),
        Err(BodyError::Read(e)) => {
            return error_response(&ApiError::bad_request(format!("cannot read the body: {e}")));
        }
    };
    if admin {
        // The admin endpoint always needs credentials (unless auth is off altogether).
        let has_credentials = parts.headers.contains_key(header::AUTHORIZATION)
            || conn.as_ref().is_some_and(|c| c.client_cert);
        if !(shared.auth == AuthMode::Anonymous
            || has_credentials && authorized(shared, &parts.headers, conn.as_ref()))
        {
            return unauthorized();
        }
        let (code, value) = admin_api::handle(shared, &parts.method, &parts.uri, &bytes);
        return ok(code, &value);
    }
    let mut info = request_info(&parts.method, &parts.uri, &parts.headers);
    match authenticate(shared, &parts.headers, conn.as_ref()) {
        Some(user) => info.user = user.to_string(),
        None if is_public(parts.uri.path()) => info.user = "system:anonymous".into(),
        None => {
            shared.observer().record(&info, 401, None);
            return unauthorized();
        }
    }
    let injection = shared.observer().faults_for(&info);
    if !injection.latency.is_zero() {
        tokio::time::sleep(injection.latency).await;
    }
    match &injection.outcome {
        Some(None) => {
            if let Some(c) = &conn {
                c.abort();
            }
            shared.observer().record(&info, 0, injection.describe());
            return Response::new(Body::empty());
        }
        Some(Some(err)) => {
            shared
                .observer()
                .record(&info, err.code, injection.describe());
            let mut resp = error_response(err);
            if err.code == 429 || err.code == 503 {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return resp;
        }
        None => {}
    }
    let resp = handle_api(shared, parts, bytes).await;
    shared
        .observer()
        .record(&info, resp.status().as_u16(), injection.describe());
    resp
}

async fn handle_api(
    shared: &Arc<Shared>,
    parts: axum::http::request::Parts,
    bytes: Bytes,
) -> Response {
    let method = parts.method.clone();
    let result = dispatch(shared, &parts.method, &parts.uri, &parts.headers, bytes).await;
    if method != Method::GET {
        shared.wake_persist.notify_one();
        if method == Method::DELETE || method == Method::PATCH || method == Method::PUT {
            shared.wake_controller.notify_one();
        }
    }
    match result {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn json_body(code: u16, value: &Value, content_type: &str, warnings: &[String]) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn ok(code: u16, value: &Value) -> Response {
    json_body(code, value, "application/json", &[])
}

fn error_response(err: &ApiError) -> Response {
    ok(err.code, &err.body())
}

fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2")
}

/// Accept headers that only name protobuf get 406.
fn accepts_json(accept: &str) -> bool {
    accept.is_empty()
        || accept.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or("").trim();
            matches!(
                media,
                "application/json" | "*/*" | "application/*" | "application/yaml" | ""
            )
        })
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let accept = header_str(headers, header::ACCEPT);
    let query = Query::parse(uri.query());
    let route = route(uri.path());
    if !matches!(route, Route::Resource(_)) && *method != Method::GET {
        return Err(if matches!(route, Route::NotFound) {
            ApiError::no_route()
        } else {
            ApiError::method_not_allowed()
        });
    }
    if !accepts_json(accept) && !matches!(route, Route::OpenApiV2 | Route::Health) {
        return Err(ApiError::not_acceptable());
    }
    match route {
        Route::Version => Ok(ok(200, &discovery::version())),
        Route::Health => {
            let mut resp = Response::new(Body::from("ok"));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(resp)
        }
        Route::Api | Route::Apis => {
            let core = matches!(route, Route::Api);
            if wants_aggregated(accept) {
                let doc = discovery::aggregated(&shared.lock().registry, core);
                Ok(json_body(
                    200,
                    &doc,
                    discovery::AGGREGATED_CONTENT_TYPE,
                    &[],
                ))
            } else if core {
                Ok(ok(200, &discovery::api_versions(&shared.addr.to_string())))
            } else {
                Ok(ok(200, &discovery::api_group_list(&shared.lock().registry)))
            }
        }
        Route::Group(g) => discovery::api_group_doc(&shared.lock().registry, &g)
            .map(|d| ok(200, &d))
            .ok_or_else(ApiError::no_route),
        Route::GroupVersion(g, v) => discovery::api_resource_list(&shared.lock().registry, &g, &v)
            .map(|d| ok(200, &d))
            .ok_or_else(ApiError::no_route),
        Route::OpenApiV2 => {
            let mut resp = Response::new(Body::empty());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(openapi::V2_CONTENT_TYPE),
            );
            Ok(resp)
        }
        Route::OpenApiV3 => Ok(ok(200, &openapi::index(&shared.lock().registry))),
        Route::OpenApiV3Doc(g, v) => openapi::gv_document(&shared.lock().registry, &g, &v)
            .map(|d| ok(200, &d))
            .ok_or_else(ApiError::no_route),
        Route::NotFound => Err(ApiError::no_route()),
        Route::Resource(rp) => {
            // A bug must cost one request a 500, never the connection or the server.
            let run = std::panic::AssertUnwindSafe(|| {
                resource(shared, method, rp, &query, headers, body)
            });
            match std::panic::catch_unwind(run) {
                Ok(result) => result,
                Err(_) => Err(ApiError::internal_error(
                    "the sandbox failed while handling this request",
                )),
            }
        }
    }
}

fn selectors(query: &Query) -> Result<(Option<LabelSelector>, Option<FieldSelector>), ApiError> {
    let labels = match query.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(text) => Some(LabelSelector::parse(text).map_err(ApiError::bad_request)?),
        None => None,
    };
    let fields = match query.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(text) => Some(FieldSelector::parse(text).map_err(ApiError::bad_request)?),
        None => None,
    };
    Ok((labels, fields))
}

fn selected(obj: &Value, labels: &Option<LabelSelector>, fields: &Option<FieldSelector>) -> bool {
    let label_map = obj.pointer("/metadata/labels").and_then(Value::as_object);
    labels.as_ref().is_none_or(|l| l.matches(label_map))
        && fields.as_ref().is_none_or(|f| f.matches(obj))
}

fn resource(
    shared: &Arc<Shared>,
    method: &Method,
    rp: ResourcePath,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let accept = header_str(headers, header::ACCEPT);
    let content_type = header_str(headers, header::CONTENT_TYPE);
    let ty = shared
        .lock()
        .registry
        .find(&rp.group, &rp.version, &rp.plural)
        .ok_or_else(ApiError::no_route)?;
    match rp.sub.as_deref() {
        None => {}
        Some("status") if ty.has_status => {}
        Some("scale") if ty.scale.is_some() => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    if rp.namespace.is_some() && !ty.namespaced {
        return Err(ApiError::no_route());
    }
    let namespace = rp.namespace.as_deref();
    let sub = rp.sub.as_deref();
    let as_table = table::wants_table(accept);
    let include = IncludeObject::parse(query.get("includeObject"));
    let body_value = |yaml_ok: bool| -> Result<Value, ApiError> {
        if content_type.contains("protobuf") {
            return Err(ApiError::unsupported_media_type(content_type));
        }
        parse_body(&body, yaml_ok || content_type.contains("yaml"))
    };
    let manager = query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            write::default_manager(
                headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
            )
        });
    let opts = WriteOptions {
        dry_run: query.dry_run(),
        field_manager: query.get("fieldManager").map(str::to_string),
        validation: FieldValidation::from_query(query)?,
        force: query.flag("force"),
    };
    if matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        admit(
            shared,
            &ty,
            &rp,
            method,
            content_type,
            namespace,
            sub,
            &body,
        )?;
    }
    if let (Some("scale"), Some(name)) = (sub, rp.name.as_deref()) {
        return match *method {
            Method::GET => Ok(ok(
                200,
                &write::get_scale(&shared.lock(), &ty, namespace, name)?,
            )),
            Method::PUT | Method::PATCH => {
                let kind = if *method == Method::PUT {
                    None
                } else {
                    Some(patch_kind(content_type)?)
                };
                let value = body_value(kind == Some(PatchKind::Apply))?;
                let written = write::write_scale(
                    &mut shared.lock(),
                    &ty,
                    namespace,
                    name,
                    kind,
                    value,
                    &opts,
                    &manager,
                )?;
                Ok(json_body(
                    200,
                    &written.object,
                    "application/json",
                    &written.warnings,
                ))
            }
            _ => Err(ApiError::method_not_allowed()),
        };
    }
    match (method.clone(), rp.name.as_deref()) {
        (Method::GET, None) if query.flag("watch") => {
            watch_response(shared, &ty, namespace, query, as_table, include)
        }
        (Method::GET, None) => {
            let (labels, fields) = selectors(query)?;
            let page = Page::from_query(query)?;
            let st = shared.lock();
            let mut items: Vec<Value> = st
                .list(&ty.group, &ty.plural, namespace)
                .into_iter()
                .filter(|o| page.is_after_start(o) && selected(o, &labels, &fields))
                .map(|o| write::present(&ty, o.clone()))
                .collect();
            let rv = page.rv.clone().unwrap_or_else(|| st.rv.to_string());
            drop(st);
            let mut metadata = json!({"resourceVersion": rv});
            if let Some(limit) = page.limit
                && items.len() > limit
            {
                let remaining = items.len() - limit;
                items.truncate(limit);
                if let Some(last) = items.last() {
                    metadata["continue"] = json!(Page::token(&rv, last));
                    metadata["remainingItemCount"] = json!(remaining);
                }
            }
            if as_table {
                let refs: Vec<&Value> = items.iter().collect();
                let mut t = table::table(&ty, &refs, &rv, include);
                t["metadata"] = metadata;
                return Ok(ok(200, &t));
            }
            Ok(ok(
                200,
                &json!({
                    "kind": ty.list_kind(),
                    "apiVersion": ty.api_version(),
                    "metadata": metadata,
                    "items": items,
                }),
            ))
        }
        (Method::GET, Some(name)) => {
            let st = shared.lock();
            let obj = st
                .get(&write::object_key(&ty, namespace, name))
                .cloned()
                .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
            drop(st);
            let obj = write::present(&ty, obj);
            if as_table {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                return Ok(ok(200, &table::table(&ty, &[&obj], &rv, include)));
            }
            Ok(ok(200, &obj))
        }
        (Method::POST, None) => {
            let value = body_value(false)?;
            let written =
                write::create(&mut shared.lock(), &ty, namespace, value, &opts, &manager)?;
            Ok(json_body(
                201,
                &written.object,
                "application/json",
                &written.warnings,
            ))
        }
        (Method::PUT, Some(name)) => {
            let value = body_value(false)?;
            let written = write::replace(
                &mut shared.lock(),
                &ty,
                namespace,
                name,
                sub,
                value,
                &opts,
                &manager,
            )?;
            Ok(json_body(
                200,
                &written.object,
                "application/json",
                &written.warnings,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let kind = patch_kind(content_type)?;
            let value = parse_body(&body, kind == PatchKind::Apply)?;
            let written = write::patch(
                &mut shared.lock(),
                &ty,
                namespace,
                name,
                sub,
                kind,
                value,
                &opts,
                &manager,
            )?;
            let code = if written.created { 201 } else { 200 };
            Ok(json_body(
                code,
                &written.object,
                "application/json",
                &written.warnings,
            ))
        }
        (Method::DELETE, Some(name)) => {
            let options = delete_options(&body, query)?;
            let obj = write::delete(&mut shared.lock(), &ty, namespace, name, &options)?;
            Ok(ok(200, &write::delete_answer(&ty, obj)))
        }
        (Method::DELETE, None) => {
            let options = delete_options(&body, query)?;
            let (labels, fields) = selectors(query)?;
            let mut st = shared.lock();
            let names: Vec<(Option<String>, String)> = st
                .list(&ty.group, &ty.plural, namespace)
                .into_iter()
                .filter(|o| selected(o, &labels, &fields))
                .map(|o| {
                    (
                        o.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            let mut items = Vec::new();
            for (ns, name) in names {
                match write::delete(&mut st, &ty, ns.as_deref(), &name, &options) {
                    Ok(obj) => items.push(obj),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let rv = st.rv.to_string();
            Ok(ok(
                200,
                &json!({
                    "kind": ty.list_kind(),
                    "apiVersion": ty.api_version(),
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Refuses a write the way the API server does while a matching admission webhook cannot be
/// called (see [`reconciler::admission`]). Object selectors see the labels of the body, or of
/// the stored object when the body has none.
#[allow(clippy::too_many_arguments)]
fn admit(
    shared: &Shared,
    ty: &ResourceType,
    rp: &ResourcePath,
    method: &Method,
    content_type: &str,
    namespace: Option<&str>,
    sub: Option<&str>,
    body: &Bytes,
) -> Result<(), ApiError> {
    if !shared.controllers.webhooks || shared.pauses.is_paused(Controller::Webhooks) {
        return Ok(());
    }
    let st = shared.lock();
    let operation = match *method {
        Method::POST => Operation::Create,
        Method::DELETE => Operation::Delete,
        Method::PATCH
            if content_type.starts_with("application/apply-patch")
                && rp.name.as_deref().is_some_and(|name| {
                    st.get(&write::object_key(ty, namespace, name)).is_none()
                }) =>
        {
            Operation::Create
        }
        _ => Operation::Update,
    };
    let labels_of = |v: &Value| {
        v.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
    };
    let body_labels = if body.is_empty() || content_type.contains("protobuf") {
        None
    } else {
        parse_body(body, content_type.contains("yaml"))
            .ok()
            .and_then(|v| labels_of(&v))
    };
    let object_labels = body_labels.or_else(|| {
        rp.name
            .as_deref()
            .and_then(|name| st.get(&write::object_key(ty, namespace, name)))
            .and_then(labels_of)
    });
    match reconciler::admission(
        &st,
        shared.controllers.webhook_delay,
        &ty.group,
        &ty.version,
        &ty.plural,
        sub,
        operation,
        namespace.filter(|_| ty.namespaced),
        object_labels.as_ref(),
    ) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// `limit` and `continue` of a list. The continue token names the last item returned (and
/// the resourceVersion of the first page); the next page starts after it in the current state.
struct Page {
    limit: Option<usize>,
    start: Option<(String, String)>,
    rv: Option<String>,
}

impl Page {
    fn from_query(query: &Query) -> Result<Self, ApiError> {
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let (start, rv) = match query.get("continue").filter(|c| !c.is_empty()) {
            None => (None, None),
            Some(token) => {
                use base64::Engine;
                let invalid = || ApiError::bad_request("continue key is not valid");
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .map_err(|_| invalid())?;
                let doc: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
                let field = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
                match (field("rv"), field("namespace"), field("name")) {
                    (Some(rv), Some(ns), Some(name)) => (Some((ns, name)), Some(rv)),
                    _ => return Err(invalid()),
                }
            }
        };
        Ok(Self { limit, start, rv })
    }

    fn ident(obj: &Value) -> (String, String) {
        let text = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        (text("/metadata/namespace"), text("/metadata/name"))
    }

    fn is_after_start(&self, obj: &Value) -> bool {
        self.start
            .as_ref()
            .is_none_or(|start| Self::ident(obj) > *start)
    }

    fn token(rv: &str, last: &Value) -> String {
        use base64::Engine;
        let (namespace, name) = Self::ident(last);
        let doc = json!({"rv": rv, "namespace": namespace, "name": name});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(doc.to_string())
    }
}

fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn delete_options(body: &Bytes, query: &Query) -> Result<DeleteOptions, ApiError> {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(parse_body(body, false)?)
    };
    let mut options = DeleteOptions::from_body(parsed.as_ref(), query.dry_run());
    options.orphan |= query.get("propagationPolicy") == Some("Orphan");
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// Watch

struct WatchSpec {
    ty: Arc<ResourceType>,
    namespace: Option<String>,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    as_table: bool,
    include: IncludeObject,
}

impl WatchSpec {
    fn matches(&self, ev: &Event) -> bool {
        ev.group == self.ty.group
            && ev.resource == self.ty.plural
            && self.namespace.as_ref().is_none_or(|n| *n == ev.namespace)
            && selected(&ev.object, &self.labels, &self.fields)
    }

    fn line(&self, kind: &str, object: &Value) -> Bytes {
        let object = write::present(&self.ty, object.clone());
        let object = if self.as_table {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            table::table(&self.ty, &[&object], &rv, self.include)
        } else {
            object
        };
        let mut text =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        text.push(b'\n');
        Bytes::from(text)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({
            "kind": self.ty.kind,
            "apiVersion": self.ty.api_version(),
            "metadata": metadata,
        });
        let mut text =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        text.push(b'\n');
        Bytes::from(text)
    }
}

fn error_line(err: &ApiError) -> Bytes {
    let mut text =
        serde_json::to_vec(&json!({"type": "ERROR", "object": err.body()})).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

fn watch_response(
    shared: &Arc<Shared>,
    ty: &Arc<ResourceType>,
    namespace: Option<&str>,
    query: &Query,
    as_table: bool,
    include: IncludeObject,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(query)?;
    let spec = WatchSpec {
        ty: ty.clone(),
        namespace: namespace.map(str::to_string),
        labels,
        fields,
        as_table,
        include,
    };
    let requested = query
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && *r != "0");
    let from = match requested {
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {text}")))?,
        ),
        None => None,
    };
    let send_initial = query.flag("sendInitialEvents");
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);

    let mut initial: Vec<Bytes> = Vec::new();
    let mut expired = false;
    let (rx, start_rv) = {
        let st = shared.lock();
        let rx = st.tx.subscribe();
        match from {
            Some(n) if !send_initial => match st.events_after(n) {
                Some(events) => {
                    for ev in events.iter().filter(|e| spec.matches(e)) {
                        initial.push(spec.line(ev.kind.as_str(), &ev.object));
                    }
                }
                None => {
                    expired = true;
                    initial.push(error_line(&ApiError::expired(format!(
                        "too old resource version: {n} ({})",
                        st.compacted + 1
                    ))));
                }
            },
            _ => {
                for obj in st.list(&ty.group, &ty.plural, namespace) {
                    let ev = Event {
                        rv: 0,
                        kind: EventType::Added,
                        group: ty.group.clone(),
                        resource: ty.plural.clone(),
                        namespace: obj
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        object: obj.clone(),
                    };
                    if spec.matches(&ev) {
                        initial.push(spec.line("ADDED", obj));
                    }
                }
                if send_initial {
                    initial.push(spec.bookmark(st.rv, true));
                }
            }
        }
        (rx, st.rv)
    };

    let (tx, out) = mpsc::channel::<Bytes>(256);
    let mut shutdown = shared.shutdown.clone();
    let mut close = shared.close_watches.subscribe();
    tokio::spawn(async move {
        let mut rx = rx;
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last_rv = start_rv;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            let sleep_until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                received = rx.recv() => match received {
                    Ok(ev) => {
                        if ev.rv <= start_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if spec.matches(&ev)
                            && tx.send(spec.line(ev.kind.as_str(), &ev.object)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let err = ApiError::expired(format!(
                            "too old resource version: {last_rv} (the watch fell behind)"
                        ));
                        let _ = tx.send(error_line(&err)).await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(spec.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                _ = sleep_until => return,
                _ = shutdown.changed() => return,
                _ = close.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream =
        tokio_stream::wrappers::ReceiverStream::new(out).map(Ok::<_, std::convert::Infallible>);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
