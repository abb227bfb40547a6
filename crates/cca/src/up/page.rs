//! The HTML of the setup pages: rendered on the server, self-contained (no external asset, one
//! small inline script that only keeps the manifest in step with the form), every value
//! escaped.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::stored::StoredApp;

/// GitHub's limit on an App's name.
pub const MAX_APP_NAME_CHARS: usize = 34;

/// Permissions the App asks for: what the webhook and the agents use, nothing more.
pub const PERMISSIONS: [(&str, &str); 7] = [
    ("contents", "write"),
    ("pull_requests", "write"),
    ("issues", "write"),
    ("deployments", "write"),
    ("metadata", "read"),
    // Failing checks on the agent's commits: their runs, and Actions jobs' logs.
    ("checks", "read"),
    ("actions", "read"),
];

/// Events the App subscribes to.
pub const EVENTS: [&str; 6] = [
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "check_suite",
];

/// Escapes text for HTML content and quoted attribute values.
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

/// What the user chose on the setup page (or the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChoice {
    /// The App's name on GitHub.
    pub name: String,
    /// Where GitHub delivers webhooks: a public address that reaches this machine.
    pub webhook_url: String,
    /// The organization to own the App; the user's own account when `None`.
    pub org: Option<String>,
}

/// Whether `org` can be a GitHub organization login (letters, digits, single hyphens inside).
pub fn valid_org(org: &str) -> bool {
    !org.is_empty()
        && org.len() <= 39
        && !org.starts_with('-')
        && !org.ends_with('-')
        && !org.contains("--")
        && org.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `url` is an absolute `http(s)` URL without spaces or quotes.
pub fn valid_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>')
}

/// Where the manifest form is sent: the user's or the organization's "new App" page, with the
/// `state` GitHub hands back to the callback.
pub fn form_action(web_url: &str, org: Option<&str>, state: &str) -> String {
    let web = web_url.trim_end_matches('/');
    match org {
        Some(org) => format!("{web}/organizations/{org}/settings/apps/new?state={state}"),
        None => format!("{web}/settings/apps/new?state={state}"),
    }
}

/// The App manifest GitHub's manifest flow takes.
pub fn manifest(
    choice: &AppChoice,
    homepage: &str,
    redirect_url: &str,
    sign_in_callback: Option<&str>,
) -> Value {
    let permissions: serde_json::Map<String, Value> = PERMISSIONS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let mut manifest = json!({
        "name": choice.name,
        "url": homepage,
        "description": "Turns labelled GitHub issues into draft pull requests implemented by Claude Code.",
        "hook_attributes": { "url": choice.webhook_url, "active": true },
        "redirect_url": redirect_url,
        "public": false,
        "default_permissions": permissions,
        "default_events": EVENTS,
    });
    // Preview sign-in returns here (`cca up --preview-sign-in`); nothing is asked of the
    // installer.
    if let Some(callback) = sign_in_callback {
        manifest["callback_urls"] = json!([callback]);
        manifest["request_oauth_on_install"] = json!(false);
    }
    manifest
}

/// Everything the setup page shows.
#[derive(Debug)]
pub struct SetupView<'a> {
    pub choice: &'a AppChoice,
    /// Problems with the values given in the address, already replaced by defaults.
    pub notes: &'a [String],
    pub github_web_url: &'a str,
    pub state: &'a str,
    /// The manifest for `choice`.
    pub manifest: &'a Value,
    /// The local webhook address (the default of the public one).
    pub local_webhook_url: &'a str,
    /// Where the App's credentials will be written.
    pub data_dir: &'a str,
    pub nonce: &'a str,
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #ffffff; --text: #1f2328; --muted: #59636e;
  --line: #d1d9e0; --accent: #8a4bff; --accent-text: #ffffff; --code: #eff2f5; --ok: #1a7f37; --warn: #9a6700; }
