//! GitHub's rate limits, as its documentation describes them: a rate-limited call answers 403
//! or 429 and says when to try again with `retry-after` (seconds), or with
//! `x-ratelimit-remaining: 0` and `x-ratelimit-reset` (epoch seconds); a secondary limit that
//! says neither means "wait at least a minute". Every call goes through [`send`], which waits
//! and tries again while the wait fits the caller's patience, and otherwise fails with
//! [`GitHubError::RateLimited`] (transient) naming the wait.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, StatusCode};
use octocrab::Octocrab;
use serde::de::DeserializeOwned;

use crate::GitHubError;

/// How long a client may wait in all for one call to get past rate limits, by default: the
/// webhook answers GitHub within 10 s, so it waits a few seconds at most.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(4);

/// What GitHub asks for when a secondary limit names no time.
const UNSPECIFIED_WAIT: Duration = Duration::from_secs(60);

/// The shortest wait (a `retry-after: 0` or a reset already past must not make a busy loop)
/// and the longest one taken as asked (a larger number is read as this).
const MIN_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// How long a rate-limited answer asks the caller to wait, or `None` when it is not one (a 403
/// that is a refusal of permission has neither header nor a rate-limit message).
pub(crate) fn wait_asked(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<Duration> {
    if !matches!(status.as_u16(), 403 | 429) {
        return None;
    }
    asked(status, headers, message, now).map(|w| w.clamp(MIN_WAIT, MAX_WAIT))
}

fn asked(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok())?;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        // A second of margin: the reset is whole seconds.
        return Some(Duration::from_secs(
            reset.saturating_sub(now).saturating_add(1),
        ));
    }
    let lower = message.to_ascii_lowercase();
    (status.as_u16() == 429 || lower.contains("rate limit")).then_some(UNSPECIFIED_WAIT)
}

/// One REST call: `method route` with an optional JSON body, the answer parsed as `T`. Waits
/// out rate limits within `patience` in all.
pub(crate) async fn send<T: DeserializeOwned>(
    octo: &Octocrab,
    method: Method,
    route: &str,
    body: Option<&serde_json::Value>,
    patience: Duration,
) -> Result<T, GitHubError> {
    let transport = |e: octocrab::Error| GitHubError::from_octocrab(route, e);
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let answer = match method {
            Method::GET => octo._get(route).await,
            Method::POST => octo._post(route, body).await,
            Method::PATCH => octo._patch(route, body).await,
            Method::PUT => octo._put(route, body).await,
            Method::DELETE => octo._delete(route, body).await,
            _ => unreachable!("no other method is used"),
        }
        .map_err(transport)?;
        let status = answer.status();
        if status.is_success() {
            let text = octo.body_to_string(answer).await.map_err(transport)?;
            // An empty answer (204) reads as JSON null.
            let text = if text.trim().is_empty() {
                "null"
            } else {
                &text
            };
            return serde_json::from_str(text).map_err(|e| GitHubError::Transport {
                route: route.to_owned(),
                message: format!("the answer did not parse: {e}"),
            });
        }
        let headers = answer.headers().clone();
        let error = match octocrab::map_github_error(answer).await {
            Err(e) => GitHubError::from_octocrab(route, e),
            Ok(_) => unreachable!("the status is not a success"),
        };
        let message = match &error {
            GitHubError::Api { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let Some(wait) = wait_asked(status, &headers, &message, SystemTime::now()) else {
            return Err(error);
        };
        if wait > deadline.saturating_duration_since(tokio::time::Instant::now()) {
            return Err(GitHubError::RateLimited {
                route: route.to_owned(),
                status: status.as_u16(),
                wait,
                message,
            });
        }
        tracing::warn!(
            route,
            status = status.as_u16(),
            ?wait,
            "rate-limited by GitHub; trying again"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn odd_numbers_neither_spin_nor_overflow() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let forbidden = StatusCode::FORBIDDEN;
        assert_eq!(
            wait_asked(forbidden, &headers(&[("retry-after", "0")]), "", now),
            Some(MIN_WAIT)
        );
        assert_eq!(
            wait_asked(
                forbidden,
                &headers(&[("retry-after", "18446744073709551615")]),
                "",
                now
            ),
            Some(MAX_WAIT)
        );
        let reset = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "18446744073709551615"),
        ]);
        assert_eq!(wait_asked(forbidden, &reset, "", now), Some(MAX_WAIT));
    }

    #[test]
    fn the_waits_github_describes_are_read() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let forbidden = StatusCode::FORBIDDEN;
        assert_eq!(
            wait_asked(forbidden, &headers(&[("retry-after", "30")]), "", now),
            Some(Duration::from_secs(30))
        );
        let primary = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1010"),
        ]);
        assert_eq!(
            wait_asked(StatusCode::TOO_MANY_REQUESTS, &primary, "", now),
            Some(Duration::from_secs(11))
        );
        assert_eq!(
            wait_asked(
                forbidden,
                &HeaderMap::new(),
                "You have exceeded a secondary rate limit.",
                now
            ),
            Some(UNSPECIFIED_WAIT)
        );
        // A refusal of permission is not a rate limit, nor is any other status.
        let remaining = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(
            wait_asked(
                forbidden,
                &remaining,
                "Resource not accessible by integration",
                now
            ),
            None
        );
        assert_eq!(
            wait_asked(
                StatusCode::BAD_GATEWAY,
                &headers(&[("retry-after", "1")]),
                "",
                now
            ),
            None
        );
    }
}
