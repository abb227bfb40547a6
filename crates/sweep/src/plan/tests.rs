//! The planner, rule by rule, and the property that a plan carried out leaves nothing to do.

use cca_domain::{BranchName, ImageChannel, RepoName, Source};

use super::*;

const NOW: i64 = 1_800_000_000;
const SUFFIX: &str = "uat.example.com";

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

fn arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task/c/{id}")
}

/// A healthy agent session: created two hours ago, its task recorded, heartbeat and activity
/// fresh.
fn session(name: &str, status: Status) -> Session {
    let mut s = Session::new(
        id(name),
        SessionType::Agent,
        Source::Github,
        RepoName::parse("octo/app").unwrap(),
        BranchName::parse("claude/1").unwrap(),
        ImageChannel::Latest,
        NOW - 7200,
    );
    s.status = status;
    s.pr_number = Some(2);
    s.task_arn = Some(arn(name));
    s.heartbeat_at = Some(NOW - 20);
    s.last_activity = Some(NOW - 60);
    s.updated_at = NOW - 20;
    s
}

fn task(arn: String, session: Option<&str>) -> TaskSummary {
    TaskSummary {
        task_arn: arn,
        session_id: session.map(id),
        created_at: Some(NOW - 3600),
    }
}

/// Sessions whose recorded tasks all run (listed).
fn snapshot(sessions: Vec<Session>) -> Snapshot {
    let tasks = sessions
        .iter()
        .filter(|s| !s.status.is_terminal())
        .filter_map(|s| s.task_arn.clone())
        .map(|a| TaskSummary {
            task_arn: a,
            session_id: None,
            created_at: Some(NOW - 7000),
        })
        .collect();
    Snapshot {
        now: NOW,
        sessions,
        tasks,
        ..Snapshot::default()
    }
}

fn actions(snap: &Snapshot) -> Vec<Action> {
    plan(snap, &Limits::default()).actions
}

#[test]
fn live_sessions_are_never_touched() {
    let mut quiet = session("quietidle", Status::Idle);
    quiet.last_activity = Some(NOW - 3000);
    let mut starting = session("starting1", Status::Starting);
    starting.last_activity = None;
    let mut long_run = session("longrun1", Status::Running);
    long_run.last_activity = Some(NOW - 20_000);
    let snap = snapshot(vec![
        session("running1", Status::Running),
        quiet,
        starting,
        long_run,
    ]);
    let p = plan(&snap, &Limits::default());
    assert_eq!(p, Plan::default());
}

#[test]
fn an_idle_session_is_stopped_only_past_the_limit_and_the_margin() {
    let limit = DEFAULT_IDLE_TIMEOUT.as_secs() as i64;
    let mut just = session("idlejust", Status::Idle);
    just.last_activity = Some(NOW - limit - IDLE_MARGIN_SECS);
    let mut past = session("idlepast", Status::Idle);
    past.last_activity = Some(NOW - limit - IDLE_MARGIN_SECS - 1);
    let mut never = session("idlenever", Status::Idle);
    never.last_activity = None; // created two hours ago
    let got = actions(&snapshot(vec![just, past, never]));
    assert_eq!(got.len(), 2, "{got:?}");
    let Action::StopIdle {
        session_id,
        task_arn,
        reason,
    } = &got[0]
    else {
        panic!("{got:?}")
    };
    assert_eq!(session_id, &id("idlepast"));
    assert_eq!(task_arn.as_deref(), Some(arn("idlepast").as_str()));
    assert!(reason.contains("idle limit 60 min"), "{reason}");
    assert!(
        matches!(&got[1], Action::StopIdle { session_id, .. } if session_id == &id("idlenever"))
    );
}

#[test]
fn a_running_preview_idles_on_traffic_but_a_running_agent_is_in_a_run() {
    let mut preview = session("tt-feature-x", Status::Running);
    preview.session_type = SessionType::Preview;
    preview.last_activity = Some(NOW - 10_000);
    let mut agent = session("agentbusy", Status::Running);
    agent.last_activity = Some(NOW - 10_000);
    let got = actions(&snapshot(vec![preview, agent]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].session(), Some(&id("tt-feature-x")));
}

