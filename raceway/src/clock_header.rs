//! The `raceway-clock` vendor header, v1 (spec/PROPAGATION.md §3).

use std::borrow::Cow;
use std::cell::RefCell;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{SpanId, VectorClock};

/// Header name.
pub const RACEWAY_CLOCK: &str = "raceway-clock";
/// Longest accepted header value, in bytes (after trimming optional whitespace).
pub const MAX_HEADER_BYTES: usize = 8192;
/// Largest accepted decompressed JSON payload, in bytes.
pub const MAX_DECOMPRESSED_BYTES: usize = 65_536;
/// Most clock components a payload may carry.
pub const MAX_WIRE_COMPONENTS: usize = 256;
const MAX_FLAGS: usize = 16;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The decoded payload of a `raceway-clock` header.
///
/// ```
/// use raceway::{ClockPayload, SpanId, TraceId, VectorClock};
/// let payload = ClockPayload {
///     trace_id: TraceId::random().to_uuid(),
///     span_id: SpanId::random(),
///     parent_span_id: None,
///     service: "orders".into(),
///     instance: "orders-1".into(),
///     clock: VectorClock::from_pairs([("orders#orders-1", 3)]),
///     flags: vec![],
/// };
/// let header = payload.encode();
/// assert!(header.starts_with("v1;"));
/// assert_eq!(ClockPayload::decode(header.as_bytes()).unwrap(), payload);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockPayload {
    /// Same 128 bits as the traceparent trace-id.
    pub trace_id: Uuid,
    /// The span id of this call (= traceparent parent-id).
    pub span_id: SpanId,
    /// The sender's own span.
    pub parent_span_id: Option<SpanId>,
    /// Sender's service.
    pub service: String,
    /// Sender's instance.
    pub instance: String,
    /// Sender's vector clock.
    pub clock: VectorClock,
    /// Optional flags, preserved in order.
    pub flags: Vec<String>,
}

/// Why a `raceway-clock` header was not used; the names match the golden vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockError {
    /// Longer than [`MAX_HEADER_BYTES`].
    #[error("raceway-clock header longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    /// A well-formed version other than `v1`.
    #[error("unsupported raceway-clock version")]
    UnsupportedVersion,
    /// Anything structurally wrong.
    #[error("malformed raceway-clock header")]
    Malformed,
    /// Decompresses to more than [`MAX_DECOMPRESSED_BYTES`].
    #[error("raceway-clock payload decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")]
    TooLarge,
    /// More than [`MAX_WIRE_COMPONENTS`] components.
    #[error("raceway-clock carries more than {MAX_WIRE_COMPONENTS} components")]
    TooManyComponents,
}

/// The outcome of clock extraction for a request (spec/PROPAGATION.md §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockStatus {
    /// Clock merged.
    Ok,
    /// Clock merged; an intermediary re-parented traceparent.
    Reparented,
    /// Clock of another trace, ignored.
    Conflict,
    /// No clock.
    Absent,
    /// Clock present but traceparent absent or invalid.
    Ignored,
    /// See [`ClockError::TooLong`].
    TooLong,
    /// See [`ClockError::UnsupportedVersion`].
    UnsupportedVersion,
    /// See [`ClockError::Malformed`].
    Malformed,
    /// See [`ClockError::TooLarge`].
    TooLarge,
    /// See [`ClockError::TooManyComponents`].
    TooManyComponents,
}

impl From<ClockError> for ClockStatus {
    fn from(e: ClockError) -> Self {
        match e {
            ClockError::TooLong => ClockStatus::TooLong,
            ClockError::UnsupportedVersion => ClockStatus::UnsupportedVersion,
            ClockError::Malformed => ClockStatus::Malformed,
            ClockError::TooLarge => ClockStatus::TooLarge,
            ClockError::TooManyComponents => ClockStatus::TooManyComponents,
        }
    }
}

