//! The variables every launcher sets on a session's container are the per-task ones
//! `cca_domain::contract` lists, so task definitions are never asked for them.

use cca_domain::contract::{AGENT_PREVIEW, AGENT_RUN};
use cca_domain::{BranchName, ImageChannel, RepoName, SessionId, SessionType};
use cca_launcher::LaunchRequest;

#[test]
fn the_launcher_sets_exactly_the_contracts_per_task_variables() {
    for (kind, contract) in [
        (SessionType::Agent, &AGENT_RUN),
        (SessionType::Preview, &AGENT_PREVIEW),
    ] {
        let request = LaunchRequest {
            session_id: SessionId::random_agent(),
            kind,
            channel: ImageChannel::Staging,
            repo: RepoName::parse("octo/app").unwrap(),
            branch: BranchName::parse("claude/7").unwrap(),
            env: Vec::new(),
            session_token: Some("a-session-token".to_owned().into()),
        };
        let names: Vec<String> = request.environment().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, contract.per_task, "{}", contract.binary);
    }
}
