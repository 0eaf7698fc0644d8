//! W3C Trace Context Level 2: `traceparent` and `tracestate` (spec/PROPAGATION.md §1–2).

use std::fmt;

use crate::clock_header::trim_ows;
use crate::ids::{decode_lower_hex, lower_hex_value};
use crate::{SpanId, TraceId};

/// `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";
/// Raceway's own tracestate key.
pub const TRACESTATE_KEY: &str = "raceway";
/// Longest accepted combined tracestate, in bytes.
pub const MAX_TRACESTATE_BYTES: usize = 8192;
/// Most tracestate members.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// W3C trace flags; only the sampled (0x01) and random (0x02) bits are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// Bit 0.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// Bit 1 (Level 2): the trace id is random.
    pub const RANDOM: TraceFlags = TraceFlags(0x02);

    /// Flags from a byte, zeroing unknown bits.
    pub const fn new(bits: u8) -> Self {
        Self(bits & 0x03)
    }

    /// The flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Sampled bit.
    pub const fn is_sampled(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// Random trace-id bit.
    pub const fn is_random(self) -> bool {
        self.0 & 0x02 != 0
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

/// Why a `traceparent` was rejected; the names match the golden vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TraceparentError {
    /// More than one `traceparent` line.
    #[error("several traceparent header lines")]
    Duplicate,
    /// Not of the form the spec requires.
    #[error("malformed traceparent")]
    Malformed,
    /// Trace id of zeros.
    #[error("traceparent trace-id is all zero")]
    ZeroTraceId,
    /// Parent id of zeros.
    #[error("traceparent parent-id is all zero")]
    ZeroParentId,
}

impl TraceparentError {
    /// The error kind's name in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceparentError::Duplicate => "duplicate",
            TraceparentError::Malformed => "malformed",
            TraceparentError::ZeroTraceId => "zero_trace_id",
            TraceparentError::ZeroParentId => "zero_parent_id",
        }
    }
}

/// A parsed `traceparent`.
///
/// ```
/// use raceway::trace_context::TraceParent;
/// let tp = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
/// assert_eq!(tp.flags.bits(), 0x03); // unknown bits are zeroed
/// assert_eq!(&tp.to_header()[..], &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"[..]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// Trace id.
    pub trace_id: TraceId,
    /// Parent id: the id of the call that carried this header.
    pub parent_id: SpanId,
    /// Flags (masked).
    pub flags: TraceFlags,
}

impl TraceParent {
    /// Parses one header value per spec/PROPAGATION.md §1.1. Never allocates.
    pub fn parse(value: &[u8]) -> Result<Self, TraceparentError> {
        let v = trim_ows(value);
        if v.len() < 55 {
            return Err(TraceparentError::Malformed);
        }
        let version = match (lower_hex_value(v[0]), lower_hex_value(v[1])) {
            (Some(h), Some(l)) => (h << 4) | l,
            _ => return Err(TraceparentError::Malformed),
        };
        if version == 0xff || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return Err(TraceparentError::Malformed);
        }
        let trace = decode_lower_hex::<16>(&v[3..35]).ok_or(TraceparentError::Malformed)?;
        let parent = decode_lower_hex::<8>(&v[36..52]).ok_or(TraceparentError::Malformed)?;
        let flags = decode_lower_hex::<1>(&v[53..55]).ok_or(TraceparentError::Malformed)?[0];
        let tail_ok = if version == 0 {
            v.len() == 55
        } else {
            v.len() == 55 || v[55] == b'-'
        };
        if !tail_ok {
            return Err(TraceparentError::Malformed);
        }
        let trace_id = TraceId(trace);
        if trace_id.is_zero() {
            return Err(TraceparentError::ZeroTraceId);
        }
        let parent_id = SpanId(parent);
        if parent_id.is_zero() {
            return Err(TraceparentError::ZeroParentId);
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags: TraceFlags::new(flags),
        })
    }

    /// Extracts from every `traceparent` line: `None` when absent, an error for several lines.
    pub fn extract<'a>(
        mut lines: impl Iterator<Item = &'a [u8]>,
    ) -> Option<Result<Self, TraceparentError>> {
        let first = lines.next()?;
        if lines.next().is_some() {
            return Some(Err(TraceparentError::Duplicate));
        }
        Some(Self::parse(first))
    }

    /// Version-00 header value, without allocating.
    pub fn to_header(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        out[3..35].copy_from_slice(&self.trace_id.to_hex());
        out[36..52].copy_from_slice(&self.parent_id.to_hex());
        let flags = self.flags.bits();
        out[53] = crate::ids::HEX[(flags >> 4) as usize];
        out[54] = crate::ids::HEX[(flags & 0xf) as usize];
        out
    }
}

