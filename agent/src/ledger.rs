//! The ledger of a coding session: runs, turns and cost so far, what the next run may use, and
//! the limit that forbids the next run or ended the last. Pure: the run's figures come in,
//! decisions come out; the agent does the I/O around it.
//!
//! Claude Code's `total_cost_usd` covers the whole conversation, so a resumed run's own cost is
//! the difference from what the conversation had cost before it, and the budget the CLI is given
//! counts the conversation's earlier cost too. Where the model gateway meters the run, its sum
//! is the run's cost and the CLI's report is not used.

use cca_domain::texts::agent::Limit;

use crate::cli::Ended;
use crate::config::Limits;

/// Totals of the session so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionLedger {
    pub runs: u32,
    pub turns: u32,
    pub cost_usd: f64,
    /// The conversation the next run resumes.
    pub conversation: Option<String>,
    /// What the CLI reports as spent in `conversation` so far.
    conversation_cost: f64,
}

/// What one run may use, decided before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    /// The run's number in the session, from 1.
    pub number: u32,
    /// The conversation it resumes.
    pub resume: Option<String>,
    pub max_turns: u32,
    /// The run's own budget (what the gateway enforces).
    pub budget_usd: f64,
    /// The budget given to the CLI, which counts the whole conversation.
    pub cli_budget_usd: f64,
}

/// What a run reported when it ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures {
    /// Turns the CLI reports.
    pub turns: Option<u32>,
    /// The conversation's cost the CLI reports.
    pub reported_cost_usd: Option<f64>,
    /// The conversation the run ended in.
    pub conversation: Option<String>,
    /// The run's cost as the model gateway metered it, when there is one.
    pub metered_cost_usd: Option<f64>,
}

impl SessionLedger {
    /// The ledger of a session that already used `turns` and `cost_usd` in `conversation` (a
    /// relaunch continues the record's totals).
    pub fn continuing(turns: u32, cost_usd: f64, conversation: Option<String>) -> Self {
        Self {
            turns,
            cost_usd,
            conversation,
            ..Self::default()
        }
    }

    /// The same, numbering the next run after the `runs` the session made already.
    pub fn after_runs(mut self, runs: u32) -> Self {
        self.runs = runs;
        self
    }

    /// The session limit that forbids another run; `tokens_used` is the gateway's count, when
    /// there is a gateway.
    pub fn limit(&self, limits: &Limits, tokens_used: Option<u64>) -> Option<Limit> {
        if self.turns >= limits.max_turns_per_session {
            return Some(Limit::SessionTurns {
                used: self.turns,
                max: limits.max_turns_per_session,
            });
        }
        if self.cost_usd >= limits.max_cost_per_session_usd {
            return Some(Limit::SessionCost {
                spent: self.cost_usd,
                max: limits.max_cost_per_session_usd,
            });
        }
        match (limits.max_tokens_per_session, tokens_used) {
            (Some(max), Some(used)) if used >= max => Some(Limit::SessionTokens { used, max }),
            _ => None,
        }
    }

    /// Counts a new run and decides what it may use. `resumable` says whether the earlier
    /// conversation can be resumed here (the CLI resumes, and the conversation is stored).
    pub fn begin_run(&mut self, limits: &Limits, resumable: impl FnOnce(&str) -> bool) -> RunPlan {
        self.runs += 1;
        let resume = self.conversation.clone().filter(|id| resumable(id));
        if resume.is_none() {
            self.conversation_cost = 0.0;
        }
        let budget_usd = limits
            .max_cost_per_run_usd
            .min(limits.max_cost_per_session_usd - self.cost_usd)
            .max(0.01);
        RunPlan {
            number: self.runs,
            resume,
            max_turns: limits
                .max_turns_per_run
                .min(limits.max_turns_per_session.saturating_sub(self.turns))
                .max(1),
            budget_usd,
            cli_budget_usd: self.conversation_cost + budget_usd,
        }
    }

    /// Adds what the run of `plan` reported; returns the run's own cost, when it is known.
    pub fn end_run(&mut self, plan: &RunPlan, figures: &RunFigures) -> Option<f64> {
        self.turns += figures.turns.unwrap_or(0);
        let same_conversation = plan.resume.is_some() && figures.conversation == plan.resume;
        let reported = figures.reported_cost_usd;
        let run_cost = figures.metered_cost_usd.or_else(|| {
            reported.map(|c| {
                if same_conversation {
                    (c - self.conversation_cost).max(0.0)
                } else {
                    c
                }
            })
        });
        if let Some(c) = reported {
            // A failed resumed run may report nothing spent; the conversation's total only grows.
            self.conversation_cost = if same_conversation {
                self.conversation_cost.max(c)
            } else {
                c
            };
        }
        self.cost_usd += run_cost.unwrap_or(0.0);
        if figures.conversation.is_some() {
            self.conversation.clone_from(&figures.conversation);
        }
        run_cost
    }
}

/// The limit of the run that ended it, from how it ended and the CLI's result (`subtype` and
/// `text`); `budget_usd` is the run's own budget.
pub fn run_limit(
    ended: &Ended,
    subtype: &str,
    text: &str,
    limits: &Limits,
    budget_usd: f64,
) -> Option<Limit> {
    match ended {
        Ended::WallTime(d) => return Some(Limit::RunWallTime(*d)),
        Ended::Silent(d) => return Some(Limit::RunSilence(*d)),
        _ => {}
    }
    if subtype.contains("max_turns") {
        Some(Limit::RunTurns {
            max: limits.max_turns_per_run,
        })
    } else if subtype.contains("budget")
        || subtype.contains("cost")
        || text.contains("maximum budget")
    {
        Some(Limit::RunBudget {
            budget: budget_usd,
            per_run: limits.max_cost_per_run_usd,
            per_session: limits.max_cost_per_session_usd,
        })
    } else {
        None
    }
}

/// The limit said in a run's summary: the gateway's refusal first, else what ended the run,
/// else the stop that interrupted it.
pub fn summary_limit(
    refused: Option<String>,
    ended_by: Option<Limit>,
    stopped: Option<&str>,
) -> Option<Limit> {
    refused
        .map(Limit::GatewayRefused)
        .or(ended_by)
        .or_else(|| stopped.map(|reason| Limit::Stopped(reason.to_owned())))
}

#[cfg(test)]
mod tests;
