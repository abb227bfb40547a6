use std::time::Duration;

use super::*;

fn limits() -> Limits {
    Limits {
        max_turns_per_run: 10,
        max_turns_per_session: 25,
        max_cost_per_run_usd: 1.0,
        max_cost_per_session_usd: 2.5,
        max_tokens_per_session: Some(1000),
        ..Limits::default()
    }
}

fn figures(turns: u32, cost: f64, conversation: &str) -> RunFigures {
    RunFigures {
        turns: Some(turns),
        reported_cost_usd: Some(cost),
        conversation: Some(conversation.into()),
        metered_cost_usd: None,
    }
}

#[test]
fn the_first_run_gets_the_run_limits_and_starts_a_conversation() {
    let mut l = SessionLedger::default();
    let plan = l.begin_run(&limits(), |_| panic!("no conversation to resume yet"));
    assert_eq!(
        plan,
        RunPlan {
            number: 1,
            resume: None,
            max_turns: 10,
            budget_usd: 1.0,
            cli_budget_usd: 1.0,
        }
    );
    assert_eq!(l.end_run(&plan, &figures(4, 0.4, "c1")), Some(0.4));
    assert_eq!((l.turns, l.conversation.as_deref()), (4, Some("c1")));
    assert!((l.cost_usd - 0.4).abs() < 1e-9);
}

#[test]
fn a_resumed_run_costs_the_difference_and_its_cli_budget_counts_the_conversation() {
    let mut l = SessionLedger::default();
    let first = l.begin_run(&limits(), |_| true);
    l.end_run(&first, &figures(4, 0.4, "c1"));
    let second = l.begin_run(&limits(), |id| id == "c1");
    assert_eq!(second.number, 2);
    assert_eq!(second.resume.as_deref(), Some("c1"));
    assert!((second.cli_budget_usd - 1.4).abs() < 1e-9, "{second:?}");
    // The CLI reports the conversation's total: 0.4 before, 0.7 now.
    let cost = l.end_run(&second, &figures(3, 0.7, "c1")).unwrap();
    assert!((cost - 0.3).abs() < 1e-9, "{cost}");
    assert!((l.cost_usd - 0.7).abs() < 1e-9);
    assert_eq!(l.turns, 7);
}

#[test]
fn a_conversation_that_cannot_be_resumed_starts_again_from_nothing() {
    let mut l = SessionLedger::continuing(5, 0.5, Some("gone".into()));
    let plan = l.begin_run(&limits(), |_| false);
    assert_eq!(plan.resume, None);
    assert!((plan.cli_budget_usd - 1.0).abs() < 1e-9);
    // A new conversation's report is the run's whole cost.
    assert_eq!(l.end_run(&plan, &figures(2, 0.2, "new")), Some(0.2));
    assert_eq!(l.conversation.as_deref(), Some("new"));
}

#[test]
fn the_gateway_s_meter_is_the_cost_when_there_is_one() {
    let mut l = SessionLedger::default();
    let plan = l.begin_run(&limits(), |_| true);
    let metered = RunFigures {
        metered_cost_usd: Some(0.05),
        ..figures(1, 9.0, "c1")
    };
    assert_eq!(l.end_run(&plan, &metered), Some(0.05));
    assert!((l.cost_usd - 0.05).abs() < 1e-9);
}

#[test]
fn a_failed_resumed_run_reporting_less_does_not_shrink_the_conversation_s_cost() {
    let mut l = SessionLedger::default();
    let first = l.begin_run(&limits(), |_| true);
    l.end_run(&first, &figures(1, 0.4, "c1"));
    let second = l.begin_run(&limits(), |_| true);
    assert_eq!(l.end_run(&second, &figures(0, 0.0, "c1")), Some(0.0));
    let third = l.begin_run(&limits(), |_| true);
    assert!((third.cli_budget_usd - 1.4).abs() < 1e-9, "{third:?}");
}

