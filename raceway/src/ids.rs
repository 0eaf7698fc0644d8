//! Trace and span identifiers (W3C widths) and their text forms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Lowercase hex digits, used by every encoder in this crate.
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// Value of a lowercase hex digit, `None` for anything else (uppercase included, as W3C requires).
#[inline]
pub(crate) fn lower_hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes exactly `N * 2` lowercase hex characters.
#[inline]
pub(crate) fn decode_lower_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (lower_hex_value(pair[0])? << 4) | lower_hex_value(pair[1])?;
    }
    Some(out)
}

#[inline]
pub(crate) fn encode_lower_hex<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    debug_assert_eq!(M, N * 2);
    let mut out = [0u8; M];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0x0f) as usize];
    }
    out
}

/// Fills `buf` with random bytes that are not all zero (W3C forbids all-zero ids).
fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes.iter().any(|&b| b != 0) {
            return bytes;
        }
    }
}

/// A 128-bit W3C trace id. Never all zero when produced by this crate.
///
/// ```
/// use raceway::TraceId;
/// let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
/// assert_eq!(id.to_uuid().to_string(), "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// A fresh random trace id (16 random bytes, never all zero).
    pub fn random() -> Self {
        Self(random_nonzero())
    }

    /// The bytes as a UUID (same 128 bits), the form events and `raceway-clock` use.
    pub fn to_uuid(self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.0)
    }

    /// The trace id carried by a UUID.
    pub fn from_uuid(uuid: uuid::Uuid) -> Self {
        Self(*uuid.as_bytes())
    }

    /// `true` for the invalid all-zero id.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// 32 lowercase hex characters, without allocating.
    pub fn to_hex(&self) -> [u8; 32] {
        encode_lower_hex(&self.0)
    }
}

/// A 64-bit W3C span (parent) id. Never all zero when produced by this crate.
///
/// ```
/// use raceway::SpanId;
/// let id = SpanId::random();
/// assert!(!id.is_zero());
/// assert_eq!(id.to_string().parse::<SpanId>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

impl SpanId {
    /// A fresh random span id (8 random bytes, never all zero).
    pub fn random() -> Self {
        Self(random_nonzero())
    }

    /// `true` for the invalid all-zero id.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }

    /// 16 lowercase hex characters, without allocating.
    pub fn to_hex(&self) -> [u8; 16] {
        encode_lower_hex(&self.0)
    }
}

/// Error for an id that is not lowercase hex of the right width, or is all zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {0}: expected {1} lowercase hex digits, not all zero")]
pub struct IdParseError(&'static str, usize);

impl FromStr for TraceId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_lower_hex::<16>(s.as_bytes())
            .map(Self)
            .filter(|id| !id.is_zero())
            .ok_or(IdParseError("trace id", 32))
    }
}

impl FromStr for SpanId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_lower_hex::<8>(s.as_bytes())
            .map(Self)
            .filter(|id| !id.is_zero())
            .ok_or(IdParseError("span id", 16))
    }
}

macro_rules! hex_fmt {
    ($ty:ty) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let hex = self.to_hex();
                // Hex digits are always ASCII.
                f.write_str(std::str::from_utf8(&hex).unwrap_or_default())
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), self)
            }
        }
    };
}
hex_fmt!(TraceId);
hex_fmt!(SpanId);

impl Serialize for SpanId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex = self.to_hex();
        serializer.serialize_str(std::str::from_utf8(&hex).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for SpanId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex = self.to_hex();
        serializer.serialize_str(std::str::from_utf8(&hex).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for TraceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejections() {
        let id: SpanId = "00f067aa0ba902b7".parse().unwrap();
        assert_eq!(id.to_string(), "00f067aa0ba902b7");
        assert!("00F067AA0BA902B7".parse::<SpanId>().is_err());
        assert!("0000000000000000".parse::<SpanId>().is_err());
        assert!("00f067aa0ba902b".parse::<SpanId>().is_err());
        assert!(TraceId::random()
            .to_uuid()
            .as_bytes()
            .iter()
            .any(|&b| b != 0));
    }
}
