//! Numbers that carry their schema bounds in their type.
//!
//! The generated types use [`UInt`], [`Int`] and [`Float`] for every integer or number the
//! schema bounds with `minimum` and `maximum`. Deserializing a value outside the bounds fails,
//! so a decoded message always satisfies its schema's numeric constraints, and constructing one
//! in code goes through [`UInt::new`] (or `try_from`), which checks the same bounds.
//!
//! As in JSON Schema, a number with a zero fractional part (`2.0`) is an integer; and a
//! [`Float`] with an integral value is written without a fractional part, so a message
//! re-encodes to the same JSON value it was decoded from.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A value outside its type's bounds.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{value} is outside [{min}, {max}]")]
pub struct OutOfBounds {
    /// The refused value.
    pub value: f64,
    /// The smallest allowed value.
    pub min: f64,
    /// The largest allowed value.
    pub max: f64,
}

/// The largest integer every JSON implementation represents exactly: 2^53 − 1.
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

macro_rules! integer {
    ($(#[$doc:meta])* $name:ident, $repr:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name<const MIN: $repr, const MAX: $repr>($repr);

        impl<const MIN: $repr, const MAX: $repr> $name<MIN, MAX> {
            /// The smallest allowed value.
            pub const MIN: $repr = MIN;
            /// The largest allowed value.
            pub const MAX: $repr = MAX;

            /// The value, if it lies within the bounds.
            pub const fn new(value: $repr) -> Option<Self> {
                if value >= MIN && value <= MAX { Some(Self(value)) } else { None }
            }

            /// The value.
            pub const fn get(self) -> $repr {
                self.0
            }

            fn checked(value: $repr) -> Result<Self, OutOfBounds> {
                Self::new(value).ok_or(OutOfBounds { value: value as f64, min: MIN as f64, max: MAX as f64 })
            }
        }

        impl<const MIN: $repr, const MAX: $repr> TryFrom<$repr> for $name<MIN, MAX> {
            type Error = OutOfBounds;
            fn try_from(value: $repr) -> Result<Self, OutOfBounds> {
                Self::checked(value)
            }
        }

        impl<const MIN: $repr, const MAX: $repr> From<$name<MIN, MAX>> for $repr {
            fn from(value: $name<MIN, MAX>) -> Self {
                value.0
            }
        }

        impl<const MIN: $repr, const MAX: $repr> fmt::Debug for $name<MIN, MAX> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl<const MIN: $repr, const MAX: $repr> fmt::Display for $name<MIN, MAX> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl<const MIN: $repr, const MAX: $repr> Serialize for $name<MIN, MAX> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(serializer)
            }
        }

        impl<'de, const MIN: $repr, const MAX: $repr> Deserialize<'de> for $name<MIN, MAX> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Bounded<const MIN: $repr, const MAX: $repr>;
                impl<'de, const MIN: $repr, const MAX: $repr> Visitor<'de> for Bounded<MIN, MAX> {
                    type Value = $name<MIN, MAX>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "an integer from {MIN} to {MAX}")
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                        let v = <$repr>::try_from(v).map_err(|_| E::custom(format!("{v} is above {MAX}")))?;
                        $name::checked(v).map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                        let v = <$repr>::try_from(v).map_err(|_| E::custom(format!("{v} is below {MIN}")))?;
                        $name::checked(v).map_err(E::custom)
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                        // JSON Schema counts 2.0 as an integer; anything fractional is not.
                        if v.fract() != 0.0 || !v.is_finite() || v.abs() > MAX_SAFE_INTEGER as f64 {
                            return Err(E::invalid_type(de::Unexpected::Float(v), &self));
                        }
                        if v < 0.0 { self.visit_i64(v as i64) } else { self.visit_u64(v as u64) }
                    }
                }
                deserializer.deserialize_any(Bounded::<MIN, MAX>)
            }
        }
    };
}

integer!(
    /// A non-negative integer within `[MIN, MAX]`.
    UInt,
    u64
);
integer!(
    /// An integer within `[MIN, MAX]`.
    Int,
    i64
);

/// A finite number within `[MIN_MICROS / 10^6, MAX_MICROS / 10^6]` (bounds are given in
/// millionths because const generics cannot be floats).
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub struct Float<const MIN_MICROS: i64, const MAX_MICROS: i64>(f64);

