//! The `raceway-clock` vendor header, v1 (spec/PROPAGATION.md §3).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

// SIMD base64: the scalar engine was a third of the clock codec's cost.
use base64_simd::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock_json::{self, RawClock, RawPayload};
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
    pub service: Arc<str>,
    /// Sender's instance.
    pub instance: Arc<str>,
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
    #[serde(borrow)]
    service: Cow<'a, str>,
    #[serde(borrow)]
    instance: Cow<'a, str>,
    #[serde(borrow)]
    clock: Vec<(Cow<'a, str>, u64)>,
    #[serde(default, borrow)]
    flags: Vec<Cow<'a, str>>,
}

impl<'a> From<WirePayload<'a>> for RawPayload<'a> {
    fn from(w: WirePayload<'a>) -> Self {
        RawPayload {
            trace_id: w.trace_id,
            span_id: w.span_id,
            parent_span_id: w.parent_span_id,
            service: w.service,
            instance: w.instance,
            clock: RawClock::Pairs(w.clock),
            flags: w.flags,
        }
    }
}

/// The payload as serde writes it: the oracle of the hand-written canonical writer.
#[cfg(test)]
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

/// Payloads up to this many JSON bytes are framed as one stored (`Raw_Block`) zstd block instead of being
/// compressed. Below this size zstd saves at most ~100 header bytes, but building its entropy tables costs more CPU
/// than the rest of a hop; every zstd decoder reads stored blocks (RFC 8878 §3.1.1.2.2).
pub const STORE_UNCOMPRESSED_UP_TO: usize = 512;

/// Writes `payload` as a single-segment zstd frame holding one `Raw_Block` (RFC 8878 §3.1.1).
fn write_stored_frame(payload: &[u8], frame: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty() && payload.len() < 256 + 65_536);
    frame.extend_from_slice(&ZSTD_MAGIC);
    // Frame_Header_Descriptor: Single_Segment_flag set (no window descriptor; the content size is the window), no
    // checksum, no dictionary; Frame_Content_Size on 1 byte below 256, else on 2 bytes as `size - 256`.
    if payload.len() < 256 {
        frame.push(0b0010_0000);
        frame.push(payload.len() as u8);
    } else {
        frame.push(0b0110_0000);
        frame.extend_from_slice(&((payload.len() - 256) as u16).to_le_bytes());
    }
    // Block_Header, 3 bytes little-endian: Last_Block = 1, Block_Type = Raw (0), Block_Size.
    let block_header = ((payload.len() as u32) << 3) | 1;
    frame.extend_from_slice(&block_header.to_le_bytes()[..3]);
    frame.extend_from_slice(payload);
}

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

