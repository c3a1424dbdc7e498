//! The live web view (`server --http ADDR` on a loopback address): agents with their facts
//! and up/down state, running and recent dispatches with each target's outcome and output,
//! the cluster graph of the embedded daemon (nodes, links, services), updated live over
//! server-sent events. Read-only: it only reads the server's state. The
//! page and its script are embedded in the binary (`web/`), nothing is fetched from
//! elsewhere, and the page's Content-Security-Policy allows only this origin.
//!
//! Who may look: without credentials on loopback only. Off loopback only over TLS
//! (`http_tls_cert`/`http_tls_key`) and only to holders of the web-view token, derived from
//! the fleet key (`commsctl web-token` prints it; [`WebView::routes_with_token`]); otherwise
//! the server serves metrics and health there but not this view (docs/OPERATIONS.md).
//!
//! | path | answer |
//! |---|---|
//! | `/` | the page |
//! | `/app.js` | its script |
//! | `/api/state` | the state as JSON (`agents`, `dispatches`, `live` (the output so far of targets still running), `cluster` (the embedded daemon's map, or `null`), `server`) |
//! | `/api/events` | server-sent events: `state` with that JSON whenever it changed (checked every second) |

use std::convert::Infallible;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;

use crate::state::State;

const INDEX: &str = include_str!("web/index.html");
const APP: &str = include_str!("web/app.js");
/// Dispatches shown (the newest).
const SHOWN: usize = 20;
/// How often the event stream looks for a change.
const TICK: Duration = Duration::from_secs(1);
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:";

/// The web view's routes; they answer `503` until [`WebView::attach`] (the server starts after
/// the HTTP listener, so that `/readyz` answers from the first second).
#[derive(Debug, Clone, Default)]
pub struct WebView {
    state: Arc<OnceLock<Weak<State>>>,
    cluster: Arc<OnceLock<commsd::ClusterMapSource>>,
}

impl WebView {
    /// The routes of the view, for holders of `token` only: an `Authorization: Bearer` header,
    /// the `comms_view` cookie, or `?token=` (which sets that cookie: `Secure`, `HttpOnly`,
    /// `SameSite=Strict`). For serving over TLS off loopback.
    pub fn routes_with_token(&self, token: String) -> axum::Router {
        let token: Arc<str> = Arc::from(token);
        self.routes()
            .layer(axum::middleware::from_fn_with_state(token, require_token))
    }

    /// The routes of the view (no credentials: serve them on loopback only).
    pub fn routes(&self) -> axum::Router {
        axum::Router::new()
            .route("/", get(index))
            .route("/app.js", get(app))
            .route("/api/state", get(state_json))
            .route("/api/events", get(events))
            .with_state(self.clone())
    }

    pub(crate) fn attach(&self, state: &Arc<State>) {
        let _ = self.state.set(Arc::downgrade(state));
    }

    /// Shows the cluster graph of the embedded daemon (`CLUSTER_MAP`'s nodes, links and
    /// services); without one (a broker, or `--no-embed`) the view has no graph.
    pub fn show_cluster(&self, source: commsd::ClusterMapSource) {
        let _ = self.cluster.set(source);
    }

    async fn snapshot(&self) -> Option<String> {
        let cluster = match self.cluster.get() {
            Some(source) => source.get().await,
            None => None,
        };
        let state = self.state.get()?.upgrade()?;
        let dispatches = state.store.recent(SHOWN).unwrap_or_else(|e| {
            tracing::warn!("web view: history unreadable: {e}");
            Vec::new()
        });
        let json = serde_json::json!({
            "server": {
                "backend": state.backend,
                "running": state.running(),
            },
            "agents": state.agents(),
            "dispatches": dispatches,
            "live": state.live_output(),
            "cluster": cluster,
        });
        Some(json.to_string())
    }
}

const COOKIE: &str = "comms_view";

/// The token a request presents, and whether it came in the query (then it becomes a cookie).
fn presented(req: &axum::extract::Request) -> Option<(String, bool)> {
    let headers = req.headers();
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some((t.trim().to_owned(), false));
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned());
    if let Some(t) = cookie {
        return Some((t, false));
    }
    req.uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| (v.to_owned(), true))
}

async fn require_token(
    Extract(token): Extract<Arc<str>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match presented(&req) {
        Some((given, from_query))
            if cd_wire::constant_time_eq(given.as_bytes(), token.as_bytes()) =>
        {
            let mut response = next.run(req).await;
            if from_query {
                let cookie = format!("{COOKIE}={given}; Path=/; Secure; HttpOnly; SameSite=Strict");
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().insert(header::SET_COOKIE, v);
                }
            }
            response
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            "the web view asks for its token: open /?token=<the output of `commsctl web-token`>\n",
        )
            .into_response(),
    }
}

async fn index() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        INDEX,
    )
        .into_response()
}

async fn app() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP,
    )
        .into_response()
}

async fn state_json(Extract(view): Extract<WebView>) -> Response {
    match view.snapshot().await {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the server is starting\n").into_response(),
    }
}

async fn events(
    Extract(view): Extract<WebView>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((view, String::new()), |(view, last)| async move {
        loop {
            if let Some(now) = view.snapshot().await {
                if now != last {
                    let event = Event::default().event("state").data(now.clone());
                    return Some((Ok(event), (view, now)));
                }
            }
            tokio::time::sleep(TICK).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
