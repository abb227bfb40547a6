//! Where agents keep the CLI's conversation: the broker presigns, for the session whose token
//! asks, URLs of that session's own object in the bucket (S3 in the emulator), and the agent's
//! own client keeps and reads a conversation through them. Another session's token, an ended
//! session and a webhook without a bucket get no URL.

mod support;

use axum::http::StatusCode;
use cca_agent::conversation::Store;
use cca_domain::session::SessionPatch;
use cca_domain::{Session, SessionId, Status};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::{CONTROL_KEY, Options, Stand, scenario, scenario_with};

async fn started(stand: &Stand) -> Session {
    stand.started_session("127.0.0.1").await
}

fn token_of(s: &Session) -> String {
    cca_domain::control::control_token(CONTROL_KEY.as_bytes(), &s.session_id)
}

async fn ask(stand: &Stand, bearer: &str, id: &SessionId, op: &str) -> (StatusCode, Value) {
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("authorization", format!("Bearer {bearer}")),
    ];
    let body = json!({ "session_id": id.as_str(), "op": op });
    stand
        .send(
            cca_webhook::router::CONVERSATION_ROUTE,
            &headers,
            body.to_string().into_bytes(),
        )
        .await
}

/// The stand's router on a port of its own, as agents reach the webhook.
async fn serve(stand: &Stand) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = stand.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn with_bucket() -> Options {
    Options {
        conversation_bucket: true,
        ..Options::default()
    }
}

#[tokio::test]
async fn an_agent_keeps_its_conversation_through_urls_of_its_own_object_and_reads_it_back() {
    scenario_with(with_bucket(), |stand| async move {
        let a = started(&stand).await;
        let url = serve(&stand).await;
        let store = Store::Broker {
            url: url.clone(),
            token: SecretString::from(token_of(&a)),
        };
        assert_eq!(
            store.get(&a.session_id).await.unwrap(),
            None,
            "nothing kept yet"
        );
        let archive = b"a tar of the conversation".repeat(1000);
        store.put(&a.session_id, archive.clone()).await.unwrap();
        assert_eq!(store.get(&a.session_id).await.unwrap(), Some(archive));

        // The URL names the session's own key, and lives five minutes.
        let (status, reply) = ask(&stand, &token_of(&a), &a.session_id, "get").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let presigned = reply["url"].as_str().unwrap();
        assert!(
            presigned.contains(&format!("/sessions/{}/conversation.tar?", a.session_id)),
            "{presigned}"
        );
        assert!(presigned.contains("X-Amz-Expires=300"), "{presigned}");

        // Another session's token gets nothing of it, whatever it asks.
        let b = started(&stand).await;
        for op in ["get", "put"] {
            let (status, reply) = ask(&stand, &token_of(&b), &a.session_id, op).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{op}: {reply}");
        }
        let thief = Store::Broker {
            url,
            token: SecretString::from(token_of(&b)),
        };
        let err = thief.get(&a.session_id).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err:#}");
        // Its own object is its own: empty.
        assert_eq!(
            Store::Broker {
                url: serve(&stand).await,
                token: SecretString::from(token_of(&b)),
            }
            .get(&b.session_id)
            .await
            .unwrap(),
            None
        );

        // An ended session keeps nothing more.
        stand
            .store
            .transition(
                &a.session_id,
                Status::Stopping,
                SessionPatch::default(),
                cca_domain::now(),
            )
            .await
            .unwrap();
        stand
            .store
            .transition(
                &a.session_id,
                Status::Stopped,
                SessionPatch::default(),
                cca_domain::now(),
            )
            .await
            .unwrap();
        let (status, reply) = ask(&stand, &token_of(&a), &a.session_id, "put").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
        let (status, _) = ask(&stand, &token_of(&a), &a.session_id, "delete").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn without_a_bucket_the_broker_says_conversations_are_not_kept() {
    scenario(|stand| async move {
        let a = started(&stand).await;
        let (status, reply) = ask(&stand, &token_of(&a), &a.session_id, "put").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
        assert!(reply.to_string().contains("CONVERSATION_BUCKET"), "{reply}");
    })
    .await;
}
