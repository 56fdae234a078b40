//! The queue service protocol over HTTP and WebSocket, as the `eas-prediction` SDK's
//! `QueueClient` speaks it. An async service answers at `/api/predict/{service}` (its input
//! queue) and `/api/predict/{service}/sink` (its sink queue):
//!
//! | call | method | query | answer |
//! |---|---|---|---|
//! | put | POST, body = data | other keys become tags | 200, the index (decimal), header `X-Eas-Queueservice-Request-Id` |
//! | get | GET | `_index_`, `_length_`, `_timeout_`, `_raw_`, `_auto_delete_`, tags (`requestId`) | `DataFrameListProto` |
//! | watch | GET, WebSocket upgrade | `_watch_=true`, `_index_`, `_window_`, `_index_only_`, `_auto_commit_`, tags | one binary `DataFrameProto` per item |
//! | commit | PUT | `_indexes_=1,2` | 200 |
//! | delete | DELETE | `_indexes_=1,2` | 200 |
//! | truncate | DELETE | `_trunc_=true`, `_index_=N` | 200; removes indexes below N |
//! | attributes | GET | `_attrs_=true` | JSON object of strings |
//! | search | GET | `_search_=true`, `_index_=N` | JSON, 404 when no such item |
//!
//! Every call carries the service token as a plain `Authorization` header, as the SDK's
//! `QueueClient` sends it. The HMAC form (`Authorization: EAS <sig>`) is accepted only for a put
//! without a query string (what the SDK's `PredictClient` sends to an async service): the
//! signature covers the method, path, `Content-MD5`, `Content-Type` and `Date` but not the
//! query, and on a queue the query decides what a call does (a captured signed
//! `DELETE ?_indexes_=3` replayed as `?_trunc_=true&_index_=1000000` would empty the queue),
//! while a signed `GET` without one reads and deletes an item each time it is replayed. Any
//! other signed queue call is refused with 401 and a reason that says to send the plain token.
//! Query keys written `_name_` are the protocol's own: an unknown one, a value
//! that does not parse, a body over the server's limit or an unknown queue gets a 4xx with a
//! JSON body that names the parameter and the reason. A watcher that sends anything but
//! pings, pongs and close frames is disconnected with close code 1003 and a reason; its
//! uncommitted items go back to the queue for other consumers.
//!
//! Every call is counted in `eas_requests_total{service, instance="-", code}` (a watch once,
//! with code 101, when the socket opens).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Query};
use axum::http::{HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use prost::Message as _;

use super::{ApiError, Edge};
use crate::admission::Admission;
use crate::outcome::PredictError;
use crate::proto::streaming::DataFrameListProto;
use crate::queue::consumer::AsyncQueues;
use crate::queue::{
    DynQueue, GID_HEADER, GetQuery, Item, MAX_GET_TIMEOUT, MAX_LENGTH, NewItem, PROTOBUF,
    QueueError, REQUEST_ID_HEADER, Tags, UID_HEADER, Watch, WatchOptions,
};

const CONTROL_KEYS: [&str; 13] = [
    "_index_",
    "_length_",
    "_timeout_",
    "_raw_",
    "_auto_delete_",
    "_watch_",
    "_window_",
    "_index_only_",
    "_auto_commit_",
    "_indexes_",
    "_trunc_",
    "_attrs_",
    "_search_",
];

/// Serves one queue call for an async `service`; `queue` is the path after the service name
/// (empty: the input queue; `sink`: the sink queue).
pub(super) async fn serve(
    edge: &Edge,
    admission: &Admission,
    queues: &AsyncQueues,
    queue: &str,
    request: axum::extract::Request,
) -> Response {
    let service = admission.service();
    let response = match dispatch(admission, queues, queue, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    edge.metrics()
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            service: service.name().to_owned(),
            instance: "-".to_owned(),
            code: response.status().as_u16(),
        })
        .inc();
    response
}

