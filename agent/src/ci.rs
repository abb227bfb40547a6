//! Fix runs for failing checks, as pure decisions. When the checks on the head of the session's
//! PR fail and that head is a commit the agent pushed (and still its head), the session gets one
//! fix run, up to `CI_FIX_ATTEMPTS` (3) of them, each said on the PR; the fixing ends as soon as
//! the checks pass, when the limit is reached (said once), or when a person's commit comes in
//! (checks on a commit the agent did not push, or a push of the agent's that had to be rebased
//! onto someone else's). A person's next follow-up starts the count afresh. The count is kept by
//! the running agent: a new container starts it again.

use std::collections::HashSet;

/// What to do about one report of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Queue fix run `attempt` of `max` for the commit.
    Fix { attempt: u32, max: u32 },
    /// The checks pass after `attempts` fix runs: said, and the fixing ends.
    Passed { attempts: u32 },
    /// `max` fix runs were made and the checks still fail: said once, and the fixing ends.
    GiveUp { max: u32 },
    /// Nothing to do, and why (logged).
    Nothing(&'static str),
}

/// The fixing of one session's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiFixes {
    max: u32,
    attempts: u32,
    /// Whether the fixing ended (the limit, or a person's commit) until a person asks again.
    ended: bool,
    /// The commit the last fix run was for: several suites (workflows, apps) report on one.
    fixing: Option<String>,
    /// Every commit the agent pushed in this session.
    pushed: HashSet<String>,
}

impl CiFixes {
    /// At most `max` fix runs (`CI_FIX_ATTEMPTS`; 0: none).
    pub fn new(max: u32) -> Self {
        Self {
            max,
            attempts: 0,
            ended: false,
            fixing: None,
            pushed: HashSet::new(),
        }
    }

    fn restart(&mut self) {
        self.attempts = 0;
        self.ended = false;
        self.fixing = None;
    }

    /// A person's follow-up runs: whatever the checks say next is fixed afresh.
    pub fn person_asked(&mut self) {
        self.restart();
    }

    /// The agent pushed `head`; `over_someone_else` when the push had to be rebased onto
    /// commits someone else pushed, which ends the fixing.
    pub fn pushed(&mut self, head: &str, over_someone_else: bool) {
        self.pushed.insert(head.to_owned());
        if over_someone_else && self.attempts > 0 {
            self.ended = true;
        }
    }

    /// Whether a fix run queued for `commit` should still run, with the agent's head now `head`:
    /// not when the fixing ended meanwhile or the commit is no longer the head.
    pub fn still_fixing(&self, commit: &str, head: &str) -> bool {
        !self.ended && commit == head && self.fixing.as_deref() == Some(commit)
    }

