//! The pricing engine: pure, integer minor units, half-to-even rounding at each
//! line, and a total that is exactly the sum of the lines. See `docs/pricing.md`.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::percent::Percent;
use crate::tenant::{Instalment, InstalmentDue};
use crate::validation::ValidationErrors;
use crate::yacht::{ExtraPaid, ExtraUnit, Yacht};

/// `num / den` rounded half to even (banker's rounding); `den > 0`.
pub fn round_half_even(num: i128, den: i128) -> i128 {
    let q = num.div_euclid(den);
    let r = num.rem_euclid(den);
    match (2 * r).cmp(&den) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => {
            if q % 2 == 0 {
                q
            } else {
                q + 1
            }
        }
    }
}

/// `amount × percent`, rounded half to even.
pub fn percent_of(amount: i64, p: Percent) -> i64 {
    clamp(round_half_even(
        i128::from(amount) * i128::from(p.basis_points()),
        10_000,
    ))
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// A discount as asked for: a percentage or a fixed amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscountInput {
    /// Shown to the client.
    pub label: String,
    /// A percentage of the fee left after the discounts before it.
    pub percent: Option<Percent>,
    /// Or a fixed amount in minor units.
    pub amount: Option<i64>,
}

/// What a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    CharterFee,
    Discount,
    Extra,
    Delivery,
    Vat,
    Apa,
}

/// One line of a quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Line {
    /// What the line charges for (charter fee, extra, discount, VAT, APA, delivery).
    pub kind: LineKind,
    /// Shown to the client.
    pub label: String,
    /// Minor units; discounts are negative.
    pub amount: i64,
    /// For extras: how many units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// For extras: the price of one unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<i64>,
    /// For extras: their code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Line {
    fn new(kind: LineKind, label: impl Into<String>, amount: i64) -> Self {
        Self {
            kind,
            label: label.into(),
            amount,
            quantity: None,
            unit_price: None,
            code: None,
        }
    }
}

/// One instalment to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Payment {
    /// When.
    pub due_date: NaiveDate,
    /// How much.
    pub amount: Money,
}

/// What to price.
#[derive(Debug, Clone)]
pub struct PriceRequest<'a> {
    /// The yacht, with its rates and extras.
    pub yacht: &'a Yacht,
    /// First day.
    pub charter_from: NaiveDate,
    /// Last day (disembarkation); the nights are `charter_from..charter_to`.
    pub charter_to: NaiveDate,
    /// People aboard.
    pub guests: u32,
    /// A crewed charter (APA applies).
    pub crewed: bool,
    /// Optional extras chosen, by code.
    pub extras: &'a [String],
    /// Discounts, in order.
    pub discounts: &'a [DiscountInput],
    /// Largest combined discount, as a share of the charter fee.
    pub discount_cap: Percent,
    /// VAT on the charter fee after discounts and on taxable extras.
    pub vat: Percent,
    /// APA of a crewed charter, on the charter fee after discounts.
    pub apa: Percent,
    /// A delivery fee (not taxed).
    pub delivery_fee: Option<i64>,
    /// The tenant's payment schedule.
    pub schedule: &'a [Instalment],
    /// Today, for the dates of payment.
    pub today: NaiveDate,
}

/// A priced quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Priced {
    /// The lines, in order.
    pub lines: Vec<Line>,
    /// Exactly the sum of the lines.
    pub total: Money,
    /// When the total is paid; APA with the last instalment.
    pub payment_schedule: Vec<Payment>,
    /// Extras paid locally at the base, not in the total.
    pub payable_at_base: Vec<Line>,
}

