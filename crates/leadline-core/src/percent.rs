//! Percentages, written in the API as decimal strings with at most two decimals
//! (`"13"`, `"5.2"`, `"12.75"`) and held as integer basis points.

use serde::{Deserialize, Serialize};

/// A percentage from 0 to 100, in basis points (1 % = 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "13")]
pub struct Percent(u32);

impl Percent {
    /// 0 %.
    pub const ZERO: Self = Self(0);

    /// From basis points known to be in range at compile time.
    pub const fn const_bp(bp: u32) -> Self {
        assert!(bp <= 10_000, "a percentage is at most 100");
        Self(bp)
    }

    /// From basis points, if at most 100 %.
    pub fn from_basis_points(bp: u32) -> Option<Self> {
        (bp <= 10_000).then_some(Self(bp))
    }

    /// The percentage in hundredths of a percent (`12.5` % is 1250).
    pub fn basis_points(self) -> u32 {
        self.0
    }

    /// Parses `"13"`, `"5.2"` or `"12.75"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let err = || {
            format!("{s:?} is not a percentage: write a decimal string from \"0\" to \"100\" with at most two decimals")
        };
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty()
            || whole.len() > 3
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 2
            || (s.contains('.') && frac.is_empty())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        let w: u32 = whole.parse().map_err(|_| err())?;
        let mut f: u32 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| err())?
        };
        if frac.len() == 1 {
            f *= 10;
        }
        Self::from_basis_points(w * 100 + f).ok_or_else(err)
    }
}

impl TryFrom<String> for Percent {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Percent> for String {
    fn from(p: Percent) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (w, r) = (self.0 / 100, self.0 % 100);
        match r {
            0 => write!(f, "{w}"),
            r if r % 10 == 0 => write!(f, "{w}.{}", r / 10),
            r => write!(f, "{w}.{r:02}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(Percent::parse("13").map(Percent::basis_points), Ok(1300));
        assert_eq!(Percent::parse("5.2").map(Percent::basis_points), Ok(520));
        assert_eq!(Percent::parse("12.75").map(Percent::basis_points), Ok(1275));
        assert_eq!(Percent::parse("100").map(Percent::basis_points), Ok(10_000));
        for bad in ["", "100.01", "101", "5.", ".5", "5.123", "-1", "1e2", " 5", "abc"] {
            assert!(Percent::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(bp in 0u32..=10_000) {
            let p = Percent::from_basis_points(bp).expect("in range");
            prop_assert_eq!(Percent::parse(&p.to_string()), Ok(p));
        }
    }
}
