//! Exact sums of floats: a 256-bit two's-complement fixed-point number with its binary point
//! at 2^-128.
//!
//! Every `f64` of magnitude 2^-76 … 2^127 converts exactly (its 53 mantissa bits land inside
//! the 256 bits); smaller parts are cut toward zero, the same way on every machine. Sums are
//! integer additions, so they do not depend on the order of merges, bit for bit. A value of
//! at most 1e12 (2^40) leaves 2^87 of headroom for its sum, and its square (below 2^80) 2^47:
//! overflow needs more than 10^14 observations at the largest magnitude, and is refused, never
//! wrapped.
//!
//! Written here rather than taken from a big-integer crate: the histogram needs exactly three
//! operations (exact conversion of a float, checked addition, checked multiplication by a
//! count), which are 60 lines over `[u64; 4]`.

use serde::{Deserialize, Serialize};

/// Fractional bits: the binary point sits at 2^-FRAC.
const FRAC: i32 = 128;

/// A signed fixed-point number, value = (the 256-bit integer) × 2^-128.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u128, i128)", into = "(u128, i128)")]
pub struct Fixed([u64; 4]);

impl From<(u128, i128)> for Fixed {
    fn from((lo, hi): (u128, i128)) -> Self {
        let hi = hi as u128;
        Fixed([lo as u64, (lo >> 64) as u64, hi as u64, (hi >> 64) as u64])
    }
}

impl From<Fixed> for (u128, i128) {
    fn from(f: Fixed) -> Self {
        let l = f.0;
        let lo = u128::from(l[0]) | (u128::from(l[1]) << 64);
        let hi = (u128::from(l[2]) | (u128::from(l[3]) << 64)) as i128;
        (lo, hi)
    }
}

impl Fixed {
    /// Zero.
    pub const ZERO: Fixed = Fixed([0; 4]);

    fn is_negative(self) -> bool {
        self.0[3] >> 63 == 1
    }

    fn wrapping_neg(self) -> Fixed {
        let mut out = [0u64; 4];
        let mut carry = 1u64;
        for (o, l) in out.iter_mut().zip(self.0) {
            let (v, c) = (!l).overflowing_add(carry);
            *o = v;
            carry = u64::from(c);
        }
        Fixed(out)
    }

    /// The exact fixed-point value of a finite `v` (parts below 2^-128 cut toward zero);
    /// `None` when `|v| ≥ 2^127`.
    pub fn from_f64(v: f64) -> Option<Fixed> {
        let mut f = Fixed::ZERO;
        f.add_f64(v).then_some(f)
    }

