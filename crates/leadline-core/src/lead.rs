//! Leads: one inquiry each, validated on capture, moved along the sales pipeline.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{LeadId, TenantId, YachtId};
use crate::money::Money;
use crate::text::{Email, Phone, clean_opt, clean_text};
use crate::validation::ValidationErrors;

/// Where a lead is in the sales pipeline.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    /// Just arrived.
    New,
    /// Staff have been in touch.
    Contacted,
    /// A quote was sent.
    Quoted,
    /// A quote was accepted: final.
    Won,
    /// Gone elsewhere; may reopen.
    Lost,
}

impl LeadStatus {
    /// Every status.
    pub const ALL: [LeadStatus; 5] = [Self::New, Self::Contacted, Self::Quoted, Self::Won, Self::Lost];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored or query form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// The pipeline: `new → contacted → quoted → won`; any open status may be lost;
    /// `quoted` may go back to `contacted`; `lost` may reopen to `contacted`; `won`
    /// is final. Staying put is allowed (a no-op).
    pub fn can_move_to(self, to: LeadStatus) -> bool {
        use LeadStatus::*;
        self == to
            || matches!(
                (self, to),
                (New, Contacted)
                    | (Contacted, Quoted)
                    | (Quoted, Won)
                    | (New | Contacted | Quoted, Lost)
                    | (Quoted, Contacted)
                    | (Lost, Contacted)
            )
    }
}

/// Kinds of yacht.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum YachtType {
    SailingYacht,
    Catamaran,
    MotorYacht,
    Gulet,
    PowerCatamaran,
    Superyacht,
}

/// Kinds of charter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CharterType {
    Bareboat,
    Skippered,
    Crewed,
    Cabin,
}

/// Party size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Guests {
    /// Adults.
    #[serde(default)]
    pub adults: u32,
    /// Children.
    #[serde(default)]
    pub children: u32,
}

/// Campaign tracking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
}

/// What the client agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// Must be `true`.
    pub privacy_policy: bool,
    /// May we send marketing.
    #[serde(default)]
    pub marketing: bool,
}

/// `POST /v1/leads` body, as received. Unknown fields are refused.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLeadRequest {
    /// Client's name (required, at most 200 characters).
    pub name: Option<String>,
    /// Client's email (required).
    pub email: Option<String>,
    /// International phone number, normalised to E.164.
    pub phone: Option<String>,
    /// First day of the charter.
    pub charter_from: Option<NaiveDate>,
    /// Last day of the charter (after `charter_from`).
    pub charter_to: Option<NaiveDate>,
    /// Whether the dates may move.
    pub flexible_dates: Option<bool>,
    /// 1 to 60 people in all.
    pub guests: Option<Guests>,
    /// Cruising area.
    pub destination: Option<String>,
    /// Wanted kind of yacht.
    pub yacht_type: Option<YachtType>,
    /// Wanted kind of charter.
    pub charter_type: Option<CharterType>,
    /// A particular yacht.
    pub yacht_id: Option<YachtId>,
    /// What the client means to spend.
    pub budget: Option<Money>,
    /// Sailing experience, free text such as `licensed_skipper`.
    pub experience: Option<String>,
    /// Free text, at most 5,000 characters.
    pub message: Option<String>,
    /// Language for emails, e.g. `en`, `el`, `de-AT`.
    pub locale: Option<String>,
    /// Where the lead came from.
    pub source: Option<String>,
    /// Campaign tracking.
    pub utm: Option<Utm>,
    /// `privacy_policy` must be true.
    pub consent: Option<Consent>,
    /// Signals of the website form that sent the lead (the inquiry widget fills
    /// them); not stored.
    pub form: Option<FormSignals>,
}

/// The shortest time a person takes to fill the form, in milliseconds: a lead
/// sent sooner after the form was shown is taken for a bot's (see
/// [`FormSignals::spam_reason`]).
pub const MIN_FILL_MS: u64 = 3000;

