//! How every request reaches the API server: timeouts and retries, as a tower layer around
//! the kube client's HTTP stack ([`TransportLayer`]).
//!
//! 1. **Timeouts.** A connection must open within the connect timeout; an answer (its status
//!    line and headers, and for requests other than watches its whole body) must come within
//!    the request timeout (`--request-timeout`, default [`DEFAULT_REQUEST_TIMEOUT`]). A
//!    request that gets no answer fails with [`NoAnswer`], which the cluster errors turn into
//!    "the cluster at URL did not answer within T". It is not retried: the request timeout is
//!    already the time an answer may take, so a server that stops answering ends the command
//!    within it.
//! 2. **Transient failures are retried**, per request, before anything else sees them:
//!    429 Too Many Requests and 503 Service Unavailable (after the server's `Retry-After` when
//!    it sends one), 500 Internal Server Error (except the ones that say the request itself is
//!    wrong: an admission webhook that cannot be called, which apply waits for on its own, and
//!    a server-side apply the schema refuses), 504 Gateway Timeout, a connection closed or
//!    reset before the answer, and a connection that could not be opened in time. Between
//!    attempts: exponential backoff from [`RetryPolicy::first_delay`] doubling to
//!    [`RetryPolicy::max_delay`], with jitter (a delay is drawn between half and all of it);
//!    at most [`RetryPolicy::attempts`] attempts, and never past the deadline of the
//!    [`RequestScope`] the request runs in (a node's timeout during apply). Only a failure
//!    that persists reaches the caller.
//! 3. **Every retry is visible**: a [`RetryNotice`] goes to the scope's channel (apply turns
//!    it into a progress event naming the node and object), or, outside any scope, to the log
//!    as a warning.
//!
//! The request body must be replayable to be retried; the kube client builds every body from
//! bytes, so all are. A retried create (POST) whose first attempt the server did handle
//! before the connection broke answers 409 AlreadyExists, as it would for kubectl.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;
use kube::client::{Body, DynBody};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{Instant, Sleep};

/// How long an answer may take by default (the API server's own limit for a request is one
/// minute; an admission webhook may take up to 30 seconds of it).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long opening a connection may take at most.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Error bodies longer than this are not read whole to decide whether a 500 is transient.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Timeouts and retries of the requests to one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSettings {
    pub connect_timeout: Duration,
    /// How long an answer may take (`--request-timeout`).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for RequestSettings {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

impl RequestSettings {
    /// The defaults with `request_timeout` (the connect timeout is never longer).
    pub fn with_request_timeout(request_timeout: Duration) -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT.min(request_timeout),
            request_timeout,
            ..Self::default()
        }
    }
}

/// When and how often a transient failure is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// The backoff before the first retry (before jitter).
    pub first_delay: Duration,
    /// The backoff never grows past this (before jitter).
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the failure is final.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1 for the first), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(16));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// A request that was retried: what failed, and when the next attempt goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryNotice {
    /// The request, e.g. `PATCH configmaps app/settings`.
    pub request: String,
    /// What went wrong, e.g. `HTTP 503 Service Unavailable (Retry-After: 1s)`.
    pub reason: String,
    /// The attempt about to be made (2 for the first retry).
    pub attempt: u32,
    /// Attempts in all.
    pub attempts: u32,
    pub delay: Duration,
}

impl std::fmt::Display for RetryNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; retrying in {:.1}s (attempt {} of {})",
            self.request,
            self.reason,
            self.delay.as_secs_f64(),
            self.attempt,
            self.attempts
        )
    }
}

/// What the requests made inside [`with_request_scope`] share: a deadline no retry goes
/// past, and where retries are reported.
#[derive(Debug, Clone, Default)]
pub struct RequestScope {
    pub deadline: Option<Instant>,
    pub notices: Option<UnboundedSender<RetryNotice>>,
}

tokio::task_local! {
    static SCOPE: RequestScope;
}

/// Runs `future` with `scope` for every cluster request it makes (on this task).
pub async fn with_request_scope<F: Future>(scope: RequestScope, future: F) -> F::Output {
    SCOPE.scope(scope, future).await
}