@media (prefers-color-scheme: dark) { :root { --bg: #0d1117; --card: #151b23; --text: #e6edf3; --muted: #9198a1;
  --line: #3d444d; --accent: #a371f7; --code: #1f2630; --ok: #3fb950; --warn: #d29922; } }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 32px 20px 48px; }
header { display: flex; align-items: center; gap: 14px; margin-bottom: 8px; }
.logo { width: 40px; height: 40px; border-radius: 10px; background: var(--accent); color: var(--accent-text);
  display: grid; place-items: center; font-weight: 700; font-size: 18px; }
h1 { font-size: 24px; margin: 0; }
h2 { font-size: 18px; margin: 0 0 6px; }
h3 { font-size: 14px; margin: 18px 0 6px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
p { margin: 6px 0 10px; }
.lead { color: var(--muted); margin: 0 0 22px; }
.pill { display: inline-block; font-size: 12px; font-weight: 600; padding: 2px 10px; border-radius: 999px;
  border: 1px solid currentColor; }
.pill.warn { color: var(--warn); } .pill.ok { color: var(--ok); }
.grid { display: grid; grid-template-columns: 3fr 2fr; gap: 18px; align-items: start; }
@media (max-width: 760px) { .grid { grid-template-columns: 1fr; } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 20px 22px; }
label { display: block; font-weight: 600; margin: 14px 0 4px; }
.hint { display: block; font-weight: 400; color: var(--muted); font-size: 13px; }
input[type=text], input[type=url] { width: 100%; padding: 8px 10px; border: 1px solid var(--line); border-radius: 8px;
  background: var(--bg); color: var(--text); font: inherit; }
input:focus { outline: 2px solid var(--accent); outline-offset: -1px; }
button, .button { display: inline-block; margin-top: 18px; padding: 10px 18px; border: 0; border-radius: 8px;
  background: var(--accent); color: var(--accent-text); font: inherit; font-weight: 600; cursor: pointer;
  text-decoration: none; }
button.secondary { background: transparent; color: var(--text); border: 1px solid var(--line); }
code, pre { font: 13px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--code);
  border-radius: 6px; }
code { padding: 1px 5px; }
pre { padding: 12px 14px; overflow-x: auto; margin: 8px 0; }
ul.scopes { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 6px; }
ul.scopes li { background: var(--code); border-radius: 6px; padding: 2px 8px; font-size: 13px; }
ol { padding-left: 20px; } ol li { margin: 6px 0; }
details { margin-top: 14px; } summary { cursor: pointer; color: var(--muted); }
.note { border-left: 3px solid var(--warn); padding: 4px 12px; margin: 10px 0; color: var(--muted); }
footer { margin-top: 24px; color: var(--muted); font-size: 13px; }
"#;

/// Wraps `body` in the page frame.
fn frame(title: &str, pill: (&str, &str), body: &str, script: Option<(&str, &str)>) -> String {
    let (pill_class, pill_text) = pill;
    let mut page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{title} · Claude Cloud Agent</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<main>\n<header><div class=\"logo\">C</div>\
         <div><h1>{title}</h1></div><span class=\"pill {pill_class}\">{pill_text}</span></header>\n{body}\n",
        title = escape(title),
        pill_class = escape(pill_class),
        pill_text = escape(pill_text),
    );
    if let Some((nonce, code)) = script {
        let _ = writeln!(page, "<script nonce=\"{}\">{code}</script>", escape(nonce));
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

/// Keeps the manifest and the form's target in step with the three fields; without it the
/// "Apply" button re-renders the page on the server with the same effect.
const SCRIPT: &str = r#"
(function () {
  var form = document.getElementById('create-app');
  var base = JSON.parse(form.elements.manifest.value);
  var web = form.dataset.web, state = form.dataset.state;
  var shown = document.getElementById('manifest-json');
  var field = function (id) { return document.getElementById(id).value.trim(); };
  function update() {
    var m = JSON.parse(JSON.stringify(base));
    m.name = field('app-name') || base.name;
    m.hook_attributes.url = field('webhook-url') || base.hook_attributes.url;
    var org = field('org');
    form.action = org
      ? web + '/organizations/' + encodeURIComponent(org) + '/settings/apps/new?state=' + state
      : web + '/settings/apps/new?state=' + state;
    form.elements.manifest.value = JSON.stringify(m);
    shown.textContent = JSON.stringify(m, null, 2);
  }
  ['app-name', 'webhook-url', 'org'].forEach(function (id) {
    document.getElementById(id).addEventListener('input', update);
  });
  document.getElementById('apply').hidden = true;
  update();
})();
"#;

/// The setup page: the two ways to give `cca up` access to GitHub, and the App form.
pub fn setup_page(v: &SetupView<'_>) -> String {
    let manifest_compact = v.manifest.to_string();
    let manifest_pretty = serde_json::to_string_pretty(v.manifest).unwrap_or_default();
    let action = form_action(v.github_web_url, v.choice.org.as_deref(), v.state);
    let scopes: String = PERMISSIONS
        .iter()
        .map(|(k, a)| format!("<li>{}: {}</li>", escape(k), escape(a)))
        .collect();
    let events: String = EVENTS
        .iter()
        .map(|e| format!("<li>{}</li>", escape(e)))
        .collect();
    let notes: String = v
        .notes
        .iter()
        .map(|n| format!("<p class=\"note\">{}</p>", escape(n)))
        .collect();
    let body = format!(
        r#"<p class="lead">cca up runs the webhook, the preview proxy and the agents on this machine. It needs
access to GitHub first. Choose one of the two ways below; the App is the one to prefer.</p>
{notes}
<div class="grid">
<section class="card">
<h2>Create a GitHub App</h2>
<p>GitHub creates an App with exactly the access Claude Cloud Agent uses, and hands its
credentials back to this page, which stores them in <code>{data_dir}</code>, readable by you only.
Nothing else needs to be set.</p>
<form id="options" method="get" action="/setup"></form>
<label for="app-name">App name<span class="hint">Unique on GitHub, at most {max} characters.</span></label>
<input type="text" id="app-name" name="name" form="options" maxlength="{max}" value="{name}">
<label for="webhook-url">Public webhook URL<span class="hint">GitHub must reach it. The default only
works on this machine: put a tunnel (for example cloudflared, ngrok or smee.io) in front of
<code>{local_hook}</code> and enter its public address.</span></label>
<input type="url" id="webhook-url" name="webhook_url" form="options" value="{hook}">
<label for="org">Organization <span class="hint">Leave empty to create the App on your own account.</span></label>
<input type="text" id="org" name="org" form="options" value="{org}" placeholder="my-org">
<button id="apply" class="secondary" type="submit" form="options">Apply</button>
<h3>Repository permissions</h3>
<ul class="scopes">{scopes}</ul>
<h3>Events</h3>
<ul class="scopes">{events}</ul>
<form id="create-app" method="post" action="{action}" data-web="{web}" data-state="{state}">
<input type="hidden" name="manifest" value="{manifest_attr}">
<button type="submit">Create a GitHub App</button>
</form>
<details><summary>The manifest sent to GitHub</summary><pre id="manifest-json">{manifest_text}</pre></details>
</section>
<section class="card">
<h2>Or use a personal access token</h2>
<p>Quicker for a first try on your own repositories. Make a fine-grained token with read and
write access to contents, pull requests, issues and deployments, add a webhook to each repository
(payload URL <code>{local_hook}</code> or its public address, content type
<code>application/json</code>, events: issues, issue comments, pull requests), then start cca up
with:</p>
<pre>export GITHUB_TOKEN=&lt;token&gt;
export GITHUB_WEBHOOK_SECRET=&lt;the webhook's secret&gt;
cca up</pre>
<p>An existing App works the same way with <code>GITHUB_APP_ID</code>,
<code>GITHUB_APP_PRIVATE_KEY_FILE</code> and <code>GITHUB_WEBHOOK_SECRET</code>.</p>
</section>
</div>
<footer>This page answers on this machine only. Settings that come from the environment always win
over the stored App.</footer>"#,
        data_dir = escape(v.data_dir),
        max = MAX_APP_NAME_CHARS,
        name = escape(&v.choice.name),
        hook = escape(&v.choice.webhook_url),
        local_hook = escape(v.local_webhook_url),
        org = escape(v.choice.org.as_deref().unwrap_or("")),
        action = escape(&action),
        web = escape(v.github_web_url.trim_end_matches('/')),
        state = escape(v.state),
        manifest_attr = escape(&manifest_compact),
        manifest_text = escape(&manifest_pretty),
    );
    frame(
        "Connect cca up to GitHub",
        ("warn", "no GitHub credentials"),
        &body,
        Some((v.nonce, SCRIPT)),
    )
}

/// The page after GitHub created the App and its credentials were stored.
pub fn created_page(app: &StoredApp, stored_in: &str, webhook_url: &str) -> String {
    let body = format!(
        r#"<section class="card">
<h2>{name} is ready</h2>
<p>GitHub created the App <a href="{html_url}">{slug}</a> (id {id}). Its private key, webhook
secret and client credentials are stored in <code>{stored_in}</code>, readable by you only, and
cca up has started with them: no restart needed, and the next <code>cca up</code> finds them on its
own.</p>
<h3>Next steps</h3>
<ol>
<li>Install the App on the repositories it should work on:
<a class="button" href="{install}">Install {slug}</a></li>
<li>Check that GitHub reaches the webhook at <code>{hook}</code> (the App's settings page shows
recent deliveries).</li>
<li>Label an issue <code>claude-dev</code>: a draft pull request follows, and
<code>cca sessions list</code> shows the session.</li>
</ol>
</section>"#,
        name = escape(if app.name.is_empty() {
            &app.slug
        } else {
            &app.name
        }),
        html_url = escape(&app.html_url),
        slug = escape(&app.slug),
        id = app.app_id,
        stored_in = escape(stored_in),
        install = escape(&app.install_url()),
        hook = escape(webhook_url),
    );
    frame("GitHub App created", ("ok", "connected"), &body, None)
}

/// The setup page once `cca up` runs with credentials.
pub fn configured_page(source: &str, app: Option<&StoredApp>, webhook_url: &str) -> String {
    let install = app
        .map(|a| {
            format!(
                "<p>Install the App on more repositories: <a class=\"button\" href=\"{}\">Install {}</a></p>",
                escape(&a.install_url()),
                escape(&a.slug)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"<section class="card">
<h2>GitHub is configured</h2>
<p>cca up uses {source}. Webhook deliveries go to <code>{hook}</code> (or the public address in
front of it).</p>
{install}
<p>To start over with another App, stop cca up, delete <code>github-app.json</code> and
<code>github-app.pem</code> from the data directory, and start it again with no GitHub variables
set.</p>
</section>"#,
        source = escape(source),
        hook = escape(webhook_url),
    );
    frame("Claude Cloud Agent", ("ok", "connected"), &body, None)
}

/// A short page saying what went wrong and what to do.
pub fn message_page(title: &str, message: &str) -> String {
    let body = format!(
        "<section class=\"card\"><h2>{}</h2><p>{}</p><p><a href=\"/setup\">Back to the setup page</a></p></section>",
        escape(title),
        escape(message)
    );
    frame(title, ("warn", "setup"), &body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice() -> AppChoice {
        AppChoice {
            name: "Claude Cloud Agent (box)".into(),
            webhook_url: "http://127.0.0.1:8080/webhook".into(),
            org: None,
        }
    }

    #[test]
    fn the_manifest_asks_for_what_the_system_uses() {
        let m = manifest(
            &choice(),
            "http://127.0.0.1:8080/setup",
            "http://127.0.0.1:8080/setup/callback",
            Some("http://auth.localhost:8081/callback"),
        );
        assert_eq!(
            m["callback_urls"],
            json!(["http://auth.localhost:8081/callback"])
        );
        assert_eq!(m["request_oauth_on_install"], false);
        assert_eq!(m["default_permissions"]["contents"], "write");
        assert_eq!(m["default_permissions"]["pull_requests"], "write");
        assert_eq!(m["default_permissions"]["issues"], "write");
        assert_eq!(m["default_permissions"]["deployments"], "write");
        assert_eq!(m["default_permissions"]["metadata"], "read");
        assert_eq!(m["default_permissions"]["checks"], "read");
        assert_eq!(m["default_permissions"]["actions"], "read");
        assert_eq!(
            m["default_events"],
            json!([
                "issues",
                "issue_comment",
                "pull_request",
                "pull_request_review",
                "pull_request_review_comment",
                "check_suite"
            ])
        );
        assert_eq!(m["public"], false);
        assert_eq!(m["redirect_url"], "http://127.0.0.1:8080/setup/callback");
        assert_eq!(m["hook_attributes"]["url"], "http://127.0.0.1:8080/webhook");
    }

    #[test]
    fn the_form_goes_to_the_account_or_the_organization() {
        assert_eq!(
            form_action("https://github.com/", None, "s1"),
            "https://github.com/settings/apps/new?state=s1"
        );
        assert_eq!(
            form_action("https://ghe.example.com", Some("acme"), "s1"),
            "https://ghe.example.com/organizations/acme/settings/apps/new?state=s1"
        );
        assert!(valid_org("acme-corp") && !valid_org("-x") && !valid_org("a b"));
        assert!(valid_url("https://x.example/webhook") && !valid_url("javascript:alert(1)"));
    }

    #[test]
    fn values_are_escaped() {
        let mut c = choice();
        c.name = "<script>alert('x')</script>".into();
        let m = manifest(&c, "h", "r", None);
        let page = setup_page(&SetupView {
            choice: &c,
            notes: &["a <b> note".into()],
            github_web_url: "https://github.com",
            state: "abc",
            manifest: &m,
            local_webhook_url: "http://127.0.0.1:8080/webhook",
            data_dir: "/home/u/.local/share/cca",
            nonce: "n1",
        });
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)"));
        assert!(page.contains("a &lt;b&gt; note"));
        assert_eq!(escape(r#"&<>"'"#), "&amp;&lt;&gt;&quot;&#39;");
    }
}