/// What a website form tells about how it was filled, to keep bots out: a
/// submission that trips either signal is answered like a success and dropped.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormSignals {
    /// A field hidden from people; anything in it means a bot filled the form.
    pub honeypot: Option<String>,
    /// Milliseconds from the form being shown to its submission.
    pub elapsed_ms: Option<u64>,
}

impl FormSignals {
    /// Why the submission looks automated (`honeypot`, `too_fast`), if it does.
    pub fn spam_reason(&self, min_fill_ms: u64) -> Option<&'static str> {
        if self.honeypot.as_deref().is_some_and(|h| !h.trim().is_empty()) {
            Some("honeypot")
        } else if self.elapsed_ms.is_some_and(|ms| ms < min_fill_ms) {
            Some("too_fast")
        } else {
            None
        }
    }
}

/// A lead as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Lead {
    /// `lead_` id.
    pub id: LeadId,
    /// Owner.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// Pipeline status.
    pub status: LeadStatus,
    pub name: String,
    pub email: Email,
    /// As typed.
    pub phone: Option<String>,
    /// E.164.
    pub phone_e164: Option<String>,
    pub charter_from: Option<NaiveDate>,
    pub charter_to: Option<NaiveDate>,
    pub flexible_dates: bool,
    pub guests: Option<Guests>,
    pub destination: Option<String>,
    pub yacht_type: Option<YachtType>,
    pub charter_type: Option<CharterType>,
    pub yacht_id: Option<YachtId>,
    pub budget: Option<Money>,
    pub experience: Option<String>,
    pub message: Option<String>,
    pub locale: String,
    pub source: Option<String>,
    pub utm: Option<Utm>,
    pub consent: Consent,
    /// Staff member handling it.
    pub assigned_to: Option<String>,
    /// Staff notes.
    pub notes: Option<String>,
    /// Staff tags.
    pub tags: Vec<String>,
    /// The earlier lead with the same email and dates, when this one came within
    /// ten minutes of it.
    pub duplicate_of: Option<LeadId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency counter; bumps on every change.
    #[serde(skip)]
    pub version: i64,
    /// When the personal data was erased; an erased lead is gone from the API.
    #[serde(skip)]
    pub erased_at: Option<DateTime<Utc>>,
}

/// How long after a lead the same email and dates count as a duplicate.
pub const DUPLICATE_WINDOW: Duration = Duration::minutes(10);

