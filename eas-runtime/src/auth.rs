//! Checking the `Authorization` of a predict request against the service token, in both forms
//! the `eas-prediction` SDK sends.
//!
//! - The plain token: `Authorization: <token>` (what the SDK sends with a custom URL).
//! - The EAS signature: `Authorization: EAS <sig>` with `Content-MD5` (hex MD5 of the body) and
//!   `Date`, where `sig = base64(hmac_sha1(token, "{METHOD}\n{md5}\n{content-type}\n{date}\n{path}"))`
//!   and the message is trimmed of surrounding whitespace before signing.
//!
//! Tokens and signatures are compared in constant time. The `Date` must lie within
//! [`Authenticator::max_date_skew`] of the server's clock: the SDK writes its LOCAL time and
//! labels it GMT, so the default window (14 h 15 min) admits every UTC offset plus clock error
//! while refusing a Date days away. There is no replay cache: identical requests in the same
//! second carry identical signatures, so one would refuse legitimate traffic.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, Method};
//! use eas_runtime::auth::Authenticator;
//!
//! let auth = Authenticator::new("secret");
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", HeaderValue::from_static("secret"));
//! assert!(auth.check(&Method::POST, "/api/predict/echo", &headers, b"").is_ok());
//! headers.insert("authorization", HeaderValue::from_static("wrong"));
//! assert!(auth.check(&Method::POST, "/api/predict/echo", &headers, b"").is_err());
//! ```

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HeaderName};
use http::{HeaderMap, Method};
use md5::{Digest, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The `Content-MD5` header, which `http` has no constant for.
const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");

/// The default bound on `|Date - now|`: any UTC offset (up to 14 h) plus 15 minutes.
pub const DEFAULT_MAX_DATE_SKEW: Duration = Duration::from_secs(14 * 3600 + 15 * 60);

/// The content type the SDK signs when it sends none.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Checks requests against one service token.
#[derive(Clone)]
pub struct Authenticator {
    token: String,
    max_date_skew: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("token", &"<redacted>")
            .field("max_date_skew", &self.max_date_skew)
            .finish()
    }
}

impl Authenticator {
    /// Checks against `token`, with the default Date window.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            max_date_skew: DEFAULT_MAX_DATE_SKEW,
        }
    }

    /// Bounds `|Date - now|` of signed requests by `skew` instead of the default.
    #[must_use]
    pub fn with_max_date_skew(mut self, skew: Duration) -> Self {
        self.max_date_skew = skew;
        self
    }

    /// The largest accepted `|Date - now|` of a signed request.
    #[must_use]
    pub fn max_date_skew(&self) -> Duration {
        self.max_date_skew
    }

    /// The token requests are checked against.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Checks one request from its method, path (no query), headers (`Authorization`,
    /// `Content-MD5`, `Content-Type`, `Date`) and body. `Err` says why it is refused.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        self.check_headers(method, path, headers)?.verify(body)
    }

    /// Checks what the headers alone can prove, before any body byte is read: the token, or
    /// the signature over the signed headers and the Date window. What is left, the body's
    /// MD5 against a signed request's `Content-MD5`, is the returned [`BodyCheck`].
    pub fn check_headers(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<BodyCheck, String> {
        // Typed names: a lookup by `&str` parses the name first, on every request.
        let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let authorization = header(&AUTHORIZATION);
        let signed = authorization.is_some_and(|a| a.trim().starts_with("EAS "));
        if !signed {
            // A plain token needs neither the other headers nor the clock.
            return self.check_token(authorization);
        }
        // A signed header that is present but not text would be signed as if absent (the
        // Content-Type as the SDK's default): a replay could change it unnoticed.
        for name in [&CONTENT_MD5, &CONTENT_TYPE, &DATE] {
            if headers.get(name).is_some() && header(name).is_none() {
                return Err(format!("the {name} header is not visible ASCII"));
            }
        }
        let parts = SignedParts {
            path,
            authorization,
            content_md5: header(&CONTENT_MD5),
            content_type: header(&CONTENT_TYPE),
            date: header(&DATE),
        };
        self.check_at(SystemTime::now(), method, &parts)
    }

    /// A plain token (`Authorization: <token>`), compared in constant time.
    fn check_token(&self, authorization: Option<&str>) -> Result<BodyCheck, String> {
        let token = authorization
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .ok_or("missing Authorization header")?;
        if bool::from(token.as_bytes().ct_eq(self.token.as_bytes())) {
            Ok(BodyCheck { claimed_md5: None })
        } else {
            Err("the token does not match the service's token".into())
        }
    }

    fn check_at(
        &self,
        now: SystemTime,
        method: &Method,
        parts: &SignedParts<'_>,
    ) -> Result<BodyCheck, String> {
        let Some(signature) = parts
            .authorization
            .and_then(|a| a.trim().strip_prefix("EAS "))
        else {
            return self.check_token(parts.authorization);
        };

        let claimed_md5 = parts
            .content_md5
            .map(str::trim)
            .ok_or("a signed request needs a Content-MD5 header")?;

        let date = parts
            .date
            .map(str::trim)
            .ok_or("a signed request needs a Date header")?;
        let sent = httpdate::parse_http_date(date)
            .map_err(|_| format!("Date `{date}` is not an HTTP date"))?;
        let skew = match sent.duration_since(now) {
            Ok(ahead) => ahead,
            Err(behind) => behind.duration(),
        };
        if skew > self.max_date_skew {
            return Err(format!(
                "Date `{date}` is {} s away from the server's clock (at most {} s is accepted)",
                skew.as_secs(),
                self.max_date_skew.as_secs()
            ));
        }

        let content_type = parts.content_type.unwrap_or(DEFAULT_CONTENT_TYPE);
        let expected = sign(
            &self.token,
            method.as_str(),
            claimed_md5,
            content_type,
            date,
            parts.path,
        );
        if bool::from(signature.trim().as_bytes().ct_eq(expected.as_bytes())) {
            Ok(BodyCheck {
                claimed_md5: Some(claimed_md5.to_owned()),
            })
        } else {
            Err("the signature does not match: wrong token, or the request was altered".into())
        }
    }
}

