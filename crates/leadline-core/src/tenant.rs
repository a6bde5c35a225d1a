//! Tenants (charter companies) and their settings.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::TenantId;
use crate::money::Currency;
use crate::percent::Percent;
use crate::text::{Email, clean_opt, clean_text};
use crate::validation::ValidationErrors;

/// Whether a tenant's keys work.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Keys work.
    Active,
    /// Keys answer 403; queued deliveries wait.
    Suspended,
}

impl TenantStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored form.
    pub fn from_db(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// When an instalment of the payment schedule is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstalmentDue {
    /// When the booking is made.
    AtBooking,
    /// A number of days before embarkation.
    DaysBeforeEmbarkation,
}

/// One instalment of the payment schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Instalment {
    /// Share of the total.
    pub percent: Percent,
    /// When it is due.
    pub due: InstalmentDue,
    /// Days before embarkation, for `days_before_embarkation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
}

/// One template: subject, plain text and HTML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// The email kinds that have templates.
pub const TEMPLATE_KINDS: &[&str] = &["lead_acknowledgement", "lead_notification", "quote", "quote_accepted"];

/// Template overrides: kind → locale → template.
pub type Templates = BTreeMap<String, BTreeMap<String, Template>>;

/// A tenant's settings, as stored and as `GET /v1/settings` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Settings {
    /// Company name shown to clients.
    pub company_name: String,
    /// Staff addresses told about new leads.
    pub notification_emails: Vec<Email>,
    /// Display name of the sender of client emails.
    pub mail_from_name: Option<String>,
    /// Where client replies go.
    pub reply_to: Option<Email>,
    /// Whether a new lead gets an acknowledgement email.
    pub auto_reply_enabled: bool,
    /// Web origins allowed to post leads with a publishable key; empty: any.
    pub allowed_origins: Vec<String>,
    /// Default currency.
    pub currency: Currency,
    /// Default VAT rate of quotes.
    pub vat_percent: Percent,
    /// Default APA (advance provisioning allowance) of crewed charters.
    pub apa_percent: Percent,
    /// Days a quote stays valid by default.
    pub quote_validity_days: u32,
    /// How the total of an accepted quote is paid.
    pub payment_schedule: Vec<Instalment>,
    /// Email template overrides.
    pub templates: Templates,
    /// Largest combined discount of a quote, as a share of its charter fee.
    #[serde(default = "default_discount_cap")]
    pub discount_cap_percent: Percent,
    /// The inquiry widget: fields, destinations, look, success message.
    #[serde(default)]
    pub widget: crate::widget::WidgetSettings,
}

fn default_discount_cap() -> Percent {
    Percent::const_bp(2500)
}

impl Settings {
    /// The defaults for a new company.
    pub fn defaults(company_name: String) -> Self {
        Self {
            company_name,
            notification_emails: Vec::new(),
            mail_from_name: None,
            reply_to: None,
            auto_reply_enabled: true,
            allowed_origins: Vec::new(),
            currency: Currency::EUR,
            vat_percent: Percent::ZERO,
            apa_percent: Percent::const_bp(3000),
            quote_validity_days: 7,
            payment_schedule: vec![
                Instalment {
                    percent: Percent::const_bp(5000),
                    due: InstalmentDue::AtBooking,
                    days: None,
                },
                Instalment {
                    percent: Percent::const_bp(5000),
                    due: InstalmentDue::DaysBeforeEmbarkation,
                    days: Some(30),
                },
            ],
            templates: Templates::new(),
            discount_cap_percent: default_discount_cap(),
            widget: crate::widget::WidgetSettings::default(),
        }
    }
}

