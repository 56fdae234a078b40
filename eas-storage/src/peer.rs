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

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use eas_core::storage::ObjectInfo;
use serde::Deserialize;

use crate::MemoryCache;
use crate::cache::CachedObject;
use crate::verify::{Md5, check_md5, crc32c, etag_md5};

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

/// Asks each of `cache`'s peers for the object `key` described by `expected`; the first
/// answer that passes verification is returned (with its CRC-32C). Failed or corrupt answers
/// are logged and counted ([`CacheStats::peer_corrupt`](crate::CacheStats)); `None` when no
/// peer had it.
pub async fn fetch(
    client: &reqwest::Client,
    cache: &MemoryCache,
    key: &str,
    expected: &ObjectInfo,
) -> Option<CachedObject> {
    for peer in cache.peers() {
        match fetch_from(client, &peer, key, expected).await {
            Ok(Some(object)) => {
                cache.count_peer_hit();
                return Some(object);
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
) -> Result<Option<CachedObject>, String> {
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
    let bytes: Bytes = response.bytes().await.map_err(|e| format!("body: {e}"))?;
    verify_answer(&bytes, etag.as_deref(), crc, expected)?;
    Ok(Some(CachedObject {
        bytes,
        etag,
        crc32c: crc,
    }))
}

fn verify_answer(
    bytes: &Bytes,
    etag: Option<&str>,
    crc: u32,
    expected: &ObjectInfo,
) -> Result<(), String> {
    if bytes.len() as u64 != expected.size {
        return Err(format!("{} bytes, expected {}", bytes.len(), expected.size));
    }
    if expected.etag.is_some() && etag != expected.etag.as_deref() {
        return Err(format!("ETag {etag:?}, expected {:?}", expected.etag));
    }
    let actual = crc32c(bytes);
    if actual != crc {
        return Err(format!(
            "CRC-32C {actual:08x} does not match the announced {crc:08x}"
        ));
    }
    // Small single-part objects: also check the MD5 the ETag stands for (cheap, and it does
    // not trust the peer's own checksum).
    if let Some(etag) = etag
        && etag_md5(etag).is_some()
        && bytes.len() <= MD5_CHECK_LIMIT
    {
        let mut md5 = Md5::default();
        md5.update(bytes);
        check_md5(&expected.path, etag, &md5.hex()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Objects up to this size from peers are also checked against their MD5 ETag.
const MD5_CHECK_LIMIT: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_should_be_refused_unless_size_etag_and_checksum_agree() {
        let bytes = Bytes::from_static(b"abc");
        let md5 = "\"900150983cd24fb0d6963f7d28e17f72\"";
        let expected = ObjectInfo::new("a", 3).with_etag(md5);
        let good = crc32c(&bytes);
        assert!(verify_answer(&bytes, Some(md5), good, &expected).is_ok());
        assert!(verify_answer(&bytes, Some(md5), good ^ 1, &expected).is_err());
        assert!(verify_answer(&bytes, Some("\"other\""), good, &expected).is_err());
        let short = Bytes::from_static(b"ab");
        assert!(verify_answer(&short, Some(md5), crc32c(&short), &expected).is_err());
        let forged = Bytes::from_static(b"abd");
        let err = verify_answer(&forged, Some(md5), crc32c(&forged), &expected)
            .expect_err("the MD5 ETag catches a consistent forgery");
        assert!(err.contains("MD5"), "{err}");
    }
}
