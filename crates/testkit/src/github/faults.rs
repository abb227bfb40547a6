//! Injected failures and rate limits (primary, secondary), in GitHub's shapes.

use super::*;

/// Answers an injected failure with `body` (a 403 here is a refusal; rate limits are
/// [`FakeGitHub::rate_limit_next`]).
pub(crate) fn injected_failure(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// GitHub's secondary limit on content-creating requests (comments, edits, reactions, PRs…)
/// by one identity in a minute.
pub const CONTENT_REQUESTS_PER_MINUTE: usize = 80;

/// How a rate-limited answer says when to try again, as GitHub's answers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// A secondary limit with `retry-after: <seconds>`.
    RetryAfter(u64),
    /// The primary limit: `x-ratelimit-remaining: 0` and `x-ratelimit-reset` this many seconds
    /// from now.
    ResetIn(u64),
    /// A secondary limit that names no time (GitHub: wait at least a minute).
    Unspecified,
}

#[derive(Debug)]
pub(super) struct QueuedLimit {
    pub(super) method: String,
    pub(super) path_contains: String,
    pub(super) status: u16,
    pub(super) limit: RateLimit,
    pub(super) remaining: usize,
}

/// A rate-limited answer with GitHub's status, headers and message.
pub(super) fn rate_limited(status: u16, limit: RateLimit) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let (message, doc) = match limit {
        RateLimit::ResetIn(_) => (
            "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.",
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        ),
        RateLimit::RetryAfter(_) | RateLimit::Unspecified => (
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        ),
    };
    let mut response = (
        status,
        Json(json!({ "message": message, "documentation_url": doc })),
    )
        .into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("a header value"));
    };
    match limit {
        RateLimit::RetryAfter(secs) => set("retry-after", secs.to_string()),
        RateLimit::ResetIn(secs) => {
            let reset = unix_seconds(SystemTime::now() + Duration::from_secs(secs));
            set("x-ratelimit-limit", "5000".into());
            set("x-ratelimit-remaining", "0".into());
            set("x-ratelimit-used", "5000".into());
            set("x-ratelimit-reset", reset.to_string());
            set("x-ratelimit-resource", "core".into());
        }
        RateLimit::Unspecified => {}
    }
    response
}

/// Failures queued with `fail_next`, shared by the fakes.
#[derive(Debug, Default)]
pub(crate) struct Faults(Vec<Fault>);

#[derive(Debug)]
pub(crate) struct Fault {
    method: String,
    path_contains: String,
    status: u16,
    remaining: usize,
}

impl Fault {
    pub(crate) fn new(method: &str, path_contains: &str, status: u16, times: usize) -> Self {
        Fault {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_owned(),
            status,
            remaining: times,
        }
    }
}

impl Faults {
    pub(crate) fn push(&mut self, fault: Fault) {
        if fault.remaining > 0 {
            self.0.push(fault);
        }
    }

    /// The status to fail this request with, if a queued failure matches; uses it up.
    pub(crate) fn take(&mut self, method: &str, path: &str) -> Option<u16> {
        let index = self.0.iter().position(|f| {
            (f.method == "*" || f.method.eq_ignore_ascii_case(method))
                && path.contains(&f.path_contains)
        })?;
        let fault = &mut self.0[index];
        fault.remaining -= 1;
        let status = fault.status;
        if fault.remaining == 0 {
            self.0.remove(index);
        }
        Some(status)
    }
}