    /// The checks on `head_sha` (every suite of it, when `passed`) passed or failed; the agent's
    /// head is now `head`.
    pub fn on_checks(&mut self, head_sha: &str, passed: bool, head: &str) -> Verdict {
        if !self.pushed.contains(head_sha) {
            if !passed && self.attempts > 0 {
                // A commit the agent did not push is what the checks judge: a person's.
                self.ended = true;
            }
            return Verdict::Nothing("the checked commit is not one the agent pushed");
        }
        if head_sha != head {
            // A report that waited out a run, on an earlier commit of the agent's.
            return Verdict::Nothing("the checked commit is no longer the agent's head");
        }
        if passed {
            let attempts = self.attempts;
            let was_fixing = attempts > 0 && !self.ended;
            self.restart();
            return match was_fixing {
                true => Verdict::Passed { attempts },
                false => Verdict::Nothing("the checks pass"),
            };
        }
        if self.max == 0 {
            return Verdict::Nothing("CI_FIX_ATTEMPTS is 0");
        }
        if self.ended {
            return Verdict::Nothing("the fixing has ended until a person asks again");
        }
        if self.fixing.as_deref() == Some(head_sha) {
            return Verdict::Nothing("a fix of this commit is already under way");
        }
        if self.attempts >= self.max {
            self.ended = true;
            return Verdict::GiveUp { max: self.max };
        }
        self.attempts += 1;
        self.fixing = Some(head_sha.to_owned());
        Verdict::Fix {
            attempt: self.attempts,
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose agent pushed `commits`.
    fn pushed(max: u32, commits: &[&str]) -> CiFixes {
        let mut ci = CiFixes::new(max);
        for c in commits {
            ci.pushed(c, false);
        }
        ci
    }

    #[test]
    fn failures_on_the_agents_commits_get_exactly_the_allowed_fix_runs_then_one_word_that_it_stops()
    {
        let mut ci = pushed(3, &["a"]);
        assert_eq!(
            ci.on_checks("a", false, "a"),
            Verdict::Fix { attempt: 1, max: 3 }
        );
        // A second workflow's suite on the same commit.
        assert_eq!(
            ci.on_checks("a", false, "a"),
            Verdict::Nothing("a fix of this commit is already under way")
        );
        for (attempt, commit) in [(2, "b"), (3, "c")] {
            ci.pushed(commit, false);
            assert_eq!(
                ci.on_checks(commit, false, commit),
                Verdict::Fix { attempt, max: 3 }
            );
        }
        ci.pushed("d", false);
        assert_eq!(ci.on_checks("d", false, "d"), Verdict::GiveUp { max: 3 });
        ci.pushed("e", false);
        assert_eq!(
            ci.on_checks("e", false, "e"),
            Verdict::Nothing("the fixing has ended until a person asks again")
        );
        ci.person_asked();
        assert_eq!(
            ci.on_checks("e", false, "e"),
            Verdict::Fix { attempt: 1, max: 3 }
        );
    }

    #[test]
    fn a_report_that_waited_out_a_fix_run_is_about_an_earlier_commit_and_changes_nothing() {
        let mut ci = pushed(3, &["a"]);
        assert_eq!(
            ci.on_checks("a", false, "a"),
            Verdict::Fix { attempt: 1, max: 3 }
        );
        ci.pushed("b", false);
        // Another workflow's failure on `a`, read after the fix run pushed `b`.
        assert_eq!(
            ci.on_checks("a", false, "b"),
            Verdict::Nothing("the checked commit is no longer the agent's head")
        );
        assert_eq!(
            ci.on_checks("b", false, "b"),
            Verdict::Fix { attempt: 2, max: 3 }
        );
        assert!(ci.still_fixing("b", "b") && !ci.still_fixing("a", "b"));
    }

    #[test]
    fn passing_checks_end_the_fixing_and_say_so_only_after_a_fix() {
        let mut ci = pushed(3, &["a", "b", "c"]);
        assert_eq!(
            ci.on_checks("a", true, "a"),
            Verdict::Nothing("the checks pass")
        );
        assert_eq!(
            ci.on_checks("a", false, "a"),
            Verdict::Fix { attempt: 1, max: 3 }
        );
        assert_eq!(
            ci.on_checks("b", true, "b"),
            Verdict::Passed { attempts: 1 }
        );
        assert!(
            !ci.still_fixing("a", "b"),
            "a queued fix of a passed commit does not run"
        );
        // A later failure starts a new count.
        assert_eq!(
            ci.on_checks("c", false, "c"),
            Verdict::Fix { attempt: 1, max: 3 }
        );
    }

    #[test]
    fn a_persons_commit_is_never_fixed_and_ends_the_fixing() {
        // A relaunched session's head is the branch as it found it: not a commit it pushed.
        let mut ci = CiFixes::new(3);
        assert_eq!(
            ci.on_checks("p", false, "p"),
            Verdict::Nothing("the checked commit is not one the agent pushed")
        );
        ci.pushed("a", false);
        assert_eq!(
            ci.on_checks("a", false, "a"),
            Verdict::Fix { attempt: 1, max: 3 }
        );
        assert_eq!(
            ci.on_checks("p2", false, "a"),
            Verdict::Nothing("the checked commit is not one the agent pushed")
        );
        ci.pushed("a2", false);
        assert_eq!(
            ci.on_checks("a2", false, "a2"),
            Verdict::Nothing("the fixing has ended until a person asks again")
        );
        assert!(
            !ci.still_fixing("a", "a"),
            "the queued fix is dropped once it ended"
        );

        // A push that had to be rebased over a person's commit ends it too.
        let mut rebased = pushed(3, &["a"]);
        assert_eq!(
            rebased.on_checks("a", false, "a"),
            Verdict::Fix { attempt: 1, max: 3 }
        );
        rebased.pushed("b", true);
        assert_eq!(
            rebased.on_checks("b", false, "b"),
            Verdict::Nothing("the fixing has ended until a person asks again")
        );
        let mut none = pushed(0, &["a"]);
        assert_eq!(
            none.on_checks("a", false, "a"),
            Verdict::Nothing("CI_FIX_ATTEMPTS is 0")
        );
    }
}