/// The pipeline's verbs: each returns the lead after the move (`version` one
/// higher, `updated_at` = `now`), or `None` when the lead stays where it is.
impl Lead {
    fn moved(&self, to: LeadStatus, now: DateTime<Utc>) -> Lead {
        Lead {
            status: to,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// A quote was sent: a new or contacted lead is now `quoted`.
    pub fn mark_quoted(&self, now: DateTime<Utc>) -> Option<Lead> {
        matches!(self.status, LeadStatus::New | LeadStatus::Contacted).then(|| self.moved(LeadStatus::Quoted, now))
    }

    /// A quote was accepted: a quoted lead is now `won` (a lead moved back meanwhile
    /// stays where staff put it).
    pub fn mark_won(&self, now: DateTime<Utc>) -> Option<Lead> {
        (self.status == LeadStatus::Quoted).then(|| self.moved(LeadStatus::Won, now))
    }

    /// The key that finds duplicates: email (any case) and dates.
    pub fn dedupe_key(&self) -> String {
        let d = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        format!(
            "{}|{}|{}",
            self.email.match_key(),
            d(self.charter_from),
            d(self.charter_to)
        )
    }
}

/// Checks a locale tag such as `en`, `el` or `pt-BR` (lower-cases the language).
pub fn parse_locale(s: &str) -> Result<String, String> {
    let mut parts = s.split('-');
    let lang = parts.next().unwrap_or_default();
    let ok = (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_alphabetic())
        && s.len() <= 35
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        let (l, rest) = s.split_at(lang.len());
        Ok(format!("{}{rest}", l.to_ascii_lowercase()))
    } else {
        Err(format!("{s:?} is not a language tag such as \"en\" or \"pt-BR\""))
    }
}

impl NewLeadRequest {
    /// Validates every rule of lead capture, all at once; `today` is the tenant-
    /// independent UTC date used for "not in the past".
    pub fn validate(self, tenant_id: &TenantId, now: DateTime<Utc>) -> Result<Lead, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let today = now.date_naive();
        let name = match self.name.as_deref() {
            None => {
                e.add("/name", "is required");
                None
            }
            Some(n) => e.check("/name", clean_text(n, 200, false)),
        };
        let email = match self.email.as_deref() {
            None => {
                e.add("/email", "is required");
                None
            }
            Some(m) => e.check("/email", Email::parse(m)),
        };
        let phone = match self.phone.as_deref() {
            Some(p) if !p.trim().is_empty() => e.check("/phone", Phone::parse(p)),
            _ => None,
        };
        for (p, d) in [("/charter_from", self.charter_from), ("/charter_to", self.charter_to)] {
            if d.is_some_and(|d| !crate::validation::date_in_range(d)) {
                e.add(p, crate::validation::DATE_RANGE);
            }
        }
        match (self.charter_from, self.charter_to) {
            (Some(f), Some(t)) => {
                if f < today {
                    e.add("/charter_from", "must not be in the past");
                }
                if t <= f {
                    e.add("/charter_to", "must be after charter_from");
                }
            }
            (Some(_), None) => e.add("/charter_to", "is required with charter_from"),
            (None, Some(_)) => e.add("/charter_from", "is required with charter_to"),
            (None, None) => {}
        }
        if let Some(g) = self.guests {
            let total = u64::from(g.adults) + u64::from(g.children);
            if !(1..=60).contains(&total) {
                e.add("/guests", "must be 1 to 60 people in all");
            }
        }
        let destination = e
            .check("/destination", clean_opt(self.destination.as_deref(), 200, false))
            .flatten();
        let budget = match self.budget {
            Some(b) => e.check("/budget/amount", b.positive()),
            None => None,
        };
        let experience = e
            .check("/experience", clean_opt(self.experience.as_deref(), 100, false))
            .flatten();
        let message = e
            .check("/message", clean_opt(self.message.as_deref(), 5000, true))
            .flatten();
        let locale = match self.locale.as_deref() {
            None => Some("en".to_owned()),
            Some(l) => e.check("/locale", parse_locale(l.trim())),
        };
        let source = e
            .check("/source", clean_opt(self.source.as_deref(), 100, false))
            .flatten();
        let utm = self.utm.map(|u| {
            let mut f = |name: &str, v: Option<String>| {
                e.check(&format!("/utm/{name}"), clean_opt(v.as_deref(), 200, false))
                    .flatten()
            };
            Utm {
                source: f("source", u.source),
                medium: f("medium", u.medium),
                campaign: f("campaign", u.campaign),
                term: f("term", u.term),
                content: f("content", u.content),
            }
        });
        match self.consent {
            Some(c) if c.privacy_policy => {}
            Some(_) => e.add(
                "/consent/privacy_policy",
                "must be true: the client must accept the privacy policy",
            ),
            None => e.add("/consent/privacy_policy", "is required and must be true"),
        }
        let (Some(name), Some(email), Some(locale)) = (name, email, locale) else {
            return Err(e);
        };
        let consent = self.consent.unwrap_or(Consent {
            privacy_policy: false,
            marketing: false,
        });
        e.finish(|| Lead {
            id: LeadId::generate(),
            tenant_id: tenant_id.clone(),
            status: LeadStatus::New,
            name,
            email,
            phone: phone.as_ref().map(|p| p.raw.clone()),
            phone_e164: phone.map(|p| p.e164),
            charter_from: self.charter_from,
            charter_to: self.charter_to,
            flexible_dates: self.flexible_dates.unwrap_or(false),
            guests: self.guests,
            destination,
            yacht_type: self.yacht_type,
            charter_type: self.charter_type,
            yacht_id: self.yacht_id,
            budget,
            experience,
            message,
            locale,
            source,
            utm,
            consent,
            assigned_to: None,
            notes: None,
            tags: Vec::new(),
            duplicate_of: None,
            created_at: now,
            updated_at: now,
            version: 1,
            erased_at: None,
        })
    }
}

