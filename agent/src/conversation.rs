//! The CLI's conversation outlives the container. Claude Code keeps a conversation in its
//! configuration directory (`projects/<working directory>/<id>.jsonl`, and `<id>/` beside it for
//! what its sub-agents said), which lives in the sandbox's home and is gone with the container.
//! After each run the agent saves those files to the session's place in durable storage; before
//! a run resumes a conversation this container does not hold, it restores them, so a follow-up
//! after an idle stop or a crash resumes where the session left off.
//!
//! The files are written by untrusted code (the CLI runs the model's commands as the sandbox
//! user), so they are packed and unpacked *as the sandbox user* (`tar` in the sandbox): a
//! symbolic link planted there can make the archive hold only what that user may read anyway,
//! and unpacking can write only where that user may write.
//!
//! Where the archive goes ([`Store`]): under `cca up`, the data directory
//! (`<CCA_DATA_DIR>/conversations/<session>.tar`, mode 0600, which the sandbox hides); deployed,
//! S3, through URLs the control plane's broker presigns for this session's own key only
//! (`POST <CCA_TOKEN_URL>/agent/conversation` with the session's token): the agent holds no
//! AWS credential for the bucket.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use cca_domain::SessionId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::sandbox::Sandbox;

/// The largest archive saved or restored.
pub const MAX_ARCHIVE_BYTES: usize = 64 * 1024 * 1024;

/// How long packing, unpacking or one transfer may take.
const STEP_LIMIT: Duration = Duration::from_secs(60);

/// Where a session's conversation is kept between containers.
#[derive(Debug, Clone)]
pub enum Store {
    /// A directory of the machine (`cca up`'s data directory).
    Dir(PathBuf),
    /// S3, through URLs the broker at `url` presigns for the session holding `token`.
    Broker { url: String, token: SecretString },
}

/// The broker's answer: a presigned URL for one operation on the session's object.
#[derive(Debug, Deserialize)]
struct Presigned {
    url: String,
}

/// The route of the broker that presigns the session's conversation URLs.
pub const CONVERSATION_ROUTE: &str = "/agent/conversation";

