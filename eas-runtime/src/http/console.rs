//! The web console at `/console`: services, instances, the autoscaler's decisions, the
//! second-level series ([`crate::series`]), stress reports, spot price curves and a viewer of
//! `eas simulate` reports, for a person with the admin token. Plain HTML, CSS and one script
//! that draws on canvas, all inside the binary (`console/`): no network, no CDN.
//!
//! | route | what |
//! |---|---|
//! | `GET /console?token=T` | with the admin token: a session cookie, then 303 to `/console` (the token leaves the URL) |
//! | `POST /console/login` | the login form (`token=T`), the same |
//! | `GET /console` | the console with a session, else the login page |
//! | `GET /console/assets/{console.css,console.js}` | the static parts (no data) |
//! | `GET /console/api/overview` | services (status, versions, group, weight, decisions) and instances (state, restarts, device) |
//! | `GET /console/api/series` | [`crate::series::Series::to_json`] |
//! | `GET /console/api/prices` | the 48-hour spot price curve of every instance type and zone of the platform's price traces, with the recommended bid |
//! | `GET /console/api/stress[/{name}/report]` | the benchmark tasks and their reports (the control API's `/api/v2/benchmark-tasks`, asked in process) |
//! | `POST /console/api/services/{name}/restart` | replaces the service's instances; wants the session's CSRF token in `X-CSRF-Token` |
//!
//! Sessions: a random 256-bit id in a cookie (`HttpOnly; SameSite=Strict; Path=/console`),
//! at most [`MAX_SESSIONS`] (the oldest goes first), each for [`SESSION_TTL`]. A request
//! without a live session gets the login page or 401, never data. Pages carry a strict
//! `Content-Security-Policy` (scripts from `/console/assets` only), and the script builds
//! the DOM with `textContent`: names, messages and configs are never parsed as HTML.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eas_core::PricingOracle as _;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use tower::ServiceExt as _;

use super::Edge;
use super::control::{instance, rfc3339, summary};
use super::gate::{AdminGate, Peer, Verdict};
use crate::control::ControlPlane;

/// The most sessions at a time; a new one past it ends the oldest.
pub const MAX_SESSIONS: usize = 64;
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How far back the spot price curves go.
pub const PRICE_WINDOW: Duration = Duration::from_secs(48 * 3600);

const COOKIE: &str = "eas_console";
const CSRF_HEADER: &str = "x-csrf-token";
const PAGE: &str = include_str!("console/console.html");
const LOGIN: &str = include_str!("console/login.html");
const CSS: &str = include_str!("console/console.css");
const SCRIPT: &str = include_str!("console/console.js");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

struct Session {
    csrf: String,
    expires: Instant,
}

/// What the console's routes share.
struct Console {
    plane: Arc<ControlPlane>,
    gate: Arc<AdminGate>,
    /// The whole edge, to ask the control API's other routes in process (stress reports).
    edge: Weak<Edge>,
    sessions: Sessions,
}

/// The live sessions, by id.
#[derive(Default)]
struct Sessions(Mutex<HashMap<String, Session>>);

type Shared = State<Arc<Console>>;

/// The console's routes, behind the admin token's `gate`.
pub(super) fn router(plane: Arc<ControlPlane>, gate: Arc<AdminGate>, edge: Weak<Edge>) -> Router {
    let console = Arc::new(Console {
        plane,
        gate,
        edge,
        sessions: Sessions::default(),
    });
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/login", post(login))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(script))
        .route("/console/api/overview", get(overview))
        .route("/console/api/series", get(series))
        .route("/console/api/prices", get(prices))
        .route("/console/api/stress", get(stress_list))
        .route("/console/api/stress/{name}/report", get(stress_report))
        .route("/console/api/services/{name}/restart", post(restart))
        .with_state(console)
}

