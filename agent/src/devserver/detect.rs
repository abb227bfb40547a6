//! What to run when a repository has no settings file, decided from the contents of a few
//! well-known files. [`detect`] is a pure function of [`RepoFiles`], so every rule is tested
//! without a repository on disk.
//!
//! The port is never written into a command: commands read it from `$PORT`, which the
//! supervisor sets, so the agent's app port is the only source of truth.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::SettingsError;

/// Files whose contents detection reads.
const CONTENT_FILES: &[&str] = &["package.json", "pyproject.toml", "requirements.txt"];

/// Files whose presence alone matters (lockfiles and entry points); their contents, possibly
/// large, are not read.
const MARKER_FILES: &[&str] = &[
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    ".yarnrc.yml",
    "bun.lockb",
    "bun.lock",
    "poetry.lock",
    "uv.lock",
    "manage.py",
    "main.py",
    "app.py",
    "app/main.py",
];

/// The files of a repository that detection looks at: relative path → contents (empty for
/// marker files, whose presence is all that counts).
#[derive(Debug, Clone, Default)]
pub struct RepoFiles {
    root: PathBuf,
    files: BTreeMap<String, String>,
}

impl RepoFiles {
    /// No files; add them with [`RepoFiles::with`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (builder style, for tests and callers that already hold the contents).
    pub fn with(mut self, path: impl Into<String>, contents: impl Into<String>) -> Self {
        self.files.insert(path.into(), contents.into());
        self
    }

    /// Reads the files detection needs from the repository at `root`.
    pub fn read(root: &Path) -> Result<Self, SettingsError> {
        let mut files = BTreeMap::new();
        for name in CONTENT_FILES {
            let path = root.join(name);
            match crate::sandbox::read_repository_file(
                &path,
                super::settings::REPOSITORY_FILE_LIMIT,
            ) {
                Ok(Some(text)) => {
                    files.insert((*name).to_owned(), text);
                }
                Ok(None) => {}
                Err(error) if is_absent(&error) => {}
                Err(error) => return Err(SettingsError::Read { path, error }),
            }
        }
        for name in MARKER_FILES {
            if root.join(name).is_file() {
                files.insert((*name).to_owned(), String::new());
            }
        }
        Ok(RepoFiles {
            root: root.to_path_buf(),
            files,
        })
    }

    /// Contents of a file, if the repository has it.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// Whether the repository has the file.
    pub fn has(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// A missing file, or a directory where a file was expected: nothing to detect there.
fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
    )
}

/// What detection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// Install command, if the toolchain has one.
    pub install: Option<String>,
    /// Dev server command; reads its port from `$PORT`.
    pub dev: String,
    /// What was recognised, for logs and reports, e.g. `package.json scripts.dev (pnpm, vite)`.
    pub what: String,
}

/// Decides what to run from the repository's files: a Node.js script first (`dev`, then
/// `start`), then a Python web app (Django, FastAPI/uvicorn, Flask). `Ok(None)` when nothing is
/// recognised; an error when a file detection needs is malformed.
pub fn detect(files: &RepoFiles) -> Result<Option<Detected>, SettingsError> {
    if let Some(found) = detect_node(files)? {
        return Ok(Some(found));
    }
    detect_python(files)
}

// ---------------------------------------------------------------------------------------------
// Node.js

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PackageManager {
    Npm,
    Pnpm,
    /// Yarn 1 (`--frozen-lockfile`) or Yarn 2+ (`--immutable`).
    Yarn {
        berry: bool,
    },
    Bun,
}