/// A change to settings: the fields given replace the stored ones; `null` clears an
/// optional field. Also the settings part of `POST /admin/tenants`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Company name shown to clients.
    pub company_name: Option<String>,
    /// Staff addresses told about new leads (at most 20).
    pub notification_emails: Option<Vec<String>>,
    /// Display name of the sender; `null` clears.
    #[serde(default, deserialize_with = "crate::validation::double_option")]
    #[schema(value_type = Option<String>)]
    pub mail_from_name: Option<Option<String>>,
    /// Reply-To address; `null` clears.
    #[serde(default, deserialize_with = "crate::validation::double_option")]
    #[schema(value_type = Option<String>)]
    pub reply_to: Option<Option<String>>,
    /// Whether a new lead gets an acknowledgement email.
    pub auto_reply_enabled: Option<bool>,
    /// Origins such as `https://charter.example` (at most 20).
    pub allowed_origins: Option<Vec<String>>,
    /// ISO 4217 default currency.
    pub currency: Option<String>,
    /// Default VAT, decimal string.
    pub vat_percent: Option<String>,
    /// Default APA, decimal string.
    pub apa_percent: Option<String>,
    /// 1 to 365.
    pub quote_validity_days: Option<u32>,
    /// Instalments whose percentages add up to 100.
    pub payment_schedule: Option<Vec<Instalment>>,
    /// Template overrides, kind → locale → template; replaces the stored map.
    pub templates: Option<Templates>,
    /// Largest combined discount of a quote, decimal string.
    pub discount_cap_percent: Option<String>,
    /// The inquiry widget's settings; replaces the stored ones (absent parts
    /// take their defaults).
    pub widget: Option<crate::widget::WidgetSettings>,
}

impl SettingsPatch {
    /// Applies the patch to `base`, validating every given field. `prefix` is the
    /// JSON pointer of the patch inside the request body (empty at the top).
    pub fn apply(self, base: &Settings, prefix: &str) -> Result<Settings, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let mut s = base.clone();
        let p = |f: &str| format!("{prefix}/{f}");
        if let Some(v) = self.company_name
            && let Some(v) = e.check(&p("company_name"), clean_text(&v, 200, false))
        {
            s.company_name = v;
        }
        if let Some(list) = self.notification_emails {
            if list.len() > 20 {
                e.add(p("notification_emails"), "at most 20 addresses");
            }
            let mut out = Vec::new();
            for (i, a) in list.iter().enumerate() {
                if let Some(v) = e.check(&format!("{}/{i}", p("notification_emails")), Email::parse(a)) {
                    out.push(v);
                }
            }
            s.notification_emails = out;
        }
        if let Some(v) = self.mail_from_name {
            s.mail_from_name = e
                .check(&p("mail_from_name"), clean_opt(v.as_deref(), 100, false))
                .flatten();
        }
        if let Some(v) = self.reply_to {
            s.reply_to = match v {
                None => None,
                Some(a) => e.check(&p("reply_to"), Email::parse(&a)),
            };
        }
        if let Some(v) = self.auto_reply_enabled {
            s.auto_reply_enabled = v;
        }
        if let Some(list) = self.allowed_origins {
            if list.len() > 20 {
                e.add(p("allowed_origins"), "at most 20 origins");
            }
            let mut out = Vec::new();
            for (i, o) in list.iter().enumerate() {
                if let Some(v) = e.check(&format!("{}/{i}", p("allowed_origins")), parse_origin(o)) {
                    out.push(v);
                }
            }
            s.allowed_origins = out;
        }
        if let Some(v) = self.currency
            && let Some(c) = e.check(&p("currency"), Currency::parse(&v))
        {
            s.currency = c;
        }
        if let Some(v) = self.vat_percent
            && let Some(v) = e.check(&p("vat_percent"), Percent::parse(&v))
        {
            s.vat_percent = v;
        }
        if let Some(v) = self.apa_percent
            && let Some(v) = e.check(&p("apa_percent"), Percent::parse(&v))
        {
            s.apa_percent = v;
        }
        if let Some(v) = self.discount_cap_percent
            && let Some(v) = e.check(&p("discount_cap_percent"), Percent::parse(&v))
        {
            s.discount_cap_percent = v;
        }
        if let Some(w) = self.widget {
            match w.validate(&p("widget")) {
                Ok(w) => s.widget = w,
                Err(errs) => {
                    for f in errs.0 {
                        e.add(f.pointer, f.detail);
                    }
                }
            }
        }
        if let Some(v) = self.quote_validity_days {
            if (1..=365).contains(&v) {
                s.quote_validity_days = v;
            } else {
                e.add(p("quote_validity_days"), "must be from 1 to 365");
            }
        }
        if let Some(v) = self.payment_schedule {
            let ptr = p("payment_schedule");
            if let Err(d) = check_schedule(&v) {
                e.add(ptr, d);
            }
            s.payment_schedule = v;
        }
        if let Some(t) = self.templates {
            for (kind, locales) in &t {
                if !TEMPLATE_KINDS.contains(&kind.as_str()) {
                    e.add(
                        format!("{}/{kind}", p("templates")),
                        format!("unknown template kind; known: {}", TEMPLATE_KINDS.join(", ")),
                    );
                }
                for (locale, tpl) in locales {
                    let at = format!("{}/{kind}/{locale}", p("templates"));
                    if let Err(d) = crate::lead::parse_locale(locale) {
                        e.add(&at, d);
                    }
                    if tpl.subject.trim().is_empty() || tpl.subject.chars().count() > 500 {
                        e.add(format!("{at}/subject"), "must be 1 to 500 characters");
                    }
                    if tpl.text.chars().count() > 50_000 || tpl.html.chars().count() > 50_000 {
                        e.add(&at, "text and html must be at most 50,000 characters each");
                    }
                }
            }
            s.templates = t;
        }
        e.finish(|| s)
    }
}

