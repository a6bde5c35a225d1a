//! Validated text: trimmed, bounded, free of control characters; and email addresses.

use serde::Serialize;

/// Characters that reorder or break text where a reader does not see it:
/// bidirectional embeddings, overrides and isolates (U+202A to U+202E, U+2066 to
/// U+2069) and the line and paragraph separators (U+2028, U+2029).
pub fn is_spoofing(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Whether `s` holds something a mail client would decode as an RFC 2047
/// encoded-word (`=?charset?q?text?=`) if it reached a header as is.
pub fn looks_encoded(s: &str) -> bool {
    s.find("=?").is_some_and(|i| s[i + 2..].contains("?="))
}

/// Trims `s` and checks it: not empty, at most `max` characters, no control
/// characters (line breaks and tabs allowed only when `multiline`), no
/// bidirectional controls or separators ([`is_spoofing`]), and on one line
/// nothing that looks like an encoded-word (one-line texts reach email headers).
pub fn clean_text(s: &str, max: usize, multiline: bool) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    let n = t.chars().count();
    if n > max {
        return Err(format!("must be at most {max} characters (got {n})"));
    }
    let bad = t
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if bad {
        return Err("must not contain control characters".into());
    }
    if t.chars().any(is_spoofing) {
        return Err("must not contain bidirectional control characters or line separators".into());
    }
    if !multiline && looks_encoded(t) {
        return Err("must not contain `=?…?=` (it would read as an encoded email header)".into());
    }
    Ok(t.to_owned())
}

/// Like [`clean_text`] for an optional field: blank counts as absent.
pub fn clean_opt(s: Option<&str>, max: usize, multiline: bool) -> Result<Option<String>, String> {
    match s {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => clean_text(s, max, multiline).map(Some),
    }
}

/// A syntactically valid email address, trimmed, with its domain in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = "email")]
pub struct Email(String);

impl Email {
    /// Parses an address; the domain needs a dot (no bare hosts) and the whole
    /// address at most 254 characters (RFC 5321).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("must not be empty".into());
        }
        if t.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let bad = || "is not a valid email address".to_string();
        if t.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad());
        }
        let opts = email_address::Options::default().without_display_text();
        email_address::EmailAddress::parse_with_options(t, opts).map_err(|_| bad())?;
        let (local, domain) = t.rsplit_once('@').ok_or_else(bad)?;
        if !domain.contains('.') || domain.starts_with('[') || domain.ends_with('.') {
            return Err(bad());
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key for matching the same person: the whole address in lower case.
    pub fn match_key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number as given and normalised to E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// What the client typed (trimmed).
    pub raw: String,
    /// `+` and 8 to 15 digits.
    pub e164: String,
}

impl Phone {
    /// Normalises an international number: a leading `+` or `00`, then digits, with
    /// spaces, dots, dashes, slashes and parentheses allowed between them. A number
    /// without its country code cannot be normalised without guessing, so it is
    /// refused with a message saying what to send.
    pub fn parse(s: &str) -> Result<Self, String> {
        let raw = clean_text(s, 50, false)?;
        let mut rest = raw.as_str();
        let international = if let Some(r) = rest.strip_prefix('+') {
            rest = r;
            true
        } else if let Some(r) = rest.strip_prefix("00") {
            rest = r;
            true
        } else {
            false
        };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '/' | '(' | ')' => {}
                _ => return Err("may contain only digits, spaces and + - . / ( )".into()),
            }
        }
        if !international {
            return Err("must be in international form with its country code, e.g. +30 694 123 4567".into());
        }
        if digits.starts_with('0') {
            return Err("country code cannot start with 0".into());
        }
        if !(8..=15).contains(&digits.len()) {
            return Err("must have 8 to 15 digits including the country code".into());
        }
        Ok(Self {
            raw,
            e164: format!("+{digits}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phone_examples() {
        assert_eq!(
            Phone::parse("+30 694 123 4567").map(|p| p.e164),
            Ok("+306941234567".into())
        );
        assert_eq!(
            Phone::parse("0030-694-123-4567").map(|p| p.e164),
            Ok("+306941234567".into())
        );
        assert_eq!(
            Phone::parse("+1 (415) 555-0100").map(|p| p.e164),
            Ok("+14155550100".into())
        );
        assert!(Phone::parse("694 123 4567").is_err());
        assert!(Phone::parse("+30 694 abc").is_err());
        assert!(Phone::parse("+1234").is_err());
        assert!(Phone::parse("+1234567890123456").is_err());
    }

    #[test]
    fn email_examples() {
        assert_eq!(
            Email::parse(" Maria@Example.COM ").map(|e| e.0),
            Ok("Maria@example.com".into())
        );
        for bad in [
            "",
            "maria",
            "maria@",
            "@example.com",
            "maria@localhost",
            "ma ria@example.com",
            "maria@exa\nmple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn text_rules() {
        assert_eq!(clean_text("  hi  ", 10, false), Ok("hi".into()));
        assert!(clean_text("   ", 10, false).is_err());
        assert!(clean_text("a\u{0}b", 10, false).is_err());
        assert!(clean_text("a\nb", 10, false).is_err());
        assert_eq!(clean_text("a\nb", 10, true), Ok("a\nb".into()));
        assert!(clean_text(&"x".repeat(11), 10, false).is_err());
        assert!(clean_text(&"é".repeat(10), 10, false).is_ok());
    }

    proptest! {
        #[test]
        fn phone_normalisation_keeps_exactly_the_digits(cc in 1u32..999, rest in "[0-9]{7,11}", sep in prop::sample::select(vec![" ", "-", ".", ""])) {
            let digits = format!("{cc}{rest}");
            prop_assume!(digits.len() <= 15);
            let spaced: String = rest.chars().map(|c| format!("{c}{sep}")).collect();
            let p = Phone::parse(&format!("+{cc} {spaced}")).expect("valid");
            prop_assert_eq!(&p.e164, &format!("+{digits}"));
            // Normalising the normal form is a fixed point.
            prop_assert_eq!(Phone::parse(&p.e164).expect("valid").e164, p.e164);
        }

        #[test]
        fn phone_never_accepts_letters(s in "\\+[0-9]{3,8}[a-zA-Z][0-9]{0,5}") {
            prop_assert!(Phone::parse(&s).is_err());
        }

        #[test]
        fn email_parse_is_idempotent(local in "[a-z0-9._%+-]{1,20}", host in "[a-z0-9]{1,20}", tld in "[a-z]{2,6}") {
            if let Ok(e) = Email::parse(&format!("{local}@{host}.{tld}")) {
                prop_assert_eq!(Email::parse(e.as_str()), Ok(e.clone()));
            }
        }

        #[test]
        fn clean_text_output_is_trimmed_and_bounded(s in "\\PC{0,60}", max in 1usize..40) {
            if let Ok(t) = clean_text(&s, max, false) {
                prop_assert_eq!(t.trim(), t.as_str());
                prop_assert!(t.chars().count() <= max);
                prop_assert!(!t.is_empty());
            }
        }
    }
}
