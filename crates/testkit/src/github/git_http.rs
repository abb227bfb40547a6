//! git's smart HTTP protocol for hosted repositories (`/git/{owner}/{repo}.git/...`), with the
//! receive side's refusals.

use super::*;

/// What a git request needs once it is allowed.
#[derive(Debug)]
pub(super) struct GitPlan {
    pub(super) root: PathBuf,
    pub(super) home: PathBuf,
    pub(super) path_info: String,
    pub(super) login: &'static str,
    pub(super) rules: Vec<(&'static str, String)>,
}

/// Serves git's smart HTTP protocol for hosted repositories, through `git http-backend`; the
/// backend runs outside the fake's critical section, and a push's new refs are read back after.
pub(super) async fn serve_git(
    Shared(fake): Shared<FakeGitHub>,
    request: axum::extract::Request,
) -> Response {
    let latency = fake.state().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::BAD_REQUEST, "unreadable request body\n").into_response();
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let target = parse_git_path(&path);
    let service = target
        .as_ref()
        .and_then(|(_, tail)| git_service(tail, &query));
    let push = service.as_deref() == Some("git-receive-pack");
    let mut record = GitRequest {
        method: parts.method.as_str().to_owned(),
        path,
        repo: target.as_ref().map(|(key, _)| key.clone()),
        service,
        auth: AuthKind::None,
        content_encoding: parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        authorized: false,
        status: 0,
    };
    let token = basic_token(&parts.headers);
    let plan = fake
        .state()
        .plan_git(&mut record, target, token.as_deref(), push);
    let response = match plan {
        Err(refusal) => *refusal,
        Ok(plan) => {
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            crate::git::http_backend(CgiRequest {
                home: plan.home,
                root: plan.root,
                path_info: plan.path_info,
                method: record.method.clone(),
                query,
                content_type: header("content-type"),
                content_encoding: header("content-encoding"),
                git_protocol: header("git-protocol"),
                remote_user: plan.login.to_owned(),
                rules: plan.rules,
                body,
            })
            .await
        }
    };
    record.status = response.status().as_u16();
    let mut state = fake.state();
    if push && record.authorized {
        if let Some(repo) = record.repo.as_ref().and_then(|k| state.repos.get_mut(k)) {
            repo.refresh();
        }
    }
    state.git_requests.push(record);
    response
}

/// `/git/<owner>/<name>[.git]/<tail>` → (`owner/name` in lower case, tail).
pub(super) fn parse_git_path(path: &str) -> Option<(String, String)> {
    let mut parts = path.strip_prefix("/git/")?.splitn(3, '/');
    let owner = percent_decode(parts.next()?);
    let name = percent_decode(parts.next()?);
    let name = name.strip_suffix(".git").unwrap_or(&name);
    let tail = parts.next().unwrap_or_default();
    let plain = |s: &str| !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\']);
    (plain(&owner) && plain(name))
        .then(|| (format!("{owner}/{name}").to_lowercase(), tail.to_owned()))
}

/// The git service a request is for, from its path or its `service` parameter.
pub(super) fn git_service(tail: &str, query: &str) -> Option<String> {
    match tail {
        "git-upload-pack" | "git-receive-pack" => Some(tail.to_owned()),
        "info/refs" => query
            .split('&')
            .find_map(|pair| pair.strip_prefix("service="))
            .map(str::to_owned),
        _ => None,
    }
}

/// The token of `Authorization: Basic`: the password, or the user name when the password is
/// empty (both work with GitHub).
pub(super) fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let token = if password.is_empty() { user } else { password };
    Some(token.to_owned()).filter(|t| !t.is_empty())
}

/// A plain-text refusal, which git shows its user.
pub(super) fn git_refusal(status: StatusCode, message: &str) -> Response {
    let mut response = (status, format!("{message}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
    }
    response
}
