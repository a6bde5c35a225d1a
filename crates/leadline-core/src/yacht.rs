//! Yachts of a tenant's fleet: seasonal rate bands and extras.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{TenantId, YachtId};
use crate::lead::{CharterType, YachtType};
use crate::money::{Currency, Money};
use crate::percent::Percent;
use crate::text::{clean_opt, clean_text};
use crate::validation::ValidationErrors;

/// A season: the nights that start from `from` through `to` (both inclusive) cost
/// `weekly_rate` a week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateBand {
    /// Name, e.g. `high`.
    pub season: String,
    /// First night.
    pub from: NaiveDate,
    /// Last night.
    pub to: NaiveDate,
    /// Price of seven nights, in the yacht's currency.
    pub weekly_rate: Money,
}

/// How an extra is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtraUnit {
    PerCharter,
    PerDay,
    PerPerson,
    PerPersonDay,
    PerWeek,
}

/// When an extra is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtraPaid {
    /// In the quote's total.
    WithBooking,
    /// Paid locally at the base: listed, not in the total.
    AtBase,
    /// Part of the price: listed at zero.
    Included,
}

/// An extra (skipper, linen, outboard, transfer...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extra {
    /// Short code used when quoting, unique per yacht.
    pub code: String,
    /// Name shown to the client.
    pub name: String,
    /// Price per unit.
    pub price: Money,
    /// How the price is counted: per charter, day, person, person and day, or week.
    pub unit: ExtraUnit,
    /// Always charged.
    #[serde(default)]
    pub mandatory: bool,
    /// Paid with the booking, at the base, or included in the fee.
    pub paid: ExtraPaid,
    /// Whether VAT applies to it.
    #[serde(default)]
    pub taxable: bool,
}

/// A yacht.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Yacht {
    /// `yacht_` id.
    pub id: YachtId,
    /// Owner.
    #[serde(skip_serializing, default = "TenantId::unset")]
    #[schema(ignore)]
    pub tenant_id: TenantId,
    pub name: String,
    #[serde(rename = "type")]
    pub yacht_type: YachtType,
    /// Length overall in metres.
    pub length_m: Option<f64>,
    pub cabins: Option<u32>,
    pub max_guests: u32,
    pub home_port: Option<String>,
    /// Kinds of charter offered.
    pub charter_types: Vec<CharterType>,
    /// Currency of every price of the yacht.
    pub currency: Currency,
    /// Shortest charter in nights.
    pub min_nights: u32,
    /// APA of crewed charters, overriding the tenant's.
    pub apa_percent: Option<Percent>,
    /// Security deposit (not part of the price).
    pub security_deposit: Option<Money>,
    /// Seasons.
    pub rates: Vec<RateBand>,
    /// Extras a quote may add (skipper, linen...), each with a unique code.
    pub extras: Vec<Extra>,
    /// When archived (`DELETE`); archived yachts cannot be quoted.
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency counter.
    #[serde(skip_serializing, default)]
    #[schema(ignore)]
    pub version: i64,
}

/// `POST /v1/yachts` body, also the fields of `PATCH` (all optional there).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YachtInput {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub yacht_type: Option<YachtType>,
    pub length_m: Option<f64>,
    pub cabins: Option<u32>,
    pub max_guests: Option<u32>,
    pub home_port: Option<String>,
    pub charter_types: Option<Vec<CharterType>>,
    pub currency: Option<Currency>,
    pub min_nights: Option<u32>,
    pub apa_percent: Option<Percent>,
    pub security_deposit: Option<Money>,
    pub rates: Option<Vec<RateBand>>,
    pub extras: Option<Vec<Extra>>,
}

impl Yacht {
    /// The yacht archived at `now`: out of the fleet list and of new quotes; its
    /// bookings and quotes stay. `None` when it is archived already.
    pub fn archive(&self, now: DateTime<Utc>) -> Option<Yacht> {
        self.archived_at.is_none().then(|| Yacht {
            archived_at: Some(now),
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        })
    }
}

