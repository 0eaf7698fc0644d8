//! Event blocks: how the durable stores keep events. A block holds the JSON texts of some events of one trace,
//! framed and compressed together (the text of an event is ~600 bytes of very repetitive JSON, which zstd at
//! level 1 shrinks ~5× when a trace's events are compressed together, and not much one by one), so a store
//! writes a row per trace and group instead of a row per event.
//!
//! The task that submits a batch prepares its blocks ([`prepare`]), so a store's writer only inserts them.

use std::borrow::Cow;

use super::derive::{self, EdgeRecord, SpanRecord};
use super::group::{Pending, Plan};
use super::{IngestEvent, StoreError, StoreResult};
use uuid::Uuid;

// Event blocks. A block's raw form is its events' JSON texts in ingestion order, each preceded by its length
// (4 bytes, big endian); codec 1 stores that as one zstd frame, codec 0 as is (events carried over by migration
// 0002). `raw_len` is the raw length: the decoder allocates exactly that, and nothing beyond MAX_BLOCK_RAW.

pub(crate) const CODEC_PLAIN: i64 = 0;
pub(crate) const CODEC_ZSTD: i64 = 1;
/// zstd level of new blocks: level 1 already shrinks the (very repetitive) event JSON ~5×; higher levels cost
/// the single writer thread more CPU than the bytes they save.
pub(crate) const ZSTD_LEVEL: i32 = 1;
/// A block is closed once its raw form reaches this size (bounds the memory a read holds per block).
pub(crate) const BLOCK_TARGET_RAW: usize = 1 << 20;
/// Largest raw block the decoder accepts: the target plus one event far larger than any request body limit.
pub(crate) const MAX_BLOCK_RAW: usize = 256 << 20;

/// The idempotency key of an event within its trace: span id, then event id.
pub(crate) fn event_key(e: &IngestEvent) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&e.span_id.0);
    k[8..].copy_from_slice(e.id.as_bytes());
    k
}

/// Appends one event text to a raw block.
pub(crate) fn push_frame(raw: &mut Vec<u8>, text: &str) -> StoreResult<()> {
    let len = u32::try_from(text.len())
        .map_err(|_| StoreError::Other(format!("event of {} bytes", text.len())))?;
    raw.extend_from_slice(&len.to_be_bytes());
    raw.extend_from_slice(text.as_bytes());
    Ok(())
}

/// The raw form of a stored block (decompressed into at most `raw_len` bytes).
pub(crate) fn decode_block(codec: i64, raw_len: i64, data: Vec<u8>) -> StoreResult<Vec<u8>> {
    let raw_len = usize::try_from(raw_len)
        .ok()
        .filter(|n| *n <= MAX_BLOCK_RAW)
        .ok_or_else(|| StoreError::Corrupt(format!("event block of raw length {raw_len}")))?;
    let raw = match codec {
        CODEC_PLAIN => data,
        CODEC_ZSTD => zstd::bulk::decompress(&data, raw_len)
            .map_err(|e| StoreError::Corrupt(format!("event block: {e}")))?,
        c => return Err(StoreError::Corrupt(format!("event block codec {c}"))),
    };
    if raw.len() != raw_len {
        return Err(StoreError::Corrupt(format!(
            "event block of {} bytes, {raw_len} expected",
            raw.len()
        )));
    }
    Ok(raw)
}

/// The event texts of a raw block, in order.
pub(crate) fn block_frames(raw: &[u8]) -> impl Iterator<Item = StoreResult<&str>> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let frame = (|| {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len) as usize;
            let text = tail.get(..len)?;
            rest = &tail[len..];
            Some(text)
        })();
        Some(match frame {
            Some(text) => std::str::from_utf8(text)
                .map_err(|e| StoreError::Corrupt(format!("event text: {e}"))),
            None => {
                rest = &[];
                Err(StoreError::Corrupt("truncated event block".into()))
            }
        })
    })
}

/// What the task submitting a batch prepares, so that the one writer thread does less: each trace's events of
/// the batch framed and compressed into blocks, and the batch's derived spans and edges.
#[derive(Default)]
pub(crate) struct Prepared {
    pub blocks: Vec<PreparedBlock>,
    pub derived: Option<(Vec<SpanRecord>, Vec<EdgeRecord>)>,
}

/// A block of one trace's events of a batch, ready to insert if all of them turn out to be new.
pub(crate) struct PreparedBlock {
    pub trace_id: Uuid,
    /// Positions of its events in the batch, in batch order.
    pub members: Vec<u32>,
    /// The members' keys, 24 bytes each, in the same order.
    pub keys: Vec<u8>,
    pub raw_len: usize,
    pub data: Vec<u8>,
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

pub(crate) fn compress_here(raw: &[u8]) -> StoreResult<Vec<u8>> {
    let failed = |e: std::io::Error| StoreError::Other(format!("compressing events: {e}"));
    COMPRESSOR.with_borrow_mut(|c| {
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(failed)?);
        }
        c.as_mut().expect("just set").compress(raw).map_err(failed)
    })
}