async fn dispatch(
    admission: &Admission,
    queues: &AsyncQueues,
    queue_path: &str,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let service = admission.service();
    let queue = queues.queue(queue_path).ok_or_else(|| {
        ApiError::NotFound(format!(
            "service `{}` has no queue `{queue_path}`; its queues are `{0}` (input) and \
             `{0}/sink`",
            service.name()
        ))
    })?;
    let (mut parts, body) = admission.receive(request).await?.into_parts();
    refuse_signed_unless_plain_put(&parts)?;
    let query = QueryArgs::parse(&parts)?;
    let method = parts.method.clone();
    match method {
        Method::POST => put(queue, &query, body).await,
        Method::GET if query.flag("_watch_")? => {
            let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
                .await
                .map_err(|e| {
                    ApiError::BadQuery(format!(
                        "`_watch_=true` needs a WebSocket upgrade request: {e}"
                    ))
                })?;
            watch(queue, queues.closing(), &parts, &query, upgrade).await
        }
        Method::GET if query.flag("_attrs_")? => {
            let attributes = queue.attributes().await?;
            Ok(axum::Json(attributes).into_response())
        }
        Method::GET if query.flag("_search_")? => {
            let index = query.required_index("_index_")?;
            match queue.search(index).await? {
                Some(found) => Ok(axum::Json(found).into_response()),
                None => Err(ApiError::NotFound(format!(
                    "queue `{}` has no item at index {index}",
                    queue.name()
                ))),
            }
        }
        Method::GET => get(queue, &query).await,
        Method::PUT => {
            let indexes = query.indexes()?;
            queue.commit(&indexes).await?;
            Ok("OK".into_response())
        }
        Method::DELETE if query.flag("_trunc_")? => {
            let before = query.required_index("_index_")?;
            queue.truncate(before).await?;
            Ok("OK".into_response())
        }
        Method::DELETE => {
            let indexes = query.indexes()?;
            queue.delete(&indexes).await?;
            Ok("OK".into_response())
        }
        other => Err(ApiError::MethodNotAllowed(format!(
            "queue `{}` takes POST (put), GET (get, watch, attributes, search), PUT (commit) and \
             DELETE (delete, truncate), not {other}",
            queue.name()
        ))),
    }
}

/// Refuses a request signed with the HMAC form unless it is a put without a query string, the
/// one queue call whose meaning the signature covers in full (see the module docs).
fn refuse_signed_unless_plain_put(parts: &Parts) -> Result<(), ApiError> {
    let signed = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.trim().starts_with("EAS "));
    let has_query = parts.uri.query().is_some_and(|q| !q.is_empty());
    if !signed || (parts.method == Method::POST && !has_query) {
        return Ok(());
    }
    let what = if has_query {
        format!("a {} with a query string", parts.method)
    } else {
        format!("a {}", parts.method)
    };
    Err(ApiError::Predict(PredictError::Unauthorized(format!(
        "a queue call signed with `Authorization: EAS ...` is accepted only for a put (POST) \
         without a query string, not {what}: the signature does not cover the query, which \
         decides what a queue call does; send the service token as plain \
         `Authorization: <token>`, as the SDK's QueueClient does"
    ))))
}