/// Prices a charter. Errors name the field at fault.
pub fn price(r: &PriceRequest<'_>) -> Result<Priced, ValidationErrors> {
    let mut e = ValidationErrors::new();
    let y = r.yacht;
    let cur = y.currency;
    let nights_i = (r.charter_to - r.charter_from).num_days();
    if nights_i <= 0 {
        return Err(ValidationErrors::single("/charter_to", "must be after charter_from"));
    }
    let nights = u32::try_from(nights_i).unwrap_or(u32::MAX);
    if nights < y.min_nights {
        e.add(
            "/charter_to",
            format!(
                "the charter has {nights} nights; this yacht takes at least {}",
                y.min_nights
            ),
        );
    }
    if nights > 366 {
        return Err(ValidationErrors::single(
            "/charter_to",
            "a charter lasts at most a year",
        ));
    }
    if r.guests == 0 || r.guests > y.max_guests {
        e.add(
            "/guests",
            format!("must be from 1 to {} (the yacht's capacity)", y.max_guests),
        );
    }
    // Charter fee: each night at its season's weekly rate / 7, summed exactly and
    // rounded once, so splitting a season anywhere never changes the fee.
    let mut per_band: Vec<u32> = vec![0; y.rates.len()];
    let mut missing = None;
    let mut d = r.charter_from;
    while d < r.charter_to {
        match y.rates.iter().position(|b| b.from <= d && d <= b.to) {
            Some(i) => per_band[i] += 1,
            None => {
                missing.get_or_insert(d);
            }
        }
        d += Duration::days(1);
    }
    if let Some(d) = missing {
        e.add("/charter_from", format!("the yacht has no rate for the night of {d}"));
    }
    if !e.is_empty() {
        return Err(e);
    }
    let weighted: i128 = y
        .rates
        .iter()
        .zip(&per_band)
        .map(|(b, n)| i128::from(b.weekly_rate.amount) * i128::from(*n))
        .sum();
    let fee = clamp(round_half_even(weighted, 7));
    let seasons: Vec<String> = y
        .rates
        .iter()
        .zip(&per_band)
        .filter(|(_, n)| **n > 0)
        .map(|(b, n)| format!("{n} × {}", b.season))
        .collect();
    let mut lines = vec![Line::new(
        LineKind::CharterFee,
        format!("Charter fee, {nights} nights ({})", seasons.join(", ")),
        fee,
    )];

    // Discounts, in order, each on what is left; the combined one capped.
    let cap = percent_of(fee, r.discount_cap);
    let mut given = 0i64;
    for (i, dsc) in r.discounts.iter().enumerate() {
        let p = format!("/discounts/{i}");
        if let Err(why) = crate::text::clean_text(&dsc.label, 200, false) {
            e.add(format!("{p}/label"), why);
        }
        let want = match (dsc.percent, dsc.amount) {
            (Some(pc), None) => percent_of(fee - given, pc),
            (None, Some(a)) if a > crate::money::MAX_AMOUNT => {
                e.add(format!("{p}/amount"), "must be at most 10^13 minor units");
                continue;
            }
            (None, Some(a)) if a > 0 => a,
            (None, Some(_)) => {
                e.add(format!("{p}/amount"), "must be a positive amount of minor units");
                continue;
            }
            _ => {
                e.add(&p, "give either `percent` or `amount`");
                continue;
            }
        };
        let amount = want.min(cap - given).max(0);
        let label = if amount < want {
            format!("{} (capped)", dsc.label.trim())
        } else {
            dsc.label.trim().to_owned()
        };
        given += amount;
        lines.push(Line::new(LineKind::Discount, label, -amount));
    }
    let discounted = fee - given;

    // Extras: mandatory ones always, optional ones when chosen.
    for (i, code) in r.extras.iter().enumerate() {
        if !y.extras.iter().any(|x| &x.code == code) {
            let known: Vec<&str> = y.extras.iter().map(|x| x.code.as_str()).collect();
            e.add(
                format!("/extras/{i}"),
                format!("the yacht has no extra {code:?}; it has: {}", known.join(", ")),
            );
        }
    }
    let mut taxable_extras = 0i64;
    let mut at_base = Vec::new();
    for x in &y.extras {
        if !(x.mandatory || r.extras.contains(&x.code)) {
            continue;
        }
        let qty = match x.unit {
            ExtraUnit::PerCharter => 1,
            ExtraUnit::PerDay => nights,
            ExtraUnit::PerPerson => r.guests,
            ExtraUnit::PerPersonDay => r.guests.saturating_mul(nights),
            ExtraUnit::PerWeek => nights.div_ceil(7),
        };
        let full = clamp(i128::from(x.price.amount) * i128::from(qty));
        let mut line = Line::new(LineKind::Extra, x.name.clone(), full);
        line.quantity = Some(qty);
        line.unit_price = Some(x.price.amount);
        line.code = Some(x.code.clone());
        match x.paid {
            ExtraPaid::WithBooking => {
                if x.taxable {
                    taxable_extras = taxable_extras.saturating_add(full);
                }
                lines.push(line);
            }
            ExtraPaid::Included => {
                line.amount = 0;
                line.label = format!("{} (included)", x.name);
                lines.push(line);
            }
            ExtraPaid::AtBase => at_base.push(line),
        }
    }
    if let Some(fee) = r.delivery_fee {
        if !(0..=crate::money::MAX_AMOUNT).contains(&fee) {
            e.add("/delivery_fee", "must be from 0 to 10^13 minor units");
        } else if fee > 0 {
            lines.push(Line::new(LineKind::Delivery, "Delivery", fee));
        }
    }
    if !e.is_empty() {
        return Err(e);
    }
    let vat = percent_of(discounted.saturating_add(taxable_extras), r.vat);
    if r.vat.basis_points() > 0 {
        lines.push(Line::new(LineKind::Vat, format!("VAT {}%", r.vat), vat));
    }
    let apa = if r.crewed { percent_of(discounted, r.apa) } else { 0 };
    if r.crewed && r.apa.basis_points() > 0 {
        lines.push(Line::new(
            LineKind::Apa,
            format!("APA {}% (advance provisioning allowance)", r.apa),
            apa,
        ));
    }
    // No line and no total beyond the largest amount: nothing below can overflow.
    let total_wide: i128 = lines.iter().map(|l| i128::from(l.amount)).sum();
    let too_large = |v: i128| v.abs() > i128::from(crate::money::MAX_AMOUNT);
    if too_large(total_wide)
        || lines.iter().any(|l| too_large(i128::from(l.amount)))
        || at_base.iter().any(|l: &Line| too_large(i128::from(l.amount)))
    {
        return Err(ValidationErrors::single(
            "/yacht_id",
            "the quote would exceed 10^13 minor units (the largest amount Leadline handles); check the yacht's rates and extras",
        ));
    }
    let total = clamp(total_wide);

    // Payment schedule: the total without APA in instalments, APA with the last;
    // an instalment due before today is due today.
    let base = total - apa;
    let mut payments: Vec<Payment> = Vec::new();
    let mut paid = 0i64;
    for (i, inst) in r.schedule.iter().enumerate() {
        let due = match (inst.due, inst.days) {
            (InstalmentDue::DaysBeforeEmbarkation, Some(days)) => r.charter_from - Duration::days(i64::from(days)),
            _ => r.today,
        }
        .max(r.today);
        let last = i + 1 == r.schedule.len();
        let mut amount = if last {
            base - paid
        } else {
            percent_of(base, inst.percent)
        };
        paid += amount;
        if last {
            amount += apa;
        }
        match payments.last_mut() {
            Some(p) if p.due_date == due => p.amount.amount += amount,
            _ => payments.push(Payment {
                due_date: due,
                amount: Money { amount, currency: cur },
            }),
        }
    }
    Ok(Priced {
        lines,
        total: Money {
            amount: total,
            currency: cur,
        },
        payment_schedule: payments,
        payable_at_base: at_base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{TenantId, YachtId};
    use crate::lead::{CharterType, YachtType};
    use crate::money::Currency;
    use crate::tenant::Settings;
    use crate::yacht::{Extra, RateBand};
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn eur(amount: i64) -> Money {
        Money {
            amount,
            currency: Currency::EUR,
        }
    }

    fn pct(s: &str) -> Percent {
        Percent::parse(s).expect("percent")
    }

    fn yacht(rates: Vec<RateBand>, extras: Vec<Extra>) -> Yacht {
        Yacht {
            id: YachtId::generate(),
            tenant_id: TenantId::generate(),
            name: "Thalassa".into(),
            yacht_type: YachtType::Catamaran,
            length_m: Some(12.8),
            cabins: Some(4),
            max_guests: 10,
            home_port: Some("Lavrion".into()),
            charter_types: vec![CharterType::Bareboat],
            currency: Currency::EUR,
            min_nights: 3,
            apa_percent: None,
            security_deposit: None,
            rates,
            extras,
            archived_at: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            version: 1,
        }
    }

    fn band(season: &str, from: &str, to: &str, weekly: i64) -> RateBand {
        RateBand {
            season: season.into(),
            from: d(from),
            to: d(to),
            weekly_rate: eur(weekly),
        }
    }

    fn extra(
        code: &str,
        name: &str,
        price: i64,
        unit: ExtraUnit,
        mandatory: bool,
        paid: ExtraPaid,
        taxable: bool,
    ) -> Extra {
        Extra {
            code: code.into(),
            name: name.into(),
            price: eur(price),
            unit,
            mandatory,
            paid,
            taxable,
        }
    }

    fn schedule() -> Vec<Instalment> {
        Settings::defaults("X".into()).payment_schedule
    }

    fn amounts(p: &Priced) -> Vec<i64> {
        p.lines.iter().map(|l| l.amount).collect()
    }

    /// docs/pricing.md, example 1: a week inside one season.
    #[test]
    fn example_one_week_in_one_season() {
        let y = yacht(
            vec![band("high", "2027-07-01", "2027-08-31", 840_000)],
            vec![extra(
                "transit_log",
                "Transit log",
                15_000,
                ExtraUnit::PerCharter,
                true,
                ExtraPaid::WithBooking,
                false,
            )],
        );
        let s = schedule();
        let p = price(&PriceRequest {
            yacht: &y,
            charter_from: d("2027-07-10"),
            charter_to: d("2027-07-17"),
            guests: 6,
            crewed: false,
            extras: &[],
            discounts: &[],
            discount_cap: pct("25"),
            vat: pct("13"),
            apa: pct("30"),
            delivery_fee: None,
            schedule: &s,
            today: d("2027-01-15"),
        })
        .expect("priced");
        assert_eq!(amounts(&p), [840_000, 15_000, 109_200]);
        assert_eq!(p.total, eur(964_200));
        assert_eq!(
            p.payment_schedule,
            [
                Payment {
                    due_date: d("2027-01-15"),
                    amount: eur(482_100)
                },
                Payment {
                    due_date: d("2027-06-10"),
                    amount: eur(482_100)
                }
            ]
        );
    }

    /// docs/pricing.md, example 2: ten nights across two seasons, two discounts and extras.
    #[test]
    fn example_ten_nights_two_seasons_discounts_and_extras() {
        let y = yacht(
            vec![
                band("mid", "2027-06-01", "2027-06-30", 630_000),
                band("high", "2027-07-01", "2027-08-31", 840_000),
            ],
            vec![
                extra(
                    "transit_log",
                    "Transit log",
                    15_000,
                    ExtraUnit::PerCharter,
                    true,
                    ExtraPaid::WithBooking,
                    false,
                ),
                extra(
                    "skipper",
                    "Skipper",
                    18_000,
                    ExtraUnit::PerDay,
                    false,
                    ExtraPaid::WithBooking,
                    true,
                ),
                extra(
                    "linen",
                    "Linen and towels",
                    2_500,
                    ExtraUnit::PerPerson,
                    false,
                    ExtraPaid::WithBooking,
                    true,
                ),
                extra(
                    "outboard",
                    "Outboard engine",
                    10_000,
                    ExtraUnit::PerWeek,
                    false,
                    ExtraPaid::AtBase,
                    false,
                ),
            ],
        );
        let s = schedule();
        let chosen = vec!["skipper".to_owned(), "linen".to_owned(), "outboard".to_owned()];
        let discounts = vec![
            DiscountInput {
                label: "Early booking".into(),
                percent: Some(pct("10")),
                amount: None,
            },
            DiscountInput {
                label: "Returning client".into(),
                percent: None,
                amount: Some(50_000),
            },
        ];
        let p = price(&PriceRequest {
            yacht: &y,
            charter_from: d("2027-06-26"),
            charter_to: d("2027-07-06"),
            guests: 6,
            crewed: false,
            extras: &chosen,
            discounts: &discounts,
            discount_cap: pct("25"),
            vat: pct("13"),
            apa: pct("30"),
            delivery_fee: None,
            schedule: &s,
            today: d("2027-01-15"),
        })
        .expect("priced");
        assert_eq!(p.lines[0].label, "Charter fee, 10 nights (5 × mid, 5 × high)");
        assert_eq!(
            amounts(&p),
            [1_050_000, -105_000, -50_000, 15_000, 180_000, 15_000, 141_700]
        );
        assert_eq!(p.total, eur(1_246_700));
        assert_eq!(p.payable_at_base.len(), 1);
        assert_eq!(p.payable_at_base[0].amount, 20_000);
        assert_eq!(
            p.payment_schedule,
            [
                Payment {
                    due_date: d("2027-01-15"),
                    amount: eur(623_350)
                },
                Payment {
                    due_date: d("2027-05-27"),
                    amount: eur(623_350)
                }
            ]
        );
    }

    /// docs/pricing.md, example 3: a crewed charter with APA and VAT, booked late.
    #[test]
    fn example_crewed_with_apa_and_vat() {
        let mut y = yacht(vec![band("high", "2027-07-01", "2027-08-31", 2_100_000)], vec![]);
        y.yacht_type = YachtType::Gulet;
        let s = schedule();
        let p = price(&PriceRequest {
            yacht: &y,
            charter_from: d("2027-07-10"),
            charter_to: d("2027-07-17"),
            guests: 8,
            crewed: true,
            extras: &[],
            discounts: &[],
            discount_cap: pct("25"),
            vat: pct("5.2"),
            apa: pct("30"),
            delivery_fee: None,
            schedule: &s,
            today: d("2027-06-20"),
        })
        .expect("priced");
        assert_eq!(amounts(&p), [2_100_000, 109_200, 630_000]);
        assert_eq!(p.total, eur(2_839_200));
        // Embarkation in 20 days: everything at booking, APA included.
        assert_eq!(
            p.payment_schedule,
            [Payment {
                due_date: d("2027-06-20"),
                amount: eur(2_839_200)
            }]
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let y = yacht(vec![band("high", "2027-07-01", "2027-07-31", 700_000)], vec![]);
        let s = schedule();
        let req = |from: &str, to: &str| PriceRequest {
            yacht: &y,
            charter_from: d(from),
            charter_to: d(to),
            guests: 2,
            crewed: false,
            extras: &[],
            discounts: &[],
            discount_cap: pct("25"),
            vat: Percent::ZERO,
            apa: Percent::ZERO,
            delivery_fee: None,
            schedule: &s,
            today: d("2027-01-01"),
        };
        let e = price(&req("2027-07-28", "2027-08-03")).expect_err("no rate in August");
        assert!(e.0[0].detail.contains("2027-08-01"), "{e}");
        let e = price(&req("2027-07-10", "2027-07-12")).expect_err("too short");
        assert!(e.0[0].detail.contains("at least 3"), "{e}");
    }

    /// Amounts at the `i64` limit (a yacht stored before amounts were bounded)
    /// are refused, never wrapped into a negative total.
    #[test]
    fn amounts_at_the_limit_are_refused_not_wrapped() {
        let y = yacht(
            vec![band("high", "2027-07-01", "2027-07-31", i64::MAX)],
            vec![extra(
                "fuel",
                "Fuel",
                i64::MAX,
                ExtraUnit::PerPersonDay,
                true,
                ExtraPaid::WithBooking,
                true,
            )],
        );
        let s = schedule();
        let req = PriceRequest {
            yacht: &y,
            charter_from: d("2027-07-01"),
            charter_to: d("2027-07-08"),
            guests: 2,
            crewed: false,
            extras: &[],
            discounts: &[],
            discount_cap: pct("25"),
            vat: pct("12"),
            apa: Percent::ZERO,
            delivery_fee: None,
            schedule: &s,
            today: d("2027-01-01"),
        };
        let e = price(&req).expect_err("too large");
        assert_eq!(e.0[0].pointer, "/yacht_id", "{e}");
        let fine = yacht(
            vec![band("high", "2027-07-01", "2027-07-31", crate::money::MAX_AMOUNT / 100)],
            vec![],
        );
        let p = price(&PriceRequest { yacht: &fine, ..req }).expect("a large but sane quote");
        assert!(p.total.amount > 0);
    }

    #[test]
    fn half_even() {
        assert_eq!(round_half_even(5, 2), 2);
        assert_eq!(round_half_even(7, 2), 4);
        assert_eq!(round_half_even(-5, 2), -2);
        assert_eq!(round_half_even(10, 3), 3);
        assert_eq!(round_half_even(11, 3), 4);
    }

    /// (rate 1, rate 2, start offset, nights, guests, cap, discounts, vat, apa, crewed)
    type Arb = (i64, i64, u32, u32, u32, u32, Vec<(bool, u32)>, u32, u32, bool);

    fn arb_request() -> impl Strategy<Value = Arb> {
        (
            10_000i64..5_000_000,
            10_000i64..5_000_000,
            0u32..40,
            1u32..30,
            1u32..10,
            0u32..=10_000,
            prop::collection::vec((any::<bool>(), 0u32..=5_000), 0..4),
            0u32..=5_000,
            0u32..=5_000,
            any::<bool>(),
        )
    }

    proptest! {
        #[test]
        fn total_is_the_sum_and_the_schedule_pays_it(
            (r1, r2, start, nights, guests, cap, discounts, vat, apa, crewed) in arb_request(),
            extra_price in 0i64..100_000,
        ) {
            let y = yacht(
                vec![band("a", "2027-05-01", "2027-06-15", r1), band("b", "2027-06-16", "2027-09-30", r2)],
                vec![extra("x", "X", extra_price, ExtraUnit::PerPersonDay, true, ExtraPaid::WithBooking, true)],
            );
            let from = d("2027-05-01") + Duration::days(i64::from(start) * 2);
            let discounts: Vec<DiscountInput> = discounts.iter().map(|(is_pct, v)| DiscountInput {
                label: "d".into(),
                percent: is_pct.then(|| Percent::from_basis_points(*v).expect("in range")),
                amount: (!is_pct).then_some(i64::from(*v) * 100 + 1),
            }).collect();
            let s = schedule();
            let cap = Percent::from_basis_points(cap).expect("in range");
            let p = price(&PriceRequest {
                yacht: &y, charter_from: from, charter_to: from + Duration::days(i64::from(nights) + 2), guests,
                crewed, extras: &[], discounts: &discounts, discount_cap: cap,
                vat: Percent::from_basis_points(vat).expect("in range"), apa: Percent::from_basis_points(apa).expect("in range"),
                delivery_fee: None, schedule: &s, today: d("2027-01-01"),
            }).expect("priced");
            prop_assert_eq!(p.total.amount, p.lines.iter().map(|l| l.amount).sum::<i64>());
            prop_assert_eq!(p.total.amount, p.payment_schedule.iter().map(|x| x.amount.amount).sum::<i64>());
            let fee = p.lines[0].amount;
            let discounted: i64 = -p.lines.iter().filter(|l| l.kind == LineKind::Discount).map(|l| l.amount).sum::<i64>();
            prop_assert!(discounted <= percent_of(fee, cap), "discount {} over the cap", discounted);
            prop_assert!(discounted >= 0);
        }

        #[test]
        fn splitting_a_season_anywhere_never_changes_the_fee(rate in 1i64..10_000_000, split in 1i64..60, start in 0i64..30, nights in 3i64..40) {
            let whole = yacht(vec![band("s", "2027-05-01", "2027-08-31", rate)], vec![]);
            let cut = d("2027-05-01") + Duration::days(split);
            let parts = yacht(vec![
                band("s1", "2027-05-01", &(cut - Duration::days(1)).to_string(), rate),
                band("s2", &cut.to_string(), "2027-08-31", rate),
            ], vec![]);
            let s = schedule();
            let from = d("2027-05-01") + Duration::days(start);
            let req = |y| PriceRequest {
                yacht: y, charter_from: from, charter_to: from + Duration::days(nights), guests: 2, crewed: false,
                extras: &[], discounts: &[], discount_cap: Percent::ZERO, vat: Percent::ZERO, apa: Percent::ZERO,
                delivery_fee: None, schedule: &s, today: d("2027-01-01"),
            };
            let a = price(&req(&whole)).expect("priced");
            let b = price(&req(&parts)).expect("priced");
            prop_assert_eq!(a.lines[0].amount, b.lines[0].amount);
            prop_assert_eq!(a.total, b.total);
        }
    }
}
