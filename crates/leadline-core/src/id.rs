//! Prefixed, time-ordered, opaque identifiers (`lead_01j...`).
//!
//! The body is a ULID in lower case, so ids sort by creation time, which the
//! cursor pagination relies on.

use std::fmt;

/// Error for a string that is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0} id")]
pub struct BadId(pub &'static str);

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, example = json!(concat!($prefix, "_01jd6c8m2f0000000000000000")))]
        pub struct $name(String);

        impl $name {
            /// The prefix, without the underscore.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, ordered after every id made earlier by this process.
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "_{}"), next_ulid()))
            }

            /// Parses an id of this kind; anything else is refused.
            pub fn parse(s: &str) -> Result<Self, BadId> {
                if s.starts_with(concat!($prefix, "_")) && is_id_shaped(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(BadId($prefix))
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Rebuilds an id read from our own storage (trusted, not re-validated).
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A charter company using Leadline.
    TenantId, "ten");
prefixed_id!(
    /// An API key of a tenant.
    ApiKeyId, "key");
prefixed_id!(
    /// A lead: one inquiry.
    LeadId, "lead");
prefixed_id!(
    /// A yacht of a tenant's fleet.
    YachtId, "yacht");

prefixed_id!(
    /// An audit entry.
    AuditId, "aud");

prefixed_id!(
    /// An outbox message (email or webhook); also the `webhook-id`.
    MsgId, "msg");
prefixed_id!(
    /// A dead letter.
    DeadLetterId, "dl");
prefixed_id!(
    /// An email's delivery log entry.
    MailId, "mail");
prefixed_id!(
    /// A webhook endpoint.
    WebhookEndpointId, "whep");

prefixed_id!(
    /// A quote.
    QuoteId, "quote");
prefixed_id!(
    /// A booking.
    BookingId, "bkg");

impl TenantId {
    /// A placeholder filled in by the store after reading a document.
    pub fn unset() -> Self {
        Self(String::new())
    }
}

/// The shape of every id, as a regular expression: a kind prefix, `_`, and a
/// lowercase ULID (Crockford base32, at most `7zzzzzzzzzzzzzzzzzzzzzzzzz`).
pub const ID_PATTERN: &str = "^[a-z]{2,5}_[0-7][0-9a-hjkmnp-tv-z]{25}$";

/// The pattern of ids of one kind (`prefix` without the underscore).
pub fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}_[0-7][0-9a-hjkmnp-tv-z]{{25}}$")
}

/// Whether `s` has the shape of an id of some kind ([`ID_PATTERN`]).
pub fn is_id_shaped(s: &str) -> bool {
    let Some((prefix, body)) = s.split_once('_') else {
        return false;
    };
    (2..=5).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_lowercase())
        && body.len() == 26
        && body.as_bytes()[0] <= b'7'
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_lowercase() && !b"ilou".contains(&b)))
}

/// When an id of ours was made (the millisecond its ULID carries), as
/// milliseconds since the Unix epoch; `None` for a string that is not id-shaped.
pub fn created_ms(id: &str) -> Option<u64> {
    if !is_id_shaped(id) {
        return None;
    }
    let (_, body) = id.split_once('_')?;
    ulid::Ulid::from_string(&body.to_ascii_uppercase())
        .ok()
        .map(|u| u.timestamp_ms())
}

/// Monotonic ULIDs: within one millisecond the random part is incremented, so ids
/// made by one process never go backwards.
fn next_ulid() -> String {
    use std::sync::Mutex;
    static GEN: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GEN.lock().unwrap_or_else(|p| p.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
    id.to_string().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_says_when_it_was_made() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let id = LeadId::generate();
        let made = created_ms(id.as_str()).map(u128::from).unwrap_or_default();
        assert!(made >= before && made < before + 60_000, "{made} vs {before}");
        assert_eq!(created_ms("lead_01jd6c8m2f0000000000000000"), Some(1_732_159_754_319));
        assert_eq!(created_ms("lead_not-an-id"), None);
        assert_eq!(created_ms("../../etc"), None);
    }

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = LeadId::generate();
        let b = LeadId::generate();
        assert!(a < b, "{a} < {b}");
        assert_eq!(LeadId::parse(a.as_str()), Ok(a.clone()));
        assert!(a.as_str().starts_with("lead_"));
    }

    #[test]
    fn wrong_prefix_or_body_is_refused() {
        let t = TenantId::generate();
        assert!(LeadId::parse(t.as_str()).is_err());
        assert!(LeadId::parse("lead_").is_err());
        assert!(LeadId::parse("lead_uuuuuuuuuuuuuuuuuuuuuuuuuu").is_err());
        assert!(LeadId::parse("lead_01jd6c8m2f00000000000000000").is_err());
        assert!(
            LeadId::parse("lead_01JD6C8M2F0000000000000000").is_err(),
            "ids are lowercase"
        );
        assert!(
            LeadId::parse("lead_81jd6c8m2f0000000000000000").is_err(),
            "beyond the largest ULID"
        );
        assert!(
            LeadId::parse("lead_01jd6c8m2f000000000000000i").is_err(),
            "not Crockford base32"
        );
    }

    proptest::proptest! {
        /// Every string the documented pattern admits is an id, and a lead id's
        /// pattern admits exactly what `LeadId::parse` accepts.
        #[test]
        fn the_pattern_says_what_parse_accepts(
            s in "[a-z]{2,5}_[0-7][0-9a-hjkmnp-tv-z]{25}",
            any in "lead_[0-9a-zA-Z]{26}",
        ) {
            proptest::prop_assert!(is_id_shaped(&s));
            proptest::prop_assert_eq!(LeadId::parse(&s).is_ok(), s.starts_with("lead_"));
            let body = &any.as_bytes()[5..];
            let admitted = body[0] <= b'7'
                && body.iter().copied().all(|b| b.is_ascii_digit() || (b.is_ascii_lowercase() && !b"ilou".contains(&b)));
            proptest::prop_assert_eq!(LeadId::parse(&any).is_ok(), admitted);
        }
    }

    #[test]
    fn patterns_are_anchored() {
        assert_eq!(id_pattern("lead"), "^lead_[0-7][0-9a-hjkmnp-tv-z]{25}$");
    }
}