#[test]
fn a_dead_heartbeat_fails_the_session_and_stops_its_task() {
    let mut dead = session("deadbeat", Status::Running);
    dead.heartbeat_at = Some(NOW - 181);
    let mut alive = session("alivebeat", Status::Running);
    alive.heartbeat_at = Some(NOW - 180);
    let got = actions(&snapshot(vec![dead, alive]));
    assert_eq!(got.len(), 1, "{got:?}");
    let Action::Fail {
        session_id,
        stop_task,
        error,
        ..
    } = &got[0]
    else {
        panic!("{got:?}")
    };
    assert_eq!(session_id, &id("deadbeat"));
    assert!(stop_task);
    assert_eq!(
        error,
        "heartbeat stopped: the last was 3 min 1 s ago (limit 3 min)"
    );
}

#[test]
fn a_heartbeat_dead_and_idle_session_fails_rather_than_stops() {
    let mut s = session("deadidle", Status::Idle);
    s.heartbeat_at = Some(NOW - 5000);
    s.last_activity = Some(NOW - 50_000);
    assert!(matches!(
        actions(&snapshot(vec![s])).as_slice(),
        [Action::Fail { .. }]
    ));
}

#[test]
fn without_a_heartbeat_the_last_change_counts_after_the_start_grace() {
    let mut old_agent = session("noheart1", Status::Running);
    old_agent.heartbeat_at = None;
    old_agent.updated_at = NOW - START_GRACE_SECS;
    let mut older = session("noheart2", Status::Running);
    older.heartbeat_at = None;
    older.updated_at = NOW - START_GRACE_SECS - 1;
    let got = actions(&snapshot(vec![old_agent, older]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].session(), Some(&id("noheart2")));
    assert_eq!(
        got[0].reason(),
        "no heartbeat and no change for 10 min (limit 10 min)"
    );
}

#[test]
fn a_session_whose_task_is_gone_fails_without_stopping_anything() {
    let gone = session("taskgone", Status::Idle);
    let mut snap = snapshot(vec![gone]);
    snap.tasks.clear();
    snap.task_running.insert(arn("taskgone"), false);
    let got = actions(&snap);
    assert_eq!(
        got,
        vec![Action::Fail {
            session_id: id("taskgone"),
            task_arn: Some(arn("taskgone")),
            stop_task: false,
            error: "task no longer running".into(),
        }]
    );
    // A task that was not looked at is not taken for gone.
    snap.task_running.clear();
    assert!(actions(&snap).is_empty());
}

#[test]
fn provisioning_gets_a_grace_then_fails() {
    let mut young = session("provyoung", Status::Provisioning);
    young.updated_at = NOW - START_GRACE_SECS;
    young.task_arn = None;
    let mut stuck = session("provstuck", Status::Provisioning);
    stuck.updated_at = NOW - START_GRACE_SECS - 1;
    stuck.task_arn = None;
    let mut unstarted = session("provtask", Status::Provisioning);
    unstarted.updated_at = NOW - 5000;
    // A relaunched session keeps its old heartbeat; it does not count before STARTING.
    unstarted.heartbeat_at = Some(NOW - 90_000);
    let got = actions(&snapshot(vec![young, stuck, unstarted]));
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(
        &got[0],
        Action::Fail { session_id, stop_task: false, error, .. }
            if session_id == &id("provstuck") && error.contains("no task was recorded")
    ));
    assert!(matches!(
        &got[1],
        Action::Fail { session_id, stop_task: true, error, .. }
            if session_id == &id("provtask") && error.contains("did not start")
    ));
}

#[test]
fn a_stuck_stopping_session_is_ended() {
    let waiting = session("stopwait", Status::Stopping);
    let mut dead = session("stopdead", Status::Stopping);
    dead.heartbeat_at = Some(NOW - 1000);
    let gone = session("stopgone", Status::Stopping);
    let mut snap = snapshot(vec![waiting, dead, gone]);
    snap.tasks.retain(|t| t.task_arn != arn("stopgone"));
    snap.task_running.insert(arn("stopgone"), false);
    let got = actions(&snap);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(
        &got[0],
        Action::EndStopping { session_id, stop_task: true, .. } if session_id == &id("stopdead")
    ));
    assert!(matches!(
        &got[1],
        Action::EndStopping { session_id, stop_task: false, .. } if session_id == &id("stopgone")
    ));
}