/// Why a `tracestate` was dropped; the names match the golden vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TracestateError {
    /// Longer than [`MAX_TRACESTATE_BYTES`].
    #[error("tracestate longer than {MAX_TRACESTATE_BYTES} bytes")]
    TooLong,
    /// More than 32 members.
    #[error("tracestate has more than 32 members")]
    TooManyMembers,
    /// A key appears twice.
    #[error("tracestate repeats a key")]
    DuplicateKey,
    /// A member breaks the key or value grammar.
    #[error("invalid tracestate member")]
    InvalidMember,
}

impl TracestateError {
    /// The error kind's name in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            TracestateError::TooLong => "too_long",
            TracestateError::TooManyMembers => "too_many_members",
            TracestateError::DuplicateKey => "duplicate_key",
            TracestateError::InvalidMember => "invalid_member",
        }
    }
}

/// A parsed `tracestate` list, members in order.
///
/// ```
/// use raceway::trace_context::TraceState;
/// let ts = TraceState::extract([&b"rojo=1 , congo=2"[..]].into_iter()).unwrap();
/// assert_eq!(ts.members().collect::<Vec<_>>(), [("rojo", "1"), ("congo", "2")]);
/// assert_eq!(ts.get("congo"), Some("2"));
/// assert_eq!(ts.header_with_entry(Some("00f067aa0ba902b7")).unwrap(), "raceway=00f067aa0ba902b7,rojo=1,congo=2");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceState {
    /// The members as one normalised list (`key=value` joined by `,`, no whitespace, no empty members): one
    /// allocation per received list, and shared, because every span of a request keeps the upstream list.
    /// `None` for the empty list, so that the traceparent-only path allocates nothing.
    list: Option<std::sync::Arc<str>>,
}

