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
