//! docs/CONFIGURATION.md against the code: every environment variable `cca-webhook` reads is
//! documented in a table row marked as read by `cca-webhook`, and every such row names a
//! variable the webhook really reads. Variables of the `cca` command line are checked to be
//! documented as well. The sources are read as text, so a variable added to the code without a
//! line in the documentation (or left in the documentation after the code stopped reading it)
//! fails here with its name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The marker, in a table's "Read by" column, of the variables `cca-webhook` reads.
const WEBHOOK: &str = "cca-webhook";

/// Variables the webhook reads through a library rather than by name in its own sources:
/// `RUST_LOG` through tracing-subscriber's `EnvFilter::try_from_default_env`.
const READ_BY_LIBRARIES: &[&str] = &["RUST_LOG"];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every `.rs` file under `dir`, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn is_variable_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The string literals that follow each of `openers` in `source`, when they look like variable
/// names: `env = "NAME"` of clap arguments, `env::var("NAME")` of direct reads.
fn names_after(source: &str, openers: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for opener in openers {
        let mut rest = source;
        while let Some(at) = rest.find(opener) {
            rest = &rest[at + opener.len()..];
            if let Some(end) = rest.find('"') {
                let name = &rest[..end];
                if is_variable_name(name) {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

/// Variables named in clap attributes: `env = "NAME"` (with or without spaces).
fn clap_variables(source: &str) -> BTreeSet<String> {
    names_after(source, &["env = \"", "env=\""])
}

/// Variables read directly: `env::var("NAME")`, `env::var_os("NAME")`.
fn direct_variables(source: &str) -> BTreeSet<String> {
    names_after(source, &["env::var(\"", "env::var_os(\""])
}

/// What `cca-webhook` reads: its clap settings (config.rs, main.rs) and any direct read in its
/// sources.
fn webhook_variables() -> BTreeSet<String> {
    variables_in(&Path::new(MANIFEST_DIR).join("src"))
}

/// What the sources under `src` read, by clap attribute or directly, and through the shared
/// settings groups (crates/settings) they name.
fn variables_in(src: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut sources = String::new();
    for file in rust_files(src) {
        let text = read(&file);
        names.extend(clap_variables(&text));
        names.extend(direct_variables(&text));
        sources.push_str(&text);
    }
    names.extend(settings_variables(&sources));
    names
}

/// Whether `text` holds `word` as a whole identifier.
fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word)
        .any(|(at, _)| !text[..at].ends_with(ident) && !text[at + word.len()..].starts_with(ident))
}

/// The shared settings groups, `pub struct Name { … }` of crates/settings/src, by name.
fn settings_groups() -> Vec<(String, String)> {
    let mut groups = Vec::new();
    for file in rust_files(&Path::new(MANIFEST_DIR).join("../crates/settings/src")) {
        let text = read(&file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("pub struct ") {
            rest = &rest[at + "pub struct ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let body = rest.find("\n}").map_or(rest, |end| &rest[..end]);
            groups.push((name, body.to_owned()));
        }
    }
    groups
}

/// The variables of the settings groups named in `sources`, and of the groups those flatten.
fn settings_variables(sources: &str) -> BTreeSet<String> {
    let groups = settings_groups();
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut pending: Vec<&(String, String)> = groups
        .iter()
        .filter(|(name, _)| names_word(sources, name))
        .collect();
    while let Some((name, body)) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        names.extend(clap_variables(body));
        pending.extend(groups.iter().filter(|(inner, _)| names_word(body, inner)));
    }
    names
}

fn configuration_doc() -> String {
    read(&Path::new(MANIFEST_DIR).join("../docs/CONFIGURATION.md"))
}

/// One row of a Markdown table: the variables in its first cell and its "Read by" cell.
#[derive(Debug)]
struct Row {
    variables: Vec<String>,
    read_by: String,
    line: usize,
}

fn cells(line: &str) -> Vec<String> {
    // An escaped pipe is text inside a cell, not a column boundary.
    let line = line.trim().replace("\\|", "\u{1}");
    let inner = line.trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|c| c.replace('\u{1}', "|").trim().to_owned())
        .collect()
}

/// The `` `NAME` `` spans of a cell.
fn code_names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| is_variable_name(s))
        .map(str::to_owned)
        .collect()
}

/// Rows of every table whose header has a "Read by" column.
fn variable_rows(doc: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut read_by_column: Option<usize> = None;
    let mut header_seen = false;
    for (n, line) in doc.lines().enumerate() {
        if !line.trim_start().starts_with('|') {
            read_by_column = None;
            header_seen = false;
            continue;
        }
        let cells = cells(line);
        if !header_seen {
            header_seen = true;
            read_by_column = cells.iter().position(|c| c.eq_ignore_ascii_case("read by"));
            continue;
        }
        let Some(col) = read_by_column else { continue };
        if cells.iter().all(|c| c.chars().all(|ch| "-: ".contains(ch))) {
            continue; // the separator line
        }
        rows.push(Row {
            variables: code_names(cells.first().map_or("", String::as_str)),
            read_by: cells.get(col).cloned().unwrap_or_default(),
            line: n + 1,
        });
    }
    rows
}

/// Whether a "Read by" cell names `cca-webhook` as one of its readers (comma-separated).
fn read_by_webhook(read_by: &str) -> bool {
    read_by
        .split(',')
        .any(|who| who.trim().trim_matches('`') == WEBHOOK)
}

