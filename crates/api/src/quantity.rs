//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`, `128974848`), parsed exactly as
//! upstream's `resource.ParseQuantity` does for the values a scheduler reads: the value is kept in
//! thousandths (upstream rounds anything finer up to `1m`), `MilliValue()` and `Value()` round up,
//! and nothing is represented by a float.
//!
//! Neither k8s-openapi nor kube parses quantities (k8s-openapi's `Quantity` is a string), hence
//! this module.

use std::fmt;

/// Magnitudes are capped here (upstream caps at 2^63-1 of the unit; thousandths of that fit).
const MAX_MILLI: i128 = i64::MAX as i128 * 1000;

/// A parsed quantity, in thousandths of its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity {
    milli: i128,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {input:?}"
)]
pub struct QuantityError {
    input: String,
}

impl Quantity {
    /// A quantity of `milli` thousandths.
    pub fn from_milli(milli: i64) -> Self {
        Self { milli: i128::from(milli) }
    }

    /// A quantity of `value` units.
    pub fn from_value(value: i64) -> Self {
        Self { milli: i128::from(value) * 1000 }
    }

    /// Exact thousandths (for adding and comparing quantities without rounding).
    pub fn milli_exact(self) -> i128 {
        self.milli
    }

    /// Upstream's `MilliValue()`: thousandths, saturating at the i64 range.
    pub fn milli_value(self) -> i64 {
        clamp_i64(self.milli)
    }

    /// Upstream's `Value()`: whole units, rounded away from zero.
    pub fn value(self) -> i64 {
        let whole = self.milli / 1000;
        let rest = self.milli % 1000;
        let rounded = if rest > 0 {
            whole + 1
        } else if rest < 0 {
            whole - 1
        } else {
            whole
        };
        clamp_i64(rounded)
    }

    pub fn is_zero(self) -> bool {
        self.milli == 0
    }

    pub fn saturating_add(self, other: Quantity) -> Quantity {
        Quantity { milli: (self.milli + other.milli).clamp(-MAX_MILLI, MAX_MILLI) }
    }
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl fmt::Display for Quantity {
    /// Thousandths as `<n>m`, whole units without a suffix (a debugging form, not canonical).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli % 1000 == 0 {
            write!(f, "{}", self.milli / 1000)
        } else {
            write!(f, "{}m", self.milli)
        }
    }
}

/// Parses a quantity string: `<sign><digits>[.<digits>]<suffix>` where the suffix is a binary SI
/// one (`Ki` … `Ei`), a decimal SI one (`m`, ``, `k`, `M` … `E`) or a decimal exponent (`e3`, `E-2`).
pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
    let err = || QuantityError { input: input.to_owned() };
    let bytes = input.as_bytes();
    let mut i = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    // Significant digits as an integer, the power of ten they are scaled by, and whether any
    // nonzero digit had to be dropped (then the result rounds up).
    let mut mantissa: u128 = 0;
    let mut exp10: i64 = 0;
    let mut dropped_nonzero = false;
    let mut digits = 0usize;
    let mut seen_dot = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'.' {
            if seen_dot {
                return Err(err());
            }
            seen_dot = true;
        } else if c.is_ascii_digit() {
            digits += 1;
            let d = u128::from(c - b'0');
            match mantissa.checked_mul(10).and_then(|m| m.checked_add(d)) {
                Some(m) if m < 10u128.pow(36) => {
                    mantissa = m;
                    if seen_dot {
                        exp10 -= 1;
                    }
                }
                _ => {
                    // Out of precision: an integer digit still scales the value, a fraction
                    // digit only matters for rounding up.
                    if !seen_dot {
                        exp10 += 1;
                    }
                    dropped_nonzero |= d != 0;
                }
            }
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return Err(err());
    }
    let (exp10_suffix, exp2) = suffix(&input[i..]).ok_or_else(err)?;
    // Thousandths: value * 10^3.
    let total_exp10 = exp10.saturating_add(exp10_suffix).saturating_add(3);
    let magnitude = scale(mantissa, total_exp10, exp2, dropped_nonzero);
    Ok(Quantity { milli: if negative { -magnitude } else { magnitude } })
}

