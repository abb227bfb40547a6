//! The repository's settings file, [`SETTINGS_FILE`]: parsed strictly (a misspelt key is an
//! error that names it rather than a setting silently ignored), validated, and combined with
//! detection into an [`AppPlan`]. The format is documented in `docs/REPOSITORY-SETTINGS.md`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{AppPlan, DEFAULT_HEALTH_PATH, DEFAULT_READY_TIMEOUT, Detected, PlanSource};

/// Name of the settings file, at the repository root.
pub const SETTINGS_FILE: &str = ".cca.toml";

/// Why the settings of a repository could not be worked out. Each variant names the file, so
/// the message can go to the PR as it is.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file exists but cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// A file is not valid TOML or JSON, or does not fit the format (unknown key, wrong type).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column (in characters) of the fault.
        column: usize,
        /// What is wrong, as the parser says it; an unknown key is named.
        message: String,
    },
    /// A value is well-formed but cannot be used.
    #[error("{}: `{key}` {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted name of the setting, for example `app.health_path`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SettingsError {
    /// A fault at byte `offset` of `text`, the contents of `path`.
    pub(crate) fn at_offset(path: &Path, text: &str, offset: usize, message: String) -> Self {
        let (line, column) = line_column(text, offset);
        SettingsError::Malformed {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    fn invalid(path: &Path, key: &str, reason: impl Into<String>) -> Self {
        SettingsError::Invalid {
            path: path.to_path_buf(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The file as written. Every table refuses unknown keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    app: Option<AppSection>,
    preview: Option<PreviewSection>,
    agent: Option<AgentSection>,
}

/// The `[agent]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    /// New sessions plan first and wait for a writer's `/claude approve`, whatever label
    /// started them. Read only from the default branch (see [`declares_plan`]).
    plan: Option<bool>,
}

/// The `[preview]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewSection {
    /// Previews open to anyone, without sign-in. Read only from the default branch (see
    /// [`declares_public`]): a branch cannot make its own preview public.
    public: Option<bool>,
}

/// Whether the settings file `text` (as found on the default branch) declares previews public.
/// A file that does not parse declares nothing: public is never the result of a mistake.
pub fn declares_public(text: &str) -> bool {
    toml::from_str::<FileFormat>(text)
        .ok()
        .and_then(|f| f.preview)
        .and_then(|p| p.public)
        .unwrap_or(false)
}

/// Whether the settings file `text` (as found on the default branch) makes new sessions plan
/// first. A file that does not parse declares nothing.
pub fn declares_plan(text: &str) -> bool {
    toml::from_str::<FileFormat>(text)
        .ok()
        .and_then(|f| f.agent)
        .and_then(|a| a.plan)
        .unwrap_or(false)
}

/// The `[app]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSection {
    pub(crate) enabled: Option<bool>,
    pub(crate) install: Option<String>,
    pub(crate) dev: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) health_path: Option<String>,
    pub(crate) ready_timeout_secs: Option<u64>,
    #[serde(default)]
    pub(crate) env: BTreeMap<String, String>,
}

/// A parsed and validated settings file.
#[derive(Debug)]
pub(crate) struct SettingsFile {
    pub(crate) path: PathBuf,
    /// `None` when the file has no `[app]` table: detection decides alone.
    pub(crate) app: Option<AppSection>,
}

/// Most bytes read of one repository file the agent itself reads (settings, package.json).
pub(crate) const REPOSITORY_FILE_LIMIT: u64 = 1 << 20;

/// Reads [`SETTINGS_FILE`] in `workdir`; `Ok(None)` when there is none.
pub(crate) fn read(workdir: &Path) -> Result<Option<SettingsFile>, SettingsError> {
    let path = workdir.join(SETTINGS_FILE);
    // The file is the repository's: read as data, never through a link to the agent's files.
    match crate::sandbox::read_repository_file(&path, REPOSITORY_FILE_LIMIT) {
        Ok(Some(text)) => parse(&path, &text).map(Some),
        Ok(None) => Ok(None),
        Err(error) => Err(SettingsError::Read { path, error }),
    }
}

/// Parses and validates the contents of a settings file found at `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<SettingsFile, SettingsError> {
    let format: FileFormat = toml::from_str(text).map_err(|error| {
        let offset = error.span().map_or(text.len(), |span| span.start);
        SettingsError::at_offset(path, text, offset, error.message().trim_end().to_owned())
    })?;
    if let Some(app) = &format.app {
        validate(path, app)?;
    }
    Ok(SettingsFile {
        path: path.to_path_buf(),
        app: format.app,
    })
}