#[test]
fn every_webhook_variable_is_documented() {
    let doc = configuration_doc();
    let documented: BTreeSet<String> = variable_rows(&doc)
        .into_iter()
        .filter(|r| read_by_webhook(&r.read_by))
        .flat_map(|r| r.variables)
        .collect();
    let read = webhook_variables();
    assert!(
        read.contains("SESSION_STORE") && read.contains("LISTEN"),
        "the scan of webhook/src found too little: {read:?}"
    );
    let missing: Vec<&String> = read.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "cca-webhook reads these variables, but docs/CONFIGURATION.md has no table row for them \
         marked `{WEBHOOK}` in its \"Read by\" column: {missing:?}"
    );
}

#[test]
fn every_documented_webhook_variable_is_read() {
    let doc = configuration_doc();
    let mut read = webhook_variables();
    read.extend(READ_BY_LIBRARIES.iter().map(|s| (*s).to_owned()));
    let rows: Vec<Row> = variable_rows(&doc)
        .into_iter()
        .filter(|r| read_by_webhook(&r.read_by))
        .collect();
    assert!(
        !rows.is_empty(),
        "docs/CONFIGURATION.md has no table row marked `{WEBHOOK}` in a \"Read by\" column"
    );
    let stale: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.variables
                .iter()
                .filter(|v| !read.contains(*v))
                .map(move |v| format!("{v} (line {})", r.line))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "docs/CONFIGURATION.md says cca-webhook reads these variables, but webhook/src does not: \
         {stale:?}"
    );
}

/// The variables a binary's sources read, both ways, against the rows marked `marker`.
fn binary_matches_documentation(src: &str, marker: &str, sentinel: &str) {
    let read = variables_in(&Path::new(MANIFEST_DIR).join(src));
    assert!(
        read.contains(sentinel),
        "the scan of {src} found too little: {read:?}"
    );
    let rows: Vec<Row> = variable_rows(&configuration_doc())
        .into_iter()
        .filter(|r| {
            r.read_by
                .split(',')
                .any(|who| who.trim().trim_matches('`') == marker)
        })
        .collect();
    let documented: BTreeSet<String> = rows.iter().flat_map(|r| r.variables.clone()).collect();
    let missing: Vec<&String> = read.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "{marker} reads these, undocumented: {missing:?}"
    );
    let mut known = read.clone();
    known.extend(READ_BY_LIBRARIES.iter().map(|s| (*s).to_owned()));
    let stale: Vec<&String> = documented.difference(&known).collect();
    assert!(
        stale.is_empty(),
        "documented as read by {marker}, but not read: {stale:?}"
    );
}

#[test]
fn the_proxy_variables_match_the_documentation() {
    binary_matches_documentation("../uat-proxy/src", "cca-uat-proxy", "PROXY_LOCAL_MODE");
}

#[test]
fn the_agent_variables_match_the_documentation() {
    binary_matches_documentation("../agent/src", "cca-agent", "MAX_TURNS_PER_RUN");
}

#[test]
fn every_cca_variable_is_documented() {
    let src = Path::new(MANIFEST_DIR).join("../crates/cca/src");
    if !src.is_dir() {
        return;
    }
    let mut names = BTreeSet::new();
    let mut sources = String::new();
    for file in rust_files(&src) {
        let text = read(&file);
        names.extend(clap_variables(&text));
        sources.push_str(&text);
    }
    names.extend(settings_variables(&sources));
    let doc = configuration_doc();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "the cca command line reads these variables, but docs/CONFIGURATION.md does not \
         mention them: {missing:?}"
    );
}

#[test]
fn the_settings_groups_are_found_through_the_names_a_binary_uses() {
    let proxy = settings_variables("use cca_settings::{GitHubApiArgs, StoreArgs};");
    let proxy: Vec<&str> = proxy.iter().map(String::as_str).collect();
    assert_eq!(proxy, ["GITHUB_API_URL", "SESSIONS_TABLE", "SESSION_STORE"]);
    let github = settings_variables("github: GitHubArgs,");
    assert!(github.contains("GITHUB_API_URL") && github.contains("GITHUB_APP_SECRET_ARN"));
    assert!(settings_variables("MyStoreArgs").is_empty());
}

#[test]
fn the_scanners_find_what_they_should() {
    let source = r#"
        #[arg(long, env = "SESSION_STORE")]
        #[arg(long, env="LISTEN", default_value = "127.0.0.1:8080")]
        #[arg(long, env = "lower_case_is_not_a_variable")]
        let x = std::env::var_os("AWS_LAMBDA_RUNTIME_API");
        let y = std::env::var("LOG_FORMAT");
        let z = std::env::var(name);
    "#;
    let clap: Vec<String> = clap_variables(source).into_iter().collect();
    assert_eq!(clap, ["LISTEN", "SESSION_STORE"]);
    let direct: Vec<String> = direct_variables(source).into_iter().collect();
    assert_eq!(direct, ["AWS_LAMBDA_RUNTIME_API", "LOG_FORMAT"]);

    let doc = "\
| Variable | Default | Read by | Meaning |
|---|---|---|---|
| `A` | none | cca-webhook, cca up | a \\| b |
| `B` | none | AWS SDK | b |

| Name | Meaning |
|---|---|
| `C` | c |
";
    let rows = variable_rows(doc);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].variables, ["A"]);
    assert!(read_by_webhook(&rows[0].read_by));
    assert!(!read_by_webhook(&rows[1].read_by));
}
