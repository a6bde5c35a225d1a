//! The inquiry widget's settings: which optional fields the form shows and in
//! which order, the destinations it offers, its look and its success message.
//! The widget reads them (with nothing else of the tenant) from
//! `GET /v1/widget/config`.

use serde::{Deserialize, Serialize};

use crate::text::clean_text;
use crate::validation::ValidationErrors;

/// The optional fields of the form (name, email and the privacy consent always show).
pub const WIDGET_FIELDS: &[&str] = &[
    "phone",
    "dates",
    "guests",
    "destination",
    "yacht_type",
    "charter_type",
    "budget",
    "message",
    "marketing",
];

/// How the widget looks and what it asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WidgetSettings {
    /// Optional fields shown, in this order; any of `phone`, `dates`, `guests`,
    /// `destination`, `yacht_type`, `charter_type`, `budget`, `message`, `marketing`.
    #[serde(default = "default_fields")]
    pub fields: Vec<String>,
    /// Destinations offered in a list (at most 50); empty: free text.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Accent colour, `#rrggbb`.
    #[serde(default = "default_accent")]
    pub accent_color: String,
    /// CSS font family list, e.g. `"Lato", sans-serif`; absent: the host page's font.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub font: Option<String>,
    /// Shown after a successful submission; absent: a built-in text in the
    /// visitor's language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_message: Option<String>,
    /// The company's privacy policy, linked from the consent checkbox (`https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_url: Option<String>,
}

fn default_fields() -> Vec<String> {
    WIDGET_FIELDS.iter().map(|f| (*f).to_owned()).collect()
}

fn default_accent() -> String {
    "#0b5cad".into()
}

impl Default for WidgetSettings {
    fn default() -> Self {
        Self {
            fields: default_fields(),
            destinations: Vec::new(),
            accent_color: default_accent(),
            font: None,
            success_message: None,
            privacy_url: None,
        }
    }
}

impl WidgetSettings {
    /// Checks every part; errors name their field under `prefix`.
    pub fn validate(self, prefix: &str) -> Result<Self, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let p = |f: &str| format!("{prefix}/{f}");
        for (i, f) in self.fields.iter().enumerate() {
            if !WIDGET_FIELDS.contains(&f.as_str()) {
                e.add(
                    format!("{}/{i}", p("fields")),
                    format!("must be one of: {}", WIDGET_FIELDS.join(", ")),
                );
            } else if self.fields[..i].contains(f) {
                e.add(format!("{}/{i}", p("fields")), "is listed twice");
            }
        }
        if self.destinations.len() > 50 {
            e.add(p("destinations"), "at most 50 destinations");
        }
        let mut destinations = Vec::new();
        for (i, d) in self.destinations.iter().enumerate() {
            if let Some(d) = e.check(&format!("{}/{i}", p("destinations")), clean_text(d, 100, false)) {
                destinations.push(d);
            }
        }
        let c = self.accent_color.trim().to_ascii_lowercase();
        let colour_ok = c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit());
        if !colour_ok {
            e.add(p("accent_color"), "must be a colour such as #0b5cad");
        }
        let font = match self.font.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(f) => {
                let ok = f.len() <= 100
                    && f.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ',' | '-' | '"' | '\''));
                if !ok {
                    e.add(
                        p("font"),
                        "must be a CSS font family list of letters, digits, spaces, commas, hyphens and quotes (at most 100)",
                    );
                }
                Some(f.to_owned())
            }
        };
        let success_message = match self.success_message.as_deref() {
            None => None,
            Some(m) if m.trim().is_empty() => None,
            Some(m) => e.check(&p("success_message"), clean_text(m, 500, false)),
        };
        let privacy_url = match self.privacy_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => {
                let ok = u.len() <= 500
                    && url_is_https(u)
                    && !u
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '<');
                if !ok {
                    e.add(
                        p("privacy_url"),
                        "must be an https:// address of at most 500 characters",
                    );
                }
                Some(u.to_owned())
            }
        };
        if !e.is_empty() {
            return Err(e);
        }
        Ok(Self {
            fields: self.fields,
            destinations,
            accent_color: c,
            font,
            success_message,
            privacy_url,
        })
    }
}

fn url_is_https(u: &str) -> bool {
    u.strip_prefix("https://")
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .is_some_and(|host| !host.is_empty() && host.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widget_settings_are_checked() {
        let ok = WidgetSettings {
            fields: vec!["message".into(), "dates".into()],
            destinations: vec!["Cyclades".into(), " Ionian ".into()],
            accent_color: "#AA00ff".into(),
            font: Some("\"Lato\", sans-serif".into()),
            success_message: Some("Thank you!".into()),
            privacy_url: Some("https://charters.example/privacy".into()),
        }
        .validate("/widget")
        .expect("valid");
        assert_eq!(ok.accent_color, "#aa00ff");
        assert_eq!(ok.destinations[1], "Ionian");
        let bad = WidgetSettings {
            fields: vec!["ssn".into(), "dates".into(), "dates".into()],
            destinations: vec![],
            accent_color: "red".into(),
            font: Some("x; background: url(evil)".into()),
            success_message: Some("a\u{202E}b".into()),
            privacy_url: Some("javascript:alert(1)".into()),
        }
        .validate("/widget")
        .expect_err("invalid");
        let pointers: Vec<&str> = bad.0.iter().map(|f| f.pointer.as_str()).collect();
        for p in [
            "/widget/fields/0",
            "/widget/fields/2",
            "/widget/accent_color",
            "/widget/font",
            "/widget/success_message",
            "/widget/privacy_url",
        ] {
            assert!(pointers.contains(&p), "{p}: {pointers:?}");
        }
    }
}