#[test]
fn a_run_reporting_nothing_costs_nothing_known_and_keeps_the_conversation() {
    let mut l = SessionLedger::continuing(0, 0.0, Some("c1".into()));
    let plan = l.begin_run(&limits(), |_| true);
    assert_eq!(l.end_run(&plan, &RunFigures::default()), None);
    assert_eq!(l.conversation.as_deref(), Some("c1"));
}

#[test]
fn late_runs_get_what_the_session_has_left() {
    let mut l = SessionLedger::continuing(20, 2.2, None);
    let plan = l.begin_run(&limits(), |_| true);
    assert_eq!(plan.max_turns, 5);
    assert!((plan.budget_usd - 0.3).abs() < 1e-9, "{plan:?}");
    // Never nothing: at least one turn and a cent, so the run can say why it stops.
    let mut spent = SessionLedger::continuing(25, 2.5, None);
    let plan = spent.begin_run(&limits(), |_| true);
    assert_eq!(plan.max_turns, 1);
    assert!((plan.budget_usd - 0.01).abs() < 1e-9);
}

#[test]
fn session_limits_are_checked_turns_then_cost_then_tokens() {
    let l = limits();
    assert_eq!(
        SessionLedger::continuing(24, 2.4, None).limit(&l, Some(999)),
        None
    );
    assert_eq!(
        SessionLedger::continuing(25, 9.0, None).limit(&l, Some(5000)),
        Some(Limit::SessionTurns { used: 25, max: 25 })
    );
    assert_eq!(
        SessionLedger::continuing(0, 2.5, None).limit(&l, None),
        Some(Limit::SessionCost {
            spent: 2.5,
            max: 2.5
        })
    );
    assert_eq!(
        SessionLedger::default().limit(&l, Some(1000)),
        Some(Limit::SessionTokens {
            used: 1000,
            max: 1000
        })
    );
    // No gateway, no token count: the token limit cannot apply.
    assert_eq!(SessionLedger::default().limit(&l, None), None);
    let unlimited = Limits {
        max_tokens_per_session: None,
        ..l
    };
    assert_eq!(
        SessionLedger::default().limit(&unlimited, Some(u64::MAX)),
        None
    );
}

#[test]
fn the_limit_that_ended_a_run() {
    let l = limits();
    let exited = Ended::Exited;
    assert_eq!(
        run_limit(
            &Ended::WallTime(Duration::from_secs(60)),
            "success",
            "",
            &l,
            1.0
        ),
        Some(Limit::RunWallTime(Duration::from_secs(60)))
    );
    assert_eq!(
        run_limit(&Ended::Silent(Duration::from_secs(600)), "", "", &l, 1.0),
        Some(Limit::RunSilence(Duration::from_secs(600)))
    );
    assert_eq!(
        run_limit(&exited, "error_max_turns", "", &l, 1.0),
        Some(Limit::RunTurns { max: 10 })
    );
    let budget = Some(Limit::RunBudget {
        budget: 0.3,
        per_run: 1.0,
        per_session: 2.5,
    });
    assert_eq!(
        run_limit(&exited, "error_max_budget_usd", "", &l, 0.3),
        budget
    );
    assert_eq!(
        run_limit(
            &exited,
            "error_during_execution",
            "Reached maximum budget",
            &l,
            0.3
        ),
        budget
    );
    assert_eq!(run_limit(&exited, "success", "done", &l, 0.3), None);
    assert_eq!(run_limit(&Ended::Cancelled, "", "", &l, 0.3), None);
}

#[test]
fn the_summary_s_limit_prefers_the_gateway_then_the_run_then_the_stop() {
    let turns = Some(Limit::RunTurns { max: 3 });
    assert_eq!(
        summary_limit(Some("the run's budget".into()), turns.clone(), Some("idle")),
        Some(Limit::GatewayRefused("the run's budget".into()))
    );
    assert_eq!(summary_limit(None, turns.clone(), Some("idle")), turns);
    assert_eq!(
        summary_limit(None, None, Some("idle")),
        Some(Limit::Stopped("idle".into()))
    );
    assert_eq!(summary_limit(None, None, None), None);
}
