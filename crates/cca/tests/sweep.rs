//! `cca sweep` as an operator runs it, against the AWS emulator (ECS tasks, the load balancer's
//! rules and target groups), a real SQLite store and a fake GitHub.
//!
//! One deployment holds everything the sweeper handles and what it must leave alone: a session
//! idle past the limit, one whose heartbeat stopped, a live one, a task no session records, the
//! per-session rule and target group the original system left for a preview that has ended, a
//! leftover rule of a session without a record, and the wildcard rule to the proxy. A dry run
//! changes nothing; the real run handles each once; a second run finds nothing to do.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, ProtocolEnum, RuleCondition, TargetTypeEnum,
};
use cca_domain::session::SessionPatch;
use cca_domain::texts::MARKER;
use cca_domain::{
    BranchName, ImageChannel, RepoName, Session, SessionId, SessionType, Source, Status, naming,
};
use cca_launcher::{EcsLauncher, EcsSettings, LaunchRequest, Launcher, TaskDefinitions};
use cca_store::{ListFilter, SessionStore, SqliteStore};
use cca_testkit::github::FakeGitHub;
use cca_testkit::moto::{Moto, REGION, unique_name};
use serde_json::Value;
use tokio::process::Command;

/// Bound on each test: the stand takes a few seconds to build, each sweep under one to run.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

const TOKEN: &str = "personal-token-for-sweep";
const REPO: &str = "octo/app";

