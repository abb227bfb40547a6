//! The local data directory of `cca up`: the SQLite sessions file, agent logs, the control key,
//! and the GitHub App made by the setup page. The other commands find the same files through it, so `cca sessions` works beside a
//! running `cca up` with nothing set.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rand::RngCore as _;

/// Bytes of randomness in a generated control key: 256 bits, the HMAC-SHA256 key size.
pub const CONTROL_KEY_BYTES: usize = 32;

/// Selects the data directory; shared by every command that reads or writes it.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArgs {
    /// Local data directory (sessions.db, logs/, control.key). Default: $XDG_DATA_HOME/cca or
    /// ~/.local/share/cca.
    #[arg(long, env = "CCA_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The files under a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The directory chosen by `args`, made absolute: agents are started in other working
    /// directories and must find the same store.
    pub fn resolve(args: &DataDirArgs) -> anyhow::Result<Self> {
        let root = match &args.data_dir {
            Some(dir) => dir.clone(),
            None => default_root()?,
        };
        let root = std::path::absolute(&root)
            .with_context(|| format!("cannot resolve the data directory {}", root.display()))?;
        Ok(Self { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite sessions file.
    pub fn sessions_db(&self) -> PathBuf {
        self.root.join("sessions.db")
    }

    /// Where agent processes write their output.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The local control key.
    pub fn control_key_path(&self) -> PathBuf {
        self.root.join("control.key")
    }

    /// The GitHub App made by `cca up`'s setup page: its id, slug, webhook secret and OAuth
    /// client (no private key).
    pub fn github_app_json(&self) -> PathBuf {
        self.root.join("github-app.json")
    }

    /// The private key of that GitHub App, PEM.
    pub fn github_app_pem(&self) -> PathBuf {
        self.root.join("github-app.pem")
    }

    /// Creates the directory, listable by its owner only and passable by others (mode 0711):
    /// the agents' sandbox user must reach its session's working copy under `workspaces/` by
    /// name. Everything else in it is its owner's alone: the control key, the App and the
    /// session store are 0600, the logs directory 0700.
    pub fn create(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create the data directory {}", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o711)).with_context(|| {
            format!(
                "cannot set the mode of the data directory {}",
                self.root.display()
            )
        })?;
        let logs = self.logs();
        fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
        fs::set_permissions(&logs, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to its owner", logs.display()))?;
        // SQLite gives its journal files the mode of the database file.
        let db = self.sessions_db();
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&db)
            .with_context(|| format!("cannot create {}", db.display()))?;
        fs::set_permissions(&db, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {} to its owner", db.display()))
    }

    /// The control key: read from `control.key`, or generated and written there (mode 0600) the
    /// first time, so agents started by an earlier `cca up` still accept the same tokens.
    pub fn control_key(&self) -> anyhow::Result<String> {
        let path = self.control_key_path();
        let mut key = [0u8; CONTROL_KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        let fresh = hex::encode(key);
        // `create_new` makes two concurrent first starts agree: the loser reads the winner's key.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(fresh.as_bytes())
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(fresh)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => read_key(&path),
            Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
}

fn read_key(path: &Path) -> anyhow::Result<String> {
    // A key readable by others would let any local user forge control tokens.
    let mode = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
    }
    let key = fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .trim()
        .to_owned();
    if key.len() < cca_secrets::MIN_CONTROL_KEY_LEN {
        bail!(
            "{} holds no usable key (at least {} characters); delete it to get a new one",
            path.display(),
            cca_secrets::MIN_CONTROL_KEY_LEN
        );
    }
    Ok(key)
}

fn default_root() -> anyhow::Result<PathBuf> {
    let non_empty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return Ok(PathBuf::from(xdg).join("cca"));
    }
    match non_empty("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/cca")),
        None => bail!("neither XDG_DATA_HOME nor HOME is set: pass --data-dir or set CCA_DATA_DIR"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_temp() -> (tempfile::TempDir, DataDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::resolve(&DataDirArgs {
            data_dir: Some(tmp.path().join("cca")),
        })
        .unwrap();
        dir.create().unwrap();
        (tmp, dir)
    }

    #[test]
    fn the_control_key_is_made_once_and_private() {
        let (_tmp, dir) = in_temp();
        let first = dir.control_key().unwrap();
        assert_eq!(first.len(), 2 * CONTROL_KEY_BYTES);
        assert_eq!(dir.control_key().unwrap(), first);
        let mode = fs::metadata(dir.control_key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_key_left_readable_is_tightened_and_a_short_one_refused() {
        let (_tmp, dir) = in_temp();
        let path = dir.control_key_path();
        fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            dir.control_key().unwrap(),
            "0123456789abcdef0123456789abcdef"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        fs::write(&path, "short").unwrap();
        assert!(
            dir.control_key()
                .unwrap_err()
                .to_string()
                .contains("delete it")
        );
    }
}
