//! The pages the proxy answers itself, when a request cannot or should not reach an app.
//!
//! Each says in a sentence what is going on, with the status code a browser, a load balancer
//! and a script each understand: a preview still starting is a 503 that refreshes itself, a
//! stopped one is gone (410), a failed one is a 502 with the recorded reason. Everything taken
//! from the session record is HTML-escaped, since agents write it. Nothing here reveals an
//! upstream address.

use bytes::Bytes;
use cca_domain::Session;
use http::{HeaderValue, Response, StatusCode, header};

/// Seconds after which a page for a preview that is starting is loaded again (meta refresh) and
/// a client is told to retry (`Retry-After`): containers take tens of seconds to start, so
/// every five seconds shows progress soon without loading the proxy.
pub const STARTING_REFRESH_SECS: u32 = 5;

/// Seconds after which the "app not answering" page reloads itself: the app's dev server is
/// restarted by its supervisor with back-off, which takes longer than a container start step.
pub const NOT_ANSWERING_REFRESH_SECS: u32 = 10;

/// A page the proxy answers instead of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// `GET /health` for a host that is not a session's: the load balancer's check.
    Health,
    /// The host is not `<id>.<suffix>` with a valid id.
    UnknownHost,
    /// No session has this id.
    UnknownSession,
    /// The session exists but its app has no address yet.
    Starting { pr_link: Option<String> },
    /// The session is stopping or has ended normally.
    Stopped { pr_link: Option<String> },
    /// The session ended with an error.
    Failed {
        pr_link: Option<String>,
        error: Option<String>,
    },
    /// The app did not accept a connection (refused, or not within the connect time-out).
    AppNotAnswering { pr_link: Option<String> },
    /// The app accepted the connection but the exchange failed.
    AppError { pr_link: Option<String> },
    /// The app did not send its answer's head within the upstream time-out.
    AppTimedOut { pr_link: Option<String> },
    /// The proxy holds as many WebSocket tunnels as it may.
    Busy,
    /// The store could not be read and nothing was cached.
    StoreUnavailable,
    /// The recorded address is not one the proxy may connect to.
    Refused,
    /// The request has gone through this proxy too many times.
    LoopDetected,
    /// A request the proxy does not serve (e.g. `CONNECT`).
    MethodNotAllowed,
    /// The preview is behind sign-in and the request cannot be redirected (not a page load:
    /// a WebSocket upgrade, a `POST`, a script's fetch).
    SignInRequired,
    /// The visitor is signed in but may not see this preview's repository (or there is no
    /// such preview: the same answer).
    Forbidden { login: String },
    /// A signed-in visitor's browser sent a request from another site or preview that is not
    /// a page load.
    CrossSite,
    /// Whether the visitor may see the preview cannot be checked right now (GitHub failed).
    AccessUnavailable,
    /// A sign-in step that cannot go on: a forged or expired state or code, an address that
    /// is not a preview's (an open redirect), GitHub refusing the code.
    BadSignIn { reason: String },
}

