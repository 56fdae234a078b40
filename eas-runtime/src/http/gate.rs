//! The admin token's one gate, shared by the control API, the benchmark-task API and the
//! console: the token is compared in constant time, and failed attempts are throttled per
//! client address, so that the token cannot be guessed at network speed.
//!
//! Each address may fail [`BURST`] times; it gets one more attempt back every [`REFILL`]. An
//! address with no attempt left is refused (429 with `Retry-After`) before its token is looked
//! at, the right one included, until an attempt is back: a guesser learns nothing from those
//! answers. A request without any token is not a guess and costs nothing; nor does a success.
//! At most [`MAX_ADDRESSES`] addresses are tracked: when the table is full, those with the
//! most attempts left are forgotten first (a locked-out one only when every other one is). Behind a proxy all clients share the proxy's address: `X-Forwarded-For` is not
//! trusted, since a client writes what it likes there.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse as _, Response};
use eas_core::control::{ErrorCode, ErrorResponse};
use subtle::ConstantTimeEq as _;

use super::error::control_status;

/// Failed attempts an address may make at once.
pub const BURST: f64 = 10.0;
/// How long an address waits for one more attempt after it used them all.
pub const REFILL: Duration = Duration::from_secs(6);
/// Addresses tracked at most.
pub const MAX_ADDRESSES: usize = 4096;

/// The client address of a request, as the accept loop saw it (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub IpAddr);

/// What the gate says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The admin token is right.
    Admitted,
    /// No token was given.
    Missing,
    /// The token is wrong.
    Wrong,
    /// Too many wrong tokens came from this address lately: try again after this long.
    Throttled(Duration),
}

/// Attempts an address has left, as of `at`.
#[derive(Debug, Clone, Copy)]
struct Attempts {
    left: f64,
    at: Instant,
}

impl Attempts {
    /// Refilled up to `now`.
    fn at(self, now: Instant) -> Self {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() / REFILL.as_secs_f64();
        Self {
            left: (self.left + earned).min(BURST),
            at: now,
        }
    }
}

/// Whole seconds to wait, rounded up (for `Retry-After`).
pub(crate) fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl Verdict {
    /// `None` when admitted, else the answer in the control API's shape (`{"Code",
    /// "Message"}`: 401, or 429 with `Retry-After`); `api` names what wants the token.
    pub(crate) fn refusal(self, api: &str) -> Option<Response> {
        let (code, message) = match self {
            Self::Admitted => return None,
            Self::Missing => (
                ErrorCode::Unauthorized,
                format!("{api} needs the admin token: `Authorization: <token>`"),
            ),
            Self::Wrong => (
                ErrorCode::Unauthorized,
                "the admin token is wrong".to_owned(),
            ),
            Self::Throttled(wait) => (
                ErrorCode::TooManyRequests,
                format!(
                    "too many wrong admin tokens from your address: try again in {} s",
                    retry_after(wait)
                ),
            ),
        };
        let status = http::StatusCode::from_u16(control_status(code))
            .unwrap_or(http::StatusCode::UNAUTHORIZED);
        let mut response = (status, axum::Json(ErrorResponse::new(code, message))).into_response();
        if let Self::Throttled(wait) = self {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(retry_after(wait)),
            );
        }
        Some(response)
    }
}

/// The admin token and the failures per address; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct AdminGate {
    token: String,
    failures: Mutex<HashMap<IpAddr, Attempts>>,
}