/// `PATCH /v1/leads/{id}` body.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadPatch {
    /// New pipeline status; illegal moves answer 409.
    pub status: Option<LeadStatus>,
    /// Staff member; `null` clears.
    #[serde(default, deserialize_with = "crate::validation::double_option")]
    #[schema(value_type = Option<String>)]
    pub assigned_to: Option<Option<String>>,
    /// Notes; `null` clears.
    #[serde(default, deserialize_with = "crate::validation::double_option")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
    /// Replaces the tags (at most 20, each at most 50 characters).
    pub tags: Option<Vec<String>>,
}

/// Why a patch cannot apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// Bad field values.
    Invalid(ValidationErrors),
    /// The status move is not allowed by the pipeline.
    IllegalMove {
        /// Current status.
        from: LeadStatus,
        /// Asked-for status.
        to: LeadStatus,
    },
}

impl LeadPatch {
    /// The lead after the patch.
    pub fn apply(self, lead: &Lead, now: DateTime<Utc>) -> Result<Lead, PatchError> {
        let mut e = ValidationErrors::new();
        let mut out = lead.clone();
        if let Some(v) = self.assigned_to {
            out.assigned_to = e.check("/assigned_to", clean_opt(v.as_deref(), 200, false)).flatten();
        }
        if let Some(v) = self.notes {
            out.notes = e.check("/notes", clean_opt(v.as_deref(), 10_000, true)).flatten();
        }
        if let Some(tags) = self.tags {
            if tags.len() > 20 {
                e.add("/tags", "at most 20 tags");
            }
            let mut clean = Vec::new();
            for (i, t) in tags.iter().enumerate() {
                if let Some(t) = e.check(&format!("/tags/{i}"), clean_text(t, 50, false))
                    && !clean.contains(&t)
                {
                    clean.push(t);
                }
            }
            out.tags = clean;
        }
        if !e.is_empty() {
            return Err(PatchError::Invalid(e));
        }
        if let Some(to) = self.status
            && !lead.status.can_move_to(to)
        {
            return Err(PatchError::IllegalMove { from: lead.status, to });
        }
        Ok(out.moved(self.status.unwrap_or(lead.status), now))
    }
}

/// The personal data of a lead removed (GDPR erasure); what stays is what the
/// business needs that identifies nobody.
pub fn erase(lead: &Lead, now: DateTime<Utc>) -> Lead {
    Lead {
        name: "[erased]".into(),
        email: Email::parse("erased@erased.invalid").unwrap_or_else(|_| lead.email.clone()),
        phone: None,
        phone_e164: None,
        message: None,
        notes: None,
        assigned_to: None,
        experience: None,
        utm: None,
        tags: Vec::new(),
        updated_at: now,
        version: lead.version + 1,
        erased_at: Some(now),
        ..lead.clone()
    }
}