/// A request that got no answer within the request timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no answer within {}", crate::model::format_duration(*after))]
pub struct NoAnswer {
    pub after: Duration,
}

/// The [`NoAnswer`] somewhere in `error`'s chain of sources.
pub fn find_no_answer<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a NoAnswer> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<NoAnswer>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// The layer that puts [`Transport`] around the kube client's HTTP stack.
#[derive(Debug, Clone)]
pub struct TransportLayer {
    settings: Arc<RequestSettings>,
}

impl TransportLayer {
    pub fn new(settings: RequestSettings) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }
}

impl<S> tower_layer::Layer<S> for TransportLayer {
    type Service = Transport<S>;

    fn layer(&self, inner: S) -> Transport<S> {
        Transport {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            settings: self.settings.clone(),
        }
    }
}

/// Timeouts and retries around `S` (see the module's overview). The inner service is shared
/// by the attempts of every request; it is held only to hand a request over, not while the
/// answer comes.
pub struct Transport<S> {
    inner: Arc<tokio::sync::Mutex<S>>,
    settings: Arc<RequestSettings>,
}

type HttpResponse = Response<Box<DynBody>>;

impl<S> tower_service::Service<Request<Body>> for Transport<S>
where
    S: tower_service::Service<Request<Body>, Response = HttpResponse, Error = BoxError>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<HttpResponse, BoxError>>;

    /// Always ready: each attempt waits for the inner service itself.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(send(self.inner.clone(), self.settings.clone(), request))
    }
}

/// What one attempt came to.
enum Verdict {
    /// Hand it to the caller.
    Final(Result<HttpResponse, BoxError>),
    /// Worth another attempt; `last` goes to the caller if there is none.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        last: Result<HttpResponse, BoxError>,
    },
}

async fn send<S>(
    inner: Arc<tokio::sync::Mutex<S>>,
    settings: Arc<RequestSettings>,
    request: Request<Body>,
) -> Result<HttpResponse, BoxError>
where
    S: tower_service::Service<Request<Body>, Response = HttpResponse, Error = BoxError>,
{
    let scope = SCOPE.try_with(Clone::clone).unwrap_or_default();
    let watch = is_watch(request.uri());
    let what = describe(&request);
    let policy = &settings.retry;
    let (parts, body) = request.into_parts();
    let replay = body.try_clone();
    let mut body = Some(body);
    let mut attempt = 1;
    loop {
        let body = match body.take() {
            Some(b) => b,
            None => match replay.as_ref().and_then(Body::try_clone) {
                Some(b) => b,
                None => Body::empty(),
            },
        };
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        *request.extensions_mut() = parts.extensions.clone();
        let outcome = attempt_once(&inner, request, settings.request_timeout, watch).await;
        let (reason, retry_after, last) = match judge(outcome).await {
            Verdict::Final(result) => return result,
            Verdict::Transient {
                reason,
                retry_after,
                last,
            } => (reason, retry_after, last),
        };
        if attempt >= policy.attempts || replay.is_none() {
            return last;
        }
        let delay = match retry_after {
            Some(after) if after > policy.max_retry_after => return last,
            Some(after) => after,
            None => jitter(policy.backoff(attempt)),
        };
        if scope
            .deadline
            .is_some_and(|deadline| Instant::now() + delay >= deadline)
        {
            return last;
        }
        // The answer is dropped before the wait: its connection goes back to the pool.
        drop(last);
        attempt += 1;
        let notice = RetryNotice {
            request: what.clone(),
            reason,
            attempt,
            attempts: policy.attempts,
            delay,
        };
        match &scope.notices {
            Some(tx) => {
                let _ = tx.send(notice);
            }
            None => tracing::warn!("{notice}"),
        }
        tokio::time::sleep(delay).await;
    }
}

