//! The peer protocol of the memory cache: an instance that misses asks the other instances of
//! its service before going back to the store.
//!
//! Server side: [`router`] answers `GET /_eas/cache/v1/object?key=<object URI>` (the path
//! [`PATH`]) from a [`MemoryCache`]: `200` with the bytes and the headers `etag` and
//! `x-eas-crc32c` (8 hex digits), `404` when the object is not in memory, `412` when the caller
//! asks for another version (`if-match`). The runtime merges it into its router:
//! `app.merge(eas_storage::peer::router(cache))`.
//!
//! Only peers of the same deployment may read: every request must carry the cache's
//! [`PeerSecret`] as `Authorization: Bearer <secret>` ([`AUTH_SCHEME`]). A request without it,
//! or with another one, gets `401` and a plain-text reason, and never reaches the cache (it
//! cannot even learn whether an object is cached). A cache with no secret
//! ([`MemoryCache::with_peer_secret`] never called) answers every request with `403`: it is
//! shared with no one. The secret is compared in constant time; only its length could be
//! learned from timing, so use a long random one (`openssl rand -hex 32`). It travels in the
//! clear over `http://`: keep peer traffic on the deployment's internal network.
//!
//! The `key` parameter is only ever looked up in the cache's memory (a map from object URI to
//! bytes); it never names a file, so a key such as `../../etc/passwd` is a plain miss.
//!
//! Client side: [`fetch`] asks each peer in turn, with the cache's secret, and accepts an answer
//! only if its size and ETag are the expected ones and its bytes match the CRC-32C it came with
//! (and the MD5 of the ETag, when the ETag is one); anything else counts as corrupt and the
//! next source is tried, the store last. A peer that refuses the secret is logged (the secret
//! is not) and skipped.
//!
//! ```
//! use std::sync::Arc;
//! use eas_storage::MemoryCache;
//! use eas_storage::peer::PeerSecret;
//!
//! let secret: PeerSecret = "b2f6c1e0a9d84f7e93c5a1d2e4f60718".parse()?;
//! let cache = Arc::new(MemoryCache::new(1 << 30).with_peer_secret(secret));
//! let app: axum::Router = axum::Router::new().merge(eas_storage::peer::router(cache));
//! # drop(app);
//! # Ok::<(), eas_storage::peer::InvalidPeerSecret>(())
//! ```

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eas_core::storage::ObjectInfo;
use futures::StreamExt as _;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::MemoryCache;
use crate::cache::CachedObject;
use crate::download::{Download, Finished};
use crate::verify::{check_md5, etag_md5};

/// The path the peer endpoint answers on.
pub const PATH: &str = "/_eas/cache/v1/object";

/// The header that carries the CRC-32C of the body, as 8 lower-case hex digits.
pub const CRC32C_HEADER: &str = "x-eas-crc32c";

/// The `Authorization` scheme peers send their [`PeerSecret`] with:
/// `Authorization: Bearer <secret>`.
pub const AUTH_SCHEME: &str = "Bearer";

/// The longest secret accepted, in bytes (it travels in a request header).
pub const MAX_SECRET_LEN: usize = 1024;

/// The secret the instances of one deployment share to read each other's memory cache: the
/// peer endpoint ([`router`]) serves only requests that carry it, and [`fetch`] sends it.
///
/// One to [`MAX_SECRET_LEN`] visible ASCII characters (no spaces or control characters);
/// prefer 32 random bytes or more, hex-encoded. Its `Debug` output is redacted, and it has
/// no `Display` and no `PartialEq` (compare through the endpoint, which does it in constant
/// time).
#[derive(Clone)]
pub struct PeerSecret {
    secret: Arc<str>,
    /// `Bearer <secret>`, marked sensitive (redacted from the HTTP client's debug output).
    header: HeaderValue,
}

/// Why a string cannot be a [`PeerSecret`] (the message never quotes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache secret: {reason}")]
pub struct InvalidPeerSecret {
    reason: &'static str,
}

impl PeerSecret {
    /// A secret.
    ///
    /// # Errors
    /// When it is empty, longer than [`MAX_SECRET_LEN`] bytes, or has a character other than
    /// visible ASCII (`!` to `~`).
    pub fn new(secret: impl Into<String>) -> Result<Self, InvalidPeerSecret> {
        let secret: String = secret.into();
        let invalid = |reason| Err(InvalidPeerSecret { reason });
        if secret.is_empty() {
            return invalid("it is empty");
        }
        if secret.len() > MAX_SECRET_LEN {
            return invalid("it is longer than 1024 bytes");
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return invalid(
                "it may hold only visible ASCII characters (no spaces, control characters or \
                 non-ASCII)",
            );
        }
        let Ok(mut header) = HeaderValue::from_str(&format!("{AUTH_SCHEME} {secret}")) else {
            return invalid("it cannot be sent in an HTTP header");
        };
        header.set_sensitive(true);
        Ok(Self {
            secret: secret.into(),
            header,
        })
    }