/// Filters of `GET /v1/leads`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadFilter {
    /// Only this status.
    pub status: Option<LeadStatus>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Text in name or email, or digits in the phone number.
    pub q: Option<String>,
    /// Only leads for this yacht.
    pub yacht_id: Option<YachtId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req() -> NewLeadRequest {
        serde_json::from_str(
            r#"{"name":" Maria ","email":"maria@example.com","phone":"+30 694 123 4567",
            "charter_from":"2099-07-10","charter_to":"2099-07-17","guests":{"adults":6,"children":2},
            "consent":{"privacy_policy":true}}"#,
        )
        .expect("json")
    }

    #[test]
    fn valid_lead() {
        let l = req().validate(&TenantId::generate(), Utc::now()).expect("valid");
        assert_eq!(l.name, "Maria");
        assert_eq!(l.phone_e164.as_deref(), Some("+306941234567"));
        assert_eq!(l.status, LeadStatus::New);
        assert_eq!(l.locale, "en");
    }

    #[test]
    fn all_errors_are_reported_together() {
        let mut r = req();
        r.name = None;
        r.email = Some("nope".into());
        r.guests = Some(Guests {
            adults: 50,
            children: 11,
        });
        r.consent = None;
        let e = r.validate(&TenantId::generate(), Utc::now()).expect_err("invalid");
        let ptrs: Vec<_> = e.0.iter().map(|f| f.pointer.as_str()).collect();
        assert_eq!(ptrs, ["/name", "/email", "/guests", "/consent/privacy_policy"]);
    }

    #[test]
    fn pipeline_moves() {
        use LeadStatus::*;
        let allowed = [
            (New, Contacted),
            (Contacted, Quoted),
            (Quoted, Won),
            (New, Lost),
            (Contacted, Lost),
            (Quoted, Lost),
            (Quoted, Contacted),
            (Lost, Contacted),
        ];
        for from in LeadStatus::ALL {
            for to in LeadStatus::ALL {
                let expect = from == to || allowed.contains(&(from, to));
                assert_eq!(from.can_move_to(to), expect, "{from:?} -> {to:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn date_range_rule(from_off in -30i64..400, len in -10i64..30) {
            let now = Utc::now();
            let from = now.date_naive() + Duration::days(from_off);
            let to = from + Duration::days(len);
            let mut r = req();
            r.charter_from = Some(from);
            r.charter_to = Some(to);
            let ok = r.validate(&TenantId::generate(), now).is_ok();
            prop_assert_eq!(ok, from_off >= 0 && len > 0);
        }

        #[test]
        fn guests_rule(adults in 0u32..80, children in 0u32..80) {
            let mut r = req();
            r.guests = Some(Guests { adults, children });
            let ok = r.validate(&TenantId::generate(), Utc::now()).is_ok();
            prop_assert_eq!(ok, (1..=60).contains(&(adults + children)));
        }
    }
}

#[cfg(test)]
mod verbs {
    use super::*;

    #[test]
    fn the_pipeline_verbs_follow_the_pipeline() {
        let now = Utc::now();
        let base = tests_support::lead(now);
        for from in [
            LeadStatus::New,
            LeadStatus::Contacted,
            LeadStatus::Quoted,
            LeadStatus::Won,
            LeadStatus::Lost,
        ] {
            let l = Lead {
                status: from,
                ..base.clone()
            };
            // Sending a quote skips `contacted`; an acceptance wins a quoted lead only.
            let quoted = matches!(from, LeadStatus::New | LeadStatus::Contacted);
            let won = from == LeadStatus::Quoted;
            for (verb, to, moves) in [
                (l.mark_quoted(now), LeadStatus::Quoted, quoted),
                (l.mark_won(now), LeadStatus::Won, won),
            ] {
                assert_eq!(verb.is_some(), moves, "{from:?} → {to:?}");
                if let Some(next) = verb {
                    assert_eq!((next.status, next.version, next.updated_at), (to, l.version + 1, now));
                }
            }
        }
    }

    mod tests_support {
        use super::super::*;

        pub fn lead(now: DateTime<Utc>) -> Lead {
            let req = NewLeadRequest {
                name: Some("Maria".into()),
                email: Some("maria@example.com".into()),
                consent: Some(Consent {
                    privacy_policy: true,
                    marketing: false,
                }),
                ..Default::default()
            };
            req.validate(&TenantId::generate(), now).expect("valid")
        }
    }
}
