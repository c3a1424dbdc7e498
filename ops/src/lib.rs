//! `comms-ops`: the operator's HTTP endpoint of `commsd`, `server` and `agent`.
//!
//! Off by default; one flag (`--http ADDR`, or `http = "ADDR"` in the binary's config section)
//! starts it. It serves:
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | every metric of the process, Prometheus/OpenMetrics text format |
//! | `GET /healthz` | `200 ok` while the process serves HTTP (liveness) |
//! | `GET /readyz` | `200 ready` once the process does its job (daemon listening, endpoint advertised), else `503` and the reason |
//!
//! # Layout
//! - [`Metrics`]: the process's metric registry, shared, so that parts started later (the
//!   server's endpoint after the embedded daemon) register into a listener already serving.
//! - [`Readiness`]: what `/readyz` answers, set by the binary.
//! - [`serve`] / [`router`]: the HTTP listener (axum, HTTP/1) and its routes; the server adds
//!   its own routes to [`router`].
//! - [`transport`]: the metrics of a transport's [`comms_core::TransportStats`], the same for
//!   every backend. The daemon's and the server's own metrics live in those crates
//!   (`commsd::metrics`, the server's `metrics` module) as [`Collector`]s or registered metrics.
//!
//! - [`logs`]: the log set-up every binary shares (`RUST_LOG`, no ANSI colour off a terminal).
//! - [`cli`]: the `main` of the long-running fleet binaries (`server`, `agent`): log, command
//!   line, [`traced`] run, one-line error and exit code.
//! - `otel` (feature `otlp`): OTLP export of the traces comms makes (`comms_core::trace`).
//!
//! Metrics use the Prometheus project's Rust client ([`prometheus_client`], re-exported):
//! counters read at scrape time from the atomics the code already keeps ([`Collector`]), so
//! nothing is added to the hot paths. docs/OPERATIONS.md lists every metric.
//!
//! ```no_run
//! # async fn f() -> Result<(), comms_ops::OpsError> {
//! use comms_ops::{serve, Metrics, Readiness};
//! let (metrics, readiness) = (Metrics::default(), Readiness::new("starting"));
//! let http = serve("127.0.0.1:9464".parse().unwrap(), metrics.clone(), readiness.clone()).await?;
//! // ... the process starts its work, registering what it measures ...
//! # let collector = comms_ops::transport::TransportCollector::new(Default::default(), "memory");
//! metrics.register_collector(collector);
//! readiness.ready();
//! http.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use prometheus_client;
pub use prometheus_client::collector::Collector;

pub mod cli;
pub mod encode;
pub mod logs;
#[cfg(feature = "otlp")]
pub mod otel;
pub mod transport;

/// The content type of the OpenMetrics text format (Prometheus scrapes it natively).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the HTTP endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The address could not be bound.
    #[error("http endpoint: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The process's metric registry, shared by the HTTP listener and whoever registers.
/// Cheap to clone; every clone is the same registry.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Mutex<Registry>>);

impl Metrics {
    /// Adds a collector (read at each scrape).
    pub fn register_collector(&self, collector: impl Collector) {
        self.lock().register_collector(Box::new(collector));
    }

    /// Registers metrics directly (`registry.register(..)`, sub-registries...).
    pub fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.lock())
    }

    /// The OpenMetrics text of every registered metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.lock())?;
        Ok(text)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What `/readyz` answers: not ready (with a reason) until the binary says it is ready.
/// Cheap to clone; every clone is the same state.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<Mutex<Option<String>>>);

impl Readiness {
    /// Not ready yet, for `reason` (e.g. `"starting"`).
    pub fn new(reason: impl Into<String>) -> Self {
        Self(Arc::new(Mutex::new(Some(reason.into()))))
    }

    /// `/readyz` answers 200.
    pub fn ready(&self) {
        *self.lock() = None;
    }

    /// `/readyz` answers 503 with `reason`.
    pub fn not_ready(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// Ready until `stop` completes (the binary's shutdown signal), then logs `shutting down`
    /// and is not ready, for `stopping`, while the binary stops.
    pub async fn ready_until(&self, stop: impl std::future::Future<Output = ()>) {
        self.ready();
        stop.await;
        tracing::info!("shutting down");
        self.not_ready("stopping");
    }

    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), String> {
        match &*self.lock() {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone)]
struct Shared {
    metrics: Metrics,
    readiness: Readiness,
}

/// The routes `/metrics`, `/healthz`, `/readyz`, to serve alone ([`serve`]) or merged with
/// more routes (the server's web view).
pub fn router(metrics: Metrics, readiness: Readiness) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, readiness })
}

async fn scrape(State(shared): State<Shared>) -> Response {
    match shared.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::warn!("encoding the metrics failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded\n",
            )
                .into_response()
        }
    }
}

async fn readyz(State(shared): State<Shared>) -> Response {
    match shared.readiness.check() {
        Ok(()) => "ready\n".into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

/// A running HTTP endpoint; [`HttpEndpoint::shutdown`] stops it (dropping it does too).
#[derive(Debug)]
pub struct HttpEndpoint {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpEndpoint {
    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in progress finish, and waits for the listener task.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpEndpoint {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Binds `addr` and serves [`router`] on it until [`HttpEndpoint::shutdown`].
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
) -> Result<HttpEndpoint, OpsError> {
    serve_router(addr, router(metrics, readiness)).await
}

/// Runs `work` (a binary's whole life) with traces exported over OTLP when the `otlp`
/// feature is on and `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`otel`](crate#layout)), flushing
/// them at the end; otherwise just runs `work`.
pub async fn traced<T>(service: &str, work: impl std::future::Future<Output = T>) -> T {
    #[cfg(feature = "otlp")]
    let otel = otel::install_from_env(service);
    #[cfg(not(feature = "otlp"))]
    let _ = service;
    let outcome = work.await;
    #[cfg(feature = "otlp")]
    if let Some(otel) = otel {
        let _ = tokio::task::spawn_blocking(move || otel.shutdown()).await;
    }
    outcome
}

/// Binds `addr` and serves `app` over TLS with `tls` (its ALPN is set to HTTP/1.1 here).
/// Handshakes run per connection (a slow client holds up no one else).
pub async fn serve_router_tls(
    addr: SocketAddr,
    app: axum::Router,
    tls: Arc<rustls::ServerConfig>,
) -> Result<HttpEndpoint, OpsError> {
    let mut tls = Arc::unwrap_or_clone(tls);
    let bind = |source| OpsError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let local_addr = listener.local_addr().map_err(bind)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, config).handle(handle.clone());
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let serving = server.serve(app.into_make_service());
        tokio::pin!(serving);
        let served = tokio::select! {
            served = &mut serving => served,
            _ = stopped.cancelled() => {
                handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
                serving.await
            }
        };
        if let Err(e) = served {
            tracing::warn!("https endpoint stopped: {e}");
        }
    });
    tracing::info!(%local_addr, "http endpoint (TLS): /metrics, /healthz, /readyz");
    Ok(HttpEndpoint {
        local_addr,
        stop,
        task: Some(task),
    })
}

/// Binds `addr` and serves `app` (for a binary that adds routes to [`router`]).
pub async fn serve_router(addr: SocketAddr, app: axum::Router) -> Result<HttpEndpoint, OpsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| OpsError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| OpsError::Bind { addr, source })?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!("http endpoint stopped: {e}");
        }
    });
    tracing::info!(%local_addr, "http endpoint: /metrics, /healthz, /readyz");
    Ok(HttpEndpoint {
        local_addr,
        stop,
        task: Some(task),
    })
}