impl PackageManager {
    fn name(self) -> &'static str {
        match self {
            PackageManager::Npm => "npm",
            PackageManager::Pnpm => "pnpm",
            PackageManager::Yarn { .. } => "yarn",
            PackageManager::Bun => "bun",
        }
    }

    /// The lockfiles that make an install reproducible, for this manager.
    fn lockfiles(self) -> &'static [&'static str] {
        match self {
            PackageManager::Npm => &["package-lock.json", "npm-shrinkwrap.json"],
            PackageManager::Pnpm => &["pnpm-lock.yaml"],
            PackageManager::Yarn { .. } => &["yarn.lock"],
            PackageManager::Bun => &["bun.lockb", "bun.lock"],
        }
    }

    /// Installs exactly the locked versions when there is a lockfile; resolves otherwise.
    fn install(self, locked: bool) -> String {
        match (self, locked) {
            (_, false) => format!("{} install", self.name()),
            (PackageManager::Npm, true) => "npm ci".to_owned(),
            (PackageManager::Yarn { berry: true }, true) => "yarn install --immutable".to_owned(),
            (
                PackageManager::Pnpm | PackageManager::Yarn { berry: false } | PackageManager::Bun,
                true,
            ) => {
                format!("{} install --frozen-lockfile", self.name())
            }
        }
    }

    /// Runs a package.json script with extra arguments. Only npm needs `--` before them; pnpm,
    /// yarn and bun pass everything after the script name on, `--` included, which some tools
    /// (Vite's option parser) would read as the end of their options.
    fn run(self, script: &str, args: &str) -> String {
        match (self, args.is_empty()) {
            (_, true) => format!("{} run {script}", self.name()),
            (PackageManager::Npm, false) => format!("npm run {script} -- {args}"),
            (_, false) => format!("{} run {script} {args}", self.name()),
        }
    }
}

/// The package manager: by lockfile first, then by the `packageManager` field, else npm.
fn package_manager(files: &RepoFiles, manifest: &serde_json::Value) -> PackageManager {
    let declared = manifest
        .get("packageManager")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let yarn_major = declared
        .strip_prefix("yarn@")
        .and_then(|version| version.split('.').next())
        .and_then(|major| major.parse::<u32>().ok());
    let berry = files.has(".yarnrc.yml") || yarn_major.is_some_and(|major| major >= 2);
    if files.has("pnpm-lock.yaml") {
        PackageManager::Pnpm
    } else if files.has("yarn.lock") {
        PackageManager::Yarn { berry }
    } else if files.has("bun.lockb") || files.has("bun.lock") {
        PackageManager::Bun
    } else if files.has("package-lock.json") || files.has("npm-shrinkwrap.json") {
        PackageManager::Npm
    } else if declared.starts_with("pnpm@") {
        PackageManager::Pnpm
    } else if declared.starts_with("yarn@") {
        PackageManager::Yarn { berry }
    } else if declared.starts_with("bun@") {
        PackageManager::Bun
    } else {
        PackageManager::Npm
    }
}

fn detect_node(files: &RepoFiles) -> Result<Option<Detected>, SettingsError> {
    let Some(text) = files.get("package.json") else {
        return Ok(None);
    };
    let manifest: serde_json::Value = serde_json::from_str(text).map_err(|error| {
        let message = error.to_string();
        // serde_json appends the position to its message; it is reported separately.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head);
        SettingsError::Malformed {
            path: files.path("package.json"),
            line: error.line(),
            column: error.column(),
            message: message.to_owned(),
        }
    })?;
    let scripts = manifest
        .get("scripts")
        .and_then(serde_json::Value::as_object);
    let Some((name, body)) = ["dev", "start"].into_iter().find_map(|name| {
        let body = scripts?.get(name)?.as_str()?;
        (!body.trim().is_empty()).then_some((name, body))
    }) else {
        return Ok(None);
    };
    let manager = package_manager(files, &manifest);
    let locked = manager.lockfiles().iter().any(|lock| files.has(lock));
    let framework = Framework::of_script(body);
    let args = framework.map_or("", Framework::port_args);
    let mut what = format!("package.json scripts.{name} ({}", manager.name());
    if let Some(framework) = framework {
        what.push_str(", ");
        what.push_str(framework.name());
    }
    what.push(')');
    Ok(Some(Detected {
        install: Some(manager.install(locked)),
        dev: manager.run(name, args),
        what,
    }))
}

/// Dev servers that ignore `$PORT` (or bind to localhost only) unless told on their command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framework {
    Vite,
    Next,
    Astro,
    Nuxt,
    Angular,
}