/// One attempt: the answer's head within `timeout`; the body of an answer that is not a watch
/// by the same time.
async fn attempt_once<S>(
    inner: &tokio::sync::Mutex<S>,
    request: Request<Body>,
    timeout: Duration,
    watch: bool,
) -> Result<HttpResponse, BoxError>
where
    S: tower_service::Service<Request<Body>, Response = HttpResponse, Error = BoxError>,
{
    let deadline = Instant::now() + timeout;
    let answer = {
        let mut service = inner.lock().await;
        futures::future::poll_fn(|cx| service.poll_ready(cx)).await?;
        service.call(request)
    };
    match tokio::time::timeout_at(deadline, answer).await {
        Err(_) => Err(Box::new(NoAnswer { after: timeout })),
        Ok(Err(e)) => Err(e),
        Ok(Ok(response)) if watch => Ok(response),
        Ok(Ok(response)) => Ok(response.map(|body| {
            Box::new(TimedBody {
                inner: body,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                after: timeout,
            }) as Box<DynBody>
        })),
    }
}

/// Whether the attempt's outcome is final or worth another attempt.
async fn judge(outcome: Result<HttpResponse, BoxError>) -> Verdict {
    let response = match outcome {
        Ok(response) => response,
        Err(error) => {
            return match transient_error(error.as_ref()) {
                Some(reason) => Verdict::Transient {
                    reason,
                    retry_after: None,
                    last: Err(error),
                },
                None => Verdict::Final(Err(error)),
            };
        }
    };
    let status = response.status();
    let phrase = status.canonical_reason().unwrap_or("");
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let reason = match retry_after {
                Some(after) => format!(
                    "HTTP {} {phrase} (Retry-After: {}s)",
                    status.as_u16(),
                    after.as_secs()
                ),
                None => format!("HTTP {} {phrase}", status.as_u16()),
            };
            Verdict::Transient {
                reason,
                retry_after,
                last: Ok(response),
            }
        }
        StatusCode::GATEWAY_TIMEOUT => Verdict::Transient {
            reason: format!("HTTP {} {phrase}", status.as_u16()),
            retry_after: None,
            last: Ok(response),
        },
        StatusCode::INTERNAL_SERVER_ERROR => {
            let (parts, body) = response.into_parts();
            let bytes = match read_limited(body).await {
                Ok(bytes) => bytes,
                Err(error) => return Verdict::Final(Err(error)),
            };
            let message = status_message(&bytes);
            let rebuilt = Response::from_parts(parts, full_body(bytes));
            if is_permanent_500(&message) {
                return Verdict::Final(Ok(rebuilt));
            }
            Verdict::Transient {
                reason: format!(
                    "HTTP 500 {phrase}: {}",
                    meshplan_k8s::text::clip(&message, meshplan_k8s::text::ECHO_LIMIT)
                ),
                retry_after: None,
                last: Ok(rebuilt),
            }
        }
        _ => Verdict::Final(Ok(response)),
    }
}

/// A 500 that another attempt would get again: the request is refused for what it is.
fn is_permanent_500(message: &str) -> bool {
    // An admission webhook whose backend is not serving yet: apply waits for it on its own.
    message.contains("failed calling webhook")
        // Server-side apply of a field the schema does not declare.
        || message.contains("failed to create typed patch object")
}

/// The `message` of a Status body, else the body's text.
fn status_message(bytes: &Bytes) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).trim().to_owned())
}

/// Why a transport error is worth another attempt (None: it is not).
fn transient_error(error: &(dyn StdError + 'static)) -> Option<String> {
    if find_no_answer(error).is_some() {
        return None;
    }
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                // Nothing listens: retrying does not help (the cluster is down or the URL wrong).
                K::ConnectionRefused => None,
                K::TimedOut => Some("the connection could not be opened in time".to_owned()),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    Some(format!("the connection broke ({io})"))
                }
                _ => None,
            };
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_closed() || h.is_canceled())
        {
            return Some("the connection was closed before the answer".to_owned());
        }
        current = e.source();
    }
    None
}

/// Whether the request is a watch (its answer is a stream without an end).
fn is_watch(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| matches!(p, "watch=true" | "watch=1" | "watch"))
    })
}

