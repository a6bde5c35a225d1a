//! Quotes: a priced offer of a yacht for a lead, sent to the client, who accepts
//! (which books the yacht) or declines it online.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{BookingId, LeadId, QuoteId, TenantId, YachtId};
use crate::lead::{CharterType, Guests};
use crate::money::Money;
use crate::percent::Percent;
use crate::pricing::{DiscountInput, Line, Payment};

/// Where a quote is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum QuoteStatus {
    Draft,
    Sent,
    Accepted,
    Declined,
    Expired,
    Cancelled,
}

impl QuoteStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored or query form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// A quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quote {
    /// `quote_` id.
    pub id: QuoteId,
    /// Owner.
    #[serde(skip_serializing, default = "TenantId::unset")]
    #[schema(ignore)]
    pub tenant_id: TenantId,
    /// The lead it answers.
    pub lead_id: LeadId,
    /// The yacht offered.
    pub yacht_id: YachtId,
    /// The yacht's name when quoted.
    pub yacht_name: String,
    pub status: QuoteStatus,
    pub charter_from: NaiveDate,
    pub charter_to: NaiveDate,
    /// People aboard.
    pub guests: u32,
    pub charter_type: Option<CharterType>,
    /// The lines, in order.
    pub lines: Vec<Line>,
    /// Exactly the sum of the lines.
    pub total: Money,
    /// When the total is paid.
    pub payment_schedule: Vec<Payment>,
    /// Extras paid locally at the base.
    pub payable_at_base: Vec<Line>,
    /// The offer holds until then.
    pub valid_until: DateTime<Utc>,
    /// Notes for the client.
    pub notes: Option<String>,
    /// The client's page, once sent.
    pub url: Option<String>,
    /// The public token (≥ 32 random bytes), set when sent; never in API answers.
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub token: Option<String>,
    /// The booking made by accepting it.
    pub booking_id: Option<BookingId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// When the client accepted or declined.
    pub answered_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency counter.
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub version: i64,
}

/// Why a quote cannot make a move; every refusal is a conflict with its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuoteRefusal {
    /// Only a draft or sent quote is sent (again).
    #[error("A {} quote cannot be sent.", .0.as_str())]
    CannotSend(QuoteStatus),
    /// Its validity has passed: a new quote is needed.
    #[error("The quote's validity has passed; create a new quote.")]
    Lapsed,
    /// Only a draft or sent quote is withdrawn.
    #[error("A {} quote cannot be cancelled.", .0.as_str())]
    CannotCancel(QuoteStatus),
    /// The client answers a sent quote within its validity only.
    #[error("This quote cannot be answered: it is {}.", if *.0 == QuoteStatus::Sent { "expired" } else { .0.as_str() })]
    NotAnswerable(QuoteStatus),
    /// Only a sent quote whose validity has passed expires.
    #[error("A {} quote does not expire now.", .0.as_str())]
    CannotExpire(QuoteStatus),
}

/// The quote's state machine. Each verb returns the quote after the move (its
/// `version` one higher, `updated_at` = `now`) or why the move is refused; the
/// stored quote changes only through them.
///
/// `draft → sent` (and `sent → sent`: sent again) while valid; `draft | sent →
/// cancelled`; `sent → accepted | declined` by the client while valid; `sent →
/// expired` once the validity has passed. Accepted, declined, expired and
/// cancelled are final.
impl Quote {
    /// Whether the client may still answer at `now`.
    pub fn answerable(&self, now: DateTime<Utc>) -> bool {
        self.status == QuoteStatus::Sent && now <= self.valid_until
    }