fn check_schedule(v: &[Instalment]) -> Result<(), String> {
    if v.is_empty() || v.len() > 12 {
        return Err("must have 1 to 12 instalments".into());
    }
    let total: u32 = v.iter().map(|i| i.percent.basis_points()).sum();
    if total != 10_000 {
        return Err("percentages must add up to 100".into());
    }
    for i in v {
        match (i.due, i.days) {
            (InstalmentDue::AtBooking, None) => {}
            (InstalmentDue::AtBooking, Some(_)) => {
                return Err("`days` is only for days_before_embarkation".into());
            }
            (InstalmentDue::DaysBeforeEmbarkation, Some(1..=365)) => {}
            (InstalmentDue::DaysBeforeEmbarkation, _) => {
                return Err("days_before_embarkation needs `days` from 1 to 365".into());
            }
        }
    }
    Ok(())
}

/// A web origin: `scheme://host[:port]`, lower case, no path.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let err = || format!("{s:?} is not an origin such as \"https://charter.example\"");
    let t = s.trim().to_ascii_lowercase();
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .ok_or_else(err)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let ok = !rest.is_empty()
        && rest.len() <= 253
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(err());
    }
    Ok(t.trim_end_matches('/').to_owned())
}

/// A charter company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    /// `ten_` id.
    pub id: TenantId,
    /// Legal or trading name.
    pub name: String,
    /// Unique short name (lower case, digits, dashes).
    pub slug: String,
    /// `active` or `suspended`.
    pub status: TenantStatus,
    /// Emails, quotes, taxes, payment schedule, widget: see `GET /v1/settings`.
    pub settings: Settings,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency counter; bumps on every change.
    #[serde(skip)]
    pub version: i64,
}

/// `POST /admin/tenants` body: the name, an optional slug and any settings.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenantRequest {
    /// Name of the company.
    pub name: String,
    /// Unique short name; made from the name when absent.
    pub slug: Option<String>,
    /// Any settings (the fields of `PATCH /v1/settings`).
    #[serde(flatten)]
    pub settings: SettingsPatch,
}