/// `PATCH configmaps app/settings`, `GET deployments.apps in app`, `GET /version`.
fn describe(request: &Request<Body>) -> String {
    let path = request.uri().path();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return format!("{} {path}", request.method()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        _ => (None, rest),
    };
    let resource = match (rest.first(), group) {
        (Some(r), "") => (*r).to_owned(),
        (Some(r), g) => format!("{r}.{g}"),
        (None, _) => return format!("{} {path}", request.method()),
    };
    let object = match (rest.get(1), namespace) {
        (Some(name), Some(ns)) => format!(" {ns}/{name}"),
        (Some(name), None) => format!(" {name}"),
        (None, Some(ns)) => format!(" in {ns}"),
        (None, None) => String::new(),
    };
    let sub = rest.get(2).map(|s| format!(" ({s})")).unwrap_or_default();
    format!("{} {resource}{object}{sub}", request.method())
}

/// `delay` less a random part of up to its half, so that clients that failed together do not
/// retry together.
fn jitter(delay: Duration) -> Duration {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    use std::hash::BuildHasher as _;
    let draw = std::collections::hash_map::RandomState::new()
        .hash_one(DRAWS.fetch_add(1, Ordering::Relaxed));
    let half = delay / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(if nanos == 0 { 0 } else { draw % (nanos + 1) })
}

/// The body, up to [`ERROR_BODY_LIMIT`] bytes.
async fn read_limited(mut body: Box<DynBody>) -> Result<Bytes, BoxError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
            if out.len() > ERROR_BODY_LIMIT {
                out.truncate(ERROR_BODY_LIMIT);
                break;
            }
        }
    }
    Ok(Bytes::from(out))
}

fn full_body(bytes: Bytes) -> Box<DynBody> {
    Box::new(http_body_util::Full::new(bytes).map_err(|never| match never {}))
}

/// A body that fails with [`NoAnswer`] when it has not ended by the request's deadline.
struct TimedBody {
    inner: Box<DynBody>,
    deadline: Pin<Box<Sleep>>,
    after: Duration,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(NoAnswer { after: self.after })))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_jitter_keeps_half_at_least() {
        let p = RetryPolicy::default();
        // The integration tests' faults that must fail a step hit this many attempts.
        assert_eq!(p.attempts, 6);
        let delays: Vec<u128> = (1..=7).map(|r| p.backoff(r).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(800));
            assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn requests_are_described_by_resource_and_object() {
        let req = |method: &str, uri: &str| {
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            describe(&req(
                "PATCH",
                "http://h/api/v1/namespaces/app/configmaps/settings?fieldManager=meshplan"
            )),
            "PATCH configmaps app/settings"
        );
        assert_eq!(
            describe(&req(
                "GET",
                "http://h/apis/apps/v1/namespaces/app/deployments"
            )),
            "GET deployments.apps in app"
        );
        assert_eq!(
            describe(&req(
                "PUT",
                "http://h/apis/cert-manager.io/v1/namespaces/a/certificates/c/status"
            )),
            "PUT certificates.cert-manager.io a/c (status)"
        );
        assert_eq!(
            describe(&req("DELETE", "http://h/api/v1/namespaces/app")),
            "DELETE namespaces app"
        );
        assert_eq!(describe(&req("GET", "http://h/version")), "GET /version");
        assert!(is_watch(
            &"http://h/api/v1/configmaps?watch=true&x=1".parse().unwrap()
        ));
        assert!(!is_watch(
            &"http://h/api/v1/configmaps?x=1".parse().unwrap()
        ));
    }

    #[test]
    fn permanent_500s_are_told_apart() {
        assert!(is_permanent_500(
            "Internal error occurred: failed calling webhook \"w\": connection refused"
        ));
        assert!(is_permanent_500(
            "failed to create typed patch object (default/w1; example.com/v1, Kind=Widget): .spec.foo: field not declared in schema"
        ));
        assert!(!is_permanent_500(
            "Internal error occurred: etcdserver: leader changed"
        ));
        let body = Bytes::from_static(br#"{"kind":"Status","message":"boom","code":500}"#);
        assert_eq!(status_message(&body), "boom");
        assert_eq!(status_message(&Bytes::from_static(b" plain ")), "plain");
    }

    #[test]
    fn refused_connections_are_final_resets_are_transient() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(transient_error(&refused), None);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(transient_error(&reset).unwrap().contains("broke"));
        let no_answer = NoAnswer {
            after: Duration::from_secs(2),
        };
        assert_eq!(transient_error(&no_answer), None);
        assert_eq!(no_answer.to_string(), "no answer within 2s");
    }
}
