//! After a run or at a stop: what the CLI left is committed and the branch pushed; when GitHub
//! refuses the push, the work is kept somewhere a person can reach and the PR says where.

use std::time::Duration;

use cca_domain::Session;
use cca_domain::texts::agent::{self as texts, ChangedFile, Commit, Gone, Kept};
use tracing::{info, warn};

use crate::agent::Started;
use crate::git::GitAuth;
use crate::report::Reporter;
use crate::setup::Ready;

/// The largest patch posted as a comment (GitHub refuses comments over 65 536 characters).
const PATCH_COMMENT_MAX: usize = 50_000;

/// How long the comments about refused work may wait (a stop has its own deadline).
const REFUSAL_POST_LIMIT: Duration = Duration::from_secs(10);

/// What a commit and push left: this run's commits and files, and why the push failed, if it did.
#[derive(Debug, Default)]
pub(crate) struct Pushed {
    pub commits: Vec<Commit>,
    pub files: Vec<ChangedFile>,
    pub error: Option<String>,
}

/// Commits what is left, pushes, and lists this run's commits and files (since `start`).
pub(crate) async fn commit_and_push(
    ready: &Ready,
    reporter: &Reporter,
    st: &Started,
    session: &Session,
    start: &str,
    message: &str,
) -> Pushed {
    let mask = |e: &dyn std::fmt::Display| ready.secrets.mask(&e.to_string());
    if let Err(e) = st.repo.commit_all(message).await {
        warn!(error = %mask(&e), "cannot commit the run's changes");
    }
    let commits = st.repo.commits_since(start).await.unwrap_or_default();
    let files = st.repo.files_since(start).await.unwrap_or_default();
    let mut error = None;
    if st
        .repo
        .unpushed(session.branch_name.as_str())
        .await
        .unwrap_or(true)
    {
        let before = st.repo.head().await.unwrap_or_default();
        let pushed = match ready.git_auth(&st.clone_url).await {
            Ok(auth) => match st.repo.push(session.branch_name.as_str(), &auth).await {
                Ok(()) => {
                    // A head that moved in the push was rebased onto someone else's commits.
                    let after = st.repo.head().await.unwrap_or_default();
                    st.ci.lock().await.pushed(&after, after != before);
                    Ok(())
                }
                Err(e) => match crate::git::refusal(&e.detail) {
                    Some(reason) => {
                        let reason = mask(&reason);
                        Err(
                            keep_refused_work(ready, reporter, st, session, start, &auth, &reason)
                                .await,
                        )
                    }
                    None => Err(mask(&e)),
                },
            },
            Err(e) => Err(mask(&format!("{e:#}"))),
        };
        if let Err(e) = pushed {
            warn!(error = %e, "push failed");
            error = Some(e);
        } else {
            info!(branch = %session.branch_name, "pushed");
        }
    }
    Pushed {
        commits,
        files,
        error,
    }
}

/// Whether GitHub's refusal is about where or with what permission the work was pushed, not
/// about its content: only then may the content be posted on the PR. Secret scanning (GH013)
/// and an organisation's own hook refuse content on purpose; posting it would defeat them.
fn content_may_be_posted(reason: &str) -> bool {
    reason.contains("without `workflows` permission") || reason.contains("GH006")
}

/// GitHub refused the push (`reason`): the work must not be lost. It goes to a new branch
/// beside the session's (enough for a protected branch); when GitHub refuses that too, the
/// commits are posted on the PR as a patch `git am` applies, when the refusal is not about the
/// content and the patch fits in a comment, else the files are named. Says on the PR what was
/// refused, why, and where the work is; returns the line for the run's summary. A head already
/// reported is not reported again (the stop retries the push).
async fn keep_refused_work(
    ready: &Ready,
    reporter: &Reporter,
    st: &Started,
    session: &Session,
    start: &str,
    auth: &GitAuth,
    reason: &str,
) -> String {
    let branch = session.branch_name.as_str();
    let head = st.repo.head().await.unwrap_or_default();
    let mut reported = st.refused_head.lock().await;
    if reported.as_deref() == Some(head.as_str()) {
        return texts::push_refused_again(branch, reason);
    }
    let fallback = texts::kept_branch(branch, &head);
    let mut patch_comment = None;
    let line = match st.repo.push_new(&fallback, auth).await {
        Ok(()) => {
            info!(branch = %fallback, "the refused work is on a branch of its own");
            texts::push_refused_line(branch, reason, &Kept::Branch(&fallback))
        }
        Err(e) => {
            let second = crate::git::refusal(&e.detail).unwrap_or_else(|| e.detail.clone());
            warn!(error = %ready.secrets.mask(&second), "the fallback branch was refused too");
            let files: Vec<String> = st
                .repo
                .files_since(start)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|f| f.path)
                .collect();
            let gone = if ready.shared.stop_requested().is_some() {
                Gone::Stopping
            } else {
                Gone::Kept
            };
            let kept = match st.repo.patch(branch, start).await {
                Ok(patch) if patch.len() <= PATCH_COMMENT_MAX && content_may_be_posted(reason) => {
                    patch_comment = Some(texts::refused_patch(branch, &patch));
                    Kept::Patch
                }
                Ok(patch) if content_may_be_posted(reason) => Kept::TooLarge {
                    kb: patch.len() / 1024,
                    gone,
                    files: &files,
                },
                // Refused for its content: the content is not repeated here.
                Ok(_) => Kept::ContentRefused {
                    gone,
                    files: &files,
                },
                Err(e) => {
                    let error = ready.secrets.mask(&e.to_string());
                    return finish_refusal(
                        reporter,
                        &mut reported,
                        head,
                        texts::push_refused_line(
                            branch,
                            reason,
                            &Kept::NoPatch {
                                gone,
                                error: &error,
                            },
                        ),
                        None,
                    )
                    .await;
                }
            };
            texts::push_refused_line(branch, reason, &kept)
        }
    };
    finish_refusal(reporter, &mut reported, head, line, patch_comment).await
}

/// Records `head` as reported and says on the PR what was refused (and the patch, if any).
async fn finish_refusal(
    reporter: &Reporter,
    reported: &mut Option<String>,
    head: String,
    line: String,
    patch_comment: Option<String>,
) -> String {
    *reported = Some(head);
    let post = async {
        reporter.post_logged(&texts::push_refused(&line)).await;
        if let Some(patch) = &patch_comment {
            reporter.post_logged(patch).await;
        }
    };
    if tokio::time::timeout(REFUSAL_POST_LIMIT, post)
        .await
        .is_err()
    {
        warn!("the comments about the refused push did not go out in time");
    }
    line
}