#[test]
fn the_task_of_an_ended_session_is_stopped_after_a_moment() {
    let mut just = session("endedjust", Status::Stopped);
    just.updated_at = NOW - 30;
    let mut long = session("endedlong", Status::Completed);
    long.updated_at = NOW - 3600;
    let mut quiet = session("endedquiet", Status::Failed);
    quiet.updated_at = NOW - 3600;
    let mut snap = snapshot(vec![just, long, quiet]);
    snap.tasks = vec![
        task(arn("endedjust"), Some("endedjust")),
        task(arn("endedlong"), Some("endedlong")),
    ];
    let got = actions(&snap);
    assert_eq!(got.len(), 1, "{got:?}");
    let Action::StopTask {
        task_arn, reason, ..
    } = &got[0]
    else {
        panic!("{got:?}")
    };
    assert_eq!(task_arn, &arn("endedlong"));
    assert!(reason.contains("ended COMPLETED 60 min ago"), "{reason}");
}

#[test]
fn tasks_no_session_records_are_stopped_unless_they_may_be_recorded_yet() {
    let mut provisioning = session("provnotask", Status::Provisioning);
    provisioning.task_arn = None;
    provisioning.updated_at = NOW - 5;
    let mut ended = session("endedother", Status::Stopped);
    ended.task_arn = Some(arn("endedother-new"));
    let running = session("runsother", Status::Running);
    let mut snap = snapshot(vec![provisioning, ended, running]);
    let mut young = task(arn("young"), None);
    young.created_at = Some(NOW - 60);
    let mut unknown_age = task(arn("unknownage"), None);
    unknown_age.created_at = None;
    snap.tasks.extend([
        task(arn("nosession"), Some("norecord1")),
        task(arn("untagged"), None),
        task(arn("forprov"), Some("provnotask")),
        task(arn("forended"), Some("endedother")),
        task(arn("forrunning"), Some("runsother")),
        young,
        unknown_age,
    ]);
    let p = plan(&snap, &Limits::default());
    let stopped: Vec<(&str, &str)> = p
        .actions
        .iter()
        .map(|a| match a {
            Action::StopTask {
                task_arn, reason, ..
            } => (task_arn.as_str(), reason.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        stopped,
        vec![
            (
                arn("nosession").as_str(),
                "no session records this task: no session record of norecord1"
            ),
            (
                arn("untagged").as_str(),
                "no session records this task: it names no session"
            ),
            (
                arn("forended").as_str(),
                "no session records this task: session endedother ended STOPPED"
            ),
            (
                arn("forrunning").as_str(),
                &*format!(
                    "no session records this task: session runsother runs another task ({})",
                    arn("runsother")
                )
            ),
            (
                arn("unknownage").as_str(),
                "no session records this task: it names no session"
            ),
        ]
    );
    let kept: Vec<&str> = p.kept.iter().map(|k| k.arn.as_str()).collect();
    assert_eq!(kept, [arn("forprov"), arn("young")]);
    assert!(p.kept.iter().all(|k| k.resource == Resource::Task));
}

fn rule(arn: &str, priority: u32, host: &str, tg: &str) -> ListenerRule {
    ListenerRule {
        arn: arn.into(),
        priority: priority.to_string(),
        hosts: vec![host.into()],
        target_groups: vec![tg.into()],
        ..ListenerRule::default()
    }
}

fn tg(arn: &str, name: &str) -> TargetGroup {
    TargetGroup {
        arn: arn.into(),
        name: name.into(),
    }
}

#[test]
fn the_session_of_a_rule_is_read_from_its_one_host() {
    let r = |host: &str| rule("r", 11, host, "t");
    assert_eq!(
        rule_session(&r("abc123.uat.example.com"), ".UAT.example.com"),
        Some(id("abc123"))
    );
    assert_eq!(
        rule_session(&r("TT-Feat-1.UAT.Example.com"), SUFFIX),
        Some(id("tt-feat-1"))
    );
    for host in [
        "*.uat.example.com",
        "a.b.uat.example.com",
        "abc.other.com",
        "uat.example.com",
        "abcuat.example.com",
    ] {
        assert_eq!(rule_session(&r(host), SUFFIX), None, "{host}");
    }
    let mut two = r("abc.uat.example.com");
    two.hosts.push("def.uat.example.com".into());
    assert_eq!(rule_session(&two, SUFFIX), None);
    let mut path = r("abc.uat.example.com");
    path.other_conditions = true;
    assert_eq!(rule_session(&path, SUFFIX), None);
    let mut default = r("abc.uat.example.com");
    default.is_default = true;
    assert_eq!(rule_session(&default, SUFFIX), None);
}

#[test]
fn target_group_names_are_cut_as_the_original_cut_them() {
    assert_eq!(target_group_name(&id("ab12cd34")), "ab12cd34-tg");
    let long = id("tt-feature-a-very-long-branch-name-indeed");
    assert_eq!(target_group_name(&long), "tt-feature-a-very-long-branch-na");
    assert_eq!(target_group_name(&long).len(), TARGET_GROUP_NAME_LEN);
}

/// A listener as the original left it, beside the current system's wildcard rule.
fn leftovers() -> Snapshot {
    let mut stopped = session("tt-stopped-one", Status::Stopped);
    stopped.task_arn = None;
    let mut long = session("tt-feature-a-very-long-branch-name-indeed", Status::Failed);
    long.task_arn = None;
    let live = session("tt-live-one", Status::Running);
    let mut snap = snapshot(vec![stopped, long, live]);
    snap.listener = Some(ListenerState {
        listener_arn: "listener".into(),
        domain_suffix: SUFFIX.into(),
        rules: vec![
            ListenerRule {
                arn: "rule-default".into(),
                priority: "default".into(),
                is_default: true,
                target_groups: vec!["tg-legacy".into()],
                ..ListenerRule::default()
            },
            rule("rule-wildcard", 10, "*.uat.example.com", "tg-proxy"),
            rule(
                "rule-stopped",
                11,
                "tt-stopped-one.uat.example.com",
                "tg-stopped",
            ),
            rule("rule-live", 12, "tt-live-one.uat.example.com", "tg-live"),
            rule(
                "rule-norecord",
                13,
                "gone4ever.uat.example.com",
                "tg-norecord",
            ),
            rule(
                "rule-long",
                14,
                "tt-feature-a-very-long-branch-name-indeed.uat.example.com",
                "tg-long",
            ),
        ],
        target_groups: vec![
            tg("tg-proxy", "claude-cloud-agent-uat-proxy"),
            tg("tg-legacy", "test-tickets-uat-tg"),
            tg("tg-stopped", "tt-stopped-one-tg"),
            tg("tg-live", "tt-live-one-tg"),
            tg("tg-norecord", "gone4ever-tg"),
            tg("tg-long", "tt-feature-a-very-long-branch-na"),
            // Named after an ended session, with its rule already gone.
            tg("tg-bare", "tt-stopped-one-tg"),
        ],
    });
    snap
}

#[test]
fn leftover_rules_and_target_groups_go_only_with_an_ended_record() {
    let p = plan(&leftovers(), &Limits::default());
    let deleted: Vec<(&str, &str)> = p
        .actions
        .iter()
        .map(|a| match a {
            Action::DeleteRule { rule_arn, .. } => ("rule", rule_arn.as_str()),
            Action::DeleteTargetGroup {
                target_group_arn, ..
            } => ("target group", target_group_arn.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        deleted,
        [
            ("rule", "rule-stopped"),
            ("rule", "rule-long"),
            ("target group", "tg-stopped"),
            ("target group", "tg-long"),
            ("target group", "tg-bare"),
        ]
    );
    let Action::DeleteRule {
        host,
        session_id,
        reason,
        ..
    } = &p.actions[0]
    else {
        unreachable!()
    };
    assert_eq!(host, "tt-stopped-one.uat.example.com");
    assert_eq!(session_id, &id("tt-stopped-one"));
    assert_eq!(
        reason,
        "per-session rule left behind: session tt-stopped-one ended STOPPED"
    );

    let kept: Vec<(Resource, &str, &str)> = p
        .kept
        .iter()
        .map(|k| (k.resource, k.arn.as_str(), k.reason.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            (
                Resource::ListenerRule,
                "rule-live",
                "session tt-live-one is RUNNING"
            ),
            (
                Resource::ListenerRule,
                "rule-norecord",
                "no record of session gone4ever: nothing is deleted without a record proving \
                 its session ended"
            ),
            (
                Resource::TargetGroup,
                "tg-live",
                "in use by the listener rule of priority 12"
            ),
            (
                Resource::TargetGroup,
                "tg-norecord",
                "in use by the listener rule of priority 13"
            ),
        ]
    );
}

#[test]
fn a_target_group_in_use_by_a_rule_that_stays_is_kept_whatever_its_name() {
    let mut snap = leftovers();
    let listener = snap.listener.as_mut().unwrap();
    // The wildcard rule now forwards to a group named after an ended session.
    listener.rules[1].target_groups = vec!["tg-bare".into()];
    let p = plan(&snap, &Limits::default());
    assert!(!p.actions.iter().any(|a| matches!(
        a,
        Action::DeleteTargetGroup { target_group_arn, .. } if target_group_arn == "tg-bare"
    )));
    assert!(p.kept.iter().any(|k| k.arn == "tg-bare"
        && k.reason == "in use by the listener rule of priority 10"));
    // Nothing of the wildcard rule or the default one is ever planned.
    assert!(p.actions.iter().all(|a| !matches!(
        a,
        Action::DeleteRule { rule_arn, .. } if rule_arn == "rule-wildcard" || rule_arn == "rule-default"
    )));
}

/// What carrying out `actions` does to the world, as the executor and the services do it.
fn apply(snap: &mut Snapshot, actions: &[Action]) {
    for action in actions {
        let set = |snap: &mut Snapshot, id: &SessionId, to: Status| {
            let s = snap
                .sessions
                .iter_mut()
                .find(|s| &s.session_id == id)
                .unwrap();
            s.status = to;
            s.updated_at = snap.now;
        };
        let stop = |snap: &mut Snapshot, arn: &str| {
            snap.tasks.retain(|t| t.task_arn != arn);
            snap.task_running.insert(arn.to_owned(), false);
        };
        match action {
            Action::StopIdle {
                session_id,
                task_arn,
                ..
            } => {
                set(snap, session_id, Status::Stopped);
                task_arn.iter().for_each(|a| stop(snap, a));
            }
            Action::Fail {
                session_id,
                task_arn,
                ..
            } => {
                set(snap, session_id, Status::Failed);
                task_arn.iter().for_each(|a| stop(snap, a));
            }
            Action::EndStopping {
                session_id,
                task_arn,
                ..
            } => {
                set(snap, session_id, Status::Stopped);
                task_arn.iter().for_each(|a| stop(snap, a));
            }
            Action::StopTask { task_arn, .. } => stop(snap, task_arn),
            Action::DeleteRule { rule_arn, .. } => {
                let l = snap.listener.as_mut().unwrap();
                l.rules.retain(|r| &r.arn != rule_arn);
            }
            Action::DeleteTargetGroup {
                target_group_arn, ..
            } => {
                let l = snap.listener.as_mut().unwrap();
                l.target_groups.retain(|t| &t.arn != target_group_arn);
            }
        }
    }
}

#[test]
fn a_plan_carried_out_leaves_nothing_to_do() {
    let mut snap = leftovers();
    let mut idle = session("idleone", Status::Idle);
    idle.last_activity = Some(NOW - 20_000);
    let mut dead = session("deadone", Status::Running);
    dead.heartbeat_at = Some(NOW - 2000);
    let mut stuck = session("stuckone", Status::Stopping);
    stuck.heartbeat_at = Some(NOW - 2000);
    for s in [idle, dead, stuck] {
        snap.tasks.push(task(s.task_arn.clone().unwrap(), None));
        snap.sessions.push(s);
    }
    snap.tasks.push(task(arn("orphan"), Some("norecord1")));

    let first = plan(&snap, &Limits::default());
    assert_eq!(first.actions.len(), 4 + 5, "{:?}", first.actions);
    apply(&mut snap, &first.actions);
    // Later, when the ended sessions' grace is long over, there is still nothing to do.
    snap.now += 3600;
    for s in &mut snap.sessions {
        s.heartbeat_at = s.heartbeat_at.map(|h| h + 3600);
        s.last_activity = s.last_activity.map(|a| a + 3600);
    }
    let second = plan(&snap, &Limits::default());
    assert_eq!(second.actions, vec![], "{:?}", second.actions);
    assert_eq!(second.kept, first.kept);
}

#[test]
fn durations_read_as_people_say_them() {
    assert_eq!(human(-3), "0 s");
    assert_eq!(human(119), "119 s");
    assert_eq!(human(120), "2 min");
    assert_eq!(human(181), "3 min 1 s");
    assert_eq!(human(601), "10 min");
    assert_eq!(human(7199), "119 min");
    assert_eq!(human(7200), "2 h");
    assert_eq!(human(7260), "2 h 1 min");
}

#[test]
fn actions_serialise_with_their_kind() {
    let a = Action::StopTask {
        task_arn: "t".into(),
        session_id: None,
        reason: "r".into(),
    };
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::json!({"action": "stop_task", "task_arn": "t", "session_id": null, "reason": "r"})
    );
}