fn validate(path: &Path, app: &AppSection) -> Result<(), SettingsError> {
    if app.dev.as_deref().is_some_and(|dev| dev.trim().is_empty()) {
        return Err(SettingsError::invalid(
            path,
            "app.dev",
            "is empty; leave it out to detect the command, or set `enabled = false` for no app",
        ));
    }
    if let Some(port) = app.port
        && !cca_domain::contract::APP_PORTS.contains(&port)
    {
        return Err(SettingsError::invalid(
            path,
            "app.port",
            format!(
                "must be between {} and {} (an unprivileged port, which the deployed network \
                 lets the proxy reach), not {port}",
                cca_domain::contract::APP_PORTS.start(),
                cca_domain::contract::APP_PORTS.end()
            ),
        ));
    }
    if let Some(health) = &app.health_path
        && (!health.starts_with('/') || health.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(SettingsError::invalid(
            path,
            "app.health_path",
            format!("must be a path starting with `/` without spaces, not {health:?}"),
        ));
    }
    if app.ready_timeout_secs == Some(0) {
        return Err(SettingsError::invalid(
            path,
            "app.ready_timeout_secs",
            "must be at least 1",
        ));
    }
    for (name, value) in &app.env {
        let key = format!("app.env.{name}");
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(SettingsError::invalid(
                path,
                &key,
                "is not a valid variable name",
            ));
        }
        if name == "PORT" {
            return Err(SettingsError::invalid(
                path,
                &key,
                "is set by the agent to the app's port; set `app.port` instead",
            ));
        }
        if value.contains('\0') {
            return Err(SettingsError::invalid(
                path,
                &key,
                "contains a NUL character",
            ));
        }
    }
    Ok(())
}

/// Combines the settings file (if any) with detection (run only when needed) into a plan.
///
/// A file that names `dev` is the whole plan: nothing is detected and nothing is installed unless
/// it names `install` too. A file without `dev` takes the detected commands and overrides the
/// rest. An `install` that is empty means "install nothing".
pub(crate) fn resolve(
    file: Option<SettingsFile>,
    detect: impl FnOnce() -> Result<Option<Detected>, SettingsError>,
    port: u16,
) -> Result<Option<AppPlan>, SettingsError> {
    let Some((path, app)) = file.and_then(|file| Some((file.path, file.app?))) else {
        return Ok(detect()?.map(|detected| AppPlan {
            install: detected.install,
            dev: detected.dev,
            port,
            health_path: DEFAULT_HEALTH_PATH.to_owned(),
            env: BTreeMap::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            source: PlanSource::Detected(detected.what),
        }));
    };
    if app.enabled == Some(false) {
        return Ok(None);
    }
    let (dev, detected_install) = match app.dev {
        Some(dev) => (dev, None),
        None => match detect()? {
            Some(detected) => (detected.dev, detected.install),
            None => {
                return Err(SettingsError::invalid(
                    &path,
                    "app.dev",
                    "is not set and no app was detected in the repository; set it, or set \
                     `enabled = false`",
                ));
            }
        },
    };
    let install = match app.install {
        Some(install) if install.trim().is_empty() => None,
        Some(install) => Some(install),
        None => detected_install,
    };
    Ok(Some(AppPlan {
        install,
        dev,
        port: app.port.unwrap_or(port),
        health_path: app
            .health_path
            .unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_owned()),
        env: app.env,
        ready_timeout: app
            .ready_timeout_secs
            .map_or(DEFAULT_READY_TIMEOUT, Duration::from_secs),
        source: PlanSource::File(path),
    }))
}

#[cfg(test)]
mod tests {

    #[test]
    fn public_previews_are_declared_only_by_a_well_formed_preview_table() {
        assert!(declares_public("[preview]\npublic = true\n"));
        assert!(declares_public(
            "[app]\ndev = \"npm run dev\"\n[preview]\npublic = true\n"
        ));
        for text in [
            "",
            "[preview]\n",
            "[preview]\npublic = false\n",
            "[preview]\npublic = \"yes\"\n",
            "[preview]\npublic = true\ntypo = 1\n",
            "[app]\nbogus = 1\n[preview]\npublic = true\n",
            "not toml",
        ] {
            assert!(!declares_public(text), "{text:?}");
        }
        // The strict parser takes the table.
        assert!(parse(Path::new(".cca.toml"), "[preview]\npublic = true\n").is_ok());
    }

    #[test]
    fn plan_first_is_declared_only_by_a_well_formed_agent_table() {
        assert!(declares_plan("[agent]\nplan = true\n"));
        assert!(declares_plan(
            "[preview]\npublic = false\n[agent]\nplan = true\n"
        ));
        for text in [
            "",
            "[agent]\n",
            "[agent]\nplan = false\n",
            "[agent]\nplan = 1\n",
            "[agent]\nplan = true\nmode = \"yolo\"\n",
            "[preview]\npublic = true\n",
        ] {
            assert!(!declares_plan(text), "{text:?}");
        }
        assert!(parse(Path::new(".cca.toml"), "[agent]\nplan = true\n").is_ok());
    }
    use super::*;

    #[test]
    fn line_and_column_count_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // The byte after the two-byte `é` is the third character of line 2.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn a_file_without_an_app_table_leaves_the_decision_to_detection() {
        let file = parse(Path::new(".cca.toml"), "").expect("parses");
        let plan = resolve(Some(file), || Ok(None), 3000).expect("resolves");
        assert_eq!(plan, None);
    }
}