impl Page {
    /// The status code of this page.
    pub fn status(&self) -> StatusCode {
        match self {
            Page::Health => StatusCode::OK,
            Page::UnknownHost | Page::UnknownSession => StatusCode::NOT_FOUND,
            Page::Starting { .. } | Page::StoreUnavailable | Page::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Page::AppTimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            Page::Stopped { .. } => StatusCode::GONE,
            Page::Failed { .. }
            | Page::AppNotAnswering { .. }
            | Page::AppError { .. }
            | Page::Refused => StatusCode::BAD_GATEWAY,
            Page::LoopDetected => StatusCode::LOOP_DETECTED,
            Page::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Page::SignInRequired => StatusCode::UNAUTHORIZED,
            Page::Forbidden { .. } | Page::CrossSite => StatusCode::FORBIDDEN,
            Page::AccessUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Page::BadSignIn { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The response, with an HTML body (plain `ok` for the health check).
    pub fn response(&self) -> Response<Bytes> {
        let (title, message, refresh) = self.text();
        let body = if *self == Page::Health {
            Bytes::from_static(b"ok\n")
        } else {
            Bytes::from(render(&title, &message, self.pr_link(), refresh))
        };
        let content_type = if *self == Page::Health {
            "text/plain; charset=utf-8"
        } else {
            "text/html; charset=utf-8"
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // A page stands in for the app only until the session changes: a cached 404 or 410 would
        // hide a preview that comes (back) to life.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = refresh {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(
            self,
            Page::StoreUnavailable | Page::Busy | Page::AccessUnavailable
        ) {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(STARTING_REFRESH_SECS),
            );
        }
        response
    }

    fn pr_link(&self) -> Option<&str> {
        match self {
            Page::Starting { pr_link }
            | Page::Stopped { pr_link }
            | Page::Failed { pr_link, .. }
            | Page::AppNotAnswering { pr_link }
            | Page::AppError { pr_link }
            | Page::AppTimedOut { pr_link } => pr_link.as_deref(),
            _ => None,
        }
    }

    /// Title, message (already HTML) and refresh seconds.
    fn text(&self) -> (String, String, Option<u32>) {
        let (title, message, refresh): (&str, String, Option<u32>) = match self {
            Page::Health => ("ok", String::new(), None),
            Page::UnknownHost => (
                "Unknown preview",
                "No preview is served at this address.".into(),
                None,
            ),
            Page::UnknownSession => (
                "Unknown preview",
                "There is no preview with this name. It may have been removed.".into(),
                None,
            ),
            Page::Starting { .. } => (
                "Preview starting",
                "This preview is starting. The page reloads by itself when it is ready.".into(),
                Some(STARTING_REFRESH_SECS),
            ),
            Page::Stopped { .. } => ("Preview stopped", "This preview has stopped.".into(), None),
            Page::Failed { error, .. } => {
                let mut message = "This preview failed.".to_owned();
                if let Some(error) = error.as_deref().filter(|e| !e.trim().is_empty()) {
                    message.push_str("</p><pre>");
                    message.push_str(&escape(error));
                    message.push_str("</pre><p>");
                }
                ("Preview failed", message, None)
            }
            Page::AppNotAnswering { .. } => (
                "App not answering",
                "The preview is running but its app is not answering (it may be restarting). \
                 The page reloads by itself."
                    .into(),
                Some(NOT_ANSWERING_REFRESH_SECS),
            ),
            Page::AppError { .. } => (
                "App error",
                "The preview's app closed the connection before answering.".into(),
                None,
            ),
            Page::AppTimedOut { .. } => (
                "App too slow",
                "The preview's app did not answer in time.".into(),
                None,
            ),
            Page::Busy => (
                "Too many connections",
                "The preview proxy holds as many live connections as it may. Try again in a moment."
                    .into(),
                None,
            ),
            Page::StoreUnavailable => (
                "Temporarily unavailable",
                "Preview records cannot be read right now. Try again in a moment.".into(),
                None,
            ),
            Page::Refused => (
                "Preview unreachable",
                "This preview cannot be reached through the proxy.".into(),
                None,
            ),
            Page::LoopDetected => (
                "Loop detected",
                "This request went round in a loop between proxies.".into(),
                None,
            ),
            Page::MethodNotAllowed => (
                "Not allowed",
                "The preview proxy does not serve this kind of request.".into(),
                None,
            ),
            Page::SignInRequired => (
                "Sign-in required",
                "This preview is open only to people who may read its repository. Load the \
                 page in a browser to sign in with GitHub."
                    .into(),
                None,
            ),
            Page::Forbidden { login } => (
                "No access",
                format!(
                    "You are signed in to GitHub as <b>{}</b>, who may not see a preview at \
                     this address (or there is none). Ask for access to its repository, or sign \
                     in as someone else on GitHub and load the page again.",
                    escape(login)
                ),
                None,
            ),
            Page::CrossSite => (
                "Request refused",
                "This request came from another site or preview, and was not a page load. \
                 Open the preview's address directly."
                    .into(),
                None,
            ),
            Page::AccessUnavailable => (
                "Temporarily unavailable",
                "Whether you may see this preview cannot be checked with GitHub right now. Try \
                 again in a moment."
                    .into(),
                None,
            ),
            Page::BadSignIn { reason } => (
                "Sign-in failed",
                format!(
                    "{} Load the preview again to start a new sign-in.",
                    escape(reason)
                ),
                None,
            ),
        };
        (title.to_owned(), message, refresh)
    }
}

/// The link to the session's PR, when it has one.
pub fn pr_link(session: &Session) -> Option<String> {
    session
        .pr_number
        .map(|n| format!("https://github.com/{}/pull/{n}", session.repo_full_name))
}

fn render(title: &str, message_html: &str, pr_link: Option<&str>, refresh: Option<u32>) -> String {
    let refresh = refresh
        .map(|secs| format!("<meta http-equiv=\"refresh\" content=\"{secs}\">\n"))
        .unwrap_or_default();
    let pr = pr_link
        .map(|url| {
            let url = escape(url);
            format!("<p>Pull request: <a href=\"{url}\">{url}</a></p>\n")
        })
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{refresh}\
         <title>{title}</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:40rem;\
         margin:4rem auto;padding:0 1rem;color:#222}}pre{{white-space:pre-wrap;background:#f4f4f4;\
         padding:1rem}}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>{message_html}</p>\n{pr}\
         </body>\n</html>\n",
        title = escape(title),
    )
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(page: &Page) -> String {
        String::from_utf8(page.response().into_body().to_vec()).unwrap()
    }

    #[test]
    fn failure_text_is_escaped() {
        let page = Page::Failed {
            pr_link: Some("https://github.com/o/r/pull/3".into()),
            error: Some("<script>alert('x')</script> & \"more\"".into()),
        };
        let html = body(&page);
        assert!(!html.contains("<script>"));
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;")
        );
        assert!(html.contains("href=\"https://github.com/o/r/pull/3\""));
        assert_eq!(page.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn starting_page_refreshes_itself() {
        let response = Page::Starting { pr_link: None }.response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let html = String::from_utf8(response.into_body().to_vec()).unwrap();
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    }

    #[test]
    fn statuses() {
        assert_eq!(Page::Stopped { pr_link: None }.status(), StatusCode::GONE);
        assert_eq!(Page::UnknownHost.status(), StatusCode::NOT_FOUND);
        assert_eq!(Page::UnknownSession.status(), StatusCode::NOT_FOUND);
        assert_eq!(Page::Refused.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            Page::StoreUnavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(Page::Health.status(), StatusCode::OK);
    }
}