    /// Adds the exact value of a finite `v` with `|v| < 2^127` in place (parts below 2^-128
    /// cut toward zero, as [`Fixed::from_f64`]); false, leaving `self` unchanged, on overflow
    /// or a `v` out of range. Touches only the limbs the value and its carry reach.
    #[inline]
    pub fn add_f64(&mut self, v: f64) -> bool {
        let bits = v.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        if biased == 0x7ff {
            return false;
        }
        let fraction = bits & ((1 << 52) - 1);
        let (mantissa, exp) = if biased == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1 << 52), biased - 1075)
        };
        let shift = exp + FRAC;
        let (lo_part, hi_part, k) = if shift < 0 {
            let m = if -shift >= 64 { 0 } else { mantissa >> -shift };
            (m, 0, 0)
        } else {
            let shift = shift as u32;
            if shift + 53 > 255 {
                return false;
            }
            let (k, off) = ((shift / 64) as usize, shift % 64);
            let hi = if off > 0 { mantissa >> (64 - off) } else { 0 };
            (mantissa << off, hi, k)
        };
        if lo_part == 0 && hi_part == 0 {
            return true;
        }
        let before = *self;
        let was_negative = self.is_negative();
        let negative = v.is_sign_negative();
        let limbs = &mut self.0;
        if negative {
            let (d, b1) = limbs[k].overflowing_sub(lo_part);
            limbs[k] = d;
            let mut borrow = b1;
            let mut i = k + 1;
            if i < 4 {
                let (d, b2) = limbs[i].overflowing_sub(hi_part);
                let (d, b3) = d.overflowing_sub(u64::from(borrow));
                limbs[i] = d;
                borrow = b2 || b3;
                i += 1;
            }
            while borrow && i < 4 {
                let (d, b) = limbs[i].overflowing_sub(1);
                limbs[i] = d;
                borrow = b;
                i += 1;
            }
        } else {
            let (a, c1) = limbs[k].overflowing_add(lo_part);
            limbs[k] = a;
            let mut carry = c1;
            let mut i = k + 1;
            if i < 4 {
                let (a, c2) = limbs[i].overflowing_add(hi_part);
                let (a, c3) = a.overflowing_add(u64::from(carry));
                limbs[i] = a;
                carry = c2 || c3;
                i += 1;
            }
            while carry && i < 4 {
                let (a, c) = limbs[i].overflowing_add(1);
                limbs[i] = a;
                carry = c;
                i += 1;
            }
        }
        // Adding a value of the other sign cannot overflow; of the same sign, it overflowed
        // when the sign flipped.
        if was_negative == negative && self.is_negative() != was_negative {
            *self = before;
            return false;
        }
        true
    }

    /// `self + other`, `None` on overflow.
    pub fn checked_add(self, other: Fixed) -> Option<Fixed> {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, o) in out.iter_mut().enumerate() {
            let (a, c1) = self.0[i].overflowing_add(other.0[i]);
            let (b, c2) = a.overflowing_add(u64::from(carry));
            *o = b;
            carry = c1 || c2;
        }
        let r = Fixed(out);
        let overflow =
            self.is_negative() == other.is_negative() && r.is_negative() != self.is_negative();
        (!overflow).then_some(r)
    }

    /// `self × n`, `None` on overflow.
    pub fn checked_mul(self, n: u64) -> Option<Fixed> {
        let negative = self.is_negative();
        let magnitude = if negative { self.wrapping_neg() } else { self };
        let mut out = [0u64; 4];
        let mut carry = 0u128;
        for (o, l) in out.iter_mut().zip(magnitude.0) {
            let p = u128::from(l) * u128::from(n) + carry;
            *o = p as u64;
            carry = p >> 64;
        }
        let r = Fixed(out);
        if carry != 0 || r.is_negative() {
            return None;
        }
        Some(if negative { r.wrapping_neg() } else { r })
    }

    /// The nearest `f64` (to within rounding of its top bits).
    pub fn to_f64(self) -> f64 {
        let negative = self.is_negative();
        let magnitude = if negative { self.wrapping_neg() } else { self };
        let mut v = 0.0;
        for (i, l) in magnitude.0.iter().enumerate() {
            v += *l as f64 * 2f64.powi(64 * i as i32 - FRAC);
        }
        if negative { -v } else { v }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_convert_exactly_and_add_in_any_order() {
        for v in [
            1.0,
            -1.0,
            0.1,
            1e-9,
            -3.25e-7,
            1e12,
            123_456.789,
            0.0,
            2f64.powi(-100),
        ] {
            let f = Fixed::from_f64(v).expect("in range");
            assert_eq!(f.to_f64(), v, "{v}");
        }
        let values = [1e12, 1e-9, -0.3, 0.1, 0.2, -1e12, 7.5e-5];
        let mut forward = Fixed::ZERO;
        for v in values {
            forward = forward
                .checked_add(Fixed::from_f64(v).expect("f"))
                .expect("add");
        }
        let mut backward = Fixed::ZERO;
        for v in values.iter().rev() {
            backward = backward
                .checked_add(Fixed::from_f64(*v).expect("f"))
                .expect("add");
        }
        assert_eq!(forward, backward);
        // 0.1 + 0.2 - 0.3 is not 0 in floats, but the exact sum of the three f64s is tiny.
        assert!((forward.to_f64() - (1e-9 + 7.5e-5)).abs() < 1e-15);
    }

    #[test]
    fn adding_in_place_equals_converting_then_adding() {
        let values = [
            1e12,
            -1e12,
            1e-9,
            -0.3,
            2f64.powi(-120),
            -2f64.powi(-130),
            5e11,
            0.0,
        ];
        let mut a = Fixed::ZERO;
        let mut b = Fixed::ZERO;
        for v in values.iter().cycle().take(64) {
            assert!(a.add_f64(*v));
            b = b.checked_add(Fixed::from_f64(*v).expect("f")).expect("add");
            assert_eq!(a, b, "{v}");
        }
        let mut big = Fixed::from_f64(2f64.powi(126)).expect("f");
        let kept = big;
        assert!(!big.add_f64(2f64.powi(126)));
        assert_eq!(big, kept, "unchanged on overflow");
        assert!(!big.add_f64(f64::NAN));
    }

    #[test]
    fn multiplication_and_overflow() {
        let f = Fixed::from_f64(-2.5).expect("f");
        assert_eq!(f.checked_mul(4).expect("mul").to_f64(), -10.0);
        let big = Fixed::from_f64(2f64.powi(126)).expect("f");
        assert_eq!(big.checked_add(big), None);
        assert_eq!(big.checked_mul(2), None);
        assert_eq!(Fixed::from_f64(2f64.powi(127)), None);
        let round: (u128, i128) = f.into();
        assert_eq!(Fixed::from(round), f);
    }
}