/// Prepares a batch (on the submitting task): blocks per trace in batch order, closed at
/// [`BLOCK_TARGET_RAW`], and, when asked, the derived rows.
pub(crate) fn prepare(events: &[IngestEvent], derive_spans: bool) -> StoreResult<Prepared> {
    let mut order: Vec<u32> = (0..events.len() as u32).collect();
    order.sort_by_key(|&i| events[i as usize].trace_id);
    let mut raw = Vec::new();
    let mut blocks = Vec::new();
    let mut rest = &order[..];
    while let Some(&first) = rest.first() {
        let trace_id = events[first as usize].trace_id;
        raw.clear();
        let mut n = 0;
        while let Some(&i) = rest.get(n) {
            let e = &events[i as usize];
            if e.trace_id != trace_id || raw.len() >= BLOCK_TARGET_RAW {
                break;
            }
            push_frame(&mut raw, &e.json)?;
            n += 1;
        }
        let members = rest[..n].to_vec();
        blocks.push(PreparedBlock {
            trace_id,
            keys: members
                .iter()
                .flat_map(|&m| event_key(&events[m as usize]))
                .collect(),
            members,
            raw_len: raw.len(),
            data: compress_here(&raw)?,
        });
        rest = &rest[n..];
    }
    Ok(Prepared {
        blocks,
        derived: derive_spans.then(|| derive::derive(events)),
    })
}

/// A block to store: a prepared one whose events all turned out new, or one built here from the new events of a
/// prepared block (some of whose events were stored before).
pub(crate) struct NewBlock<'a> {
    pub trace_id: Uuid,
    pub events: usize,
    pub raw_len: usize,
    pub keys: Cow<'a, [u8]>,
    pub data: Cow<'a, [u8]>,
}

/// The blocks a group stores, in queue order, given which events of each batch are new (`new_rows`: rows of
/// `plan` that were stored now).
pub(crate) fn blocks_to_store<'a>(
    batches: &'a [Pending<Prepared>],
    plan: &Plan<'_>,
    new_rows: impl IntoIterator<Item = usize>,
) -> StoreResult<Vec<NewBlock<'a>>> {
    let mut fresh: Vec<Vec<bool>> = batches
        .iter()
        .map(|p| vec![false; p.events.len()])
        .collect();
    for i in new_rows {
        fresh[plan.rows[i].1][plan.positions[i] as usize] = true;
    }
    let mut out = Vec::new();
    for (p, fresh) in batches.iter().zip(&fresh) {
        for block in &p.prepared.blocks {
            let new = block.members.iter().filter(|&&m| fresh[m as usize]).count();
            if new == 0 {
                continue;
            }
            if new == block.members.len() {
                out.push(NewBlock {
                    trace_id: block.trace_id,
                    events: new,
                    raw_len: block.raw_len,
                    keys: Cow::Borrowed(&block.keys),
                    data: Cow::Borrowed(&block.data),
                });
                continue;
            }
            let (mut raw, mut keys) = (Vec::new(), Vec::with_capacity(new * 24));
            for (at, &m) in block.members.iter().enumerate() {
                if fresh[m as usize] {
                    push_frame(&mut raw, &p.events[m as usize].json)?;
                    keys.extend_from_slice(&block.keys[at * 24..(at + 1) * 24]);
                }
            }
            out.push(NewBlock {
                trace_id: block.trace_id,
                events: new,
                raw_len: raw.len(),
                keys: Cow::Owned(keys),
                data: Cow::Owned(compress_here(&raw)?),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_of(texts: &[&str]) -> Vec<u8> {
        let mut raw = Vec::new();
        for t in texts {
            push_frame(&mut raw, t).unwrap();
        }
        raw
    }

    #[test]
    fn blocks_round_trip() {
        let texts = ["{\"a\":1}", "", "{\"b\":\"ü\"}"];
        let raw = raw_of(&texts);
        let data = zstd::bulk::compress(&raw, ZSTD_LEVEL).unwrap();
        for (codec, data) in [(CODEC_ZSTD, data), (CODEC_PLAIN, raw.clone())] {
            let back = decode_block(codec, raw.len() as i64, data).unwrap();
            let got: Vec<&str> = block_frames(&back).map(Result::unwrap).collect();
            assert_eq!(got, texts);
        }
    }

    #[test]
    fn bad_blocks_are_refused() {
        let raw = raw_of(&["{\"a\":1}", "{}"]);
        let data = zstd::bulk::compress(&raw, ZSTD_LEVEL).unwrap();
        // A raw length that disagrees with the data, or beyond the bound, never decodes.
        assert!(decode_block(CODEC_ZSTD, raw.len() as i64 - 1, data.clone()).is_err());
        assert!(decode_block(CODEC_ZSTD, raw.len() as i64 + 1, data.clone()).is_err());
        assert!(decode_block(CODEC_ZSTD, MAX_BLOCK_RAW as i64 + 1, data.clone()).is_err());
        assert!(decode_block(CODEC_ZSTD, -1, data.clone()).is_err());
        assert!(decode_block(7, raw.len() as i64, data).is_err());
        // Truncated frames: an error, then the end.
        for cut in [1, 3, 5, raw.len() - 1] {
            let frames: Vec<_> = block_frames(&raw[..cut]).collect();
            assert!(frames.last().unwrap().is_err(), "cut at {cut}");
            assert!(frames.iter().filter(|f| f.is_err()).count() == 1);
        }
        let mut bad_utf8 = raw_of(&["ab"]);
        bad_utf8[5] = 0xff;
        assert!(block_frames(&bad_utf8).next().unwrap().is_err());
    }
}