/// `cca` with nothing in its environment but `PATH`, a private home and `envs`.
fn cca(home: &Path, envs: &[(&str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cca"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg"))
        .envs(envs.iter().map(|(k, v)| (*k, v)))
        .arg("sweep")
        .args(args)
        .kill_on_drop(true);
    cmd
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn described(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn forward(target_group_arn: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

/// Everything the sweeper could change, read back from the services.
#[derive(Debug, Clone, PartialEq)]
struct World {
    sessions: Vec<Session>,
    /// Task ARN, last status, desired status.
    tasks: Vec<(String, String, String)>,
    /// Rule ARN and its hosts.
    rules: Vec<(String, Vec<String>)>,
    /// Target groups of the stand still there.
    target_groups: Vec<String>,
    /// Issue or PR number and body of every comment.
    comments: Vec<(u64, String)>,
}

/// A deployment as the sweeper finds it.
struct Stand {
    home: tempfile::TempDir,
    store: SqliteStore,
    github: FakeGitHub,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    cluster: String,
    listener_arn: String,
    suffix: String,
    env: Vec<(&'static str, String)>,
    /// Every task the stand started.
    task_arns: Vec<String>,
    /// Every target group the stand made.
    target_group_arns: Vec<String>,
    /// PR numbers on which the sweeper may comment.
    prs: Vec<u64>,
    idle: Session,
    dead: Session,
    live: Session,
    ended_preview: Session,
    orphan_task: String,
    ghost: String,
    ended_rule: String,
    ended_tg: String,
    ghost_rule: String,
    ghost_tg: String,
    wildcard_rule: String,
    proxy_tg: String,
}

impl Stand {
    async fn build(moto: &Moto) -> Self {
        let config = moto.sdk_config().await;
        let ecs = aws_sdk_ecs::Client::new(&config);
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
        let name = unique_name("sw");
        let suffix = format!("{name}.uat.example.com");
        let network = moto.create_network().await.expect("network");

        // ECS: a cluster and the agent's task definition; tasks are started as the webhook
        // starts them, so they carry the system's `startedBy` and tags.
        let cluster = unique_name("cca-sweep");
        moto.create_cluster(&ecs, &cluster).await.expect("cluster");
        let family = unique_name("agent");
        moto.register_task_definition(&ecs, &family, "agent")
            .await
            .expect("task definition");
        let launcher = EcsLauncher::new(
            ecs.clone(),
            EcsSettings::new(
                cluster.clone(),
                TaskDefinitions {
                    agent_latest: family.clone(),
                    agent_staging: family.clone(),
                    preview_latest: family.clone(),
                    preview_staging: family,
                },
                network.subnet_ids.clone(),
                vec![network.security_group_id.clone()],
                false,
            ),
        );
        let launch = |id: SessionId| {
            let launcher = launcher.clone();
            async move {
                let req = LaunchRequest {
                    session_id: id,
                    kind: SessionType::Agent,
                    channel: ImageChannel::Latest,
                    repo: RepoName::parse(REPO).unwrap(),
                    branch: BranchName::parse("claude/1").unwrap(),
                    env: Vec::new(),
                    session_token: None,
                };
                launcher.launch(&req).await.expect("launch").task_arn
            }
        };

        // GitHub, with the PRs of the sessions.
        let github = FakeGitHub::start().await;
        github.add_personal_token(TOKEN);
        github.add_repo(REPO);
        let prs: Vec<u64> = (0..4)
            .map(|n| github.add_issue(REPO, &format!("[Claude] issue {n}"), ""))
            .collect();

        // Sessions.
        let home = tempfile::tempdir().unwrap();
        let db = home.path().join("sessions.db");
        let store = SqliteStore::open(&db).unwrap();
        let now = cca_webhook::app::now();
        let agent = |issue: u64, pr: u64| {
            let mut s = Session::new(
                SessionId::random_agent(),
                SessionType::Agent,
                Source::Github,
                RepoName::parse(REPO).unwrap(),
                naming::issue_branch(issue),
                ImageChannel::Latest,
                now - 4 * 3600,
            );
            s.issue_number = Some(issue);
            s.pr_number = Some(pr);
            s
        };
        let mut records = Vec::new();
        for (issue, pr, heartbeat_age, activity_age, to) in [
            (1, prs[0], 10, 7200, Status::Idle),
            (2, prs[1], 1000, 60, Status::Running),
            (3, prs[2], 10, 60, Status::Running),
        ] {
            let s = agent(issue, pr);
            store.create(&s).await.unwrap();
            let patch = SessionPatch {
                task_arn: Some(launch(s.session_id.clone()).await),
                heartbeat_at: Some(now - heartbeat_age),
                last_activity: Some(now - activity_age),
                ..SessionPatch::default()
            };
            store
                .transition(&s.session_id, Status::Starting, patch, now - 3600)
                .await
                .unwrap();
            let mut s = store
                .transition(
                    &s.session_id,
                    Status::Running,
                    SessionPatch::default(),
                    now - 3600,
                )
                .await
                .unwrap();
            if to == Status::Idle {
                s = store
                    .transition(
                        &s.session_id,
                        Status::Idle,
                        SessionPatch::default(),
                        now - 3600,
                    )
                    .await
                    .unwrap();
            }
            records.push(s);
        }
        let [idle, dead, live] = <[Session; 3]>::try_from(records).unwrap();

        // A preview of the original that has ended, its rule and target group left behind.
        let preview_id = SessionId::parse(&unique_name("tt-old")).unwrap();
        let mut preview = Session::new(
            preview_id.clone(),
            SessionType::Preview,
            Source::Github,
            RepoName::parse(REPO).unwrap(),
            BranchName::parse("feature/old").unwrap(),
            ImageChannel::Latest,
            now - 90_000,
        );
        preview.pr_number = Some(prs[3]);
        store.create(&preview).await.unwrap();
        store
            .transition(
                &preview_id,
                Status::Stopping,
                SessionPatch::default(),
                now - 80_000,
            )
            .await
            .unwrap();
        let ended_preview = store
            .transition(
                &preview_id,
                Status::Stopped,
                SessionPatch::default(),
                now - 80_000,
            )
            .await
            .unwrap();

        // A task started for a session nobody recorded.
        let orphan_task = launch(SessionId::parse(&unique_name("lost")).unwrap()).await;

        // The load balancer: the system's wildcard rule to the proxy, and the original's leftovers.
        let lb = elb
            .create_load_balancer()
            .name(&name)
            .set_subnets(Some(network.subnet_ids.clone()))
            .security_groups(&network.security_group_id)
            .send()
            .await
            .expect("CreateLoadBalancer");
        let lb_arn = lb.load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_owned();
        let target_group = |tg_name: String| {
            let elb = elb.clone();
            let vpc_id = network.vpc_id.clone();
            async move {
                let out = elb
                    .create_target_group()
                    .name(tg_name)
                    .protocol(ProtocolEnum::Http)
                    .port(3001)
                    .vpc_id(vpc_id)
                    .target_type(TargetTypeEnum::Ip)
                    .send()
                    .await
                    .expect("CreateTargetGroup");
                out.target_groups()[0]
                    .target_group_arn()
                    .unwrap()
                    .to_owned()
            }
        };
        let app_tg = target_group(format!("{name}-app")).await;
        let proxy_tg = target_group(format!("{name}-proxy")).await;
        let ended_tg = target_group(naming_tg(&preview_id)).await;
        let ghost = unique_name("ghost");
        let ghost_tg = target_group(format!("{ghost}-tg")).await;
        let listener = elb
            .create_listener()
            .load_balancer_arn(&lb_arn)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .default_actions(forward(&app_tg))
            .send()
            .await
            .expect("CreateListener");
        let listener_arn = listener.listeners()[0].listener_arn().unwrap().to_owned();
        let rule = |priority: i32, host: String, tg: String| {
            let elb = elb.clone();
            let listener_arn = listener_arn.clone();
            async move {
                let out = elb
                    .create_rule()
                    .listener_arn(listener_arn)
                    .priority(priority)
                    .conditions(
                        RuleCondition::builder()
                            .field("host-header")
                            .host_header_config(
                                HostHeaderConditionConfig::builder().values(host).build(),
                            )
                            .build(),
                    )
                    .actions(forward(&tg))
                    .send()
                    .await
                    .expect("CreateRule");
                out.rules()[0].rule_arn().unwrap().to_owned()
            }
        };
        let wildcard_rule = rule(10, format!("*.{suffix}"), proxy_tg.clone()).await;
        let ended_rule = rule(11, format!("{preview_id}.{suffix}"), ended_tg.clone()).await;
        let ghost_rule = rule(12, format!("{ghost}.{suffix}"), ghost_tg.clone()).await;

        let env = vec![
            ("AWS_ENDPOINT_URL", moto.url.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("SESSION_STORE", format!("sqlite:{}", db.display())),
            ("ECS_CLUSTER", cluster.clone()),
            ("ALB_LISTENER_ARN", listener_arn.clone()),
            ("UAT_DOMAIN_SUFFIX", suffix.clone()),
            ("GITHUB_API_URL", github.url().to_owned()),
            ("GITHUB_TOKEN", TOKEN.to_owned()),
        ];
        let task_arns = vec![
            idle.task_arn.clone().unwrap(),
            dead.task_arn.clone().unwrap(),
            live.task_arn.clone().unwrap(),
            orphan_task.clone(),
        ];
        Stand {
            home,
            store,
            github,
            ecs,
            elb,
            cluster,
            listener_arn,
            suffix,
            env,
            task_arns,
            target_group_arns: vec![app_tg, proxy_tg.clone(), ended_tg.clone(), ghost_tg.clone()],
            prs,
            idle,
            dead,
            live,
            ended_preview,
            orphan_task,
            ghost,
            ended_rule,
            ended_tg,
            ghost_rule,
            ghost_tg,
            wildcard_rule,
            proxy_tg,
        }
    }

    async fn sweep(&self, args: &[&str]) -> Output {
        cca(self.home.path(), &self.env, args)
            .output()
            .await
            .expect("run cca sweep")
    }

    async fn world(&self) -> World {
        let mut sessions = self.store.list(&ListFilter::default()).await.unwrap();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        let described = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .set_tasks(Some(self.task_arns.clone()))
            .send()
            .await
            .expect("DescribeTasks");
        let mut tasks: Vec<(String, String, String)> = described
            .tasks()
            .iter()
            .map(|t| {
                (
                    t.task_arn().unwrap_or_default().to_owned(),
                    t.last_status().unwrap_or_default().to_owned(),
                    t.desired_status().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        tasks.sort();
        let rules = self
            .elb
            .describe_rules()
            .listener_arn(&self.listener_arn)
            .send()
            .await
            .expect("DescribeRules");
        let mut rules: Vec<(String, Vec<String>)> = rules
            .rules()
            .iter()
            .map(|r| {
                let hosts = r
                    .conditions()
                    .iter()
                    .flat_map(|c| c.host_header_config().map(|h| h.values().to_vec()))
                    .flatten()
                    .collect();
                (r.rule_arn().unwrap_or_default().to_owned(), hosts)
            })
            .collect();
        rules.sort();
        let groups = self
            .elb
            .describe_target_groups()
            .send()
            .await
            .expect("DescribeTargetGroups");
        let mut target_groups: Vec<String> = groups
            .target_groups()
            .iter()
            .filter_map(|t| t.target_group_arn())
            .filter(|arn| self.target_group_arns.iter().any(|mine| mine == arn))
            .map(str::to_owned)
            .collect();
        target_groups.sort();
        let comments = self
            .prs
            .iter()
            .flat_map(|n| {
                self.github
                    .comments(REPO, *n)
                    .into_iter()
                    .map(move |c| (*n, c.body))
            })
            .collect();
        World {
            sessions,
            tasks,
            rules,
            target_groups,
            comments,
        }
    }

    fn task_status<'w>(&self, world: &'w World, arn: &str) -> &'w str {
        world
            .tasks
            .iter()
            .find(|(a, _, _)| a == arn)
            .map(|(_, last, _)| last.as_str())
            .unwrap_or_else(|| panic!("task {arn} not found"))
    }

    fn session<'w>(&self, world: &'w World, id: &SessionId) -> &'w Session {
        world
            .sessions
            .iter()
            .find(|s| &s.session_id == id)
            .unwrap_or_else(|| panic!("session {id} not found"))
    }
}

/// The target group name the original gave a session's preview.
fn naming_tg(id: &SessionId) -> String {
    format!("{id}-tg").chars().take(32).collect()
}

#[tokio::test]
async fn a_dry_run_changes_nothing_then_each_leftover_is_handled_once() {
    let Some(moto) = Moto::from_env() else {
        cca_testkit::stand::skip(
            "CCA_MOTO_URL is not set (scripts/test.sh starts the AWS emulator)",
        );
        return;
    };
    // Tasks must stay RUNNING until stopped, whatever the other tests of the server did.
    let _exclusive = Moto::exclusive().await;
    moto.ecs_manual_transitions().await;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let stand = Stand::build(&moto).await;
        let before = stand.world().await;
        assert!(
            before.tasks.iter().all(|(_, last, _)| last == "RUNNING"),
            "{before:?}"
        );

        // A dry run says what it would do and changes nothing.
        let out = stand.sweep(&["--dry-run"]).await;
        let text = stdout(&out);
        eprintln!("{text}");
        assert_eq!(out.status.code(), Some(0), "{}", described(&out));
        assert_eq!(stand.world().await, before, "{}", described(&out));
        for expected in [
            format!(
                "would stop idle session {} (task {})",
                stand.idle.session_id,
                stand.idle.task_arn.as_deref().unwrap()
            ),
            format!("would fail session {}", stand.dead.session_id),
            format!("would stop task {}", stand.orphan_task),
            format!(
                "would delete listener rule {} ({}.{})",
                stand.ended_rule, stand.ended_preview.session_id, stand.suffix
            ),
            format!("would delete target group {}", stand.ended_tg),
            format!(
                "kept listener rule {} ({}.{}): no record of session {}",
                stand.ghost_rule, stand.ghost, stand.suffix, stand.ghost
            ),
            format!("would tell #{}", stand.prs[1]),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
        }
        assert!(
            text.starts_with("sweep (dry run, nothing is changed): "),
            "{text}"
        );
        let live_id = stand.live.session_id.to_string();
        assert!(
            !text.contains(&live_id),
            "the live session is mentioned:\n{text}"
        );
        assert!(!text.contains(&stand.wildcard_rule), "{text}");
        assert!(!text.contains(&stand.proxy_tg), "{text}");

        // The real run handles each once, and says so in JSON.
        let out = stand.sweep(&["--json"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", described(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        let mut done: Vec<(&str, &str)> = report["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["action"].as_str().unwrap(), a["result"].as_str().unwrap()))
            .collect();
        // Sessions come newest first, so the two session actions may come in either order;
        // tasks, rules and target groups follow, in that order.
        done[..2].sort_unstable();
        assert_eq!(
            done,
            [
                ("fail", "done"),
                ("stop_idle", "done"),
                ("stop_task", "done"),
                ("delete_rule", "done"),
                ("delete_target_group", "done"),
            ],
            "{report:#}"
        );
        assert_eq!(report["dry_run"], false);
        assert_eq!(report["errors"].as_array().map(Vec::len), Some(0));

        let after = stand.world().await;
        // Idle past the limit: stopped through STOPPING, its task stopped, the PR told.
        let idle = stand.session(&after, &stand.idle.session_id);
        assert_eq!(idle.status, Status::Stopped);
        assert_eq!(
            stand.task_status(&after, stand.idle.task_arn.as_deref().unwrap()),
            "STOPPED"
        );
        // Heartbeat stopped: FAILED with the reason, its task stopped, exactly one comment.
        let dead = stand.session(&after, &stand.dead.session_id);
        assert_eq!(dead.status, Status::Failed);
        let error = dead.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("heartbeat stopped: the last was"),
            "{error}"
        );
        assert_eq!(
            stand.task_status(&after, stand.dead.task_arn.as_deref().unwrap()),
            "STOPPED"
        );
        let on = |n: u64| -> Vec<&str> {
            after
                .comments
                .iter()
                .filter(|(pr, _)| *pr == n)
                .map(|(_, body)| body.as_str())
                .collect()
        };
        let failed = on(stand.prs[1]);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].starts_with(MARKER), "{}", failed[0]);
        assert!(
            failed[0].contains("**Session failed**: heartbeat stopped"),
            "{}",
            failed[0]
        );
        let stopped = on(stand.prs[0]);
        assert_eq!(stopped.len(), 1, "{stopped:?}");
        assert!(stopped[0].starts_with(MARKER) && stopped[0].contains("**Session stopped**"));
        // The orphan task is stopped.
        assert_eq!(stand.task_status(&after, &stand.orphan_task), "STOPPED");
        // The ended preview's rule and target group are gone; the record itself stays.
        assert!(!after.rules.iter().any(|(arn, _)| arn == &stand.ended_rule));
        assert!(!after.target_groups.contains(&stand.ended_tg));
        assert_eq!(
            stand.session(&after, &stand.ended_preview.session_id),
            &stand.ended_preview
        );
        // Kept: the leftover without a record and its target group, the wildcard rule and the
        // proxy's target group.
        for rule in [&stand.ghost_rule, &stand.wildcard_rule] {
            assert!(
                after.rules.iter().any(|(arn, _)| arn == rule),
                "{rule} deleted"
            );
        }
        for tg in [&stand.ghost_tg, &stand.proxy_tg] {
            assert!(after.target_groups.contains(tg), "{tg} deleted");
        }
        // The live session: record, task and PR untouched.
        assert_eq!(stand.session(&after, &stand.live.session_id), &stand.live);
        assert_eq!(
            stand.task_status(&after, stand.live.task_arn.as_deref().unwrap()),
            "RUNNING"
        );
        assert!(on(stand.prs[2]).is_empty());

        // A second run finds nothing to do and changes nothing.
        let out = stand.sweep(&[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", described(&out));
        let text = stdout(&out);
        eprintln!("{text}");
        assert!(text.lines().any(|l| l == "nothing to do"), "{text}");
        assert!(
            text.contains(&format!("kept listener rule {}", stand.ghost_rule)),
            "{text}"
        );
        assert_eq!(stand.world().await, after);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn locally_a_session_whose_agent_process_is_gone_is_failed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let home = tempfile::tempdir().unwrap();
        let db = home.path().join("sessions.db");
        let store = SqliteStore::open(&db).unwrap();
        let now = cca_webhook::app::now();
        let s = Session::new(
            SessionId::random_agent(),
            SessionType::Agent,
            Source::Github,
            RepoName::parse(REPO).unwrap(),
            naming::issue_branch(5),
            ImageChannel::Latest,
            now - 600,
        );
        store.create(&s).await.unwrap();
        let patch = SessionPatch {
            task_arn: Some(format!("process:{}", i32::MAX - 1)),
            heartbeat_at: Some(now),
            ..SessionPatch::default()
        };
        store
            .transition(&s.session_id, Status::Starting, patch, now)
            .await
            .unwrap();
        let env = [("SESSION_STORE", format!("sqlite:{}", db.display()))];

        let out = cca(home.path(), &env, &["--dry-run"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", described(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "would fail session {} (task process:{}): task no longer running",
                s.session_id,
                i32::MAX - 1
            )),
            "{text}"
        );
        assert!(text.contains("note: no load balancer listener configured (ALB_LISTENER_ARN)"));
        assert!(text.contains("note: no GitHub credentials"));
        assert_eq!(
            store.get(&s.session_id).await.unwrap().unwrap().status,
            Status::Starting
        );

        let out = cca(home.path(), &env, &[]).output().await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", described(&out));
        let after = store.get(&s.session_id).await.unwrap().unwrap();
        assert_eq!(after.status, Status::Failed);
        assert_eq!(after.error.as_deref(), Some("task no longer running"));

        // Against a cluster, the local store is refused rather than taken for the cluster's.
        let out = cca(home.path(), &[("ECS_CLUSTER", "c".to_owned())], &[])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", described(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("ECS_CLUSTER is set"));
    })
    .await
    .expect("test timed out");
}
