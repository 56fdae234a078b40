//! The peer protocol of the memory cache: an instance that misses asks the other instances of
//! its service before going back to the store.
//!
//! Server side: [`router`] answers `GET /_eas/cache/v1/object?key=<object URI>` (the path
//! [`PATH`]) from a [`MemoryCache`]: `200` with the bytes and the headers `etag` and
//! `x-eas-crc32c` (8 hex digits), `404` when the object is not in memory, `412` when the caller
//! asks for another version (`if-match`). The runtime merges it into its internal router:
//! `app.merge(eas_storage::peer::router(cache))`.
//!
//! Client side: [`fetch`] asks each peer in turn and accepts an answer only if its size and
//! ETag are the expected ones and its bytes match the CRC-32C it came with (and the MD5 of
//! the ETag, when the ETag is one); anything else counts as corrupt and the next source is
//! tried, the store last.
//!
//! ```
//! use std::sync::Arc;
//! use eas_storage::MemoryCache;
//!
//! let cache = Arc::new(MemoryCache::new(1 << 30));
//! let app: axum::Router = axum::Router::new().merge(eas_storage::peer::router(cache));
//! # drop(app);
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eas_core::storage::ObjectInfo;
use futures::StreamExt as _;
use serde::Deserialize;

use crate::MemoryCache;
use crate::cache::CachedObject;
use crate::sink::{Finished, Sink};
use crate::verify::{check_md5, etag_md5};

/// The path the peer endpoint answers on.
pub const PATH: &str = "/_eas/cache/v1/object";

/// The header that carries the CRC-32C of the body, as 8 lower-case hex digits.
pub const CRC32C_HEADER: &str = "x-eas-crc32c";

#[derive(Debug, Deserialize)]
struct ObjectQuery {
    key: String,
}

/// The peer endpoint over `cache`, at [`PATH`]. Meant for the internal network of a service;
/// merge it into the runtime's router.
pub fn router(cache: Arc<MemoryCache>) -> axum::Router {
    axum::Router::new()
        .route(PATH, get(serve_object))
        .with_state(cache)
}

async fn serve_object(
    State(cache): State<Arc<MemoryCache>>,
    Query(query): Query<ObjectQuery>,
    headers: HeaderMap,
) -> Response {
    let wanted = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(object) = cache.get(&query.key, None) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(wanted) = &wanted
        && object.etag.as_deref() != Some(wanted.as_str())
    {
        return StatusCode::PRECONDITION_FAILED.into_response();
    }
    answer(&object)
}

/// The `200` answer for a cached object (also used by tests that play a faulty peer).
pub fn answer(object: &CachedObject) -> Response {
    let mut response = object.bytes.clone().into_response();
    let headers = response.headers_mut();
    if let Some(etag) = object
        .etag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(crc) = HeaderValue::from_str(&format!("{:08x}", object.crc32c)) {
        headers.insert(CRC32C_HEADER, crc);
    }
    response
}

/// A verified peer answer.
#[derive(Debug)]
pub struct Fetched {
    /// The object (its bytes in memory, with the ETag and CRC-32C it came with).
    pub object: CachedObject,
    /// The bytes in a temporary file too, when a directory was given (not yet renamed).
    pub file: Option<tempfile::NamedTempFile>,
}

/// Asks each of `cache`'s peers for the object `key` described by `expected`; the first
/// answer that passes verification is returned. The answer streams into memory (one buffer
/// of the expected size) and, when `dir` is given, into a temporary file there at the same
/// time; its CRC-32C is computed as it streams. Failed or corrupt answers are logged and
/// counted ([`CacheStats::peer_corrupt`](crate::CacheStats)); `None` when no peer had it.
pub async fn fetch(
    client: &reqwest::Client,
    cache: &MemoryCache,
    key: &str,
    expected: &ObjectInfo,
    dir: Option<&Path>,
) -> Option<Fetched> {
    for peer in cache.peers() {
        match fetch_from(client, &peer, key, expected, dir).await {
            Ok(Some(fetched)) => {
                cache.count_peer_hit();
                return Some(fetched);
            }
            Ok(None) => {}
            Err(reason) => {
                cache.count_peer_corrupt();
                tracing::warn!(
                    peer,
                    key,
                    reason,
                    "peer answer refused; trying the next source"
                );
            }
        }
    }
    None
}

