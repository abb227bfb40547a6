//! Fix runs for failing checks, as pure decisions. When the checks on the head of the session's
//! PR fail and that head is the agent's own commit, the session gets one fix run, up to
//! `CI_FIX_ATTEMPTS` (3) of them, each said on the PR; the fixing ends as soon as the checks
//! pass, when the limit is reached (said once), or when the checks are on a commit that is not
//! the agent's (a person pushed). A person's next follow-up starts the count afresh.

/// What to do about one report of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Queue fix run `attempt` of `max`.
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
    /// The commit the last fix run was for: several suites (apps) report on one commit.
    fixing: Option<String>,
}

impl CiFixes {
    /// At most `max` fix runs (`CI_FIX_ATTEMPTS`; 0: none).
    pub fn new(max: u32) -> Self {
        Self {
            max,
            attempts: 0,
            ended: false,
            fixing: None,
        }
    }

    /// A person's follow-up runs: whatever the checks say next is fixed afresh.
    pub fn person_asked(&mut self) {
        *self = Self::new(self.max);
    }

    /// Checks on `head_sha` passed or failed; `ours` when that commit is the agent's own head.
    pub fn on_checks(&mut self, head_sha: &str, passed: bool, ours: bool) -> Verdict {
        if !ours {
            if !passed && self.attempts > 0 {
                // Someone else's commit is now what the checks judge: the agent's fixing ends.
                self.ended = true;
            }
            return Verdict::Nothing("the checked commit is not the agent's");
        }
        if passed {
            let attempts = self.attempts;
            let was_fixing = attempts > 0 && !self.ended;
            *self = Self::new(self.max);
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

    #[test]
    fn failures_on_the_agents_commits_get_exactly_the_allowed_fix_runs_then_one_word_that_it_stops()
    {
        let mut ci = CiFixes::new(3);
        assert_eq!(
            ci.on_checks("a", false, true),
            Verdict::Fix { attempt: 1, max: 3 }
        );
        // A second app's suite on the same commit.
        assert_eq!(
            ci.on_checks("a", false, true),
            Verdict::Nothing("a fix of this commit is already under way")
        );
        assert_eq!(
            ci.on_checks("b", false, true),
            Verdict::Fix { attempt: 2, max: 3 }
        );
        assert_eq!(
            ci.on_checks("c", false, true),
            Verdict::Fix { attempt: 3, max: 3 }
        );
        assert_eq!(ci.on_checks("d", false, true), Verdict::GiveUp { max: 3 });
        assert_eq!(
            ci.on_checks("e", false, true),
            Verdict::Nothing("the fixing has ended until a person asks again")
        );
        ci.person_asked();
        assert_eq!(
            ci.on_checks("f", false, true),
            Verdict::Fix { attempt: 1, max: 3 }
        );
    }

    #[test]
    fn passing_checks_end_the_fixing_and_say_so_only_after_a_fix() {
        let mut ci = CiFixes::new(3);
        assert_eq!(
            ci.on_checks("a", true, true),
            Verdict::Nothing("the checks pass")
        );
        assert_eq!(
            ci.on_checks("a", false, true),
            Verdict::Fix { attempt: 1, max: 3 }
        );
        assert_eq!(
            ci.on_checks("b", true, true),
            Verdict::Passed { attempts: 1 }
        );
        // A later failure starts a new count.
        assert_eq!(
            ci.on_checks("c", false, true),
            Verdict::Fix { attempt: 1, max: 3 }
        );
    }

    #[test]
    fn a_persons_commit_is_never_fixed_and_ends_the_fixing() {
        let mut ci = CiFixes::new(3);
        assert_eq!(
            ci.on_checks("p", false, false),
            Verdict::Nothing("the checked commit is not the agent's")
        );
        assert_eq!(
            ci.on_checks("a", false, true),
            Verdict::Fix { attempt: 1, max: 3 }
        );
        assert_eq!(
            ci.on_checks("p2", false, false),
            Verdict::Nothing("the checked commit is not the agent's")
        );
        assert_eq!(
            ci.on_checks("a2", false, true),
            Verdict::Nothing("the fixing has ended until a person asks again")
        );
        let mut none = CiFixes::new(0);
        assert_eq!(
            none.on_checks("a", false, true),
            Verdict::Nothing("CI_FIX_ATTEMPTS is 0")
        );
    }
}