/// Decompresses `codec.frame` into `codec.json` (bounded) and parses it.
fn decompress_and_parse(codec: &mut Codec) -> Result<ClockPayload, ClockError> {
    if codec.decompressor.is_none() {
        codec.decompressor =
            Some(zstd::bulk::Decompressor::new().map_err(|_| ClockError::Malformed)?);
    }
    let decompressor = codec.decompressor.as_mut().ok_or(ClockError::Malformed)?;
    codec.json.clear();
    codec.json.reserve(MAX_DECOMPRESSED_BYTES);
    // Single-pass decoding into a bounded buffer: no window allocation, work bounded by the output limit.
    decompressor
        .decompress_to_buffer(&codec.frame, &mut codec.json)
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
        CODEC.with(|cell| {
            let mut codec = cell.borrow_mut();
            let codec = &mut *codec;
            codec.frame.clear();
            URL_SAFE_NO_PAD
                .decode_append(encoded, &mut codec.frame)
                .map_err(|_| ClockError::Malformed)?;
            if codec.frame.starts_with(&ZSTD_MAGIC) {
                decompress_and_parse(codec)
            } else if codec.frame.first() == Some(&b'{') {
                Self::from_json(&codec.frame)
            } else {
                Err(ClockError::Malformed)
            }
        })
    }

    fn from_json(json: &[u8]) -> Result<Self, ClockError> {
        let raw = match clock_json::read_canonical(json, MAX_WIRE_COMPONENTS) {
            Some(raw) => raw,
            None => serde_json::from_slice::<WirePayload<'_>>(json)
                .map_err(|_| ClockError::Malformed)?
                .into(),
        };
        Self::validate(raw)
    }

    fn validate(wire: RawPayload<'_>) -> Result<Self, ClockError> {
        if matches!(&wire.clock, RawClock::Pairs(pairs) if pairs.len() > MAX_WIRE_COMPONENTS) {
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
        let clock = match wire.clock {
            RawClock::Checked(clock) => clock,
            RawClock::Pairs(pairs) => {
                if pairs
                    .iter()
                    .any(|(k, n)| !name_ok(k) || *n > crate::vector_clock::MAX_COUNTER)
                {
                    return Err(ClockError::Malformed);
                }
                // Components arrive with the same keys request after request: share them instead of allocating.
                VectorClock::from_pairs(
                    pairs
                        .iter()
                        .map(|(k, n)| (crate::context::shared_name(k), *n)),
                )
            }
        };
        Ok(ClockPayload {
            trace_id,
            span_id,
            parent_span_id,
            // Like the clock's keys, the names repeat request after request: shared, not allocated.
            service: crate::context::shared_name(&wire.service),
            instance: crate::context::shared_name(&wire.instance),
            clock,
            flags: wire.flags.into_iter().map(Cow::into_owned).collect(),
        })
    }

    /// The payload's JSON text.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = Vec::with_capacity(256);
        self.write_json(&mut json);
        json
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        clock_json::write_payload(
            out,
            &self.trace_id,
            &self.span_id,
            &self.parent_span_id,
            &self.service,
            &self.instance,
            self.clock.iter(),
            &self.flags,
        );
    }

    /// Encodes the header value: `v1;` + base64url-nopad(zstd(JSON)).
    pub fn encode(&self) -> String {
        encode_with(|json| self.write_json(json))
    }
}

/// Frames, compresses (above [`STORE_UNCOMPRESSED_UP_TO`]) and base64-encodes the JSON written by `write_json`.
fn encode_with(write_json: impl FnOnce(&mut Vec<u8>)) -> String {
    CODEC.with(|cell| {
        let mut codec = cell.borrow_mut();
        let codec = &mut *codec;
        codec.json.clear();
        write_json(&mut codec.json);
        codec.frame.clear();
        let compressed = if codec.json.len() <= STORE_UNCOMPRESSED_UP_TO {
            write_stored_frame(&codec.json, &mut codec.frame);
            true
        } else {
            if codec.compressor.is_none() {
                codec.compressor = zstd::bulk::Compressor::new(COMPRESSION_LEVEL).ok();
            }
            codec
                .frame
                .reserve(zstd::zstd_safe::compress_bound(codec.json.len()));
            codec
                .compressor
                .as_mut()
                .is_some_and(|c| c.compress_to_buffer(&codec.json, &mut codec.frame).is_ok())
        };
        // Compression cannot fail for in-memory input; fall back to the plain-JSON form decoders also accept.
        let bytes = if compressed {
            &codec.frame
        } else {
            &codec.json
        };
        // Exactly the unpadded length: a carrier that takes the string over as `Bytes` (an `http::HeaderValue`)
        // then needs no second allocation, which it does when the capacity is larger than the length.
        let mut out = String::with_capacity(3 + (bytes.len() * 4).div_ceil(3));
        out.push_str("v1;");
        URL_SAFE_NO_PAD.encode_append(bytes, &mut out);
        debug_assert_eq!(out.len(), out.capacity());
        out
    })
}