/// `(power of ten, power of two)` of a suffix.
fn suffix(s: &str) -> Option<(i64, u32)> {
    Some(match s {
        "" => (0, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        _ => {
            let rest = s.strip_prefix(['e', 'E'])?;
            let (negative, digits) = match rest.as_bytes().first() {
                Some(b'-') => (true, &rest[1..]),
                Some(b'+') => (false, &rest[1..]),
                _ => (false, rest),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Huge exponents saturate: the value is then capped or rounds up to 1m.
            let e: i64 = digits.parse().unwrap_or(i64::from(i32::MAX));
            (if negative { -e } else { e }, 0)
        }
    })
}

/// `ceil(mantissa * 10^exp10 * 2^exp2)`, capped at [`MAX_MILLI`].
fn scale(mantissa: u128, exp10: i64, exp2: u32, dropped_nonzero: bool) -> i128 {
    if mantissa == 0 {
        return 0;
    }
    let cap = MAX_MILLI as u128;
    let Some(mut value) = mantissa.checked_mul(1u128 << exp2) else {
        return MAX_MILLI;
    };
    if exp10 >= 0 {
        for _ in 0..exp10 {
            value = match value.checked_mul(10) {
                Some(v) if v <= cap => v,
                _ => return MAX_MILLI,
            };
        }
        if dropped_nonzero {
            value += 1;
        }
    } else {
        let mut remainder = dropped_nonzero;
        for _ in 0..(-exp10).min(40) {
            remainder |= value % 10 != 0;
            value /= 10;
        }
        if remainder {
            value += 1;
        }
    }
    value.min(cap) as i128
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("0.5").milli_value(), 500);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q(".5").milli_value(), 500);
        assert_eq!(q("5.").milli_value(), 5000);
        assert_eq!(q("+2").milli_value(), 2000);
        assert_eq!(q("-2").milli_value(), -2000);
    }

    #[test]
    fn finer_than_milli_rounds_up() {
        assert_eq!(q("0.1m").milli_value(), 1);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("1000u").milli_value(), 1);
        assert_eq!(q("1001u").milli_value(), 2);
        assert_eq!(q("0.0001").milli_value(), 1);
        assert_eq!(q("0").milli_value(), 0);
        assert_eq!(q("0.000").milli_value(), 0);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("128Mi").value(), 128 * 1024 * 1024);
        assert_eq!(q("1.5Gi").value(), 1536 * 1024 * 1024);
        assert_eq!(q("1Ei").value(), 1 << 60);
        assert_eq!(q("1k").value(), 1000);
        assert_eq!(q("1M").value(), 1_000_000);
        assert_eq!(q("2G").value(), 2_000_000_000);
        assert_eq!(q("1T").value(), 1_000_000_000_000);
        assert_eq!(q("1P").value(), 1_000_000_000_000_000);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("129e6").value(), 129_000_000);
        assert_eq!(q("129E6").value(), 129_000_000);
        assert_eq!(q("1e-3").milli_value(), 1);
        assert_eq!(q("12e+2").value(), 1200);
        assert_eq!(q("0.5Ki").value(), 512);
        // Value() rounds up: 1.5 bytes is 2.
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("1m").value(), 1);
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(q("8Ei").value(), i64::MAX);
        assert_eq!(q("9223372036854775807").value(), i64::MAX);
        assert_eq!(q("1e400").value(), i64::MAX);
        assert_eq!(q("99999999999999999999999999999999999999999999999").value(), i64::MAX);
        assert_eq!(q("1e-400").milli_value(), 1);
    }

    #[test]
    fn rejects_malformed() {
        for bad in
            ["", "m", "Ki", "1.2.3", "1 Ki", "1KiB", "1i", "1e", "1e+", "--1", "1mi", "abc", "1K"]
        {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn integers_round_trip(n in 0i64..i64::MAX / 1000) {
            prop_assert_eq!(q(&n.to_string()).value(), n);
            prop_assert_eq!(q(&format!("{n}m")).milli_value(), n);
        }

        #[test]
        fn binary_suffixes_multiply(n in 0i64..1_000_000, shift in 0usize..4) {
            let suffix = ["Ki", "Mi", "Gi", "Ti"][shift];
            prop_assert_eq!(q(&format!("{n}{suffix}")).value(), n << (10 * (shift + 1)));
        }

        #[test]
        fn fractions_round_up_to_milli(int in 0u32..1000, frac in 0u32..1_000_000) {
            let exact = i128::from(int) * 1_000_000 + i128::from(frac); // in millionths
            let expected = (exact + 999) / 1000;
            prop_assert_eq!(q(&format!("{int}.{frac:06}")).milli_exact(), expected);
        }
    }
}
