//! The one way the runtime builds a processor [`Request`]: from a body, the path after the
//! service name, and header pairs (`Content-Type` among them sets the content type). HTTP
//! predict requests, queue items (with their `requestId` header) and warm-up requests all
//! come through here, so a processor sees the same shape whatever the entry point.
//!
//! ```
//! let request = eas_runtime::request::build(
//!     "hi".into(),
//!     "v1/run",
//!     [("content-type", "text/plain"), ("x-trace", "7")],
//! );
//! assert_eq!(request.content_type.as_deref(), Some("text/plain"));
//! assert_eq!(request.path, "v1/run");
//! ```

use bytes::Bytes;
use eas_core::processor::Request;

/// A processor request with `body`, the sub-path `path` and the headers `headers` (names as
/// given; a `content-type` one, in any case, also sets [`Request::content_type`]).
#[must_use]
pub fn build<'a>(
    body: Bytes,
    path: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Request {
    let headers = headers.into_iter();
    let mut request = Request::new(body).with_path(path);
    let (fewest, most) = headers.size_hint();
    request.headers.reserve_exact(most.unwrap_or(fewest));
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-type") {
            request.content_type = Some(value.to_owned());
        }
        request.headers.push((name.to_owned(), value.to_owned()));
    }
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
