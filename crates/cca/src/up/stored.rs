//! The GitHub App the setup page created, kept in the data directory: `github-app.json` (id,
//! slug, webhook secret, OAuth client) and `github-app.pem` (the private key), both readable by
//! their owner only. A later `cca up` with no credentials in its environment uses them.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::data_dir::DataDir;

/// What `github-app.json` holds: GitHub's answer to the manifest conversion, without the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredApp {
    pub app_id: u64,
    pub slug: String,
    #[serde(default)]
    pub name: String,
    /// The App's page, e.g. `https://github.com/apps/<slug>`.
    pub html_url: String,
    /// The account that owns the App.
    #[serde(default)]
    pub owner: Option<String>,
    pub webhook_secret: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: i64,
}

impl std::fmt::Debug for StoredApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets stay out of logs and panics.
        f.debug_struct("StoredApp")
            .field("app_id", &self.app_id)
            .field("slug", &self.slug)
            .field("html_url", &self.html_url)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl StoredApp {
    /// Where the App is installed on repositories.
    pub fn install_url(&self) -> String {
        format!("{}/installations/new", self.html_url.trim_end_matches('/'))
    }
}

/// The stored App and the path of its key, if the data directory holds both files.
pub fn load(dir: &DataDir) -> anyhow::Result<Option<(StoredApp, PathBuf)>> {
    let json = dir.github_app_json();
    let pem = dir.github_app_pem();
    if !json.exists() {
        return Ok(None);
    }
    if !pem.exists() {
        bail!(
            "{} exists but {} does not: delete the first to create the App again",
            json.display(),
            pem.display()
        );
    }
    for path in [&json, &pem] {
        tighten(path)?;
    }
    let text =
        fs::read_to_string(&json).with_context(|| format!("cannot read {}", json.display()))?;
    let app: StoredApp = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stored GitHub App", json.display()))?;
    if app.webhook_secret.trim().is_empty() {
        bail!("{} holds no webhook secret", json.display());
    }
    Ok(Some((app, pem)))
}

/// Writes the App's files (key first, so that `github-app.json` is only ever found complete),
/// each created owner-only and moved into place whole. Creates the data directory (0700).
pub fn save(dir: &DataDir, app: &StoredApp, private_key_pem: &str) -> anyhow::Result<()> {
    dir.create()?;
    write_private(&dir.github_app_pem(), private_key_pem.as_bytes())?;
    let json = serde_json::to_vec_pretty(app).context("cannot encode the App")?;
    write_private(&dir.github_app_json(), &json)
}

/// Writes `bytes` to `path` with mode 0600 through a temporary file beside it.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    // A temporary file left by an earlier attempt keeps its mode: set it again.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to its owner", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))
}

/// Makes a credentials file owner-only if someone loosened it.
fn tighten(path: &Path) -> anyhow::Result<()> {
    let mode = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_dir::DataDirArgs;

    fn app() -> StoredApp {
        StoredApp {
            app_id: 7,
            slug: "my-app".into(),
            name: "My App".into(),
            html_url: "https://github.com/apps/my-app/".into(),
            owner: Some("octo".into()),
            webhook_secret: "whsec".into(),
            client_id: Some("Iv1.x".into()),
            client_secret: Some("shh".into()),
            created_at: 1,
        }
    }

    #[test]
    fn saved_apps_load_back_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::resolve(&DataDirArgs {
            data_dir: Some(tmp.path().join("cca")),
        })
        .unwrap();
        assert!(load(&dir).unwrap().is_none());
        save(&dir, &app(), "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
        let (loaded, pem) = load(&dir).unwrap().unwrap();
        assert_eq!(loaded, app());
        assert_eq!(pem, dir.github_app_pem());
        for path in [dir.github_app_json(), dir.github_app_pem()] {
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        let mode = fs::metadata(dir.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o711, "passable, listable by its owner only");
        assert_eq!(
            loaded.install_url(),
            "https://github.com/apps/my-app/installations/new"
        );
        assert!(!format!("{loaded:?}").contains("whsec"));
    }

    #[test]
    fn a_json_without_its_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::resolve(&DataDirArgs {
            data_dir: Some(tmp.path().to_owned()),
        })
        .unwrap();
        fs::write(dir.github_app_json(), "{}").unwrap();
        assert!(load(&dir).unwrap_err().to_string().contains("delete"));
    }
}