impl ClockStatus {
    /// The status name in the spec (`ok`, `absent`, `malformed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ClockStatus::Ok => "ok",
            ClockStatus::Reparented => "reparented",
            ClockStatus::Conflict => "conflict",
            ClockStatus::Absent => "absent",
            ClockStatus::Ignored => "ignored",
            ClockStatus::TooLong => "too_long",
            ClockStatus::UnsupportedVersion => "unsupported_version",
            ClockStatus::Malformed => "malformed",
            ClockStatus::TooLarge => "too_large",
            ClockStatus::TooManyComponents => "too_many_components",
        }
    }

    /// `true` when the clock was merged.
    pub fn is_merged(self) -> bool {
        matches!(self, ClockStatus::Ok | ClockStatus::Reparented)
    }

    /// `true` when a header was present but unusable (counted as a parse error).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            ClockStatus::TooLong
                | ClockStatus::UnsupportedVersion
                | ClockStatus::Malformed
                | ClockStatus::TooLarge
                | ClockStatus::TooManyComponents
        )
    }
}

#[derive(Deserialize)]
struct WirePayload<'a> {
    #[serde(borrow)]
    trace_id: Cow<'a, str>,
    #[serde(borrow)]
    span_id: Cow<'a, str>,
    #[serde(default, borrow)]
    parent_span_id: Option<Cow<'a, str>>,
    service: String,
    instance: String,
    #[serde(borrow)]
    clock: Vec<(Cow<'a, str>, u64)>,
    #[serde(default)]
    flags: Vec<String>,
}

#[derive(Serialize)]
struct WirePayloadRef<'a> {
    trace_id: &'a Uuid,
    span_id: &'a SpanId,
    parent_span_id: &'a Option<SpanId>,
    service: &'a str,
    instance: &'a str,
    clock: &'a VectorClock,
    flags: &'a [String],
}

/// Per-thread zstd contexts and scratch buffers: contexts are expensive to create (~100 KiB each) and the
/// buffers would otherwise be allocated for every header.
struct Codec {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    json: Vec<u8>,
    frame: Vec<u8>,
}

thread_local! {
    static CODEC: RefCell<Codec> = const {
        RefCell::new(Codec { compressor: None, decompressor: None, json: Vec::new(), frame: Vec::new() })
    };
}

/// Compression level of encoded clocks. Negative levels store literals raw: for payloads of a few hundred bytes
/// that costs a few percent of size and saves building and reading Huffman tables on both sides of every call.
const COMPRESSION_LEVEL: i32 = -1;

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ows(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ows(*last) {
            break;
        }
        v = rest;
    }
    v
}

fn parse_uuid_text(s: &str) -> Option<Uuid> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    Uuid::try_parse(s).ok()
}

fn parse_span(s: &str) -> Result<SpanId, ClockError> {
    s.parse().map_err(|_| ClockError::Malformed)
}

fn decompress_and_parse(bytes: &[u8]) -> Result<ClockPayload, ClockError> {
    CODEC.with(|cell| {
        let mut codec = cell.borrow_mut();
        let codec = &mut *codec;
        if codec.decompressor.is_none() {
            codec.decompressor =
                Some(zstd::bulk::Decompressor::new().map_err(|_| ClockError::Malformed)?);
        }
        let decompressor = codec.decompressor.as_mut().ok_or(ClockError::Malformed)?;
        codec.json.clear();
        codec.json.reserve(MAX_DECOMPRESSED_BYTES);
        // Single-pass decoding into a bounded buffer: no window allocation, work bounded by the output limit.
        decompressor
            .decompress_to_buffer(bytes, &mut codec.json)
            .map_err(|e| {
                let msg = e.to_string();
                if msg.contains("too small") || msg.contains("too much memory") {
                    ClockError::TooLarge
                } else {
                    ClockError::Malformed
                }
            })?;
        if codec.json.len() > MAX_DECOMPRESSED_BYTES {
            return Err(ClockError::TooLarge);
        }
        ClockPayload::from_json(&codec.json)
    })
}

