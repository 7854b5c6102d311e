//! Webhook signatures: Kloudless's `X-Kloudless-Signature` and Standard Webhooks'
//! `webhook-id` / `webhook-timestamp` / `webhook-signature`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of Standard Webhooks signing secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret that is not `whsec_<base64>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid webhook secret: expected `whsec_` followed by base64")]
pub struct InvalidSecret;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `X-Kloudless-Signature`: `Base64(HMAC-SHA256(api_key, body))` (seed 003, "Verifying").
pub fn kloudless_signature(api_key: &str, body: &[u8]) -> String {
    STANDARD.encode(hmac_sha256(api_key.as_bytes(), &[body]))
}

/// A new Standard Webhooks secret: `whsec_` and 24 random bytes in base64.
pub fn new_endpoint_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The three Standard Webhooks headers for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardWebhookHeaders {
    /// `webhook-id`: the same for every retry of one message (receivers de-duplicate on it).
    pub id: String,
    /// `webhook-timestamp`: Unix seconds when this attempt was signed (receivers reject old ones).
    pub timestamp: String,
    /// `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub signature: String,
}

/// Signs `body` as message `id` at `timestamp` with an endpoint's `whsec_` secret.
///
/// # Errors
/// [`InvalidSecret`] if the secret is not `whsec_<base64>`.
pub fn standard_webhooks(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<StandardWebhookHeaders, InvalidSecret> {
    let key = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .filter(|key| !key.is_empty())
        .ok_or(InvalidSecret)?;
    let timestamp = timestamp.to_string();
    let mac = hmac_sha256(
        &key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    Ok(StandardWebhookHeaders {
        id: id.to_owned(),
        timestamp,
        signature: format!("v1,{}", STANDARD.encode(mac)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_kloudless_signature_matches_a_known_hmac() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") is the RFC-style
        // example f7bc83f4...; base64 of it:
        assert_eq!(
            kloudless_signature("key", b"The quick brown fox jumps over the lazy dog"),
            "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
        );
    }

    #[test]
    fn test_standard_webhooks_signs_id_timestamp_and_body() {
        // The Standard Webhooks specification's example.
        let headers = standard_webhooks(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .expect("valid secret");
        assert_eq!(
            headers.signature,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(headers.timestamp, "1614265330");
    }

    #[test]
    fn test_secrets_are_checked_and_new_ones_valid() {
        assert_eq!(standard_webhooks("nope", "m", 1, b"{}"), Err(InvalidSecret));
        assert_eq!(
            standard_webhooks("whsec_!!!", "m", 1, b"{}"),
            Err(InvalidSecret)
        );
        let secret = new_endpoint_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert!(standard_webhooks(&secret, "m", 1, b"{}").is_ok());
        assert_ne!(new_endpoint_secret(), secret);
    }
}