/// 32 random bytes, hex.
fn random_id() -> Option<String> {
    use std::fmt::Write as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

impl Console {
    /// Lets `token` in with a session, or says why not (on the login page).
    fn sign_in(&self, peer: Option<Peer>, token: Option<&str>) -> Response {
        match self.gate.check(peer, token) {
            Verdict::Admitted => enter(self),
            Verdict::Throttled(wait) => {
                let mut page = login_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many wrong tokens from your address: wait a minute and try again.",
                );
                page.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(super::gate::retry_after(wait)),
                );
                page
            }
            Verdict::Wrong | Verdict::Missing => {
                login_page(StatusCode::UNAUTHORIZED, "That token is wrong.")
            }
        }
    }

    fn session(&self, headers: &HeaderMap) -> Option<String> {
        self.sessions.csrf_of(session_cookie(headers)?)
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; the oldest goes when the table is full.
    fn open(&self) -> Option<String> {
        let id = random_id()?;
        let csrf = random_id()?;
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => sessions.remove(&id),
                None => break,
            };
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf,
                expires: now + SESSION_TTL,
            },
        );
        Some(id)
    }

    /// The CSRF token of the live session `id`.
    fn csrf_of(&self, id: &str) -> Option<String> {
        let sessions = self.lock();
        // The id is compared by the map's hash lookup: it is 256 random bits, not guessable
        // piecewise.
        let session = sessions.get(id)?;
        (session.expires > Instant::now()).then(|| session.csrf.clone())
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn login_page(status: StatusCode, message: &str) -> Response {
    // `message` is one of our own constant sentences, never request text.
    html(status, LOGIN.replace("{{MESSAGE}}", message))
}

/// A session cookie and a 303 to `/console`.
fn enter(console: &Console) -> Response {
    let Some(id) = console.sessions.open() else {
        return login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "No randomness for a session id; try again.",
        );
    };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/console"));
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(serde::Deserialize)]
struct PageQuery {
    token: Option<String>,
}

async fn page(
    State(console): Shared,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Ok(Query(PageQuery { token: Some(token) })) = query {
        return console.sign_in(peer.map(|p| p.0), Some(&token));
    }
    match console.session(&headers) {
        Some(csrf) => html(StatusCode::OK, PAGE.replace("{{CSRF}}", &csrf)),
        None => login_page(StatusCode::OK, ""),
    }
}

/// `application/x-www-form-urlencoded` `token=...`.
async fn login(State(console): Shared, peer: Option<Extension<Peer>>, body: Bytes) -> Response {
    let token = std::str::from_utf8(&body).ok().and_then(|text| {
        text.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .and_then(form_decode)
    });
    // A form without a token is a wrong guess too: it costs an attempt.
    console.sign_in(peer.map(|p| p.0), Some(token.as_deref().unwrap_or("")))
}

/// Decodes one form value (`+` is a space, `%XX` a byte); `None` when malformed.
fn form_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hi = char::from(input.next()?).to_digit(16)?;
                let lo = char::from(input.next()?).to_digit(16)?;
                bytes.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// A request of the console's own script: with a live session, or 401.
struct Viewer {
    csrf: String,
}