impl Framework {
    fn name(self) -> &'static str {
        match self {
            Framework::Vite => "vite",
            Framework::Next => "next",
            Framework::Astro => "astro",
            Framework::Nuxt => "nuxt",
            Framework::Angular => "angular",
        }
    }

    /// Arguments that make it listen on `$PORT` on every interface. Vite also refuses another
    /// port when `$PORT` is taken, rather than silently moving where the proxy cannot find it.
    fn port_args(self) -> &'static str {
        match self {
            Framework::Vite => "--port $PORT --host 0.0.0.0 --strictPort",
            Framework::Next => "-p $PORT -H 0.0.0.0",
            Framework::Astro | Framework::Nuxt | Framework::Angular => {
                "--port $PORT --host 0.0.0.0"
            }
        }
    }

    /// The framework of a script, judged by the last command of the script: arguments given to
    /// `npm run` are appended to the script, so they reach its last command only.
    fn of_script(script: &str) -> Option<Framework> {
        let last = script
            .split(['&', '|', ';', '\n'])
            .rfind(|command| !command.trim().is_empty())?;
        let mut words = last
            .split_whitespace()
            .skip_while(|word| word.contains('=') || WRAPPERS.contains(word));
        let program = words.next()?;
        let program = program.rsplit('/').next().unwrap_or(program);
        let subcommand = words.next().unwrap_or("");
        match program {
            "vite" => Some(Framework::Vite),
            "next" if matches!(subcommand, "dev" | "start") => Some(Framework::Next),
            "astro" if matches!(subcommand, "dev" | "preview") => Some(Framework::Astro),
            "nuxt" | "nuxi" if subcommand == "dev" => Some(Framework::Nuxt),
            "ng" if subcommand == "serve" => Some(Framework::Angular),
            _ => None,
        }
    }
}

/// Commands that run the next word as the program, seen in front of dev servers in scripts.
const WRAPPERS: &[&str] = &["cross-env", "env", "npx", "bunx", "exec"];

// ---------------------------------------------------------------------------------------------
// Python

/// How a Python project installs its dependencies and runs its tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PythonTool {
    Poetry,
    Uv,
    /// `requirements.txt`.
    Requirements,
    /// A `pyproject.toml` with a `[project]` table and no lockfile.
    Pip,
    /// Nothing to install from.
    Bare,
}

impl PythonTool {
    fn install(self) -> Option<&'static str> {
        match self {
            PythonTool::Poetry => Some("poetry install"),
            PythonTool::Uv => Some("uv sync"),
            PythonTool::Requirements => Some("python3 -m pip install -r requirements.txt"),
            PythonTool::Pip => Some("python3 -m pip install -e ."),
            PythonTool::Bare => None,
        }
    }

    /// Prefix that runs a command inside the project's environment.
    fn prefix(self) -> &'static str {
        match self {
            PythonTool::Poetry => "poetry run ",
            PythonTool::Uv => "uv run ",
            PythonTool::Requirements | PythonTool::Pip | PythonTool::Bare => "",
        }
    }

    fn name(self) -> &'static str {
        match self {
            PythonTool::Poetry => "poetry",
            PythonTool::Uv => "uv",
            PythonTool::Requirements => "requirements.txt",
            PythonTool::Pip => "pyproject.toml",
            PythonTool::Bare => "no dependency file",
        }
    }
}

fn detect_python(files: &RepoFiles) -> Result<Option<Detected>, SettingsError> {
    let pyproject = match files.get("pyproject.toml") {
        Some(text) => Some(text.parse::<toml::Table>().map_err(|error| {
            let offset = error.span().map_or(text.len(), |span| span.start);
            SettingsError::at_offset(
                &files.path("pyproject.toml"),
                text,
                offset,
                error.message().trim_end().to_owned(),
            )
        })?),
        None => None,
    };
    let has_poetry = pyproject
        .as_ref()
        .is_some_and(|table| table_at(table, &["tool", "poetry"]).is_some());
    let tool = if files.has("poetry.lock") || has_poetry {
        PythonTool::Poetry
    } else if files.has("uv.lock") {
        PythonTool::Uv
    } else if files.has("requirements.txt") {
        PythonTool::Requirements
    } else if pyproject
        .as_ref()
        .is_some_and(|table| table.contains_key("project"))
    {
        PythonTool::Pip
    } else {
        PythonTool::Bare
    };

    let mut deps = BTreeSet::new();
    if let Some(table) = &pyproject {
        pyproject_dependencies(table, &mut deps);
    }
    if let Some(text) = files.get("requirements.txt") {
        requirements_dependencies(text, &mut deps);
    }

    let prefix = tool.prefix();
    let (dev, app) = if files.has("manage.py") {
        (
            format!("{prefix}python3 manage.py runserver 0.0.0.0:$PORT"),
            "django",
        )
    } else if deps.contains("fastapi") || deps.contains("uvicorn") {
        let module = if files.has("main.py") {
            "main"
        } else if files.has("app/main.py") {
            "app.main"
        } else if files.has("app.py") {
            "app"
        } else {
            "main"
        };
        (
            format!("{prefix}uvicorn {module}:app --host 0.0.0.0 --port $PORT --reload"),
            "uvicorn",
        )
    } else if deps.contains("flask") {
        (
            format!("{prefix}flask run --host 0.0.0.0 --port $PORT --reload"),
            "flask",
        )
    } else {
        return Ok(None);
    };
    Ok(Some(Detected {
        install: tool.install().map(str::to_owned),
        dev,
        what: format!("python {app} ({})", tool.name()),
    }))
}