fn key_ok(key: &[u8]) -> bool {
    matches!(key.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && key.len() <= 256
        && key
            .iter()
            .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'))
}

fn value_ok(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value.last() != Some(&b' ')
        && value
            .iter()
            .all(|&c| matches!(c, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e))
}

impl TraceState {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a list from members; they are not validated (use [`TraceState::extract`] for input).
    pub fn from_members(members: Vec<(String, String)>) -> Self {
        let mut list = String::new();
        for (key, value) in &members {
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(key);
            list.push('=');
            list.push_str(value);
        }
        Self {
            list: (!members.is_empty()).then(|| list.into()),
        }
    }

    /// Members in order, as `(key, value)`.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.list
            .as_deref()
            .into_iter()
            .flat_map(|list| list.split(','))
            .map(|member| member.split_once('=').unwrap_or((member, "")))
    }

    /// `true` when the list has no member.
    pub fn is_empty(&self) -> bool {
        self.list.is_none()
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Parses every `tracestate` line per spec/PROPAGATION.md §2.1 (lines are joined with `,`).
    pub fn extract<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<Self, TracestateError> {
        thread_local! {
            static LIST: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LIST.with(|list| match list.try_borrow_mut() {
            Ok(mut list) => Self::extract_into(lines, &mut list),
            Err(_) => Self::extract_into(lines, &mut String::new()),
        })
    }

    /// [`TraceState::extract`], normalising into `list` (a reused buffer) and copying it out once.
    fn extract_into<'a>(
        lines: impl Iterator<Item = &'a [u8]>,
        list: &mut String,
    ) -> Result<Self, TracestateError> {
        list.clear();
        // Where each member's key is in `list`, for the duplicate check.
        let mut keys = [(0u16, 0u16); MAX_TRACESTATE_MEMBERS];
        let mut count = 0;
        let mut total = 0usize;
        for (index, line) in lines.enumerate() {
            // The joining comma counts towards the combined length.
            total += line.len() + usize::from(index > 0);
            if total > MAX_TRACESTATE_BYTES {
                return Err(TracestateError::TooLong);
            }
            for raw in line.split(|&b| b == b',') {
                let member = trim_ows(raw);
                if member.is_empty() {
                    continue;
                }
                let eq = member
                    .iter()
                    .position(|&b| b == b'=')
                    .ok_or(TracestateError::InvalidMember)?;
                let (key, value) = (&member[..eq], &member[eq + 1..]);
                if !key_ok(key) || !value_ok(value) {
                    return Err(TracestateError::InvalidMember);
                }
                if count == MAX_TRACESTATE_MEMBERS {
                    return Err(TracestateError::TooManyMembers);
                }
                if keys[..count]
                    .iter()
                    .any(|&(from, to)| &list.as_bytes()[from as usize..to as usize] == key)
                {
                    return Err(TracestateError::DuplicateKey);
                }
                if count > 0 {
                    list.push(',');
                }
                // `total` is bounded by MAX_TRACESTATE_BYTES, so positions fit in u16.
                let from = list.len() as u16;
                // Both are ASCII by the grammar checks above.
                list.push_str(
                    std::str::from_utf8(key).map_err(|_| TracestateError::InvalidMember)?,
                );
                keys[count] = (from, list.len() as u16);
                list.push('=');
                list.push_str(
                    std::str::from_utf8(value).map_err(|_| TracestateError::InvalidMember)?,
                );
                count += 1;
            }
        }
        Ok(Self {
            list: (count > 0).then(|| std::sync::Arc::from(list.as_str())),
        })
    }

    /// The header value after the spec's mutation (§2.2): our entry (if any) left-most, any old entry of ours
    /// removed, right-most members dropped past 32. `None` when the list would be empty.
    pub fn header_with_entry(&self, entry: Option<&str>) -> Option<String> {
        let mut out = String::new();
        let mut count = 0;
        if let Some(value) = entry {
            out.push_str(TRACESTATE_KEY);
            out.push('=');
            out.push_str(value);
            count = 1;
        }
        for (k, v) in self.members() {
            if k == TRACESTATE_KEY {
                continue;
            }
            if count == MAX_TRACESTATE_MEMBERS {
                break;
            }
            if count > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
            count += 1;
        }
        (count > 0).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn traceparent_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = TraceParent::parse(&bytes);
        }

        #[test]
        fn traceparent_round_trips(trace in any::<[u8; 16]>(), parent in any::<[u8; 8]>(), flags in any::<u8>()) {
            prop_assume!(trace != [0; 16] && parent != [0; 8]);
            let tp = TraceParent { trace_id: TraceId(trace), parent_id: SpanId(parent), flags: TraceFlags::new(flags) };
            prop_assert_eq!(TraceParent::parse(&tp.to_header()).unwrap(), tp);
        }

        #[test]
        fn tracestate_parse_never_panics(s in "\\PC{0,300}") {
            if let Ok(ts) = TraceState::extract([s.as_bytes()].into_iter()) {
                prop_assert!(ts.members().count() <= 32);
                // Whatever parsed re-serialises to something that parses to the same list.
                if let (None, Some(h)) = (ts.get(TRACESTATE_KEY), ts.header_with_entry(None)) {
                    prop_assert_eq!(TraceState::extract([h.as_bytes()].into_iter()).unwrap(), ts);
                }
            }
        }
    }
}
