//! What each containerised binary needs from its task definition.
//!
//! The deployed system runs three programs in containers: `cca-agent run` (coding sessions,
//! `AGENT_TASK_DEFINITION`), `cca-agent preview` (PR previews, `UAT_TASK_DEFINITION`) and
//! `cca-uat-proxy serve` (the proxy service). Each validates its environment at start-up and
//! stops, naming the variable, when a required one is missing; a task definition that lacks it
//! therefore gives a container that exits at once (the original's proxy read `SESSIONS_TABLE`
//! while its task definition set `SESSION_TABLE`).
//!
//! This module is the one statement of those needs. The binaries' own tests check it against
//! their configuration code (`agent/tests/contract.rs`, `uat-proxy/tests/contract.rs`): an
//! environment holding exactly the required variables validates, and dropping any of them fails
//! naming it. `cca doctor` checks deployed task definitions against it, and the infrastructure
//! code's task definitions are checked against it too.

use std::fmt;

/// One need of a binary from its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// The variable must be set (to something not empty).
    Required(&'static str),
    /// At least one of the variables must be set; the binary names the first when none is.
    AnyOf(&'static [&'static str]),
}

impl Requirement {
    /// Every variable that satisfies this requirement.
    pub fn names(&self) -> &[&'static str] {
        match self {
            Requirement::Required(name) => std::slice::from_ref(name),
            Requirement::AnyOf(names) => names,
        }
    }

    /// The variable the binary names when the requirement is not met.
    pub fn primary(&self) -> &'static str {
        self.names().first().copied().unwrap_or_default()
    }

    /// Whether the requirement is met, given which variables are set.
    pub fn is_met(&self, is_set: impl Fn(&str) -> bool) -> bool {
        self.names().iter().any(|name| is_set(name))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Required(name) => f.write_str(name),
            Requirement::AnyOf(names) => f.write_str(&names.join(" or ")),
        }
    }
}

/// What one binary needs from the task definition that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    /// The program and sub-command, e.g. `cca-agent run`.
    pub binary: &'static str,
    /// Needs the binary's configuration checks at start-up: without them it exits at once.
    pub requires: &'static [Requirement],
    /// Needs that only a container has: the binary runs without them, but its default only
    /// works on a developer's machine. Each variable here may also be given as its flag in the
    /// container's command (`LISTEN` as `--listen`), unless [`Contract::per_task`] is not empty,
    /// since the launcher then replaces the command.
    pub container_requires: &'static [Requirement],
    /// Variables the launcher sets on each task it starts (ECS container overrides): a task
    /// definition need not, and should not, set them.
    pub per_task: &'static [&'static str],
    /// Every variable the binary reads itself (its settings and flags' variables), not counting
    /// the AWS SDK's own (`AWS_REGION`, …).
    pub reads: &'static [&'static str],
    /// Whether the binary hands its environment on to the programs it runs (less its own
    /// credentials), so that a task definition may rightly set variables it does not read
    /// itself, such as `CLAUDE_CODE_USE_BEDROCK` for Claude Code.
    pub passes_environment_on: bool,
}

/// The session store: `SESSION_STORE` (`dynamodb:<table>`) or the original's `SESSIONS_TABLE`.
const STORE: Requirement = Requirement::AnyOf(&["SESSION_STORE", "SESSIONS_TABLE"]);

/// What a container needs in both agent modes. A container holds no credential of the system's:
/// its installation tokens come from the control plane's token broker at `CCA_TOKEN_URL`, which
/// it proves its session to with the session's token (`CCA_SESSION_TOKEN`, set per task).
const AGENT_REQUIRES: &[Requirement] = &[STORE, Requirement::Required("CCA_TOKEN_URL")];

/// Set by both launchers on every agent task (see `cca_launcher::env`).
const AGENT_PER_TASK: &[&str] = &[
    "SESSION_ID",
    "SESSION_TYPE",
    "IMAGE_CHANNEL",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "CCA_SESSION_TOKEN",
];

