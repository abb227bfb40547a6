//! Naming rules that users, infrastructure and the original system's data depend on.

use sha2::{Digest, Sha256};

use crate::ids::{BranchName, JiraKey, MAX_SESSION_ID_LEN, SessionId};

/// Prefix of every PR preview session id, kept from the original (`tt-` for "test tickets").
pub const PREVIEW_PREFIX: &str = "tt-";

/// Length of the hash suffix of a truncated preview id: 8 hex digits (32 bits) make an
/// accidental clash between two long branch names sharing their first 41 characters negligible.
const PREVIEW_HASH_LEN: usize = 8;

/// Branch of a GitHub issue's agent session: `claude/<n>`.
pub fn issue_branch(issue_number: u64) -> BranchName {
    BranchName::parse(&format!("claude/{issue_number}")).unwrap_or_else(|_| unreachable!())
}

/// Branch of a JIRA issue's agent session: `claude/<key lower-case>`.
pub fn jira_branch(key: &JiraKey) -> BranchName {
    BranchName::parse(&format!("claude/{}", key.as_str().to_ascii_lowercase()))
        .unwrap_or_else(|_| unreachable!())
}

/// Preview session id of a PR branch, as the original made it: `tt-<slug>`, the slug being the
/// branch lower-cased with `/`, `_` (and any other character a DNS label cannot hold) turned into
/// `-`. At most 50 characters: a longer id is cut and suffixed with a hash of the whole branch
/// name, so two branches that differ only after the cut never share an id.
///
/// Folding can still map two live branches onto one id (`feature/x` and `feature-x`); the
/// webhook detects that against the store and then uses [`preview_session_id_hashed`].
pub fn preview_session_id(branch: &str) -> String {
    let whole = format!("{PREVIEW_PREFIX}{}", slug(branch));
    if whole.len() <= MAX_SESSION_ID_LEN {
        whole
    } else {
        with_hash(&whole, branch)
    }
}

/// Preview session id that always carries the hash of the branch name: unique per branch, used
/// when the readable id is already held by another PR's preview.
pub fn preview_session_id_hashed(branch: &str) -> String {
    with_hash(&format!("{PREVIEW_PREFIX}{}", slug(branch)), branch)
}

fn slug(branch: &str) -> String {
    let slug: String = branch
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    // No leading `-`: `tt--x` would read as an IDNA-reserved label to browsers.
    let mut slug = slug.trim_matches('-').to_owned();
    if slug.is_empty() {
        slug.push('x');
    }
    slug
}

fn with_hash(id: &str, branch: &str) -> String {
    let digest = Sha256::digest(branch.as_bytes());
    let hash = &hex::encode(digest)[..PREVIEW_HASH_LEN];
    let keep = MAX_SESSION_ID_LEN - PREVIEW_HASH_LEN - 1;
    let mut cut: String = id.chars().take(keep).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    format!("{cut}-{hash}")
}

/// The preview URL of a session.
pub fn preview_url(id: &SessionId, domain_suffix: &str) -> String {
    format!("https://{id}.{}", domain_suffix.trim_start_matches('.'))
}

/// Placeholder of the session id in a preview URL template.
pub const TEMPLATE_ID: &str = "{id}";
/// Placeholder of the domain suffix in a preview URL template.
pub const TEMPLATE_SUFFIX: &str = "{suffix}";

/// How the preview URLs of sessions are written: `https://<id>.<suffix>` behind the load
/// balancer ([`preview_url`]), or a template where previews are reached another way, such as
/// `http://{id}.localhost:8081` for the proxy of `cca up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewUrls {
    suffix: String,
    template: Option<String>,
}

impl PreviewUrls {
    /// `https://<id>.<suffix>`; a leading `.` of the suffix is dropped.
    pub fn new(suffix: &str) -> Self {
        Self {
            suffix: suffix.trim_start_matches('.').to_owned(),
            template: None,
        }
    }

    /// URLs written from `template`: an `http://` or `https://` URL holding `{id}` (the
    /// session id) and optionally `{suffix}` (the domain suffix). The error says what is wrong.
    pub fn with_template(mut self, template: &str) -> Result<Self, String> {
        let template = template.trim();
        if !(template.starts_with("http://") || template.starts_with("https://")) {
            return Err(format!("{template:?} is not an http:// or https:// URL"));
        }
        if !template.contains(TEMPLATE_ID) {
            return Err(format!(
                "{template:?} does not hold {TEMPLATE_ID}, where the session id goes"
            ));
        }
        let rest = template
            .replace(TEMPLATE_ID, "")
            .replace(TEMPLATE_SUFFIX, "");
        if rest.contains(['{', '}']) || rest.chars().any(char::is_whitespace) {
            return Err(format!(
                "{template:?} holds something other than {TEMPLATE_ID} and {TEMPLATE_SUFFIX} in braces, or a space"
            ));
        }
        self.template = Some(template.to_owned());
        Ok(self)
    }

    /// The domain suffix, without a leading `.`.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The template, when one is set.
    pub fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    /// The form of the URLs, with `<session>` where the id goes: for people to read.
    pub fn pattern(&self) -> String {
        match &self.template {
            None => format!("https://<session>.{}", self.suffix),
            Some(t) => t
                .replace(TEMPLATE_ID, "<session>")
                .replace(TEMPLATE_SUFFIX, &self.suffix),
        }
    }