/// One peer: `Ok(None)` for a plain miss, `Err` for an answer that failed verification.
async fn fetch_from(
    client: &reqwest::Client,
    peer: &str,
    key: &str,
    expected: &ObjectInfo,
    dir: Option<&Path>,
) -> Result<Option<Fetched>, String> {
    let url = format!("{}{PATH}", peer.trim_end_matches('/'));
    let mut request = client
        .get(url)
        .query(&[("key", key)])
        .timeout(Duration::from_secs(600));
    if let Some(etag) = &expected.etag {
        request = request.header(header::IF_MATCH, etag);
    }
    let Ok(response) = request.send().await else {
        return Ok(None); // peer down: a miss, not corruption
    };
    if response.status() != reqwest::StatusCode::OK {
        return Ok(None);
    }
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let crc = response
        .headers()
        .get(CRC32C_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| u32::from_str_radix(v, 16).ok())
        .ok_or("no valid x-eas-crc32c header")?;
    // Refuse a wrong version or size before reading the body.
    if expected.etag.is_some() && etag != expected.etag {
        return Err(format!("ETag {etag:?}, expected {:?}", expected.etag));
    }
    if let Some(len) = response.content_length()
        && len != expected.size
    {
        return Err(format!("{len} bytes announced, expected {}", expected.size));
    }
    let md5 = etag.as_deref().and_then(etag_md5).is_some() && expected.size <= MD5_CHECK_LIMIT;
    let mut sink = Sink::new(key, expected.size, dir, true, md5);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        sink.push(chunk).await.map_err(|e| e.to_string())?;
    }
    let done = sink.finish().await.map_err(|e| e.to_string())?;
    verify_answer(&done, etag.as_deref(), crc, expected)?;
    Ok(Some(Fetched {
        object: CachedObject {
            bytes: done.memory.unwrap_or_default(),
            etag,
            crc32c: crc,
        },
        file: done.file,
    }))
}

/// Size, ETag, the announced CRC-32C and (when computed) the MD5 the ETag stands for.
fn verify_answer(
    done: &Finished,
    etag: Option<&str>,
    crc: u32,
    expected: &ObjectInfo,
) -> Result<(), String> {
    if done.len != expected.size {
        return Err(format!("{} bytes, expected {}", done.len, expected.size));
    }
    if expected.etag.is_some() && etag != expected.etag.as_deref() {
        return Err(format!("ETag {etag:?}, expected {:?}", expected.etag));
    }
    if done.crc32c != crc {
        return Err(format!(
            "CRC-32C {:08x} does not match the announced {crc:08x}",
            done.crc32c
        ));
    }
    // Objects up to MD5_CHECK_LIMIT: also the MD5 the ETag stands for (it does not trust the
    // peer's own checksum).
    if let (Some(etag), Some(md5)) = (etag, &done.md5) {
        check_md5(&expected.path, etag, md5).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Objects up to this size from peers are also checked against their MD5 ETag.
const MD5_CHECK_LIMIT: u64 = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::crc32c;
    use bytes::Bytes;

    #[tokio::test]
    async fn answers_should_be_refused_unless_size_etag_and_checksum_agree() {
        async fn received(bytes: &'static [u8]) -> Finished {
            let mut sink = Sink::new("t", 16, None, true, true);
            sink.push(Bytes::from_static(bytes)).await.expect("push");
            sink.finish().await.expect("finish")
        }
        let md5 = "\"900150983cd24fb0d6963f7d28e17f72\"";
        let expected = ObjectInfo::new("a", 3).with_etag(md5);
        let good = received(b"abc").await;
        let crc = crc32c(b"abc");
        assert!(verify_answer(&good, Some(md5), crc, &expected).is_ok());
        assert!(verify_answer(&good, Some(md5), crc ^ 1, &expected).is_err());
        assert!(verify_answer(&good, Some("\"other\""), crc, &expected).is_err());
        let short = received(b"ab").await;
        assert!(verify_answer(&short, Some(md5), crc32c(b"ab"), &expected).is_err());
        let forged = received(b"abd").await;
        let err = verify_answer(&forged, Some(md5), crc32c(b"abd"), &expected)
            .expect_err("the MD5 ETag catches a consistent forgery");
        assert!(err.contains("MD5"), "{err}");
    }
}
