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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
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
        match self {
            Self::Draft => "draft",
            Self::Sent => "sent",
            Self::Accepted => "accepted",
            Self::Declined => "declined",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// From the stored or query form.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Draft,
            Self::Sent,
            Self::Accepted,
            Self::Declined,
            Self::Expired,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
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
    #[allow(missing_docs)]
    pub status: QuoteStatus,
    #[allow(missing_docs)]
    pub charter_from: NaiveDate,
    #[allow(missing_docs)]
    pub charter_to: NaiveDate,
    /// People aboard.
    pub guests: u32,
    #[allow(missing_docs)]
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
    #[allow(missing_docs)]
    pub created_at: DateTime<Utc>,
    #[allow(missing_docs)]
    pub updated_at: DateTime<Utc>,
    #[allow(missing_docs)]
    pub sent_at: Option<DateTime<Utc>>,
    /// When the client accepted or declined.
    pub answered_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency counter.
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub version: i64,
}

impl Quote {
    /// Whether the client may still answer at `now`.
    pub fn answerable(&self, now: DateTime<Utc>) -> bool {
        self.status == QuoteStatus::Sent && now <= self.valid_until
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

/// A booking: the yacht is taken for these nights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Booking {
    /// `bkg_` id.
    pub id: BookingId,
    /// Owner.
    #[serde(skip_serializing, default = "TenantId::unset")]
    #[schema(ignore)]
    pub tenant_id: TenantId,
    #[allow(missing_docs)]
    pub yacht_id: YachtId,
    #[allow(missing_docs)]
    pub quote_id: QuoteId,
    #[allow(missing_docs)]
    pub lead_id: LeadId,
    /// First day.
    pub charter_from: NaiveDate,
    /// Last day; the next charter may start on it.
    pub charter_to: NaiveDate,
    #[allow(missing_docs)]
    pub created_at: DateTime<Utc>,
}