async fn put(
    queue: &DynQueue,
    query: &QueryArgs,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let put = queue
        .put(NewItem::new(body).with_tags(query.tags.clone()))
        .await?;
    let mut response = put.index.to_string().into_response();
    if let Ok(value) = HeaderValue::from_str(&put.request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

async fn get(queue: &DynQueue, query: &QueryArgs) -> Result<Response, ApiError> {
    let length = query.count("_length_", 1)?;
    let timeout = match query.value("_timeout_") {
        Some(text) => parse_timeout(text)?,
        None => Duration::ZERO,
    };
    let mut get = GetQuery::at_index(query.index("_index_")?.unwrap_or(0))
        .with_length(length)
        .with_timeout(timeout)
        .with_auto_delete(query.flag_or("_auto_delete_", true)?);
    get.tags = query.tags.clone();
    let items = queue.get(&get).await?;
    if query.flag_or("_raw_", false)? {
        return Ok(match items.into_iter().next() {
            Some(item) => item.data.into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        });
    }
    let list = DataFrameListProto {
        index: items.into_iter().map(Item::into_proto).collect(),
    };
    Ok(([(header::CONTENT_TYPE, PROTOBUF)], list.encode_to_vec()).into_response())
}

async fn watch(
    queue: &DynQueue,
    closing: tokio::sync::watch::Receiver<bool>,
    parts: &Parts,
    query: &QueryArgs,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let mut options = WatchOptions::new(header(UID_HEADER).unwrap_or("anonymous"))
        .with_window(query.count("_window_", 1)?)
        .with_auto_commit(query.flag_or("_auto_commit_", false)?)
        .from_index(query.index("_index_")?.unwrap_or(0))
        .with_tags(query.tags.clone());
    if let Some(group) = header(GID_HEADER) {
        group.clone_into(&mut options.group);
    }
    let index_only = query.flag_or("_index_only_", false)?;
    let window = options.window;
    let consumer = queue.watch(options).await?;
    Ok(upgrade
        .on_upgrade(move |socket| watch_loop(socket, consumer, window, index_only, closing))
        .into_response())
}

/// Takes items from the consumer on a task of its own, so that a ping or a message from the
/// client never interrupts a delivery half-way; stops (dropping the consumer, which hands its
/// uncommitted items back) when the socket side is gone.
fn pump(
    mut consumer: Box<dyn Watch>,
    window: usize,
) -> tokio::sync::mpsc::Receiver<Result<Vec<Item>, QueueError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let items = tokio::select! {
                items = consumer.next(window) => items,
                () = tx.closed() => return,
            };
            let failed = items.is_err();
            if tx.send(items).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Sends items as they come; reads only to answer pings and notice the client leave.
async fn watch_loop(
    mut socket: WebSocket,
    consumer: Box<dyn Watch>,
    window: usize,
    index_only: bool,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let mut items_rx = pump(consumer, window);
    let close = |code, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: close_reason(reason).into(),
        }))
    };
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                None | Some(Err(_) | Ok(Message::Close(_))) => break,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    let reason = "a watch socket takes no messages; commit with PUT ?_indexes_=";
                    let _ = socket.send(close(close_code::UNSUPPORTED, reason)).await;
                    break;
                }
            },
            items = items_rx.recv() => match items {
                None => break,
                Some(Ok(items)) => {
                    for mut item in items {
                        if index_only {
                            item.data = bytes::Bytes::new();
                        }
                        let frame = item.into_proto().encode_to_vec();
                        if socket.send(Message::Binary(frame.into())).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!("closing a queue watch: {error}");
                    let _ = socket.send(close(close_code::ERROR, &error.to_string())).await;
                    break;
                }
            },
            _ = closing.changed() => {
                let _ = socket.send(close(close_code::AWAY, "the server is shutting down")).await;
                break;
            }
        }
    }
}

/// A close frame's reason: at most the 123 bytes a control frame leaves for it (a longer one
/// makes the frame invalid, and the client would see a broken socket instead of the reason).
fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The query of a queue call: control parameters and tags.
#[derive(Debug, Default)]
struct QueryArgs {
    control: BTreeMap<String, String>,
    tags: Tags,
}

