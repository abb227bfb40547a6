//! JSON builders shared by the resources, in GitHub's shapes.

use super::*;

pub(super) fn reaction_json(api: &str, r: &Reaction) -> Value {
    json!({
        "id": r.id,
        "node_id": node_id("REA", r.id),
        "user": user_json(api, &r.user),
        "content": r.content,
        "created_at": rfc3339(SystemTime::now()),
    })
}

/// A user object with every field octocrab's `Author` requires.
/// `head` of a pull request from a fork: the fork's owner and repository.
pub(super) fn fork_branch_json(api: &str, fork: &str, branch: &str, sha: &str) -> Value {
    let (owner, name) = fork.split_once('/').unwrap_or((fork, fork));
    json!({
        "label": format!("{owner}:{branch}"),
        "ref": branch,
        "sha": sha,
        "user": user_json(api, owner),
        "repo": {
            "name": name,
            "full_name": fork,
            "owner": user_json(api, owner),
            "fork": true,
            "private": false,
            "url": format!("{api}/repos/{fork}"),
        },
    })
}

pub(super) fn user_json(api: &str, login: &str) -> Value {
    let id = login_id(login);
    let is_bot = login.ends_with("[bot]");
    let path = login.replace('[', "%5B").replace(']', "%5D");
    let url = format!("{api}/users/{path}");
    let html_url = match login.strip_suffix("[bot]") {
        Some(app) => format!("https://github.com/apps/{app}"),
        None => format!("https://github.com/{login}"),
    };
    json!({
        "login": login,
        "id": id,
        "node_id": node_id("U", id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": url,
        "html_url": html_url,
        "followers_url": format!("{url}/followers"),
        "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"),
        "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"),
        "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"),
        "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"),
        "type": if is_bot { "Bot" } else { "User" },
        "site_admin": false,
    })
}

/// A stable numeric id per login (FNV-1a), so the same user always has the same id.
pub(super) fn login_id(login: &str) -> u64 {
    let hash = login
        .to_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash % 100_000_000 + 1
}

pub(super) fn node_id(kind: &str, id: u64) -> String {
    format!("{kind}_kgDO{id:08X}")
}

pub(super) fn random_sha() -> String {
    hex::encode(rand::random::<[u8; 20]>())
}

pub(super) fn parse_query(uri: &Uri) -> BTreeMap<String, String> {
    Query::<BTreeMap<String, String>>::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default()
}