impl axum::extract::FromRequestParts<Arc<Console>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Response> {
        console
            .session(&parts.headers)
            .map(|csrf| Self { csrf })
            .ok_or_else(|| {
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"error": "no console session: open /console?token=ADMIN"})),
                )
                    .into_response()
            })
    }
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn overview(_: Viewer, State(console): Shared) -> Response {
    let plane = &console.plane;
    let provider = plane.provider().name();
    let services: Vec<Value> = plane
        .list()
        .iter()
        .map(|view| {
            let gpu = view
                .spec
                .pointer("/metadata/gpu")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let device = if gpu > 0 {
                format!("{gpu} GPU ({provider})")
            } else {
                format!("CPU ({provider})")
            };
            let instances: Vec<Value> = view
                .replicas
                .iter()
                .map(|r| {
                    let mut value = serde_json::to_value(instance(r)).unwrap_or_default();
                    if let Some(map) = value.as_object_mut() {
                        map.insert("Index".into(), json!(r.index()));
                        map.insert("Version".into(), json!(r.version()));
                        map.insert("Device".into(), json!(device));
                    }
                    value
                })
                .collect();
            let versions: Vec<Value> = plane
                .versions_of(&view.name)
                .map(|(versions, current)| {
                    versions
                        .iter()
                        .map(|v| {
                            json!({
                                "Version": v.version,
                                "BuildTime": rfc3339(
                                    SystemTime::UNIX_EPOCH
                                        + Duration::from_millis(v.built_at_unix_ms)
                                ),
                                "Message": v.message,
                                "Current": v.version == current,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut value =
                serde_json::to_value(summary(plane.cluster(), view)).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("Instances".into(), Value::Array(instances));
                map.insert("Versions".into(), Value::Array(versions));
            }
            value
        })
        .collect();
    no_store(
        axum::Json(json!({
            "Cluster": plane.cluster(),
            "Provider": provider,
            "Services": services,
        }))
        .into_response(),
    )
}

async fn series(_: Viewer, State(console): Shared) -> Response {
    no_store(axum::Json(console.plane.series().to_json(None)).into_response())
}

async fn prices(_: Viewer, State(console): Shared) -> Response {
    let body = match console.plane.price_traces() {
        Some(oracle) => price_curves(oracle, SystemTime::now()),
        None => json!({"curves": []}),
    };
    no_store(axum::Json(body).into_response())
}

/// The last [`PRICE_WINDOW`] of every spot series, ending now or where the traces end when
/// that is earlier (recorded traces), with the bid the oracle recommends at that moment.
fn price_curves(oracle: &eas_scheduler::pricing::TraceOracle, now: SystemTime) -> Value {
    let end = oracle
        .span()
        .map_or(now, |(_, last)| if last < now { last } else { now });
    let from = end
        .checked_sub(PRICE_WINDOW)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let curves: Vec<Value> = oracle
        .series_keys()
        .filter_map(|(ty, zone)| {
            let history = oracle.spot_history(ty, zone, from, end).ok()?;
            let mut points: Vec<(u64, f64)> = history
                .iter()
                .map(|p| (unix(p.at.max(from)), p.usd_per_hour))
                .collect();
            // The curve holds its last price until the end of the window.
            if let Some(&(_, last)) = points.last() {
                points.push((unix(end), last));
            }
            Some(json!({
                "instance_type": ty,
                "zone": zone.as_str(),
                "points": points,
                "bid": oracle.recommend_bid(ty, zone, end).ok(),
                "on_demand": oracle.on_demand_price_in(ty, zone).ok(),
            }))
        })
        .collect();
    json!({
        "from": unix(from),
        "to": unix(end),
        "window_h": PRICE_WINDOW.as_secs() / 3600,
        "curves": curves,
    })
}

/// Asks the edge's own routes for `path` with the admin token (no socket), and passes the
/// answer on.
async fn ask_control(console: &Console, path: &str) -> Response {
    let Some(edge) = console.edge.upgrade() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let request = Request::get(path)
        .header(header::AUTHORIZATION, console.gate.token())
        .body(Body::empty());
    let Ok(request) = request else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match edge.router().oneshot(request).await {
        Ok(response) => no_store(response),
        Err(never) => match never {},
    }
}

async fn stress_list(_: Viewer, State(console): Shared) -> Response {
    ask_control(&console, "/api/v2/benchmark-tasks").await
}

async fn stress_report(_: Viewer, State(console): Shared, Path(name): Path<String>) -> Response {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        return StatusCode::NOT_FOUND.into_response();
    }
    // The control API names a cluster first; this deployment answers to any name.
    ask_control(
        &console,
        &format!("/api/v2/benchmark-tasks/local/{name}/report"),
    )
    .await
}

async fn restart(
    viewer: Viewer,
    State(console): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(viewer.csrf.as_bytes())) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "the CSRF token is missing or wrong"})),
        )
            .into_response();
    }
    match console.plane.restart(&name) {
        Ok(fresh) => axum::Json(json!({
            "message": format!("{} instances are being replaced", fresh.len())
        }))
        .into_response(),
        Err(e) => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_should_decode_plus_and_percent() {
        assert_eq!(form_decode("a+b%21").as_deref(), Some("a b!"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
    }

    #[test]
    fn the_session_cookie_should_be_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; eas_console=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("eas_consolex=1"));
        assert_eq!(session_cookie(&headers), None);
    }

    #[test]
    fn the_session_table_should_stay_bounded() {
        let sessions = Sessions::default();
        let first = sessions.open().expect("an id");
        assert!(sessions.csrf_of(&first).is_some());
        assert!(sessions.csrf_of("nope").is_none());
        for _ in 0..MAX_SESSIONS + 10 {
            sessions.open().expect("an id");
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert!(sessions.csrf_of(&first).is_none(), "the oldest went first");
    }
}