impl<const MIN_MICROS: i64, const MAX_MICROS: i64> Float<MIN_MICROS, MAX_MICROS> {
    /// The smallest allowed value.
    pub const MIN: f64 = MIN_MICROS as f64 / 1e6;
    /// The largest allowed value.
    pub const MAX: f64 = MAX_MICROS as f64 / 1e6;

    /// The value, if it is finite and lies within the bounds.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && value >= Self::MIN && value <= Self::MAX).then_some(Self(value))
    }

    /// The value.
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl<const MIN_MICROS: i64, const MAX_MICROS: i64> TryFrom<f64> for Float<MIN_MICROS, MAX_MICROS> {
    type Error = OutOfBounds;
    fn try_from(value: f64) -> Result<Self, OutOfBounds> {
        Self::new(value).ok_or(OutOfBounds {
            value,
            min: Self::MIN,
            max: Self::MAX,
        })
    }
}

impl<const MIN_MICROS: i64, const MAX_MICROS: i64> From<Float<MIN_MICROS, MAX_MICROS>> for f64 {
    fn from(value: Float<MIN_MICROS, MAX_MICROS>) -> Self {
        value.0
    }
}

impl<const MIN_MICROS: i64, const MAX_MICROS: i64> fmt::Debug for Float<MIN_MICROS, MAX_MICROS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MIN_MICROS: i64, const MAX_MICROS: i64> fmt::Display for Float<MIN_MICROS, MAX_MICROS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MIN_MICROS: i64, const MAX_MICROS: i64> Serialize for Float<MIN_MICROS, MAX_MICROS> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Integral values are written as integers, as most JSON encoders do (2, not 2.0).
        if self.0.fract() == 0.0 && self.0.abs() <= MAX_SAFE_INTEGER as f64 {
            serializer.serialize_i64(self.0 as i64)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

impl<'de, const MIN_MICROS: i64, const MAX_MICROS: i64> Deserialize<'de>
    for Float<MIN_MICROS, MAX_MICROS>
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Self::try_from(value).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_refuses_values_outside_its_bounds() {
        type Seq = UInt<0, MAX_SAFE_INTEGER>;
        assert_eq!(
            serde_json::from_str::<Seq>("9007199254740991")
                .map(UInt::get)
                .ok(),
            Some(MAX_SAFE_INTEGER)
        );
        assert!(serde_json::from_str::<Seq>("9007199254740992").is_err());
        assert!(serde_json::from_str::<Seq>("-1").is_err());
        assert!(serde_json::from_str::<Seq>("1.5").is_err());
        assert!(serde_json::from_str::<Seq>("\"1\"").is_err());
        assert_eq!(
            serde_json::from_str::<Seq>("2.0").map(UInt::get).ok(),
            Some(2)
        );
        assert!(UInt::<1, 10>::new(0).is_none());
        assert!(UInt::<1, 10>::try_from(11).is_err());
    }

    #[test]
    fn int_accepts_negative_values_within_bounds() {
        type Exit = Int<-128, 127>;
        assert_eq!(
            serde_json::from_str::<Exit>("-128").map(Int::get).ok(),
            Some(-128)
        );
        assert!(serde_json::from_str::<Exit>("-129").is_err());
        assert!(serde_json::from_str::<Exit>("128").is_err());
    }

    #[test]
    fn float_keeps_integral_values_integral_on_the_wire() {
        type Factor = Float<1_000_000, 10_000_000>;
        let two: Factor = serde_json::from_str("2").expect("2 is within [1, 10]");
        assert_eq!(serde_json::to_string(&two).ok().as_deref(), Some("2"));
        let half: Float<0, 1_000_000> = serde_json::from_str("0.5").expect("0.5 is within [0, 1]");
        assert_eq!(serde_json::to_string(&half).ok().as_deref(), Some("0.5"));
        assert!(serde_json::from_str::<Factor>("0.99").is_err());
        assert!(serde_json::from_str::<Factor>("10.01").is_err());
    }

    #[test]
    fn float_gives_back_its_value_and_prints_it() {
        let half: Float<0, 1_000_000> = Float::try_from(0.5).expect("0.5 is within [0, 1]");
        assert_eq!(f64::from(half), 0.5);
        assert_eq!(half.to_string(), "0.5");
        assert_eq!(format!("{half:?}"), "0.5");
    }
}