impl NewTenantRequest {
    /// Validates the request into a new tenant.
    pub fn into_tenant(self, now: DateTime<Utc>) -> Result<Tenant, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let name = e.check("/name", clean_text(&self.name, 200, false));
        let slug = match &self.slug {
            Some(s) => e.check("/slug", parse_slug(s)),
            None => name.as_deref().map(slugify),
        };
        let settings = match name.clone() {
            Some(n) => match self.settings.apply(&Settings::defaults(n), "") {
                Ok(s) => Some(s),
                Err(errs) => {
                    e.0.extend(errs.0);
                    None
                }
            },
            None => None,
        };
        match (name, slug, settings) {
            (Some(name), Some(slug), Some(settings)) if e.is_empty() => Ok(Tenant {
                id: TenantId::generate(),
                name,
                slug,
                status: TenantStatus::Active,
                settings,
                created_at: now,
                updated_at: now,
                version: 1,
            }),
            _ => Err(e),
        }
    }
}

/// Checks a slug: 2 to 63 of `a-z0-9-`, not starting or ending with a dash.
pub fn parse_slug(s: &str) -> Result<String, String> {
    let ok = (2..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 2 to 63 of a-z, 0-9 and inner dashes".into())
    }
}

/// A slug from a name, with a random tail when the name has too few usable letters.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 50 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.len() >= 2 {
        out
    } else {
        format!("tenant-{}", &crate::id::TenantId::generate().as_str()[20..])
    }
}

/// `PATCH /admin/tenants/{id}` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    /// New name.
    pub name: Option<String>,
    /// `active` or `suspended`.
    pub status: Option<TenantStatus>,
    /// Settings to change.
    #[serde(flatten)]
    pub settings: SettingsPatch,
}

impl TenantPatch {
    /// The tenant after the patch.
    pub fn apply(self, t: &Tenant, now: DateTime<Utc>) -> Result<Tenant, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let mut out = t.clone();
        if let Some(n) = self.name
            && let Some(n) = e.check("/name", clean_text(&n, 200, false))
        {
            out.name = n;
        }
        if let Some(s) = self.status {
            out.status = s;
        }
        match self.settings.apply(&t.settings, "") {
            Ok(s) => out.settings = s,
            Err(errs) => e.0.extend(errs.0),
        }
        out.updated_at = now;
        out.version = t.version + 1;
        e.finish(|| out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Aegean Blue Charters!"), "aegean-blue-charters");
        assert!(slugify("Ωμέγα").starts_with("tenant-"));
        assert!(parse_slug("ok-slug").is_ok());
        assert!(parse_slug("-bad").is_err());
        assert!(parse_slug("Bad").is_err());
    }

    #[test]
    fn origins() {
        assert_eq!(
            parse_origin("https://Charter.Example/"),
            Ok("https://charter.example".into())
        );
        assert_eq!(
            parse_origin("http://localhost:3000"),
            Ok("http://localhost:3000".into())
        );
        assert!(parse_origin("https://charter.example/path").is_err());
        assert!(parse_origin("*").is_err());
        assert!(parse_origin("ftp://x").is_err());
    }

    #[test]
    fn schedule_must_add_up() {
        let d = Settings::defaults("X".into());
        assert!(check_schedule(&d.payment_schedule).is_ok());
        let patch: SettingsPatch =
            serde_json::from_str(r#"{"payment_schedule":[{"percent":"60","due":"at_booking"}]}"#).expect("json");
        assert!(patch.apply(&d, "").is_err());
    }

    #[test]
    fn patch_null_clears_and_absent_keeps() {
        let mut d = Settings::defaults("X".into());
        d.reply_to = Some(Email::parse("a@b.co").expect("valid"));
        d.mail_from_name = Some("Sea".into());
        let patch: SettingsPatch = serde_json::from_str(r#"{"reply_to": null}"#).expect("json");
        let s = patch.apply(&d, "").expect("valid");
        assert_eq!(s.reply_to, None);
        assert_eq!(s.mail_from_name.as_deref(), Some("Sea"));
    }
}
