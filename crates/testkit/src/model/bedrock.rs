//! The fake model's Amazon Bedrock side, as strict as Bedrock on what the stand exercises:
//! `POST /model/{model id}/invoke` and `/model/{model id}/invoke-with-response-stream` must be
//! signed with Signature Version 4 by the stand-in credentials below ([`ACCESS_KEY_ID`],
//! [`SECRET_ACCESS_KEY`], [`SESSION_TOKEN`], region [`REGION`], service `bedrock`), or they are
//! refused with 403 as Bedrock refuses them. The signature is checked here from first
//! principles (canonical request, string to sign, derived key), not with the signer the gateway
//! uses, so a signing mistake of the gateway shows.
//!
//! A streamed answer is the AWS event stream (`application/vnd.amazon.eventstream`): one binary
//! message per Messages API event, its payload `{"bytes": base64 of the event's JSON}`, and the
//! final `message_stop` carries `amazon-bedrock-invocationMetrics` as Bedrock's does.

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The stand-in access key id the fake accepts.
pub const ACCESS_KEY_ID: &str = "AKIASTANDINBEDROCK01";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "stand-in-bedrock-secret-key-0123456789abcd";
/// Its session token (as a task role's credentials carry one).
pub const SESSION_TOKEN: &str = "stand-in-bedrock-session-token-FwoGZXIvYXdzEJr";
/// The region the fake serves.
pub const REGION: &str = "us-east-1";

/// The model id of a Bedrock invocation path and whether it asks for a stream.
pub(super) fn invocation(path: &str) -> Option<(String, bool)> {
    let rest = path.strip_prefix("/model/")?;
    let (model, action) = rest.rsplit_once('/')?;
    let stream = match action {
        "invoke" => false,
        "invoke-with-response-stream" => true,
        _ => return None,
    };
    let model = percent_decode(model);
    Some((model, stream))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks the request's SigV4 signature; the error is Bedrock's message for the refusal.
pub(super) fn check_signature(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .ok_or("Missing Authentication Token")?;
    let fields = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization header requires the AWS4-HMAC-SHA256 algorithm")?;
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name))
            .ok_or(format!("Authorization header requires '{name}' parameter"))
    };
    let credential = field("Credential=")?;
    let signed_headers = field("SignedHeaders=")?;
    let signature = field("Signature=")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("malformed credential scope {credential:?}"));
    };
    if key_id != ACCESS_KEY_ID {
        return Err("The security token included in the request is invalid.".into());
    }
    if region != REGION || service != "bedrock" {
        return Err(format!(
            "Credential should be scoped to a valid region and service 'bedrock', not {region}/{service}"
        ));
    }
    if headers.get("x-amz-security-token").map(String::as_str) != Some(SESSION_TOKEN) {
        return Err("The security token included in the request is invalid.".into());
    }
    let amz_date = headers
        .get("x-amz-date")
        .ok_or("missing X-Amz-Date header")?;
    if !amz_date.starts_with(date) {
        return Err("the credential's date is not the request's date".into());
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["host", "x-amz-date", "x-amz-security-token"] {
        if !names.contains(&required) {
            return Err(format!("'{required}' must be a signed header"));
        }
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let value = headers
            .get(*name)
            .ok_or(format!("signed header {name} is missing"))?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical = [
        method.to_owned(),
        uri_encode(path, false),
        canonical_query(query.unwrap_or("")),
        canonical_headers,
        signed_headers.to_owned(),
        hex::encode(Sha256::digest(body)),
    ]
    .join("\n");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{SECRET_ACCESS_KEY}").as_bytes(),
        date.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex::encode(hmac(&key, to_sign.as_bytes()));
    if expected != signature {
        return Err("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into());
    }
    Ok(())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4's encoding: every byte but the unreserved ones (and `/` in a path) as `%XX`, applied
/// to the path as it came on the wire (so services other than S3 see it encoded twice).
fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Bedrock's error body for a refused request.
pub(super) fn error_body(message: &str) -> Value {
    json!({ "message": message })
}

/// The events of an answer as one AWS event-stream body; `metrics` goes into `message_stop`.
pub(super) fn event_stream(events: &[Value], input_tokens: u64, output_tokens: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let mut event = event.clone();
        if event.get("type").and_then(Value::as_str) == Some("message_stop") {
            event["amazon-bedrock-invocationMetrics"] = json!({
                "inputTokenCount": input_tokens,
                "outputTokenCount": output_tokens,
                "invocationLatency": 120,
                "firstByteLatency": 40,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD.encode(event.to_string());
        let payload = json!({ "bytes": bytes, "p": "abcdefghij" }).to_string();
        out.extend(message(
            &[
                (":event-type", "chunk"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        ));
    }
    out
}

/// One event-stream message: prelude (total and headers length, their CRC), string-valued
/// headers, payload, and the CRC of all before it.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::new();
    for (name, value) in headers {
        encoded.push(u8::try_from(name.len()).expect("short header name"));
        encoded.extend_from_slice(name.as_bytes());
        encoded.push(7); // string
        encoded.extend_from_slice(
            &u16::try_from(value.len())
                .expect("short header value")
                .to_be_bytes(),
        );
        encoded.extend_from_slice(value.as_bytes());
    }
    let total = 12 + encoded.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).expect("small message").to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(encoded.len())
            .expect("small headers")
            .to_be_bytes(),
    );
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&encoded);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected, as the event stream uses).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn invocation_paths_name_the_model() {
        assert_eq!(
            invocation("/model/us.anthropic.claude-opus-5-5/invoke-with-response-stream"),
            Some(("us.anthropic.claude-opus-5-5".into(), true))
        );
        assert_eq!(
            invocation("/model/anthropic.claude-x-v1%3A0/invoke"),
            Some(("anthropic.claude-x-v1:0".into(), false))
        );
        assert_eq!(invocation("/v1/messages"), None);
    }

    #[test]
    fn an_unsigned_or_foreign_request_is_refused() {
        let mut headers = BTreeMap::new();
        assert!(check_signature("POST", "/model/m/invoke", None, &headers, b"{}").is_err());
        headers.insert(
            "authorization".into(),
            "AWS4-HMAC-SHA256 Credential=AKIAOTHER/20261202/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".into(),
        );
        let e = check_signature("POST", "/model/m/invoke", None, &headers, b"{}").unwrap_err();
        assert!(e.contains("security token"), "{e}");
    }
}