impl Store {
    /// Keeps `archive` as the conversation of session `id`, replacing the one kept before.
    pub async fn put(&self, id: &SessionId, archive: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Store::Dir(dir) => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(format!("{id}.tar"));
                let partial = dir.join(format!(".{id}.tar.partial"));
                let mut file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&partial)
                    .await
                    .with_context(|| format!("writing {}", partial.display()))?;
                file.write_all(&archive).await?;
                file.sync_all().await?;
                tokio::fs::rename(&partial, &path).await?;
                Ok(())
            }
            Store::Broker { .. } => {
                let url = self.presign(id, "put").await?;
                let answer = http()
                    .put(url)
                    .body(archive)
                    .send()
                    .await
                    .context("uploading the conversation")?;
                if !answer.status().is_success() {
                    bail!("the conversation store answered {}", answer.status());
                }
                Ok(())
            }
        }
    }

    /// The conversation kept for session `id`, if any.
    pub async fn get(&self, id: &SessionId) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Store::Dir(dir) => match tokio::fs::read(dir.join(format!("{id}.tar"))).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).context("reading the kept conversation"),
            },
            Store::Broker { .. } => {
                let url = self.presign(id, "get").await?;
                let answer = http()
                    .get(url)
                    .send()
                    .await
                    .context("downloading the conversation")?;
                match answer.status().as_u16() {
                    200 => {
                        let bytes = answer.bytes().await?;
                        if bytes.len() > MAX_ARCHIVE_BYTES {
                            bail!("the kept conversation is larger than {MAX_ARCHIVE_BYTES} bytes");
                        }
                        Ok(Some(bytes.to_vec()))
                    }
                    // The signer may list the bucket, so a missing key is a 404; a 403 is a
                    // refusal (an expired URL, a key the signer cannot use) and said as one.
                    404 => Ok(None),
                    other => bail!("the conversation store answered {other}"),
                }
            }
        }
    }

    async fn presign(&self, id: &SessionId, op: &str) -> anyhow::Result<String> {
        let Store::Broker { url, token } = self else {
            unreachable!("only the broker presigns")
        };
        let answer = http()
            .post(format!("{}{CONVERSATION_ROUTE}", url.trim_end_matches('/')))
            .bearer_auth(token.expose_secret())
            .json(&serde_json::json!({ "session_id": id.as_str(), "op": op }))
            .send()
            .await
            .context("asking the control plane for the conversation's URL")?;
        let status = answer.status();
        if !status.is_success() {
            let why = answer.text().await.unwrap_or_default();
            bail!(
                "the control plane refused the conversation's URL ({status}): {}",
                cca_domain::naming::clip(&why, 200)
            );
        }
        Ok(answer.json::<Presigned>().await?.url)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(STEP_LIMIT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// The paths, relative to `config_dir`, of conversation `id`'s files (none when the CLI keeps
/// it nowhere here). Only names are read, never contents.
fn conversation_paths(config_dir: &Path, id: &str) -> Vec<OsString> {
    let Ok(projects) = std::fs::read_dir(config_dir.join("projects")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for project in projects.flatten() {
        let name = project.file_name();
        for candidate in [format!("{id}.jsonl"), id.to_owned()] {
            // Not followed: whatever a link planted here points at, `tar` archives the link.
            if std::fs::symlink_metadata(project.path().join(&candidate)).is_ok() {
                let mut rel = OsString::from("projects/");
                rel.push(&name);
                rel.push("/");
                rel.push(&candidate);
                out.push(rel);
            }
        }
    }
    out
}

/// Packs conversation `id` of the CLI configured in `config_dir`, as the sandbox user; `None`
/// when there is nothing to keep.
pub async fn pack(
    sandbox: &Sandbox,
    config_dir: &Path,
    id: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    if !valid_id(id) {
        bail!("{id:?} is not a conversation id");
    }
    let paths = conversation_paths(config_dir, id);
    if paths.is_empty() {
        return Ok(None);
    }
    let mut args: Vec<OsString> = vec!["-cf".into(), "-".into(), "--".into()];
    args.extend(paths);
    let mut cmd = sandbox.command("tar", &args, config_dir, &[]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = tokio::time::timeout(STEP_LIMIT, cmd.output())
        .await
        .context("packing the conversation took too long")?
        .context("running tar")?;
    if !out.status.success() {
        bail!(
            "tar could not pack the conversation: {}",
            cca_domain::naming::clip(String::from_utf8_lossy(&out.stderr).trim(), 300)
        );
    }
    if out.stdout.len() > MAX_ARCHIVE_BYTES {
        bail!(
            "the conversation is {} bytes, more than the {MAX_ARCHIVE_BYTES} kept",
            out.stdout.len()
        );
    }
    Ok(Some(out.stdout))
}

/// Unpacks `archive` into `config_dir` as the sandbox user: only `projects/…` entries, none
/// absolute or climbing out (`tar` refuses those by default; the list is checked first too).
pub async fn unpack(sandbox: &Sandbox, config_dir: &Path, archive: Vec<u8>) -> anyhow::Result<()> {
    if archive.len() > MAX_ARCHIVE_BYTES {
        bail!("the kept conversation is larger than {MAX_ARCHIVE_BYTES} bytes");
    }
    // Made by the sandbox user, in its own home: nothing here is changed as root, where a
    // directory swapped for a symbolic link could turn the change onto another path.
    let parent = config_dir.parent().unwrap_or(config_dir);
    let mut mkdir = sandbox.command(
        "mkdir",
        &["-p".into(), "--".into(), config_dir.as_os_str().to_owned()],
        parent,
        &[],
    );
    mkdir.stdout(Stdio::null()).stderr(Stdio::piped());
    let made = tokio::time::timeout(STEP_LIMIT, mkdir.output())
        .await
        .context("creating the CLI's configuration directory took too long")?
        .context("running mkdir")?;
    if !made.status.success() {
        bail!(
            "cannot create {}: {}",
            config_dir.display(),
            cca_domain::naming::clip(String::from_utf8_lossy(&made.stderr).trim(), 300)
        );
    }
    let names = run_tar(sandbox, config_dir, &["-tf", "-"], archive.clone()).await?;
    for name in String::from_utf8_lossy(&names).lines() {
        if !entry_allowed(name) {
            bail!("the kept conversation holds an entry outside projects/: {name:?}");
        }
    }
    run_tar(
        sandbox,
        config_dir,
        &["-xf", "-", "--no-same-owner", "--no-same-permissions"],
        archive,
    )
    .await?;
    Ok(())
}

async fn run_tar(
    sandbox: &Sandbox,
    dir: &Path,
    args: &[&str],
    input: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let mut cmd = sandbox.command("tar", &args, dir, &[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("running tar")?;
    let mut stdin = child.stdin.take().context("tar's input")?;
    let feed = async move {
        let written = stdin.write_all(&input).await;
        drop(stdin);
        written
    };
    let (fed, out) = tokio::time::timeout(STEP_LIMIT, async {
        tokio::join!(feed, child.wait_with_output())
    })
    .await
    .context("unpacking the conversation took too long")?;
    let out = out.context("running tar")?;
    if !out.status.success() {
        bail!(
            "tar could not unpack the conversation: {}",
            cca_domain::naming::clip(String::from_utf8_lossy(&out.stderr).trim(), 300)
        );
    }
    fed.context("feeding tar")?;
    Ok(out.stdout)
}

/// Whether an archive entry may be unpacked: under `projects/`, relative, never climbing.
fn entry_allowed(name: &str) -> bool {
    let path = Path::new(name);
    name.starts_with("projects/")
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Claude Code's conversation ids are UUIDs; anything else is not looked for.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_entries_under_projects_are_unpacked() {
        assert!(entry_allowed("projects/-w-s/abc.jsonl"));
        assert!(entry_allowed("projects/-w-s/abc/"));
        for bad in [
            "/etc/passwd",
            "projects/../../etc/x",
            "settings.json",
            "../projects/x",
        ] {
            assert!(!entry_allowed(bad), "{bad}");
        }
        assert!(valid_id("0f6b1c2e-8d3a-4c5b-9e7f-112233445566"));
        assert!(!valid_id("../x") && !valid_id("") && !valid_id("a b"));
    }

    #[tokio::test]
    async fn a_conversation_packed_in_one_home_is_unpacked_in_a_fresh_one() {
        let old = tempfile::tempdir().unwrap();
        let id = "0f6b1c2e-8d3a-4c5b-9e7f-112233445566";
        let project = old.path().join("projects/-workspace-s1-app");
        std::fs::create_dir_all(project.join(id)).unwrap();
        std::fs::write(project.join(format!("{id}.jsonl")), "{\"said\":1}\n").unwrap();
        std::fs::write(project.join(id).join("agent-1.jsonl"), "{}\n").unwrap();
        std::fs::write(project.join("other.jsonl"), "not this one").unwrap();
        let sandbox = Sandbox::unconfined(old.path());
        let archive = pack(&sandbox, old.path(), id).await.unwrap().unwrap();
        assert!(
            pack(&sandbox, old.path(), "missing")
                .await
                .unwrap()
                .is_none()
        );

        let dir = tempfile::tempdir().unwrap();
        let store = Store::Dir(dir.path().join("conversations"));
        let session = SessionId::parse("s1abcdefgh").unwrap();
        assert!(store.get(&session).await.unwrap().is_none());
        store.put(&session, archive).await.unwrap();
        let kept = store.get(&session).await.unwrap().unwrap();

        let fresh = tempfile::tempdir().unwrap();
        let config = fresh.path().join(".claude");
        unpack(&Sandbox::unconfined(fresh.path()), &config, kept)
            .await
            .unwrap();
        let restored = config.join("projects/-workspace-s1-app");
        assert_eq!(
            std::fs::read_to_string(restored.join(format!("{id}.jsonl"))).unwrap(),
            "{\"said\":1}\n"
        );
        assert!(restored.join(id).join("agent-1.jsonl").exists());
        assert!(
            !restored.join("other.jsonl").exists(),
            "only the conversation is kept"
        );
        assert!(crate::cli::has_conversation(&config, id));
    }

    #[tokio::test]
    async fn an_archive_with_an_entry_outside_projects_is_refused() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("settings.json"), "{\"hooks\":1}").unwrap();
        let sandbox = Sandbox::unconfined(src.path());
        let out = sandbox
            .command(
                "tar",
                &["-cf".into(), "-".into(), "settings.json".into()],
                src.path(),
                &[],
            )
            .stdout(Stdio::piped())
            .output()
            .await
            .unwrap();
        let fresh = tempfile::tempdir().unwrap();
        let err = unpack(&Sandbox::unconfined(fresh.path()), fresh.path(), out.stdout)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("outside projects/"), "{err}");
        assert!(!fresh.path().join("settings.json").exists());
    }
}
