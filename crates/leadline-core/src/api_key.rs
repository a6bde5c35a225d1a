//! Tenant API keys: `sk_` (secret, the whole tenant API) and `pk_` (publishable,
//! lead capture only). Only a SHA-256 hash of a key is ever stored.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::id::{ApiKeyId, TenantId};

/// The kind of a key.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// `sk_`: the whole tenant API; keep it on a server.
    Secret,
    /// `pk_`: only `POST /v1/leads`; safe in a web page.
    Publishable,
}

impl KeyKind {
    /// The key text prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Secret => "sk_",
            Self::Publishable => "pk_",
        }
    }

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored form.
    pub fn from_db(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// A key as stored and listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// `key_` id.
    pub id: ApiKeyId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Secret or publishable.
    pub kind: KeyKind,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key is refused at once.
    pub revoked_at: Option<DateTime<Utc>>,
    /// SHA-256 of the key, hex.
    #[serde(skip)]
    pub hash: String,
}

/// A newly issued key and its plaintext, which is shown once and then forgotten.
pub struct IssuedKey {
    /// The stored form.
    pub key: ApiKey,
    /// The key itself.
    pub plaintext: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key", &self.key)
            .field("plaintext", &"[redacted]")
            .finish()
    }
}

/// Issues a key: 32 random bytes from a CSPRNG seeded by the operating system, base64url.
pub fn issue(tenant_id: &TenantId, kind: KeyKind, now: DateTime<Utc>) -> IssuedKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let plaintext = format!(
        "{}{}",
        kind.prefix(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let key = ApiKey {
        id: ApiKeyId::generate(),
        tenant_id: tenant_id.clone(),
        kind,
        prefix: plaintext[..11].to_owned(),
        created_at: now,
        revoked_at: None,
        hash: hash_key(&plaintext),
    };
    IssuedKey { key, plaintext }
}

/// The stored hash of a key.
pub fn hash_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Whether text looks like one of our keys (cheap check before any lookup).
pub fn looks_like_key(s: &str) -> bool {
    (s.starts_with("sk_") || s.starts_with("pk_"))
        && s.len() == 46
        && s[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_look_right_and_differ() {
        let t = TenantId::generate();
        let a = issue(&t, KeyKind::Secret, Utc::now());
        let b = issue(&t, KeyKind::Publishable, Utc::now());
        assert!(looks_like_key(&a.plaintext) && a.plaintext.starts_with("sk_"));
        assert!(looks_like_key(&b.plaintext) && b.plaintext.starts_with("pk_"));
        assert_ne!(a.key.hash, b.key.hash);
        assert_eq!(a.key.hash, hash_key(&a.plaintext));
        assert!(!format!("{a:?}").contains(&a.plaintext));
    }
}
