//! FAI amounts: an unsigned count of base units, 1 FAI = 100,000,000 units.
//!
//! All arithmetic is checked; an amount above the 21,000,000 FAI supply cap cannot be
//! decoded. Text is "1.5 FAI": parsing takes up to 8 decimals and an optional unit.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::codec::{CodecError, Decode, Encode, Reader};

/// Base units in one FAI.
pub const COIN: u64 = 100_000_000;

/// The hard cap on FAI that can ever exist, in base units.
pub const MAX_MONEY: u64 = 21_000_000 * COIN;

/// An amount of FAI in base units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Amount(u64);

/// Why an amount could not be read or computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmountError {
    #[error("invalid amount {0:?}: expected a number like 1.5 or \"1.5 FAI\"")]
    Syntax(String),
    #[error("invalid amount {0:?}: FAI has at most 8 decimals")]
    TooPrecise(String),
    #[error("amount exceeds the 21,000,000 FAI supply")]
    OutOfRange,
}

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const ONE_FAI: Amount = Amount(COIN);
    pub const MAX: Amount = Amount(MAX_MONEY);

    /// An amount of `units` base units; fails above the supply cap.
    pub fn from_units(units: u64) -> Result<Self, AmountError> {
        if units > MAX_MONEY {
            Err(AmountError::OutOfRange)
        } else {
            Ok(Amount(units))
        }
    }

    /// An amount of whole FAI; fails above the supply cap.
    pub fn from_fai(fai: u64) -> Result<Self, AmountError> {
        fai.checked_mul(COIN)
            .ok_or(AmountError::OutOfRange)
            .and_then(Self::from_units)
    }

    pub fn units(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_add(other.0)
            .filter(|&v| v <= MAX_MONEY)
            .map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn checked_mul(self, n: u64) -> Option<Amount> {
        self.0
            .checked_mul(n)
            .filter(|&v| v <= MAX_MONEY)
            .map(Amount)
    }

    pub fn checked_div(self, n: u64) -> Option<Amount> {
        self.0.checked_div(n).map(Amount)
    }

    /// Sums amounts, failing on overflow past the supply cap.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(items: I) -> Option<Amount> {
        items
            .into_iter()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / COIN;
        let frac = self.0 % COIN;
        if frac == 0 {
            write!(f, "{whole} FAI")
        } else {
            let digits = format!("{frac:08}");
            write!(f, "{whole}.{} FAI", digits.trim_end_matches('0'))
        }
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Parses "1.5", "1.5 FAI", "0.00000001 fai" or "21000000".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || AmountError::Syntax(s.chars().take(40).collect());
        let trimmed = s.trim();
        let split = trimmed
            .len()
            .checked_sub(3)
            .and_then(|cut| Some((trimmed.get(..cut)?, trimmed.get(cut..)?)));
        let number = match split {
            Some((head, unit)) if unit.eq_ignore_ascii_case("fai") => head.trim_end(),
            _ => trimmed,
        };
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (number.contains('.') && !digits(frac)) {
            return Err(syntax());
        }
        if frac.len() > 8 {
            return Err(AmountError::TooPrecise(s.chars().take(40).collect()));
        }
        let whole: u64 = whole.parse().map_err(|_| AmountError::OutOfRange)?;
        let frac_units: u64 = if frac.is_empty() {
            0
        } else {
            let padded = format!("{frac:0<8}");
            padded.parse().map_err(|_| syntax())?
        };
        whole
            .checked_mul(COIN)
            .and_then(|w| w.checked_add(frac_units))
            .ok_or(AmountError::OutOfRange)
            .and_then(Amount::from_units)
    }
}

impl Encode for Amount {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out);
    }
}

impl Decode for Amount {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Amount::from_units(r.read_u64()?).map_err(|_| CodecError::Invalid {
            what: "amount",
            reason: "exceeds the 21,000,000 FAI supply",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_like_a_person_writes_it() {
        assert_eq!(Amount(150_000_000).to_string(), "1.5 FAI");
        assert_eq!(Amount(1).to_string(), "0.00000001 FAI");
        assert_eq!(Amount(0).to_string(), "0 FAI");
        assert_eq!(Amount::MAX.to_string(), "21000000 FAI");
    }

    #[test]
    fn parses_numbers_with_or_without_the_unit() {
        assert_eq!("1.5 FAI".parse::<Amount>(), Ok(Amount(150_000_000)));
        assert_eq!("1.5fai".parse::<Amount>(), Ok(Amount(150_000_000)));
        assert_eq!("  2 ".parse::<Amount>(), Ok(Amount(200_000_000)));
        assert_eq!("0.00000001".parse::<Amount>(), Ok(Amount(1)));
        assert!(matches!(
            "1.000000001".parse::<Amount>(),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(matches!(
            "abc".parse::<Amount>(),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!(
            "1.".parse::<Amount>(),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!(
            "-1".parse::<Amount>(),
            Err(AmountError::Syntax(_))
        ));
        assert!(matches!("é".parse::<Amount>(), Err(AmountError::Syntax(_))));
        assert_eq!(
            "21000000.00000001".parse::<Amount>(),
            Err(AmountError::OutOfRange)
        );
        assert_eq!(
            "99999999999999999999".parse::<Amount>(),
            Err(AmountError::OutOfRange)
        );
    }

    #[test]
    fn arithmetic_is_checked_against_the_cap() {
        assert_eq!(Amount::MAX.checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount::ONE_FAI.checked_mul(21_000_001), None);
        assert_eq!(Amount::checked_sum([Amount(1), Amount(2)]), Some(Amount(3)));
        assert!(Amount::decode_from(&mut Reader::new(&(MAX_MONEY + 1).to_le_bytes())).is_err());
    }

    proptest! {
        #[test]
        fn display_parses_back(units in 0..=MAX_MONEY) {
            let a = Amount(units);
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
            prop_assert_eq!(Amount::from_bytes(&a.to_bytes()).unwrap(), a);
        }

        #[test]
        fn parsing_any_text_never_panics(s in ".{0,30}") {
            let _ = s.parse::<Amount>();
        }
    }
}