impl YachtInput {
    /// Applies the input on `base` (a new yacht when `None`) and validates the whole.
    pub fn apply(
        self,
        base: Option<&Yacht>,
        tenant: &TenantId,
        default_currency: Currency,
        now: DateTime<Utc>,
    ) -> Result<Yacht, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let mut y = match base {
            Some(b) => b.clone(),
            None => {
                if self.name.is_none() {
                    e.add("/name", "is required");
                }
                if self.yacht_type.is_none() {
                    e.add("/type", "is required");
                }
                if self.max_guests.is_none() {
                    e.add("/max_guests", "is required");
                }
                Yacht {
                    id: YachtId::generate(),
                    tenant_id: tenant.clone(),
                    name: String::new(),
                    yacht_type: YachtType::SailingYacht,
                    length_m: None,
                    cabins: None,
                    max_guests: 1,
                    home_port: None,
                    charter_types: Vec::new(),
                    currency: self.currency.unwrap_or(default_currency),
                    min_nights: 1,
                    apa_percent: None,
                    security_deposit: None,
                    rates: Vec::new(),
                    extras: Vec::new(),
                    archived_at: None,
                    created_at: now,
                    updated_at: now,
                    version: 0,
                }
            }
        };
        if let Some(n) = self.name
            && let Some(n) = e.check("/name", clean_text(&n, 200, false))
        {
            y.name = n;
        }
        if let Some(t) = self.yacht_type {
            y.yacht_type = t;
        }
        if let Some(l) = self.length_m {
            if !(l.is_finite() && l > 0.0 && l < 200.0) {
                e.add("/length_m", "must be a length in metres, above 0 and below 200");
            }
            y.length_m = Some(l);
        }
        if let Some(c) = self.cabins {
            y.cabins = Some(c);
        }
        if let Some(g) = self.max_guests {
            if !(1..=60).contains(&g) {
                e.add("/max_guests", "must be from 1 to 60");
            }
            y.max_guests = g;
        }
        if let Some(h) = self.home_port {
            y.home_port = e.check("/home_port", clean_opt(Some(&h), 200, false)).flatten();
        }
        if let Some(c) = self.charter_types {
            y.charter_types = c;
        }
        if let Some(c) = self.currency {
            y.currency = c;
        }
        if let Some(m) = self.min_nights {
            if !(1..=90).contains(&m) {
                e.add("/min_nights", "must be from 1 to 90");
            }
            y.min_nights = m;
        }
        if let Some(a) = self.apa_percent {
            y.apa_percent = Some(a);
        }
        if let Some(d) = self.security_deposit {
            y.security_deposit = Some(d);
        }
        if let Some(r) = self.rates {
            y.rates = r;
        }
        if let Some(x) = self.extras {
            y.extras = x;
        }
        // The whole, whatever changed.
        if let Some(d) = &y.security_deposit
            && (!d.in_range() || d.currency != y.currency)
        {
            e.add(
                "/security_deposit",
                "must be a non-negative amount in the yacht's currency, at most 10^13 minor units",
            );
        }
        if y.rates.len() > 100 {
            e.add("/rates", "at most 100 rate bands");
        }
        for (i, b) in y.rates.iter().enumerate() {
            let p = format!("/rates/{i}");
            if let Err(why) = clean_text(&b.season, 100, false) {
                e.add(format!("{p}/season"), why);
            }
            if b.to < b.from {
                e.add(format!("{p}/to"), "must not be before `from`");
            }
            for (f, d) in [("from", b.from), ("to", b.to)] {
                if !crate::validation::date_in_range(d) {
                    e.add(format!("{p}/{f}"), crate::validation::DATE_RANGE);
                }
            }
            if b.weekly_rate.amount <= 0 || !b.weekly_rate.in_range() || b.weekly_rate.currency != y.currency {
                e.add(
                    format!("{p}/weekly_rate"),
                    format!("must be a positive amount in {}, at most 10^13 minor units", y.currency),
                );
            }
            for (j, o) in y.rates.iter().enumerate().skip(i + 1) {
                if b.from <= o.to && o.from <= b.to {
                    e.add(
                        p.to_string(),
                        format!("overlaps rate band {j} ({} to {})", o.from, o.to),
                    );
                }
            }
        }
        if y.extras.len() > 100 {
            e.add("/extras", "at most 100 extras");
        }
        for (i, x) in y.extras.iter().enumerate() {
            let p = format!("/extras/{i}");
            let code_ok = (1..=50).contains(&x.code.len())
                && x.code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !code_ok {
                e.add(format!("{p}/code"), "must be 1 to 50 of a-z, 0-9, _ and -");
            }
            if y.extras.iter().take(i).any(|o| o.code == x.code) {
                e.add(format!("{p}/code"), "is used by another extra");
            }
            if let Err(why) = clean_text(&x.name, 200, false) {
                e.add(format!("{p}/name"), why);
            }
            if !x.price.in_range() || x.price.currency != y.currency {
                e.add(
                    format!("{p}/price"),
                    format!(
                        "must be a non-negative amount in {}, at most 10^13 minor units",
                        y.currency
                    ),
                );
            }
        }
        y.updated_at = now;
        y.version += 1;
        e.finish(|| y)
    }
}
