//! Amazon Bedrock behind the gateway: the CLI sends unsigned Bedrock requests
//! (`CLAUDE_CODE_SKIP_BEDROCK_AUTH`) to the gateway, which signs each with the task role's
//! credentials (Signature Version 4, service `bedrock`) and reads the usage out of the AWS
//! event stream Bedrock answers with.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use serde_json::Value;

use super::{Usage, read_event};

/// Where and as whom Bedrock requests are signed.
#[derive(Clone, Debug)]
pub struct Bedrock {
    /// The region of the Bedrock endpoint (`AWS_REGION`).
    region: String,
    /// The task role's credentials (the SDK's default chain).
    provider: SharedCredentialsProvider,
    /// The last credentials, reused until five minutes before they expire (the provider of
    /// the SDK's configuration does not cache: each call would ask the credential endpoint).
    cached: Arc<Mutex<Option<Credentials>>>,
}

impl Bedrock {
    pub fn new(region: String, provider: SharedCredentialsProvider) -> Self {
        Self {
            region,
            provider,
            cached: Arc::default(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    async fn credentials(&self) -> Result<Credentials, String> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| at > SystemTime::now() + Duration::from_secs(300))
        };
        if let Some(c) = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(fresh)
        {
            return Ok(c);
        }
        let c = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials to sign the Bedrock request: {e}"))?;
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        Ok(c)
    }
}

/// The regional Bedrock runtime endpoint.
pub fn endpoint(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// Whether `path` (after the gateway's token) is a model invocation the gateway forwards.
pub fn is_invocation(path: &str) -> bool {
    path.strip_prefix("/model/").is_some_and(|rest| {
        rest.ends_with("/invoke") || rest.ends_with("/invoke-with-response-stream")
    })
}

/// The model an invocation path names, as the price table spells it: `us.anthropic.claude-…`,
/// `anthropic.claude-…-v1:0` and inference-profile ids become `claude-…`.
pub fn model_of(path: &str) -> String {
    let id = path
        .strip_prefix("/model/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .replace("%3A", ":")
        .replace("%3a", ":");
    match id.rfind("anthropic.") {
        Some(at) => id[at + "anthropic.".len()..].to_owned(),
        None => id,
    }
}

/// The headers that sign a request: `x-amz-date`, `authorization` and, with temporary
/// credentials, `x-amz-security-token`.
pub async fn signature(
    bedrock: &Bedrock,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let identity: Identity = bedrock.credentials().await?.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&bedrock.region)
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("unsignable Bedrock request: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("signing the Bedrock request: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Reads the complete event-stream messages at the front of `buffer` (and drains them): each
/// `chunk` payload is `{"bytes": base64 of a Messages API event}`. Returns false when the
/// buffer cannot be an event stream (then nothing more is read from it).
pub fn read_messages(buffer: &mut Vec<u8>, usage: &mut Usage) -> bool {
    loop {
        if buffer.len() < 12 {
            return true;
        }
        let word = |at: usize| {
            u32::from_be_bytes([buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]])
                as usize
        };
        let (total, headers) = (word(0), word(4));
        if total < 16 || headers > total - 16 {
            return false;
        }
        if buffer.len() < total {
            return true;
        }
        let payload = &buffer[12 + headers..total - 4];
        if let Some(event) = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|p| p.get("bytes").and_then(Value::as_str).map(str::to_owned))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        {
            read_event(&event, usage);
            if let Some(m) = event.get("amazon-bedrock-invocationMetrics") {
                let n = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
                usage.input_tokens = usage.input_tokens.max(n("inputTokenCount"));
                usage.output_tokens = usage.output_tokens.max(n("outputTokenCount"));
            }
        }
        buffer.drain(..total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event-stream message with a `chunk` payload carrying `event`.
    fn frame(event: &Value) -> Vec<u8> {
        let bytes = base64::engine::general_purpose::STANDARD.encode(event.to_string());
        let payload = serde_json::json!({ "bytes": bytes }).to_string();
        let headers = b"\x0b:event-type\x07\x00\x05chunk";
        let total = 12 + headers.len() + payload.len() + 4;
        let mut out = Vec::new();
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(headers);
        out.extend_from_slice(payload.as_bytes());
        out.extend_from_slice(&[0; 4]);
        out
    }

    #[test]
    fn usage_is_read_from_messages_split_anywhere() {
        let mut stream = frame(&serde_json::json!({
            "type": "message_start",
            "message": {"usage": {"input_tokens": 700, "output_tokens": 1}}
        }));
        stream.extend(frame(&serde_json::json!({
            "type": "message_delta", "usage": {"output_tokens": 20}
        })));
        stream.extend(frame(&serde_json::json!({
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {"inputTokenCount": 700, "outputTokenCount": 25}
        })));
        for cut in [1, 13, 50, stream.len() - 1] {
            let mut usage = Usage::default();
            let mut buffer = stream[..cut].to_vec();
            assert!(read_messages(&mut buffer, &mut usage));
            buffer.extend_from_slice(&stream[cut..]);
            assert!(read_messages(&mut buffer, &mut usage));
            assert!(buffer.is_empty());
            assert_eq!(
                (usage.input_tokens, usage.output_tokens),
                (700, 25),
                "cut {cut}"
            );
        }
        let mut garbage = vec![0u8; 20];
        assert!(!read_messages(&mut garbage, &mut Usage::default()));
    }

    #[test]
    fn model_ids_are_priced_as_claude_models() {
        assert_eq!(
            model_of("/model/us.anthropic.claude-opus-5-5/invoke-with-response-stream"),
            "claude-opus-5-5"
        );
        assert_eq!(
            model_of("/model/anthropic.claude-haiku-4-5-v1%3A0/invoke"),
            "claude-haiku-4-5-v1:0"
        );
    }
}