    /// The preview URL of session `id`.
    pub fn url(&self, id: &SessionId) -> String {
        match &self.template {
            None => preview_url(id, &self.suffix),
            Some(t) => t
                .replace(TEMPLATE_ID, id.as_str())
                .replace(TEMPLATE_SUFFIX, &self.suffix),
        }
    }
}

impl From<&str> for PreviewUrls {
    fn from(suffix: &str) -> Self {
        Self::new(suffix)
    }
}

impl From<String> for PreviewUrls {
    fn from(suffix: String) -> Self {
        Self::new(&suffix)
    }
}

/// `s` on one line (runs of white space made one space), cut to `max_chars` characters.
pub(crate) fn one_line(s: &str, max_chars: usize) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    clip(&line, max_chars).into_owned()
}

/// Cuts `s` to at most `max_chars` characters (on a character boundary).
pub fn clip(s: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]).into(),
        None => s.into(),
    }
}

/// GitHub's REST API on github.com.
pub const GITHUB_API: &str = "https://api.github.com";
/// GitHub's web address on github.com.
pub const GITHUB_WEB: &str = "https://github.com";

/// GitHub's web address (where Apps are created and users authorize them): `given` when set,
/// else derived from the API address: `https://github.com` for github.com's, the server itself
/// for GitHub Enterprise Server's `https://<host>/api/v3`, and the same address otherwise (a
/// test server serving both).
pub fn github_web_url(given: Option<&str>, api: Option<&str>) -> String {
    if let Some(web) = given.map(str::trim).filter(|v| !v.is_empty()) {
        return web.trim_end_matches('/').to_owned();
    }
    let api = api
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(GITHUB_API)
        .trim_end_matches('/');
    if api == GITHUB_API {
        GITHUB_WEB.to_owned()
    } else if let Some(server) = api.strip_suffix("/api/v3") {
        server.to_owned()
    } else {
        api.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches() {
        assert_eq!(issue_branch(42).as_str(), "claude/42");
        assert_eq!(
            jira_branch(&JiraKey::parse("AGNTS-7").unwrap()).as_str(),
            "claude/agnts-7"
        );
    }

    #[test]
    fn preview_ids_follow_the_original_slug() {
        assert_eq!(preview_session_id("feature-login"), "tt-feature-login");
        assert_eq!(
            preview_session_id("Feature/Login_Page"),
            "tt-feature-login-page"
        );
        assert_eq!(preview_session_id("fix42"), "tt-fix42");
    }

    #[test]
    fn preview_ids_are_valid_session_ids() {
        for b in [
            "Feature/Login_Page",
            "a",
            "___",
            "x/y/z",
            &"long-branch-".repeat(10),
            "ünï/cödé",
        ] {
            let id = preview_session_id(b);
            let hashed = preview_session_id_hashed(b);
            assert!(SessionId::parse(&hashed).is_ok(), "{b} -> {hashed}");
            assert!(id.len() <= MAX_SESSION_ID_LEN, "{id}");
            assert!(SessionId::parse(&id).is_ok(), "{b} -> {id}");
            assert!(SessionId::parse(&id).unwrap().is_preview());
        }
    }

    #[test]
    fn preview_ids_never_collide_after_truncation_or_folding() {
        let base = "feature/a-very-long-branch-name-that-goes-on-and-on-";
        let a = preview_session_id(&format!("{base}one"));
        let b = preview_session_id(&format!("{base}two"));
        assert_ne!(a, b);
        assert!(a.len() <= MAX_SESSION_ID_LEN && b.len() <= MAX_SESSION_ID_LEN);
        // Folding collides; the hashed form, used on a clash, does not.
        assert_eq!(
            preview_session_id("feature/x"),
            preview_session_id("feature-x")
        );
        assert_ne!(
            preview_session_id_hashed("feature/x"),
            preview_session_id_hashed("feature-x")
        );
        assert!(SessionId::parse(&preview_session_id_hashed("feature/x")).is_ok());
    }

    #[test]
    fn preview_urls_default_to_https_and_follow_a_template() {
        let id = SessionId::parse("abc123").unwrap();
        let plain = PreviewUrls::new(".uat.example.com");
        assert_eq!(plain.url(&id), "https://abc123.uat.example.com");
        assert_eq!(plain.url(&id), preview_url(&id, "uat.example.com"));
        let local = PreviewUrls::new("localhost")
            .with_template("http://{id}.{suffix}:8081")
            .unwrap();
        assert_eq!(local.url(&id), "http://abc123.localhost:8081");
        assert_eq!(local.pattern(), "http://<session>.localhost:8081");
        assert_eq!(plain.pattern(), "https://<session>.uat.example.com");
        assert_eq!(local.suffix(), "localhost");
        for bad in [
            "ftp://{id}.x",
            "http://x.localhost",
            "http://{id}.{port}",
            "http://{id} .x",
        ] {
            assert!(PreviewUrls::new("x").with_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hi", 2), "hi");
    }
}
