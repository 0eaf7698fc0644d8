//! Nanosecond wall-clock timestamps with RFC 3339 text form (UTC).

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nanoseconds since the Unix epoch (UTC).
///
/// ```
/// use raceway::Timestamp;
/// let t: Timestamp = "2026-11-25T13:15:32.123456789Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-11-25T13:15:32.123456789Z");
/// let shifted: Timestamp = "2026-11-25T14:15:32.5+01:00".parse().unwrap();
/// assert_eq!(shifted.to_string(), "2026-11-25T13:15:32.500000000Z");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // One vDSO call and integer math; `SystemTime` goes through `Duration` and u128 nanoseconds.
            // SAFETY: `now` is a valid, writable timespec; CLOCK_REALTIME always exists on Linux.
            #[allow(clippy::useless_conversion)] // `time_t` and `c_long` are i32 on 32-bit targets.
            if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } == 0 {
                return Self(
                    i64::from(now.tv_sec)
                        .saturating_mul(1_000_000_000)
                        .saturating_add(i64::from(now.tv_nsec)),
                );
            }
        }
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Self(d.as_nanos().min(i64::MAX as u128) as i64),
            Err(e) => Self(-(e.duration().as_nanos().min(i64::MAX as u128) as i64)),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i64 {
        self.0
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (public-domain algorithms).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Timestamp {
    /// The RFC 3339 text, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: always 30 bytes, since nanoseconds in an `i64` span
    /// the years 1677 to 2262. Written digit by digit, without the formatting machinery (exporters write one per
    /// event).
    pub(crate) fn to_rfc3339(self) -> [u8; 30] {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000) as u64;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400) as u64;
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        let mut put = |at: usize, width: usize, mut value: u64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, y as u64);
        put(5, 2, u64::from(m));
        put(8, 2, u64::from(d));
        put(11, 2, sod / 3600);
        put(14, 2, sod % 3600 / 60);
        put(17, 2, sod % 60);
        put(20, 9, nanos);
        out
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ASCII digits and separators only.
        f.write_str(std::str::from_utf8(&self.to_rfc3339()).unwrap_or_default())
    }
}

/// Error for text that is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp")]
pub struct TimestampParseError;

impl FromStr for Timestamp {
    type Err = TimestampParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Result<i64, TimestampParseError> {
            let part = b.get(r).ok_or(TimestampParseError)?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(TimestampParseError);
            }
            Ok(part
                .iter()
                .fold(0i64, |acc, &c| acc * 10 + (c - b'0') as i64))
        };
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(TimestampParseError);
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return Err(TimestampParseError);
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            let digits = end - start;
            if digits == 0 || digits > 9 {
                return Err(TimestampParseError);
            }
            nanos = num(start..end)? * 10i64.pow(9 - digits as u32);
            i = end;
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return Err(TimestampParseError);
                }
                let off = oh * 3600 + om * 60;
                if sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return Err(TimestampParseError),
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
        secs.checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(nanos))
            .map(Timestamp)
            .ok_or(TimestampParseError)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(std::str::from_utf8(&self.to_rfc3339()).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn display_parse_round_trip(n in any::<i64>()) {
            let t = Timestamp(n);
            prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }

        #[test]
        fn text_is_the_formatted_date(n in any::<i64>()) {
            let t = Timestamp(n);
            let secs = n.div_euclid(1_000_000_000);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            let formatted = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
                sod / 3600,
                sod % 3600 / 60,
                sod % 60,
                n.rem_euclid(1_000_000_000)
            );
            prop_assert_eq!(t.to_string(), formatted);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Timestamp>();
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            "1970-01-01T00:00:01Z".parse::<Timestamp>().unwrap(),
            Timestamp(1_000_000_000)
        );
        assert!("2026-13-01T00:00:00Z".parse::<Timestamp>().is_err());
        assert!("2026-01-01T00:00:00".parse::<Timestamp>().is_err());
        assert!("2026-01-01T00:00:00.1234567891Z"
            .parse::<Timestamp>()
            .is_err());
    }
}
