//! The one way the runtime builds a processor [`Request`]: from a body, the path after the
//! service name, and the headers (their `Content-Type` sets the content type). HTTP predict
//! requests, queue items (with their `requestId` header) and warm-up requests all come
//! through here, so a processor sees the same shape whatever the entry point.
//!
//! ```
//! use eas_core::processor::{HeaderMap, HeaderValue};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("content-type", HeaderValue::from_static("text/plain"));
//! headers.insert("x-trace", HeaderValue::from_static("7"));
//! let request = eas_runtime::request::build("hi".into(), "v1/run", headers);
//! assert_eq!(request.content_type.as_deref(), Some("text/plain"));
//! assert_eq!(request.header("X-Trace"), Some("7"));
//! assert_eq!(request.path, "v1/run");
//! ```

use bytes::Bytes;
use eas_core::processor::{HeaderMap, Request};
use http::header::CONTENT_TYPE;

/// A processor request with `body`, the sub-path `path` and `headers` (taken as they are;
/// a text `Content-Type` among them also sets [`Request::content_type`]).
#[must_use]
pub fn build(body: Bytes, path: &str, headers: HeaderMap) -> Request {
    let mut request = Request::new(body).with_path(path);
    request.content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    request.headers = headers;
    request
}

/// Whether a processor that reads JSON or protobuf bodies should read `request` as JSON: its
/// content type says JSON, or its body starts with `{`, or it starts with white space then
/// `{` and `decodes` (the processor's protobuf decoder) refuses it: a protobuf body may start
/// with `\n{` (field 1, 123 bytes long).
pub fn is_json(request: &Request, decodes: impl FnOnce(&Bytes) -> bool) -> bool {
    let json_type = request
        .content_type
        .as_deref()
        .or_else(|| request.header("content-type"))
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    let body = &request.body;
    json_type
        || match body.first() {
            Some(b'{') => true,
            Some(b) if b.is_ascii_whitespace() => {
                body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') && !decodes(body)
            }
            _ => false,
        }
}
