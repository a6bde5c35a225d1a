//! Money: integer minor units with an ISO 4217 currency. No floats anywhere.

use serde::{Deserialize, Serialize};

/// Active ISO 4217 codes (funds and precious metals left out), sorted.
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC",
    "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD",
    "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// An ISO 4217 currency code such as `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "EUR")]
pub struct Currency([u8; 3]);

impl Currency {
    /// The euro, the default currency.
    pub const EUR: Currency = Currency(*b"EUR");

    /// Parses a code; it must be an active ISO 4217 code in upper case.
    pub fn parse(s: &str) -> Result<Self, String> {
        if CURRENCIES.binary_search(&s).is_ok() {
            let b = s.as_bytes();
            Ok(Self([b[0], b[1], b[2]]))
        } else {
            Err(format!("{s:?} is not an ISO 4217 currency code such as \"EUR\""))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII codes of the table above.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The largest amount Leadline takes or computes, in minor units: 10^13, that is
/// 100,000,000,000.00 of a two-decimal currency. Rates, prices, budgets, discounts
/// and fees above it are refused (422), and so is a quote whose lines or total
/// would exceed it, so no arithmetic on amounts can overflow.
pub const MAX_AMOUNT: i64 = 10_000_000_000_000;

/// An amount in minor units (cents) of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units, e.g. cents: `1250000` is 12,500.00.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: Currency,
}

impl Money {
    /// For people: `12,467.00 EUR` (two decimals, thousands separated).
    pub fn display(&self) -> String {
        let sign = if self.amount < 0 { "-" } else { "" };
        let abs = self.amount.unsigned_abs();
        let whole = (abs / 100).to_string();
        let mut grouped = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped}.{:02} {}", abs % 100, self.currency)
    }

    /// Checks that the amount is positive.
    pub fn positive(self) -> Result<Self, String> {
        if self.amount <= 0 {
            Err("amount must be a positive integer of minor units".into())
        } else if self.amount > MAX_AMOUNT {
            Err(format!("amount must be at most {MAX_AMOUNT} minor units"))
        } else {
            Ok(self)
        }
    }

    /// Whether the amount is from 0 to [`MAX_AMOUNT`].
    pub fn in_range(&self) -> bool {
        (0..=MAX_AMOUNT).contains(&self.amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn currency_rules() {
        assert_eq!(Currency::parse("EUR"), Ok(Currency::EUR));
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EU").is_err());
        assert!(Currency::parse("XYZ").is_err());
    }

    proptest! {
        #[test]
        fn money_round_trips_through_json(amount in any::<i64>(), i in 0usize..CURRENCIES.len()) {
            let m = Money { amount, currency: Currency::parse(CURRENCIES[i]).expect("listed") };
            let json = serde_json::to_string(&m).expect("serialises");
            let back: Money = serde_json::from_str(&json).expect("parses");
            prop_assert_eq!(back, m);
            prop_assert_eq!(m.positive().is_ok(), amount > 0 && amount <= MAX_AMOUNT);
        }

        #[test]
        fn money_refuses_fractional_amounts(whole in 0i64..1_000_000, frac in 1u32..99) {
            let json = format!(r#"{{"amount": {whole}.{frac:02}, "currency": "EUR"}}"#);
            prop_assert!(serde_json::from_str::<Money>(&json).is_err());
        }
    }
}