/// What `cca-agent` reads: its flags' variables, then what its entrypoint reads directly.
const AGENT_READS: &[&str] = &[
    "SESSION_ID",
    "SESSION_STORE",
    "SESSIONS_TABLE",
    "GITHUB_API_URL",
    "GITHUB_APP_SECRET_ARN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY_FILE",
    "GITHUB_INSTALLATION_ID",
    "GITHUB_TOKEN",
    "CCA_TOKEN_URL",
    "CCA_SESSION_TOKEN",
    "CONTROL_SECRET_ARN",
    "CCA_CONTROL_SECRET",
    "JIRA_SECRET_ARN",
    "JIRA_BASE_URL",
    "JIRA_EMAIL",
    "JIRA_API_TOKEN",
    "ANTHROPIC_SECRET_ARN",
    "ANTHROPIC_BASE_URL",
    "MODEL_PRICES",
    "ECS_CONTAINER_METADATA_URI_V4",
    "AGENT_ADDRESS",
    "APP_PORT",
    "CONTROL_PORT",
    "AGENT_WORKSPACE",
    "CCA_DATA_DIR",
    "AGENT_CLI",
    "CLAUDE_BIN",
    "CLAUDE_MODEL",
    "AGENT_CLI_COMMAND",
    "MAX_TURNS_PER_RUN",
    "MAX_TURNS_PER_SESSION",
    "MAX_COST_PER_RUN_USD",
    "MAX_COST_PER_SESSION_USD",
    "MAX_COST_PER_SESSION_CAP_USD",
    "MAX_TOKENS_PER_RUN",
    "MAX_TOKENS_PER_SESSION",
    "RUN_TIMEOUT_SECS",
    "RUN_SILENCE_TIMEOUT_SECS",
    "IDLE_TIMEOUT_SECS",
    "IDLE_WARNING_SECS",
    "HEARTBEAT_SECS",
    "STATUS_INTERVAL_SECS",
    "GITHUB_WRITES_PER_MINUTE",
    "STOP_DEADLINE_SECS",
    "CI_FIX_ATTEMPTS",
    "AGENT_SANDBOX",
    "AGENT_SANDBOX_USER",
    "AGENT_SANDBOX_BWRAP",
    "AGENT_SANDBOX_PATHS",
    "AGENT_SANDBOX_ENV",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "RUST_LOG",
    "AWS_EXECUTION_ENV",
    "HOME",
    "CLAUDE_CODE_USE_BEDROCK",
];

/// `cca-agent run`: a coding session, started by the launcher from `AGENT_TASK_DEFINITION`.
pub const AGENT_RUN: Contract = Contract {
    binary: "cca-agent run",
    requires: AGENT_REQUIRES,
    container_requires: &[],
    per_task: AGENT_PER_TASK,
    reads: AGENT_READS,
    passes_environment_on: true,
};

/// `cca-agent preview`: a PR preview, started by the launcher from `UAT_TASK_DEFINITION`.
pub const AGENT_PREVIEW: Contract = Contract {
    binary: "cca-agent preview",
    ..AGENT_RUN
};

/// `cca-uat-proxy serve`: the proxy service behind the `*.<UAT_DOMAIN_SUFFIX>` rule.
pub const UAT_PROXY: Contract = Contract {
    binary: "cca-uat-proxy serve",
    requires: &[
        STORE,
        Requirement::Required("UAT_DOMAIN_SUFFIX"),
        // Sign-in in front of previews needs the App's OAuth client, unless an operator turns
        // it off (`PREVIEW_SIGN_IN=off`, insecure) or the proxy runs in local mode.
        Requirement::AnyOf(&["GITHUB_CLIENT_ID", "PREVIEW_SIGN_IN"]),
        Requirement::AnyOf(&["GITHUB_CLIENT_SECRET", "PREVIEW_SIGN_IN"]),
    ],
    // The default, 127.0.0.1:8081, is unreachable from the load balancer: in a container the
    // proxy must listen on 0.0.0.0 at the target group's port.
    container_requires: &[Requirement::Required("LISTEN")],
    per_task: &[],
    reads: &[
        "SESSION_STORE",
        "SESSIONS_TABLE",
        "UAT_DOMAIN_SUFFIX",
        "PROXY_ALLOWED_CIDRS",
        "PROXY_LOCAL_MODE",
        "PROXY_REWRITE_HOST",
        "PROXY_CACHE_TTL_MS",
        "PROXY_NEGATIVE_TTL_MS",
        "PROXY_STALE_SECS",
        "PROXY_METRICS_LISTEN",
        "PROXY_WORKERS",
        "PROXY_HEADER_TIMEOUT_SECS",
        "PROXY_IDLE_TIMEOUT_SECS",
        "PROXY_CONNECT_TIMEOUT_MS",
        "PROXY_DRAIN_SECS",
        "PROXY_UPSTREAM_TIMEOUT_SECS",
        "PROXY_MAX_CONNECTIONS",
        "PROXY_MAX_TUNNELS",
        "PROXY_TUNNEL_IDLE_SECS",
        "PREVIEW_SIGN_IN",
        "GITHUB_CLIENT_ID",
        "GITHUB_CLIENT_SECRET",
        "PREVIEW_COOKIE_SECRET",
        "PREVIEW_ACCESS",
        "PREVIEW_ACCESS_CACHE_SECS",
        "PREVIEW_SESSION_HOURS",
        "GITHUB_API_URL",
        "GITHUB_WEB_URL",
        "LISTEN",
        "LOG_FORMAT",
        "RUST_LOG",
    ],
    passes_environment_on: false,
};

/// Every containerised binary.
pub const ALL: [&Contract; 3] = [&AGENT_RUN, &AGENT_PREVIEW, &UAT_PROXY];