impl QueryArgs {
    fn parse(parts: &Parts) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::BadQuery(format!("cannot decode the query string: {e}")))?;
        let mut args = Self::default();
        for (key, value) in pairs {
            let control = key.len() > 2 && key.starts_with('_') && key.ends_with('_');
            if control && !CONTROL_KEYS.contains(&key.as_str()) {
                return Err(ApiError::BadQuery(format!(
                    "unknown parameter `{key}`; the queue service knows {}",
                    CONTROL_KEYS.join(", ")
                )));
            }
            if key.is_empty() {
                return Err(ApiError::BadQuery("a tag with an empty name".to_owned()));
            }
            let into = if control {
                &mut args.control
            } else {
                &mut args.tags
            };
            if into.insert(key.clone(), value).is_some() {
                return Err(ApiError::BadQuery(format!("`{key}` is given twice")));
            }
        }
        Ok(args)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.control.get(key).map(String::as_str)
    }

    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        self.flag_or(key, false)
    }

    fn flag_or(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.value(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(v) => Err(ApiError::BadQuery(format!(
                "`{key}` must be true or false, not `{v}`"
            ))),
        }
    }

    fn index(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.value(key).map(|v| parse_index(key, v)).transpose()
    }

    fn required_index(&self, key: &str) -> Result<u64, ApiError> {
        self.index(key)?
            .ok_or_else(|| ApiError::BadQuery(format!("`{key}` is required here")))
    }

    fn count(&self, key: &str, default: usize) -> Result<usize, ApiError> {
        let Some(v) = self.value(key) else {
            return Ok(default);
        };
        match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LENGTH).contains(&n) => Ok(n),
            _ => Err(ApiError::BadQuery(format!(
                "`{key}` must be a whole number from 1 to {MAX_LENGTH}, not `{v}`"
            ))),
        }
    }

    fn indexes(&self) -> Result<Vec<u64>, ApiError> {
        let Some(list) = self.value("_indexes_") else {
            return Err(ApiError::BadQuery(
                "`_indexes_` (a comma-separated list of indexes) is required".to_owned(),
            ));
        };
        let indexes = list
            .split(',')
            .map(|v| parse_index("_indexes_", v))
            .collect::<Result<Vec<_>, _>>()?;
        if indexes.len() > MAX_LENGTH {
            return Err(ApiError::BadQuery(format!(
                "`_indexes_` lists {} indexes; at most {MAX_LENGTH} at a time",
                indexes.len()
            )));
        }
        Ok(indexes)
    }
}

fn parse_index(key: &str, value: &str) -> Result<u64, ApiError> {
    value.trim().parse::<u64>().map_err(|_| {
        ApiError::BadQuery(format!(
            "`{key}`: `{value}` is not an index (a whole number, 0 or more)"
        ))
    })
}

/// `5s`, `500ms`, `2m`, `1h` or plain seconds (`5`, `0.5`).
fn parse_timeout(text: &str) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::BadQuery(format!(
            "`_timeout_` must be a duration such as `5s`, `500ms` or `2m`, not `{text}`"
        ))
    };
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => t.split_at(at),
        None => (t, "s"),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    if seconds > MAX_GET_TIMEOUT.as_secs_f64() {
        return Err(ApiError::BadQuery(format!(
            "`_timeout_` of {text} is over the limit of {} s",
            MAX_GET_TIMEOUT.as_secs()
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_should_parse_with_units_and_refuse_garbage() {
        assert_eq!(parse_timeout("5s").ok(), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_timeout("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_timeout("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("0").ok(), Some(Duration::ZERO));
        for bad in ["soon", "5x", "-1s", "", "1h"] {
            let error = parse_timeout(bad).expect_err(bad);
            assert_eq!(error.status(), 400);
            assert!(error.to_string().contains("_timeout_"), "{error}");
        }
    }

    #[test]
    fn close_reasons_should_fit_a_control_frame() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && cut.len() >= 122, "{}", cut.len());
        assert!(long.starts_with(cut));
    }

    fn args(query: &str) -> Result<QueryArgs, ApiError> {
        let request = axum::http::Request::builder()
            .uri(format!("/api/predict/q?{query}"))
            .body(())
            .expect("request");
        QueryArgs::parse(&request.into_parts().0)
    }

    #[test]
    fn queries_should_split_control_keys_from_tags_and_name_bad_values() {
        let parsed = args("_index_=3&_auto_delete_=false&requestId=r1&k=v").expect("parses");
        assert_eq!(parsed.index("_index_").ok(), Some(Some(3)));
        assert_eq!(parsed.flag_or("_auto_delete_", true).ok(), Some(false));
        assert_eq!(parsed.tags.len(), 2);

        let unknown = args("_bogus_=1").expect_err("unknown");
        assert!(unknown.to_string().contains("`_bogus_`"), "{unknown}");
        let twice = args("_index_=1&_index_=2").expect_err("twice");
        assert!(twice.to_string().contains("twice"), "{twice}");
        let parsed = args("_indexes_=1,x&_length_=0&_raw_=maybe").expect("parses");
        let error = parsed.indexes().expect_err("x");
        assert!(error.to_string().contains("`x`"), "{error}");
        assert!(parsed.count("_length_", 1).is_err());
        assert!(parsed.flag("_raw_").is_err());
    }
}
