//! A fast path for the JSON of `raceway-clock` payloads in the canonical form every Raceway encoder emits (compact,
//! fields in spec order, no escapes). Anything else — whitespace, another field order, escapes, unknown fields —
//! makes the reader return `None` and the caller falls back to `serde_json`, so accepted input and results are
//! exactly serde's (tested against it below). serde's generic machinery was over half of a hop's cost.

use std::borrow::Cow;

use uuid::Uuid;

use crate::vector_clock::MAX_COUNTER;
use crate::{SpanId, VectorClock};

/// Writes a clock as `serde_json` writes a [`VectorClock`]: `[["key",counter],...]`.
pub(crate) fn write_clock<'a>(out: &mut Vec<u8>, clock: impl Iterator<Item = (&'a str, u64)>) {
    let mut digits = itoa::Buffer::new();
    out.push(b'[');
    for (i, (key, counter)) in clock.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        write_str(out, key);
        out.push(b',');
        out.extend_from_slice(digits.format(counter).as_bytes());
        out.push(b']');
    }
    out.push(b']');
}

/// Writes `s` as a JSON string, byte-identical to `serde_json`.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Branch-free so that it vectorises; names almost never need escaping.
    let needs_escape = s.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        // Serialising a `&str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Writes the canonical payload JSON; the output equals `serde_json::to_vec` of the wire struct.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_payload<'a>(
    out: &mut Vec<u8>,
    trace_id: &Uuid,
    span_id: &SpanId,
    parent_span_id: &Option<SpanId>,
    service: &str,
    instance: &str,
    clock: impl Iterator<Item = (&'a str, u64)>,
    flags: &[String],
) {
    out.extend_from_slice(b"{\"trace_id\":\"");
    out.extend_from_slice(
        trace_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"span_id\":\"");
    out.extend_from_slice(&span_id.to_hex());
    out.extend_from_slice(b"\",\"parent_span_id\":");
    match parent_span_id {
        Some(parent) => {
            out.push(b'"');
            out.extend_from_slice(&parent.to_hex());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"service\":");
    write_str(out, service);
    out.extend_from_slice(b",\"instance\":");
    write_str(out, instance);
    out.extend_from_slice(b",\"clock\":");
    write_clock(out, clock);
    out.extend_from_slice(b",\"flags\":[");
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, flag);
    }
    out.extend_from_slice(b"]}");
}

/// The borrowed fields of a payload, before validation.
pub(crate) struct RawPayload<'a> {
    pub trace_id: Cow<'a, str>,
    pub span_id: Cow<'a, str>,
    pub parent_span_id: Option<Cow<'a, str>>,
    pub service: Cow<'a, str>,
    pub instance: Cow<'a, str>,
    pub clock: RawClock<'a>,
    pub flags: Vec<Cow<'a, str>>,
}

/// The clock of a [`RawPayload`].
pub(crate) enum RawClock<'a> {
    /// As read by serde, not validated yet.
    Pairs(Vec<(Cow<'a, str>, u64)>),
    /// Built by the canonical reader, which checked every component's key and counter.
    Checked(VectorClock),
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn literal(&mut self, expected: &str) -> Option<()> {
        let end = self.pos.checked_add(expected.len())?;
        let got = self.text.as_bytes().get(self.pos..end)?;
        // The literals are a few bytes long: a loop the compiler unrolls costs less than a call into `memcmp`.
        got.iter()
            .zip(expected.as_bytes())
            .all(|(a, b)| a == b)
            .then(|| self.pos = end)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// A string; the caller has checked that the text holds no escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.literal("\"")?;
        let start = self.pos;
        let len = memchr::memchr(b'"', &self.text.as_bytes()[start..])?;
        self.pos = start + len + 1;
        self.text.get(start..start + len)
    }

    /// A non-negative integer as serde_json reads it into a `u64`: no sign, no leading zero, no fraction.
    fn counter(&mut self) -> Option<u64> {
        let bytes = &self.text.as_bytes()[self.pos..];
        let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || (len > 1 && bytes[0] == b'0') {
            return None;
        }
        if matches!(bytes.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut value: u64 = 0;
        for &digit in &bytes[..len] {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
        }
        self.pos += len;
        Some(value)
    }
}

/// Reads the canonical form; `None` means "not canonical, ask serde" (never "invalid").
pub(crate) fn read_canonical(json: &[u8], max_components: usize) -> Option<RawPayload<'_>> {
    // Escapes and control characters (raw ones are invalid JSON) are left to serde. One branch-free pass over
    // the whole text vectorises; the string scans then only look for the closing quote.
    let needs_serde = json
        .iter()
        .fold(false, |found, &b| found | (b < 0x20) | (b == b'\\'));
    if needs_serde {
        return None;
    }
    let text = std::str::from_utf8(json).ok()?;
    let mut r = Reader { text, pos: 0 };
    r.literal("{\"trace_id\":")?;
    let trace_id = r.string()?;
    r.literal(",\"span_id\":")?;
    let span_id = r.string()?;
    r.literal(",\"parent_span_id\":")?;
    let parent_span_id = if r.peek() == Some(b'n') {
        r.literal("null")?;
        None
    } else {
        Some(Cow::Borrowed(r.string()?))
    };
    r.literal(",\"service\":")?;
    let service = r.string()?;
    r.literal(",\"instance\":")?;
    let instance = r.string()?;
    r.literal(",\"clock\":[")?;
    // Built as it is read (no list of borrowed pairs in between), with the keys shared (they repeat request after
    // request). Anything out of bounds is left to serde and validation, which report it.
    let mut count = 0;
    let mut failed = false;
    let clock = VectorClock::from_pairs(std::iter::from_fn(|| {
        if failed || r.peek() == Some(b']') {
            return None;
        }
        let component = (|| {
            if count > 0 {
                r.literal(",")?;
            }
            if count == max_components {
                return None;
            }
            r.literal("[")?;
            let key = r.string()?;
            r.literal(",")?;
            let counter = r.counter()?;
            r.literal("]")?;
            let key_ok = !key.is_empty() && key.len() <= 256;
            (key_ok && counter <= MAX_COUNTER).then(|| (crate::context::shared_name(key), counter))
        })();
        count += 1;
        failed = component.is_none();
        component
    }));
    if failed {
        return None;
    }
    r.literal("],\"flags\":[")?;
    let mut flags = Vec::new();
    if r.peek() != Some(b']') {
        loop {
            if flags.len() == 64 {
                return None;
            }
            flags.push(Cow::Borrowed(r.string()?));
            if r.peek() == Some(b',') {
                r.pos += 1;
            } else {
                break;
            }
        }
    }
    r.literal("]}")?;
    (r.pos == text.len()).then_some(RawPayload {
        trace_id: Cow::Borrowed(trace_id),
        span_id: Cow::Borrowed(span_id),
        parent_span_id,
        service: Cow::Borrowed(service),
        instance: Cow::Borrowed(instance),
        clock: RawClock::Checked(clock),
        flags,
    })
}
