//! Minting and recognising secrets (API keys, bearer tokens).
//!
//! A secret is a prefix plus 32 random bytes in URL-safe base64. Only its SHA-256 digest is
//! stored; a presented secret is digested and looked up by digest, so the comparison never
//! touches the secret itself and no stored value can be replayed as a credential.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tidemark_store::SecretDigest;

/// Longest secret accepted in an `Authorization` header.
pub const MAX_SECRET_LEN: usize = 256;

/// A new secret with `prefix` (`tmk_` for API keys, `tmb_` for bearer tokens).
pub fn mint(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest stored for a secret.
pub fn digest(secret: &str) -> SecretDigest {
    Sha256::digest(secret.as_bytes()).into()
}

/// The last characters of a secret, shown to tell keys apart.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_minted_secrets_differ_and_digest_stably() {
        let a = mint("tmk_");
        let b = mint("tmk_");
        assert_ne!(a, b);
        assert!(a.starts_with("tmk_") && a.len() > 40);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(hint("tmk_abcdef"), "cdef");
    }
}

/// Recently verified credentials, so that a client following cursors is not looked up in the
/// store on every page.
///
/// Entries live [`CACHE_TTL`]. This node forgets all of them when a key is deleted or an
/// account is changed or deleted; another node sharing the store may honour a deleted
/// credential for at most [`CACHE_TTL`] more.
#[derive(Debug, Default)]
pub struct CredentialCache {
    entries: std::sync::Mutex<
        std::collections::HashMap<SecretDigest, (std::time::Instant, crate::extract::Caller)>,
    >,
}

/// How long a verified credential is trusted without asking the store again.
pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Entries kept at most (the cache is cleared when it would grow beyond).
const CACHE_CAPACITY: usize = 10_000;

impl CredentialCache {
    /// The caller a digest was verified as, if that was less than [`CACHE_TTL`] ago.
    pub fn get(&self, digest: &SecretDigest) -> Option<crate::extract::Caller> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(digest)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, caller)| caller.clone())
    }

    /// Remembers a verified credential.
    pub fn put(&self, digest: SecretDigest, caller: crate::extract::Caller) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(digest, (std::time::Instant::now(), caller));
        }
    }

    /// Forgets everything (after a key or an account changed).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
