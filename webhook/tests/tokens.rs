//! The token broker through the real router: an agent with its session's token gets an
//! installation token limited to its repository and to the permissions it uses; nobody else
//! gets one, and no refused request reaches GitHub.

mod support;

use axum::http::StatusCode;
use cca_domain::session::SessionPatch;
use cca_domain::{RepoName, Session, SessionId, Status};
use serde_json::{Value, json};
use support::{CONTROL_KEY, INSTALLATION, REPO, Stand, scenario};

async fn started(stand: &Stand, ip: &str) -> Session {
    stand.started_session(ip).await
}

fn token_of(s: &Session) -> String {
    cca_domain::control::control_token(CONTROL_KEY.as_bytes(), &s.session_id)
}

async fn ask(stand: &Stand, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(b) = bearer {
        headers.push(("authorization", format!("Bearer {b}")));
    }
    stand
        .send(
            cca_github::TOKEN_ROUTE,
            &headers,
            body.to_string().into_bytes(),
        )
        .await
}

#[tokio::test]
async fn an_agent_gets_a_token_for_its_repository_only() {
    scenario(|stand| async move {
        let s = started(&stand, "10.1.2.3").await;
        let (status, answer) = ask(
            &stand,
            Some(&token_of(&s)),
            json!({"session_id": s.session_id.as_str()}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let issued = stand.github.issued_tokens();
        let last = issued.last().expect("a token was minted");
        assert_eq!(answer["token"], last.token.as_str());
        assert!(answer["expires_in_secs"].as_u64().unwrap() > 3000);
        assert_eq!(last.installation_id, INSTALLATION);
        assert_eq!(last.repositories, Some(vec![REPO.to_owned()]));
        assert_eq!(last.permissions, cca_github::agent_permissions());
        assert!(last.permissions.get("workflows").is_none());
    })
    .await;
}

#[tokio::test]
async fn wrong_tokens_other_sessions_ended_sessions_and_foreign_addresses_get_nothing() {
    scenario(|stand| async move {
        let mine = started(&stand, "10.1.2.3").await;
        let other = started(&stand, "10.1.2.4").await;
        let minted_before = stand.github.issued_tokens().len();
        let body = json!({"session_id": mine.session_id.as_str()});
        let cases: Vec<(&str, Option<String>, Value, StatusCode)> = vec![
            ("no token", None, body.clone(), StatusCode::UNAUTHORIZED),
            (
                "a made-up token",
                Some("0".repeat(64)),
                body.clone(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "another session's token",
                Some(token_of(&other)),
                body.clone(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "the control key itself",
                Some(CONTROL_KEY.to_owned()),
                body.clone(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "not a session id",
                Some(token_of(&mine)),
                json!({"session_id": "../../etc"}),
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (what, bearer, body, want) in cases {
            let (status, answer) = ask(&stand, bearer.as_deref(), body).await;
            assert_eq!(status, want, "{what}: {answer}");
        }
        // A session without a record.
        let ghost = SessionId::random_agent();
        let ghost_token = cca_domain::control::control_token(CONTROL_KEY.as_bytes(), &ghost);
        let (status, _) = ask(
            &stand,
            Some(&ghost_token),
            json!({"session_id": ghost.as_str()}),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A record pointing at the metadata service, or at the internet.
        for ip in ["169.254.170.2", "8.8.8.8"] {
            let s = started(&stand, ip).await;
            let (status, answer) = ask(
                &stand,
                Some(&token_of(&s)),
                json!({"session_id": s.session_id.as_str()}),
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{ip}: {answer}");
            assert!(!answer.to_string().contains(ip), "{answer}");
        }
        // An ended session.
        stand
            .store
            .transition(
                &mine.session_id,
                Status::Failed,
                SessionPatch::default(),
                cca_domain::now(),
            )
            .await
            .unwrap();
        let (status, _) = ask(&stand, Some(&token_of(&mine)), body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            stand.github.issued_tokens().len(),
            minted_before,
            "no refused request reached GitHub"
        );
    })
    .await;
}

/// GitHub failing to mint: the broker answers 502 naming GitHub and hands nothing out; an
/// agent's client, asking the real router over HTTP, rides over such failures and gets a token
/// once GitHub mints again.
#[tokio::test]
async fn github_failing_to_mint_is_said_by_the_broker_and_retried_by_the_agent() {
    scenario(|stand| async move {
        let s = started(&stand, "10.1.2.3").await;
        let body = json!({"session_id": s.session_id.as_str()});
        stand.github.fail_next("POST", "/access_tokens", 502, 1);
        let (status, answer) = ask(&stand, Some(&token_of(&s)), body).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
        assert!(answer.to_string().contains("GitHub"), "{answer}");
        assert!(answer.get("token").is_none(), "{answer}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = stand.router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let agent = cca_github::GitHub::new(
            stand.github.url(),
            cca_github::GitHubAuth::Broker {
                url,
                session_id: s.session_id.to_string(),
                session_token: token_of(&s).into(),
            },
        )
        .unwrap();
        stand.github.fail_next("POST", "/access_tokens", 503, 2);
        let minted_before = stand.github.issued_tokens().len();
        let token = agent
            .installation_token(INSTALLATION, Some(&RepoName::parse(REPO).unwrap()))
            .await
            .expect("a token after GitHub recovered");
        let issued = stand.github.issued_tokens();
        assert_eq!(issued.len(), minted_before + 1);
        use secrecy::ExposeSecret;
        assert_eq!(issued.last().unwrap().token, token.token.expose_secret());
    })
    .await;
}