    fn moved(&self, status: QuoteStatus, now: DateTime<Utc>) -> Quote {
        Quote {
            status,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// Sends (or sends again) the quote: it keeps its token once it has one, else
    /// takes `new_token`.
    pub fn send(&self, new_token: impl FnOnce() -> String, now: DateTime<Utc>) -> Result<Quote, QuoteRefusal> {
        if !matches!(self.status, QuoteStatus::Draft | QuoteStatus::Sent) {
            return Err(QuoteRefusal::CannotSend(self.status));
        }
        if self.valid_until <= now {
            return Err(QuoteRefusal::Lapsed);
        }
        let token = self.token.clone().unwrap_or_else(new_token);
        let mut next = self.moved(QuoteStatus::Sent, now);
        next.token = Some(token);
        next.sent_at = Some(now);
        Ok(next)
    }

    /// Withdraws a draft or sent quote.
    pub fn cancel(&self, now: DateTime<Utc>) -> Result<Quote, QuoteRefusal> {
        if !matches!(self.status, QuoteStatus::Draft | QuoteStatus::Sent) {
            return Err(QuoteRefusal::CannotCancel(self.status));
        }
        Ok(self.moved(QuoteStatus::Cancelled, now))
    }

    /// The client accepts: the quote and the booking of its yacht for its nights.
    pub fn accept(&self, now: DateTime<Utc>) -> Result<(Quote, Booking), QuoteRefusal> {
        if !self.answerable(now) {
            return Err(QuoteRefusal::NotAnswerable(self.status));
        }
        let booking = Booking {
            id: BookingId::generate(),
            tenant_id: self.tenant_id.clone(),
            yacht_id: self.yacht_id.clone(),
            quote_id: self.id.clone(),
            lead_id: self.lead_id.clone(),
            charter_from: self.charter_from,
            charter_to: self.charter_to,
            created_at: now,
        };
        let mut next = self.moved(QuoteStatus::Accepted, now);
        next.answered_at = Some(now);
        next.booking_id = Some(booking.id.clone());
        Ok((next, booking))
    }

    /// The client declines.
    pub fn decline(&self, now: DateTime<Utc>) -> Result<Quote, QuoteRefusal> {
        if !self.answerable(now) {
            return Err(QuoteRefusal::NotAnswerable(self.status));
        }
        let mut next = self.moved(QuoteStatus::Declined, now);
        next.answered_at = Some(now);
        Ok(next)
    }

    /// A sent quote whose validity has passed expires.
    pub fn expire(&self, now: DateTime<Utc>) -> Result<Quote, QuoteRefusal> {
        if self.status != QuoteStatus::Sent || now <= self.valid_until {
            return Err(QuoteRefusal::CannotExpire(self.status));
        }
        Ok(self.moved(QuoteStatus::Expired, now))
    }
}

/// `POST /v1/quotes` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewQuoteRequest {
    /// The lead.
    pub lead_id: String,
    /// The yacht.
    pub yacht_id: String,
    /// Default: the lead's.
    pub charter_from: Option<NaiveDate>,
    /// Default: the lead's.
    pub charter_to: Option<NaiveDate>,
    /// Default: the lead's.
    pub guests: Option<Guests>,
    /// Default: the lead's.
    pub charter_type: Option<CharterType>,
    /// Optional extras chosen, by code.
    #[serde(default)]
    pub extras: Vec<String>,
    /// Discounts, in order.
    #[serde(default)]
    pub discounts: Vec<DiscountInput>,
    /// Default: the tenant's.
    pub vat_percent: Option<Percent>,
    /// Default: the yacht's, else the tenant's.
    pub apa_percent: Option<Percent>,
    /// Minor units.
    pub delivery_fee: Option<i64>,
    /// Default: now plus the tenant's `quote_validity_days`.
    pub valid_until: Option<DateTime<Utc>>,
    /// Notes for the client.
    pub notes: Option<String>,
}

/// Whether two stays share a night. A stay is its nights `[from, to)`: the next
/// charter may start on the day the previous one ends.
pub fn nights_overlap(a: (NaiveDate, NaiveDate), b: (NaiveDate, NaiveDate)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// A booking: the yacht is taken for these nights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Booking {
    /// `bkg_` id.
    pub id: BookingId,
    /// Owner.
    #[serde(skip_serializing, default = "TenantId::unset")]
    #[schema(ignore)]
    pub tenant_id: TenantId,
    pub yacht_id: YachtId,
    pub quote_id: QuoteId,
    pub lead_id: LeadId,
    /// First day.
    pub charter_from: NaiveDate,
    /// Last day; the next charter may start on it.
    pub charter_to: NaiveDate,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn draft(now: DateTime<Utc>) -> Quote {
        Quote {
            id: QuoteId::generate(),
            tenant_id: TenantId::generate(),
            lead_id: LeadId::generate(),
            yacht_id: YachtId::generate(),
            yacht_name: "Meltemi".into(),
            status: QuoteStatus::Draft,
            charter_from: now.date_naive() + chrono::Duration::days(30),
            charter_to: now.date_naive() + chrono::Duration::days(37),
            guests: 4,
            charter_type: None,
            lines: Vec::new(),
            total: Money {
                amount: 700_000,
                currency: crate::money::Currency::EUR,
            },
            payment_schedule: Vec::new(),
            payable_at_base: Vec::new(),
            valid_until: now + chrono::Duration::days(7),
            notes: None,
            url: None,
            token: None,
            booking_id: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
            answered_at: None,
            version: 1,
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Verb {
        Send,
        Cancel,
        Accept,
        Decline,
        Expire,
    }

    fn verb() -> impl Strategy<Value = Verb> {
        prop_oneof![
            Just(Verb::Send),
            Just(Verb::Cancel),
            Just(Verb::Accept),
            Just(Verb::Decline),
            Just(Verb::Expire),
        ]
    }

    const FINAL: [QuoteStatus; 4] = [
        QuoteStatus::Accepted,
        QuoteStatus::Declined,
        QuoteStatus::Expired,
        QuoteStatus::Cancelled,
    ];

    proptest! {
        /// No sequence of verbs, at any times, reaches an illegal state: final
        /// states stay final, every move bumps the version by one, a sent quote
        /// has its token, an answer comes within the validity and an accepted
        /// quote has its booking, an expiry comes after the validity.
        #[test]
        fn no_sequence_of_verbs_reaches_an_illegal_state(
            steps in proptest::collection::vec((verb(), 0i64..14 * 24), 1..12),
        ) {
            let start = Utc::now();
            let mut q = draft(start);
            let mut token: Option<String> = None;
            for (v, hours) in steps {
                let now = start + chrono::Duration::hours(hours);
                let before = q.clone();
                let result = match v {
                    Verb::Send => q.send(|| "tok".to_owned(), now),
                    Verb::Cancel => q.cancel(now),
                    Verb::Accept => q.accept(now).map(|(next, booking)| {
                        assert_eq!(next.booking_id.as_ref(), Some(&booking.id));
                        assert_eq!((booking.charter_from, booking.charter_to), (q.charter_from, q.charter_to));
                        next
                    }),
                    Verb::Decline => q.decline(now),
                    Verb::Expire => q.expire(now),
                };
                match result {
                    Err(_) => {}
                    Ok(next) => {
                        prop_assert!(!FINAL.contains(&before.status), "{:?} left final {:?}", v, before.status);
                        prop_assert_eq!(next.version, before.version + 1);
                        prop_assert_eq!(next.updated_at, now);
                        match next.status {
                            QuoteStatus::Sent => {
                                prop_assert!(now < next.valid_until);
                                prop_assert!(next.token.is_some());
                                if let Some(t) = &token {
                                    prop_assert_eq!(next.token.as_ref(), Some(t), "a resent quote keeps its link");
                                }
                                token = next.token.clone();
                            }
                            QuoteStatus::Accepted | QuoteStatus::Declined => {
                                prop_assert_eq!(before.status, QuoteStatus::Sent);
                                prop_assert!(now <= next.valid_until);
                                prop_assert_eq!(next.answered_at, Some(now));
                                prop_assert_eq!(next.booking_id.is_some(), next.status == QuoteStatus::Accepted);
                            }
                            QuoteStatus::Expired => {
                                prop_assert_eq!(before.status, QuoteStatus::Sent);
                                prop_assert!(now > next.valid_until);
                            }
                            QuoteStatus::Cancelled => {
                                prop_assert!(matches!(before.status, QuoteStatus::Draft | QuoteStatus::Sent));
                            }
                            QuoteStatus::Draft => prop_assert!(false, "nothing returns to draft"),
                        }
                        q = next;
                    }
                }
            }
        }
    }

    #[test]
    fn stays_overlap_when_they_share_a_night() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let week = (d("2030-07-06"), d("2030-07-13"));
        assert!(nights_overlap(week, (d("2030-07-12"), d("2030-07-19"))));
        assert!(nights_overlap(week, (d("2030-07-01"), d("2030-07-07"))));
        assert!(nights_overlap(week, (d("2030-07-08"), d("2030-07-09"))), "inside");
        assert!(nights_overlap(week, (d("2030-07-01"), d("2030-07-31"))), "around");
        assert!(
            !nights_overlap(week, (d("2030-07-13"), d("2030-07-20"))),
            "starts the day it ends"
        );
        assert!(
            !nights_overlap(week, (d("2030-06-29"), d("2030-07-06"))),
            "ends the day it starts"
        );
    }

    #[test]
    fn refusals_say_why() {
        let now = Utc::now();
        let q = draft(now);
        assert_eq!(
            q.accept(now).map(|_| ()),
            Err(QuoteRefusal::NotAnswerable(QuoteStatus::Draft))
        );
        let sent = q.send(|| "t".into(), now).expect("send");
        let late = now + chrono::Duration::days(8);
        assert_eq!(sent.decline(late), Err(QuoteRefusal::NotAnswerable(QuoteStatus::Sent)));
        assert_eq!(
            QuoteRefusal::NotAnswerable(QuoteStatus::Sent).to_string(),
            "This quote cannot be answered: it is expired."
        );
        assert_eq!(sent.send(|| "u".into(), late), Err(QuoteRefusal::Lapsed));
        let expired = sent.expire(late).expect("expire");
        assert_eq!(
            expired.cancel(late),
            Err(QuoteRefusal::CannotCancel(QuoteStatus::Expired))
        );
        assert_eq!(expired.status, QuoteStatus::Expired);
    }
}