/// Most edits between a variable that is set and one that is required for the first to be
/// taken as a misspelling of the second (`SESSION_TABLE` for `SESSIONS_TABLE` is one).
const MISSPELLING_DISTANCE: usize = 2;

impl Contract {
    /// Every need, those checked at start-up first, then the container's.
    pub fn all_requirements(&self) -> impl Iterator<Item = &Requirement> {
        self.requires.iter().chain(self.container_requires)
    }

    /// The needs not met, given which variables are set.
    pub fn unmet(&self, is_set: impl Fn(&str) -> bool) -> Vec<Requirement> {
        self.all_requirements()
            .filter(|r| !r.is_met(&is_set))
            .copied()
            .collect()
    }

    /// Whether the binary reads `name` itself.
    pub fn reads(&self, name: &str) -> bool {
        self.reads.contains(&name)
    }

    /// A variable among `set` that the binary does not read and that is probably a misspelling
    /// of one `requirement` names, as `SESSION_TABLE` is of `SESSIONS_TABLE`: the variable set,
    /// and the name it was meant to be.
    pub fn misspelling_of<'a>(
        &self,
        requirement: &Requirement,
        set: impl IntoIterator<Item = &'a str>,
    ) -> Option<(&'a str, &'static str)> {
        set.into_iter()
            .filter(|name| !self.reads(name))
            .filter_map(|name| {
                let upper = name.to_ascii_uppercase();
                requirement
                    .names()
                    .iter()
                    .map(|wanted| (edit_distance(&upper, wanted), name, *wanted))
                    .min_by_key(|(distance, ..)| *distance)
            })
            .filter(|(distance, ..)| *distance <= MISSPELLING_DISTANCE)
            .min_by_key(|(distance, ..)| *distance)
            .map(|(_, name, wanted)| (name, wanted))
    }
}

/// Levenshtein distance between two ASCII names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The ports a repository's `.cca.toml` may give its app (`app.port`): unprivileged ports, so the
/// sandbox's user can listen on any of them. The deployed network lets the proxy reach a session
/// on every one of them except the agent's control port, which the agent refuses as an app
/// port; `cca doctor` and the infrastructure's test check the security groups against this.
pub const APP_PORTS: std::ops::RangeInclusive<u16> = 1024..=65535;

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of<'a>(names: &'a [&'a str]) -> impl Fn(&str) -> bool + 'a {
        move |name| names.contains(&name)
    }

    #[test]
    fn any_of_is_met_by_either_name() {
        assert!(STORE.is_met(set_of(&["SESSIONS_TABLE"])));
        assert!(STORE.is_met(set_of(&["SESSION_STORE"])));
        assert!(!STORE.is_met(set_of(&["SESSION_TABLE"])));
        assert_eq!(STORE.primary(), "SESSION_STORE");
        assert_eq!(STORE.to_string(), "SESSION_STORE or SESSIONS_TABLE");
        assert_eq!(Requirement::Required("LISTEN").to_string(), "LISTEN");
    }

    #[test]
    fn the_audited_proxy_task_definition_misses_the_store() {
        let set = [
            "SESSION_TABLE",
            "UAT_DOMAIN_SUFFIX",
            "LISTEN",
            "PREVIEW_SIGN_IN",
        ];
        let unmet = UAT_PROXY.unmet(set_of(&set));
        assert_eq!(unmet, vec![STORE]);
        assert_eq!(
            UAT_PROXY.misspelling_of(&unmet[0], set),
            Some(("SESSION_TABLE", "SESSIONS_TABLE"))
        );
        assert_eq!(
            UAT_PROXY.misspelling_of(&unmet[0], ["UAT_DOMAIN_SUFFIX", "LISTEN"]),
            None
        );
    }

    #[test]
    fn agent_task_definitions_need_no_per_task_variable() {
        for contract in [&AGENT_RUN, &AGENT_PREVIEW] {
            for per_task in contract.per_task {
                assert!(
                    contract
                        .all_requirements()
                        .all(|r| !r.names().contains(per_task)),
                    "{per_task} comes from the launcher"
                );
            }
        }
        let set = ["SESSIONS_TABLE", "CCA_TOKEN_URL"];
        assert!(AGENT_RUN.unmet(set_of(&set)).is_empty());
    }

    #[test]
    fn every_required_variable_is_read() {
        for contract in ALL {
            for requirement in contract.all_requirements() {
                for name in requirement.names() {
                    assert!(contract.reads(name), "{}: {name}", contract.binary);
                }
            }
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("SESSION_TABLE", "SESSIONS_TABLE"), 1);
        assert_eq!(edit_distance("", "AB"), 2);
        assert_eq!(edit_distance("LISTEN", "LISTEN"), 0);
        assert_eq!(edit_distance("KITTEN", "SITTING"), 3);
    }
}
