//! Where an agent keeps its CLI's conversation between containers: `POST /agent/conversation`
//! with `{"session_id": …, "op": "get" | "put"}` and the session's token answers a URL, presigned
//! for five minutes, of that one operation on that session's own object
//! (`s3://<CONVERSATION_BUCKET>/sessions/<session>/conversation.tar`). The agent holds no AWS
//! credential for the bucket, so no session can read another's conversation: the token names
//! the session, and the key is made here from the record, never from the request.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials as _;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use axum::http::{HeaderMap, StatusCode};
use cca_domain::SessionId;
use serde::Deserialize;
use tracing::{Instrument as _, error_span, field, info, warn};

use crate::app::App;
use crate::reply::Reply;
use crate::tokens::{authenticate, bearer};

/// How long a presigned URL works.
pub const URL_LIFETIME: Duration = Duration::from_secs(300);

/// The bucket sessions keep their conversations in, and how it is reached.
#[derive(Debug, Clone)]
pub struct ConversationBucket {
    pub bucket: String,
    pub region: String,
    /// `AWS_ENDPOINT_URL` (an emulator): path-style URLs under it; else S3's own host.
    pub endpoint: Option<String>,
    pub aws: aws_config::SdkConfig,
}

/// The object of session `id`'s conversation.
pub fn key(id: &SessionId) -> String {
    format!("sessions/{id}/conversation.tar")
}

impl ConversationBucket {
    /// A URL for `method` (`GET` or `PUT`) on `key`, signed with the webhook's own credentials,
    /// valid for [`URL_LIFETIME`] from `now`.
    pub async fn presign(
        &self,
        method: &str,
        key: &str,
        now: SystemTime,
    ) -> Result<String, String> {
        let url = match &self.endpoint {
            Some(e) => format!("{}/{}/{key}", e.trim_end_matches('/'), self.bucket),
            None => format!(
                "https://{}.s3.{}.amazonaws.com/{key}",
                self.bucket, self.region
            ),
        };
        let provider = self
            .aws
            .credentials_provider()
            .ok_or("no AWS credentials are configured")?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("AWS credentials: {e}"))?;
        presigned_url(method, &url, &self.region, credentials, now, URL_LIFETIME)
    }
}

/// `url` (an S3 object) signed for `method` with SigV4 in its query, valid for `lifetime` from
/// `now`: S3's single URI encoding, no path normalisation, an unsigned payload.
pub fn presigned_url(
    method: &str,
    url: &str,
    region: &str,
    credentials: aws_credential_types::Credentials,
    now: SystemTime,
    lifetime: Duration,
) -> Result<String, String> {
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(lifetime);
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .map_err(|e| format!("unsignable request: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    let mut request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .map_err(|e| format!("request: {e}"))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request.uri().to_string())
}

#[derive(Deserialize)]
struct ConversationRequest {
    session_id: String,
    op: String,
}

/// Answers one request for a conversation URL (see the module documentation).
pub async fn presign(app: &App, headers: &HeaderMap, body: &[u8]) -> axum::response::Response {
    use axum::response::IntoResponse;
    let span = error_span!("conversation request", session = field::Empty);
    match decide(app, headers, body).instrument(span).await {
        Ok(url) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "url": url })),
        )
            .into_response(),
        Err(reply) => reply.into_response(),
    }
}

async fn decide(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<String, Reply> {
    let presented = bearer(headers)?;
    let req: ConversationRequest = serde_json::from_slice(body).map_err(|_| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "the body is not {\"session_id\": …, \"op\": \"get\" | \"put\"}",
        )
    })?;
    let method = match req.op.as_str() {
        "get" => "GET",
        "put" => "PUT",
        _ => {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "op is \"get\" or \"put\"",
            ));
        }
    };
    let session = authenticate(app, presented, &req.session_id).await?;
    let Some(bucket) = &app.conversations else {
        return Err(Reply::error(
            StatusCode::NOT_FOUND,
            "conversations are not kept here (CONVERSATION_BUCKET is unset)",
        ));
    };
    let url = bucket
        .presign(method, &key(&session.session_id), SystemTime::now())
        .await
        .map_err(|e| {
            warn!(error = %e, "cannot presign the conversation URL");
            Reply::error(
                StatusCode::BAD_GATEWAY,
                "cannot presign the conversation's URL",
            )
        })?;
    info!(op = %req.op, "conversation URL issued to the agent");
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own example of a presigned GET ("Authenticating Requests: Using Query Parameters"
    /// in the S3 API reference): the same credentials, time and lifetime give its signature.
    #[test]
    fn a_presigned_url_matches_the_s3_documentations_example() {
        let credentials = aws_credential_types::Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "example",
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 20130524T000000Z
        let url = presigned_url(
            "GET",
            "https://examplebucket.s3.amazonaws.com/test.txt",
            "us-east-1",
            credentials,
            now,
            Duration::from_secs(86_400),
        )
        .unwrap();
        assert!(
            url.starts_with("https://examplebucket.s3.amazonaws.com/test.txt?"),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request",
            "X-Amz-Date=20130524T000000Z",
            "X-Amz-Expires=86400",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        ] {
            assert!(url.contains(part), "{part} not in {url}");
        }
    }

    #[test]
    fn each_session_has_one_object_under_the_sessions_prefix() {
        let id = SessionId::parse("abcdefghijkmnpqr").unwrap();
        assert_eq!(key(&id), "sessions/abcdefghijkmnpqr/conversation.tar");
    }
}