impl AdminGate {
    /// The gate of `token`.
    pub(crate) fn new(token: String) -> Self {
        Self {
            token,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The admin token itself (for requests the edge makes to itself).
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Judges `given` (the token a request carries, if any) from `peer`.
    pub(crate) fn check(&self, peer: Option<Peer>, given: Option<&str>) -> Verdict {
        self.check_at(peer.map(|p| p.0), given, Instant::now())
    }

    /// Judges the `Authorization` header (`T` or `Bearer T`) of `headers` from `peer`.
    pub(crate) fn check_headers(&self, peer: Option<Peer>, headers: &http::HeaderMap) -> Verdict {
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
        self.check(peer, given)
    }

    fn check_at(&self, peer: Option<IpAddr>, given: Option<&str>, now: Instant) -> Verdict {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let attempts = peer.and_then(|ip| failures.get(&ip)).map(|a| a.at(now));
        if let Some(attempts) = attempts
            && attempts.left < 1.0
        {
            let wait = REFILL.mul_f64(1.0 - attempts.left);
            return Verdict::Throttled(wait.max(Duration::from_secs(1)));
        }
        let Some(given) = given else {
            return Verdict::Missing;
        };
        if bool::from(given.as_bytes().ct_eq(self.token.as_bytes())) {
            return Verdict::Admitted;
        }
        if let Some(ip) = peer {
            let mut attempts = attempts.unwrap_or(Attempts {
                left: BURST,
                at: now,
            });
            attempts.left -= 1.0;
            if !failures.contains_key(&ip) && failures.len() >= MAX_ADDRESSES {
                forget_some(&mut failures, now);
            }
            failures.insert(ip, attempts);
        }
        Verdict::Wrong
    }
}

/// Makes room in a full table: drops the addresses whose attempts are all back, and if that
/// is not an eighth of the table, the eighth with the most attempts left (so the scan is
/// paid once per [`MAX_ADDRESSES`]` / 8` new addresses, not per failure).
fn forget_some(failures: &mut HashMap<IpAddr, Attempts>, now: Instant) {
    failures.retain(|_, a| a.at(now).left < BURST);
    let room = MAX_ADDRESSES / 8;
    if failures.len() + room <= MAX_ADDRESSES {
        return;
    }
    let mut by_left: Vec<(f64, IpAddr)> = failures
        .iter()
        .map(|(ip, a)| (a.at(now).left, *ip))
        .collect();
    let cut = failures.len() + room - MAX_ADDRESSES;
    // The `cut` entries with the most attempts left go first.
    by_left.select_nth_unstable_by(cut - 1, |a, b| b.0.total_cmp(&a.0));
    for (_, ip) in &by_left[..cut] {
        failures.remove(ip);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn an_address_should_be_locked_out_after_its_burst_and_let_back_as_attempts_refill() {
        let gate = AdminGate::new("secret".into());
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(gate.check_at(ip(1), Some("guess"), t0), Verdict::Wrong);
        }
        // Locked out: even the right token is refused, so a guess cannot be confirmed.
        let Verdict::Throttled(wait) = gate.check_at(ip(1), Some("secret"), t0) else {
            panic!("the 11th attempt should be throttled");
        };
        assert_eq!(wait, REFILL);
        // Other addresses and requests without a token from nowhere are not affected.
        assert_eq!(gate.check_at(ip(2), Some("secret"), t0), Verdict::Admitted);
        assert_eq!(gate.check_at(None, Some("guess"), t0), Verdict::Wrong);
        // One attempt back after REFILL: one more guess, then locked again.
        let later = t0 + REFILL;
        assert_eq!(gate.check_at(ip(1), Some("guess"), later), Verdict::Wrong);
        assert!(matches!(
            gate.check_at(ip(1), Some("secret"), later),
            Verdict::Throttled(_)
        ));
        assert_eq!(
            gate.check_at(ip(1), Some("secret"), later + REFILL),
            Verdict::Admitted
        );
    }

    #[test]
    fn successes_and_missing_tokens_should_cost_no_attempt() {
        let gate = AdminGate::new("secret".into());
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(gate.check_at(ip(1), Some("secret"), t0), Verdict::Admitted);
            assert_eq!(gate.check_at(ip(1), None, t0), Verdict::Missing);
        }
        assert!(gate.failures.lock().unwrap().is_empty());
    }

    #[test]
    fn the_table_should_stay_bounded_and_keep_the_locked_out() {
        let gate = AdminGate::new("secret".into());
        let t0 = Instant::now();
        for _ in 0..10 {
            gate.check_at(ip(0), Some("guess"), t0);
        }
        for n in 1..(2 * MAX_ADDRESSES as u32) {
            assert_eq!(gate.check_at(ip(n), Some("guess"), t0), Verdict::Wrong);
        }
        assert!(gate.failures.lock().unwrap().len() <= MAX_ADDRESSES);
        assert!(matches!(
            gate.check_at(ip(0), Some("secret"), t0),
            Verdict::Throttled(_)
        ));
    }
}