impl ClockPayload {
    /// Decodes a header value (optional whitespace around it is allowed), enforcing every bound of the spec.
    pub fn decode(value: &[u8]) -> Result<Self, ClockError> {
        let value = trim_ows(value);
        if value.len() > MAX_HEADER_BYTES {
            return Err(ClockError::TooLong);
        }
        let rest = value.strip_prefix(b"v").ok_or(ClockError::Malformed)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 3 || rest.get(digits) != Some(&b';') {
            return Err(ClockError::Malformed);
        }
        if &rest[..digits] != b"1" {
            return Err(ClockError::UnsupportedVersion);
        }
        let encoded = &rest[digits + 1..];
        if encoded.is_empty() {
            return Err(ClockError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| ClockError::Malformed)?;
        if raw.starts_with(&ZSTD_MAGIC) {
            decompress_and_parse(&raw)
        } else if raw.first() == Some(&b'{') {
            Self::from_json(&raw)
        } else {
            Err(ClockError::Malformed)
        }
    }

    fn from_json(json: &[u8]) -> Result<Self, ClockError> {
        let wire: WirePayload<'_> =
            serde_json::from_slice(json).map_err(|_| ClockError::Malformed)?;
        if wire.clock.len() > MAX_WIRE_COMPONENTS {
            return Err(ClockError::TooManyComponents);
        }
        let trace_id = parse_uuid_text(&wire.trace_id).ok_or(ClockError::Malformed)?;
        let span_id = parse_span(&wire.span_id)?;
        let parent_span_id = wire.parent_span_id.as_deref().map(parse_span).transpose()?;
        let name_ok = |s: &str| !s.is_empty() && s.len() <= 256;
        if !name_ok(&wire.service) || !name_ok(&wire.instance) {
            return Err(ClockError::Malformed);
        }
        if wire.flags.len() > MAX_FLAGS || wire.flags.iter().any(|f| f.is_empty() || f.len() > 64) {
            return Err(ClockError::Malformed);
        }
        if wire
            .clock
            .iter()
            .any(|(k, n)| !name_ok(k) || *n > crate::vector_clock::MAX_COUNTER)
        {
            return Err(ClockError::Malformed);
        }
        Ok(ClockPayload {
            trace_id,
            span_id,
            parent_span_id,
            service: wire.service,
            instance: wire.instance,
            clock: VectorClock::from_pairs(wire.clock.iter().map(|(k, n)| (&**k, *n))),
            flags: wire.flags,
        })
    }

    fn wire(&self) -> WirePayloadRef<'_> {
        WirePayloadRef {
            trace_id: &self.trace_id,
            span_id: &self.span_id,
            parent_span_id: &self.parent_span_id,
            service: &self.service,
            instance: &self.instance,
            clock: &self.clock,
            flags: &self.flags,
        }
    }

    /// The payload's JSON text.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.wire()).unwrap_or_default()
    }

    /// Encodes the header value: `v1;` + base64url-nopad(zstd(JSON)).
    pub fn encode(&self) -> String {
        CODEC.with(|cell| {
            let mut codec = cell.borrow_mut();
            let codec = &mut *codec;
            codec.json.clear();
            // Serialising into a Vec cannot fail for these types.
            let _ = serde_json::to_writer(&mut codec.json, &self.wire());
            if codec.compressor.is_none() {
                codec.compressor = zstd::bulk::Compressor::new(COMPRESSION_LEVEL).ok();
            }
            codec.frame.clear();
            codec
                .frame
                .reserve(zstd::zstd_safe::compress_bound(codec.json.len()));
            let compressed = codec
                .compressor
                .as_mut()
                .is_some_and(|c| c.compress_to_buffer(&codec.json, &mut codec.frame).is_ok());
            // Compression cannot fail for in-memory input; fall back to the plain-JSON form decoders also accept.
            let bytes = if compressed {
                &codec.frame
            } else {
                &codec.json
            };
            let mut out = String::with_capacity(3 + bytes.len().div_ceil(3) * 4);
            out.push_str("v1;");
            URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ClockPayload::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_prefixed_base64(body in "[A-Za-z0-9_-]{0,600}") {
            let _ = ClockPayload::decode(format!("v1;{body}").as_bytes());
        }

        #[test]
        fn decode_never_panics_on_compressed_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut frame = ZSTD_MAGIC.to_vec();
            frame.extend(bytes);
            let _ = ClockPayload::decode(format!("v1;{}", URL_SAFE_NO_PAD.encode(frame)).as_bytes());
        }
    }

    #[test]
    fn ten_thousand_components_are_rejected_cheaply() {
        let clock: Vec<String> = (0..10_000).map(|i| format!("[\"s{i}#i\",1]")).collect();
        let json = format!(
            "{{\"trace_id\":\"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\",\"service\":\"a\",\"instance\":\"b\",\"clock\":[{}]}}",
            clock.join(",")
        );
        let frame = zstd::bulk::compress(json.as_bytes(), 19).unwrap();
        let header = format!("v1;{}", URL_SAFE_NO_PAD.encode(frame));
        assert!(header.len() < MAX_HEADER_BYTES);
        assert_eq!(
            ClockPayload::decode(header.as_bytes()),
            Err(ClockError::TooLarge)
        );
    }
}