/// The table at a dotted path, if every step is a table.
fn table_at<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Table> {
    path.iter()
        .try_fold(table, |table, key| table.get(*key)?.as_table())
}

/// Dependency names from PEP 621 (`[project]`, `[dependency-groups]`) and Poetry tables.
fn pyproject_dependencies(table: &toml::Table, deps: &mut BTreeSet<String>) {
    let requirement_lists = table_at(table, &["project"])
        .and_then(|project| project.get("dependencies"))
        .into_iter()
        .chain(
            table_at(table, &["dependency-groups"])
                .into_iter()
                .flat_map(|groups| groups.values()),
        );
    for list in requirement_lists {
        for requirement in list.as_array().into_iter().flatten() {
            if let Some(name) = requirement.as_str().and_then(requirement_name) {
                deps.insert(name);
            }
        }
    }
    let poetry_tables = [
        table_at(table, &["tool", "poetry", "dependencies"]),
        table_at(table, &["tool", "poetry", "dev-dependencies"]),
    ]
    .into_iter()
    .flatten()
    .chain(
        table_at(table, &["tool", "poetry", "group"])
            .into_iter()
            .flat_map(|groups| groups.values())
            .filter_map(|group| group.get("dependencies")?.as_table()),
    );
    for dependencies in poetry_tables {
        deps.extend(dependencies.keys().map(|name| normalise(name)));
    }
}

/// Dependency names from a requirements file; options and includes are skipped.
fn requirements_dependencies(text: &str, deps: &mut BTreeSet<String>) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('-') {
            continue;
        }
        if let Some(name) = requirement_name(line) {
            deps.insert(name);
        }
    }
}

/// The project name of a PEP 508 requirement (`uvicorn[standard]>=0.30` → `uvicorn`).
fn requirement_name(requirement: &str) -> Option<String> {
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(requirement.len());
    let name = &requirement[..end];
    (!name.is_empty()).then(|| normalise(name))
}

/// PEP 503 normalisation, so `Flask`, `flask` and `FLASK` are one name.
fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framework_is_the_last_command_of_the_script() {
        assert_eq!(
            Framework::of_script("npm run css && vite"),
            Some(Framework::Vite)
        );
        assert_eq!(
            Framework::of_script("cross-env NODE_ENV=dev ./node_modules/.bin/vite dev"),
            Some(Framework::Vite)
        );
        assert_eq!(Framework::of_script("vite & node api.js"), None);
        assert_eq!(Framework::of_script("vitest"), None);
        assert_eq!(Framework::of_script("next build"), None);
        assert_eq!(
            Framework::of_script("next dev --turbo"),
            Some(Framework::Next)
        );
        assert_eq!(Framework::of_script("ng serve"), Some(Framework::Angular));
        assert_eq!(Framework::of_script("   "), None);
    }

    #[test]
    fn requirement_names_are_normalised() {
        assert_eq!(
            requirement_name("uvicorn[standard]>=0.30").as_deref(),
            Some("uvicorn")
        );
        assert_eq!(
            requirement_name("Flask_Cors==4").as_deref(),
            Some("flask-cors")
        );
        assert_eq!(requirement_name(""), None);
        let mut deps = BTreeSet::new();
        requirements_dependencies("-r base.txt\n# tools\nDjango>=5 # web\n", &mut deps);
        assert_eq!(deps.into_iter().collect::<Vec<_>>(), ["django"]);
    }
}
