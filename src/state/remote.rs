//! [`Remote`]: the state's Kubernetes client, on a runtime of its own.
//!
//! The [`super::StateStore`] trait is synchronous (the engine commits from anywhere, under
//! whatever runtime), while kube is async. The state's client therefore lives on a small
//! runtime of its own (one worker thread): a synchronous caller hands it a future and waits
//! for the result ([`Remote::block_on`]); an async caller awaits it without blocking its own
//! runtime ([`Remote::run`]). Since the client's connections belong to this runtime, waiting
//! on it never starves the caller's runtime, whatever its flavour.
//!
//! Requests that fail in a way worth trying again (429, 5xx, a connection error) are
//! retried a few times with backoff by [`with_retries`]; every caller makes its writes safe
//! to repeat (preconditions, names nobody else uses).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::StateError;

/// The state's client and its runtime.
pub struct Remote {
    runtime: Option<tokio::runtime::Runtime>,
    client: kube::Client,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}

impl Remote {
    /// A client for `config` on a runtime of its own. Sends no request.
    pub fn connect(config: kube::Config) -> Result<Arc<Self>, StateError> {
        let failed = |message: String| StateError::Cluster {
            what: "connecting the state's client".to_owned(),
            namespace: "-".to_owned(),
            message,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("meshplan-state")
            .enable_all()
            .build()
            .map_err(|e| failed(e.to_string()))?;
        // The client spawns its connection worker where it is built: on this runtime.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(kube::Client::try_from(config));
        });
        let client = rx
            .recv()
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        Ok(Arc::new(Self {
            runtime: Some(runtime),
            client,
        }))
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.runtime {
            Some(rt) => rt.handle(),
            // Only Drop takes the runtime.
            None => unreachable!("the state's runtime is gone"),
        }
    }

    /// Runs `fut` on the state's runtime and waits for it, blocking this thread (for the
    /// synchronous store methods). Never call it from the state's runtime itself.
    pub fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StateError>> + Send + 'static,
    ) -> Result<T, StateError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| StateError::Cluster {
            what: "a request of the state".to_owned(),
            namespace: "-".to_owned(),
            message: "the request's task ended without an answer".to_owned(),
        })?
    }

    /// Runs `fut` on the state's runtime; the caller awaits it on its own runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StateError>> + Send + 'static,
    ) -> Result<T, StateError> {
        match self.handle().spawn(fut).await {
            Ok(result) => result,
            Err(e) => Err(StateError::Cluster {
                what: "a request of the state".to_owned(),
                namespace: "-".to_owned(),
                message: e.to_string(),
            }),
        }
    }

    /// Starts `fut` on the state's runtime (a background task such as a lease renewal).
    pub fn spawn(
        &self,
        fut: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.handle().spawn(fut)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one is refused: let its threads go.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Whether a failed request is worth sending again: 429, a 5xx, or no answer at all.
pub(crate) fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has failed transiently three times
/// (pauses of 100 ms, then 400 ms).
pub(crate) async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut pause = Duration::from_millis(100);
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if tries < 3 && is_transient(&e) => {
                tracing::debug!("state request failed ({e}); trying again");
                tokio::time::sleep(pause).await;
                pause *= 4;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// The HTTP status of a refused request (None: no answer).
pub(crate) fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// What a failed request says, for messages: the server's message, else the error.
pub(crate) fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// Creates the namespace `name` when it is missing (labelled as meshplan's).
pub(crate) async fn ensure_namespace(client: kube::Client, name: &str) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let api: kube::Api<Namespace> = kube::Api::all(client);
    if with_retries(|| api.get_opt(name)).await?.is_some() {
        return Ok(());
    }
    let (k, v) = super::lease::MANAGED_BY;
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(k.to_owned(), v.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let pp = kube::api::PostParams::default();
    match with_retries(|| api.create(&pp, &ns)).await {
        Err(e) if status_code(&e) != Some(409) => Err(e),
        _ => Ok(()),
    }
}