/// What is left to check of a request once its body has arrived: the MD5 a signed request
/// claims in `Content-MD5` (nothing for a plain token).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct BodyCheck {
    claimed_md5: Option<String>,
}

impl BodyCheck {
    /// Whether there is anything to check.
    #[must_use]
    pub fn is_needed(&self) -> bool {
        self.claimed_md5.is_some()
    }

    /// Checks the body against the claimed MD5; `Err` says why it is refused.
    pub fn verify(&self, body: &[u8]) -> Result<(), String> {
        let Some(claimed) = &self.claimed_md5 else {
            return Ok(());
        };
        let actual = hex(&Md5::digest(body));
        if claimed.eq_ignore_ascii_case(&actual) {
            Ok(())
        } else {
            Err(format!(
                "Content-MD5 {claimed} does not match the body (its MD5 is {actual})"
            ))
        }
    }
}

/// The signed headers of one request.
struct SignedParts<'a> {
    path: &'a str,
    authorization: Option<&'a str>,
    content_md5: Option<&'a str>,
    content_type: Option<&'a str>,
    date: Option<&'a str>,
}

/// The EAS signature of a request, as the SDK computes it (base64 of HMAC-SHA1).
#[must_use]
pub fn sign(
    token: &str,
    method: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    path: &str,
) -> String {
    let message = format!("{method}\n{content_md5}\n{content_type}\n{date}\n{path}");
    // A key of any length is valid for HMAC, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(message.trim().as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The hex MD5 of `body`, as the SDK puts it in `Content-MD5`.
#[must_use]
pub fn content_md5(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

/// A fresh random token (30 random bytes, base64: 40 characters), for a spec without one.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 30];
    getrandom::fill(&mut bytes)?;
    Ok(BASE64.encode(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "NjQ5ZTE3ZDk3YzI0NzE1YWRmOWMwYjU5ZGY3ZWQ4OTZlMDY0MzY0YQ==";
    const PATH: &str = "/api/predict/echo";

    fn signed(body: &[u8], date: &str) -> (String, String) {
        let md5 = content_md5(body);
        let sig = sign(TOKEN, "POST", &md5, "text/plain", date, PATH);
        (md5, format!("EAS {sig}"))
    }

    fn check(
        now: SystemTime,
        authorization: Option<&str>,
        md5: Option<&str>,
        date: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        Authenticator::new(TOKEN)
            .check_at(
                now,
                &Method::POST,
                &SignedParts {
                    path: PATH,
                    authorization,
                    content_md5: md5,
                    content_type: Some("text/plain"),
                    date,
                },
            )
            .and_then(|rest| rest.verify(body))
    }

    fn at(date: &str) -> SystemTime {
        httpdate::parse_http_date(date).expect("test date")
    }

    #[test]
    fn a_signed_header_that_is_not_text_should_be_refused_not_read_as_absent() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", http::HeaderValue::from_static("EAS x"));
        headers.insert(
            "content-type",
            http::HeaderValue::from_bytes(b"text/\xff").expect("a header value"),
        );
        let refused = Authenticator::new(TOKEN)
            .check_headers(&Method::POST, PATH, &headers)
            .expect_err("refused");
        assert!(refused.contains("content-type"), "{refused}");
    }

    #[test]
    fn signature_should_match_the_python_sdk() {
        // Computed with the SDK's own code: hmac.new(token, auth.strip(), sha1), base64.
        let sig = sign(
            "token",
            "POST",
            "5d41402abc4b2a76b9719d911017c592",
            "application/octet-stream",
            "Mon, 23 Nov 2026 10:00:00 GMT",
            "/api/predict/echo",
        );
        assert_eq!(sig, "F/VWkh2QPgtiSGA7u78puKM5FRk=");
        assert_eq!(content_md5(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn plain_and_signed_tokens_should_pass() {
        let date = "Mon, 23 Nov 2026 10:00:00 GMT";
        let (md5, authz) = signed(b"hello", date);
        let now = at(date);
        assert_eq!(check(now, Some(TOKEN), None, None, b"x"), Ok(()));
        assert_eq!(
            check(now, Some(&authz), Some(&md5), Some(date), b"hello"),
            Ok(())
        );
    }

    #[test]
    fn each_wrong_request_should_say_why() {
        let date = "Mon, 23 Nov 2026 10:00:00 GMT";
        let (md5, authz) = signed(b"hello", date);
        let now = at(date);
        let other_token = format!(
            "EAS {}",
            sign("other", "POST", &md5, "text/plain", date, PATH)
        );
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a [u8],
            &'a str,
        );
        let cases: [Case<'_>; 7] = [
            (
                "no header",
                None,
                None,
                None,
                b"hello",
                "missing Authorization",
            ),
            (
                "wrong plain",
                Some("nope"),
                None,
                None,
                b"hello",
                "does not match the service's token",
            ),
            (
                "tampered body",
                Some(&authz),
                Some(&md5),
                Some(date),
                b"hellO",
                "does not match the body",
            ),
            (
                "no md5",
                Some(&authz),
                None,
                Some(date),
                b"hello",
                "needs a Content-MD5",
            ),
            (
                "no date",
                Some(&authz),
                Some(&md5),
                None,
                b"hello",
                "needs a Date",
            ),
            (
                "bad date",
                Some(&authz),
                Some(&md5),
                Some("yesterday"),
                b"hello",
                "not an HTTP date",
            ),
            (
                "wrong token",
                Some(&other_token),
                Some(&md5),
                Some(date),
                b"hello",
                "signature does not match",
            ),
        ];
        for (name, authz, md5, date, body, reason) in cases {
            let error = check(now, authz, md5, date, body).expect_err(name);
            assert!(error.contains(reason), "{name}: {error}");
        }
    }

    #[test]
    fn date_skew_should_admit_any_utc_offset_but_not_days() {
        let date = "Mon, 23 Nov 2026 10:00:00 GMT";
        let (md5, authz) = signed(b"hello", date);
        let hour = Duration::from_secs(3600);
        // A client at UTC+14 labels local time GMT: its Date is 14 h ahead of ours.
        for offset in [hour * 14, hour * 8, Duration::ZERO] {
            let ours = at(date) - offset;
            assert_eq!(
                check(ours, Some(&authz), Some(&md5), Some(date), b"hello"),
                Ok(())
            );
            let ours = at(date) + offset;
            assert_eq!(
                check(ours, Some(&authz), Some(&md5), Some(date), b"hello"),
                Ok(())
            );
        }
        let stale = at(date) + hour * 48;
        let error =
            check(stale, Some(&authz), Some(&md5), Some(date), b"hello").expect_err("two days off");
        assert!(error.contains("away from the server's clock"), "{error}");
    }

    #[test]
    fn generated_tokens_should_differ() {
        let a = generate_token().expect("random");
        let b = generate_token().expect("random");
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
    }
}