/// Encodes a `raceway-clock` value from borrowed parts, so senders need not copy their clock and names into a
/// [`ClockPayload`] (the hot path of every outbound call and response).
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_parts<'a>(
    trace_id: &Uuid,
    span_id: &SpanId,
    parent_span_id: &Option<SpanId>,
    service: &str,
    instance: &str,
    clock: impl Iterator<Item = (&'a str, u64)>,
    flags: &[String],
) -> String {
    encode_with(|json| {
        clock_json::write_payload(
            json,
            trace_id,
            span_id,
            parent_span_id,
            service,
            instance,
            clock,
            flags,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    // The scalar `base64` crate as an independent implementation.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
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

    fn serde_only(json: &[u8]) -> Result<ClockPayload, ClockError> {
        let wire: WirePayload<'_> =
            serde_json::from_slice(json).map_err(|_| ClockError::Malformed)?;
        ClockPayload::validate(wire.into())
    }

    fn arb_payload() -> impl Strategy<Value = ClockPayload> {
        // Mostly plain names (the canonical fast path); some with quotes, backslashes, control characters and
        // non-ASCII text (escaped on write, read by serde).
        let name = || {
            prop_oneof![
                8 => "[a-z0-9#_.-]{1,12}",
                1 => "(\\PC|[a-z0-9#_.-]|\"|\\\\|[\u{0}-\u{1f}]){1,12}",
            ]
        };
        (
            any::<[u8; 16]>(),
            1u64..,
            proptest::option::of(1u64..),
            name(),
            name(),
            proptest::collection::vec(
                (
                    name(),
                    prop_oneof![0u64..20, 0u64..=crate::vector_clock::MAX_COUNTER],
                ),
                0..8,
            ),
            proptest::collection::vec(name(), 0..3),
        )
            .prop_map(|(trace, span, parent, service, instance, clock, flags)| {
                ClockPayload {
                    trace_id: Uuid::from_bytes(trace),
                    span_id: SpanId(span.to_be_bytes()),
                    parent_span_id: parent.map(|p| SpanId(p.to_be_bytes())),
                    service: service.into(),
                    instance: instance.into(),
                    clock: VectorClock::from_pairs(clock),
                    flags,
                }
            })
    }

    proptest! {
        #[test]
        fn simd_base64_is_as_strict_as_the_scalar_engine(text in "[A-Za-z0-9_=+/ -]{0,70}") {
            prop_assert_eq!(
                base64_simd::URL_SAFE_NO_PAD.decode_to_vec(text.as_bytes()).ok(),
                URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()
            );
        }

        #[test]
        fn simd_base64_encodes_like_the_scalar_engine(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(
                base64_simd::URL_SAFE_NO_PAD.encode_to_string(&bytes),
                URL_SAFE_NO_PAD.encode(&bytes)
            );
        }

        #[test]
        fn canonical_writer_matches_serde(payload in arb_payload()) {
            let ours = payload.to_json();
            let serde = serde_json::to_vec(&WirePayloadRef {
                trace_id: &payload.trace_id,
                span_id: &payload.span_id,
                parent_span_id: &payload.parent_span_id,
                service: &payload.service,
                instance: &payload.instance,
                clock: &payload.clock,
                flags: &payload.flags,
            }).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
        }

        #[test]
        fn canonical_reader_agrees_with_serde(payload in arb_payload()) {
            let json = payload.to_json();
            prop_assert_eq!(ClockPayload::from_json(&json), serde_only(&json));
        }

        #[test]
        fn canonical_reader_agrees_with_serde_on_mutations(
            payload in arb_payload(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
                b" \t\n\"\\,:[]{}0123456789-.eEnulx\x00\xff".to_vec())), 1..4),
        ) {
            let mut json = payload.to_json();
            for (at, op, byte) in edits {
                let i = at.index(json.len() + 1);
                match op {
                    0 => json.insert(i, byte),
                    1 if i < json.len() => { json.remove(i); }
                    _ if i < json.len() => json[i] = byte,
                    _ => {}
                }
            }
            prop_assert_eq!(ClockPayload::from_json(&json), serde_only(&json));
        }
    }

    #[test]
    fn out_of_bounds_components_in_canonical_form_get_the_same_verdict_as_serde() {
        let with_clock = |clock: &str| {
            format!(
                r#"{{"trace_id":"4bf92f35-77b3-4da6-a3ce-929d0e0e4736","span_id":"00f067aa0ba902b7","parent_span_id":null,"service":"a","instance":"b","clock":[{clock}],"flags":[]}}"#
            )
        };
        let many: Vec<String> = (0..=MAX_WIRE_COMPONENTS)
            .map(|i| format!(r#"["k{i}#1",1]"#))
            .collect();
        let cases = [
            format!(r#"["{}",1]"#, "k".repeat(257)),
            r#"["",1]"#.to_owned(),
            format!(r#"["a#b",{}]"#, crate::vector_clock::MAX_COUNTER + 1),
            format!(r#"["a#b",{}]"#, crate::vector_clock::MAX_COUNTER),
            r#"["a#b",1],["a#b",4]"#.to_owned(),
            many.join(","),
        ];
        let verdicts: Vec<_> = cases
            .iter()
            .map(|clock| {
                let json = with_clock(clock);
                let ours = ClockPayload::from_json(json.as_bytes());
                assert_eq!(ours, serde_only(json.as_bytes()), "{clock:.80}");
                ours.map(|p| p.clock.len())
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                Err(ClockError::Malformed),
                Err(ClockError::Malformed),
                Err(ClockError::Malformed),
                Ok(1),
                Ok(1),
                Err(ClockError::TooManyComponents),
            ]
        );
    }

    #[test]
    fn non_canonical_json_from_other_encoders_is_read() {
        let pretty = br#"{ "service": "a", "instance": "b", "clock": [["a#b", 3]],
            "span_id": "00f067aa0ba902b7", "trace_id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "extra": 1 }"#;
        assert!(clock_json::read_canonical(pretty, MAX_WIRE_COMPONENTS).is_none());
        let canonical = payload_with(3).to_json();
        assert!(clock_json::read_canonical(&canonical, MAX_WIRE_COMPONENTS).is_some());
        let payload = ClockPayload::from_json(pretty).unwrap();
        assert_eq!(payload.clock.get("a#b"), 3);
        assert_eq!(payload.parent_span_id, None);
        assert!(payload.flags.is_empty());
    }

    #[test]
    fn stored_frames_are_read_by_zstd() {
        for len in [1usize, 100, 255, 256, 257, 511, 512, 4096, 65_791] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut frame = Vec::new();
            write_stored_frame(&payload, &mut frame);
            assert_eq!(frame.len(), payload.len() + if len < 256 { 9 } else { 10 });
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&frame).ok(),
                Some(Some(len as u64))
            );
            assert_eq!(zstd::bulk::decompress(&frame, len).unwrap(), payload);
        }
    }

    fn payload_with(components: usize) -> ClockPayload {
        ClockPayload {
            trace_id: "4bf92f35-77b3-4da6-a3ce-929d0e0e4736".parse().unwrap(),
            span_id: "00f067aa0ba902b7".parse().unwrap(),
            parent_span_id: None,
            service: "checkout".into(),
            instance: "checkout-1".into(),
            clock: VectorClock::from_pairs(
                (0..components).map(|i| (format!("service-{i}#instance-{i}"), i as u64 + 1)),
            ),
            flags: vec![],
        }
    }

    #[test]
    fn small_payloads_are_stored_and_large_ones_compressed() {
        for components in [0, 1, 4, 8, 16, 64, 256] {
            let payload = payload_with(components);
            let json_len = payload.to_json().len();
            let header = payload.encode();
            let frame = URL_SAFE_NO_PAD.decode(&header[3..]).unwrap();
            assert!(frame.starts_with(&ZSTD_MAGIC));
            // A stored frame is the JSON plus 9 or 10 bytes of framing; a compressed one is smaller than the JSON.
            if json_len <= STORE_UNCOMPRESSED_UP_TO {
                assert_eq!(
                    &frame[frame.len() - json_len..],
                    payload.to_json().as_slice()
                );
            } else {
                assert!(
                    frame.len() < json_len,
                    "{components} components not compressed"
                );
            }
            assert_eq!(ClockPayload::decode(header.as_bytes()), Ok(payload));
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