    /// Whether `given` (the token of an `Authorization: Bearer` header) is this secret, in
    /// time that does not depend on the bytes of either (only on whether the lengths agree).
    #[must_use]
    pub fn matches(&self, given: &[u8]) -> bool {
        self.secret.as_bytes().ct_eq(given).into()
    }

    /// The `Authorization` header value peers send.
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.header
    }
}

impl FromStr for PeerSecret {
    type Err = InvalidPeerSecret;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(***)")
    }
}

#[derive(Debug, Deserialize)]
struct ObjectQuery {
    key: String,
}

/// The peer endpoint over `cache`, at [`PATH`]: it serves only requests that carry the
/// cache's [`PeerSecret`] (`401` otherwise), and no request at all when the cache has none
/// (`403`). Meant for the internal network of a service; merge it into the runtime's router.
pub fn router(cache: Arc<MemoryCache>) -> axum::Router {
    axum::Router::new()
        .route(PATH, get(serve_object))
        .with_state(cache)
}

async fn serve_object(
    State(cache): State<Arc<MemoryCache>>,
    headers: HeaderMap,
    query: Result<Query<ObjectQuery>, QueryRejection>,
) -> Response {
    // The credential first: an unauthenticated request learns nothing, not even whether its
    // query is well formed, and never touches the cache (its LRU order or its counters).
    if let Err(refusal) = authorize(cache.peer_secret(), &headers) {
        return refusal.into_response();
    }
    let Ok(Query(query)) = query else {
        return (StatusCode::BAD_REQUEST, "expected ?key=<object URI>").into_response();
    };
    let wanted = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Memory only: the key is a map key, never a path.
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

/// Why a peer request was refused: its status and a plain-text reason (no body bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.reason).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"eas-cache\""),
            );
        }
        response
    }
}

/// Checks the request's `Authorization: Bearer <secret>` against `secret`.
fn authorize(secret: Option<&PeerSecret>, headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = |status, reason| Err(Refusal { status, reason });
    let Some(secret) = secret else {
        return refuse(
            StatusCode::FORBIDDEN,
            "this server shares its memory cache with no one: it was started without a cache \
             secret",
        );
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing credential: send `Authorization: Bearer <cache secret>`",
        );
    };
    let value = value.as_bytes();
    let scheme = AUTH_SCHEME.len();
    let token = match value.get(..=scheme) {
        Some(prefix)
            if prefix[..scheme].eq_ignore_ascii_case(AUTH_SCHEME.as_bytes())
                && prefix[scheme] == b' ' =>
        {
            &value[scheme + 1..]
        }
        _ => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "expected `Authorization: Bearer <cache secret>`",
            );
        }
    };
    if secret.matches(token) {
        Ok(())
    } else {
        refuse(StatusCode::UNAUTHORIZED, "wrong cache secret")
    }
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
/// Each request carries the cache's [`PeerSecret`] (none when the cache has none: peers then
/// refuse, which is logged).
pub async fn fetch(
    client: &reqwest::Client,
    cache: &MemoryCache,
    key: &str,
    expected: &ObjectInfo,
    dir: Option<&Path>,
) -> Option<Fetched> {
    for peer in cache.peers() {
        match fetch_from(client, cache.peer_secret(), &peer, key, expected, dir).await {
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
    secret: Option<&PeerSecret>,
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
    if let Some(secret) = secret {
        request = request.header(header::AUTHORIZATION, secret.header().clone());
    }
    let Ok(response) = request.send().await else {
        return Ok(None); // peer down: a miss, not corruption
    };
    let status = response.status();
    if matches!(
        status,
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
    ) {
        // A misconfiguration rather than corruption: say so, then try the next source.
        tracing::warn!(
            peer,
            key,
            %status,
            has_secret = secret.is_some(),
            "peer refused to share its memory cache; give every server of the deployment the \
             same cache secret"
        );
        return Ok(None);
    }
    if status != reqwest::StatusCode::OK {
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
    let mut download = Download::new(key, expected.size, dir, true, md5);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        download.push(chunk).await.map_err(|e| e.to_string())?;
    }
    let done = download.finish().await.map_err(|e| e.to_string())?;
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
            let mut download = Download::new("t", 16, None, true, true);
            download
                .push(Bytes::from_static(bytes))
                .await
                .expect("push");
            download.finish().await.expect("finish")
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
