//! Critical path across services (Jaeger / CRISP "last finishing child" walk).
//!
//! # Span tree
//! Spans and their parents come from the `spans` module: a callee's server span hangs under the caller's span
//! through the explicit call edge (`parent_span_id` = the caller's `outbound_call.child_span_id`, or the
//! `outbound_response.callee` link after header loss), local spans under their enclosing span.
//! **Non-blocking** children are excluded: a `consumer` span under a `producer` span (the producer does not
//! wait for it).
//!
//! # Clamping (top-down, iterative)
//! Each child interval is clamped to its (already clamped) parent's interval, as Jaeger does: a child that
//! starts at/after the parent's end, or ends at/before the parent's start, is dropped with its subtree
//! (warning `dropped_span`); one that sticks out is cut to the parent's window (warning `clamped_span`).
//!
//! # Walk
//! Starting at the root with bound = root end: take the **last finishing child** (LFC) — among the
//! children ending before the bound (strictly, when coming back up from a child) the one ending last.
//! The current span owns the section `[LFC.end, bound]`, and the walk descends into the LFC. When no
//! child qualifies, the span owns `[span.start, bound]` and the walk climbs to its parent with bound =
//! span.start. Sections of zero length are skipped. A sibling overlapping the LFC is therefore not on the
//! path (its time is the parent's self time), exactly like Jaeger.
//!
//! Children are sorted by clamped end once; because the bound only decreases for a given span, a cursor
//! per span finds every LFC: O(n log n) in total, no recursion. Several root spans (stitching gaps, lost
//! parents) hang under a virtual root covering `[min start, max end]`; its sections are gaps that belong
//! to no service.
//!
//! # Output
//! One segment per span on the path, ordered by its first section, with span start and duration and
//! `self_time_ms` = the summed length of its sections. `total_duration_ms` = wall-clock duration of the
//! trace (earliest root start → latest root end). The per-service critical-path times are the sums of the
//! segments' self times, so for a single-root trace they add up to `total_duration_ms`; percentages are
//! relative to `total_duration_ms` (wall clock), never to summed span durations.

use raceway::{SpanKind, Timestamp};

use super::fxhash::FxMap;
use super::model::{CriticalPath, CriticalPathSegment};
use super::spans::Span;
use super::warnings::Warnings;

/// Result of the walk.
pub(crate) struct CpResult {
    pub path: CriticalPath,
    /// Nanoseconds on the critical path per service.
    pub per_service: FxMap<String, i64>,
}

pub(crate) fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

fn non_blocking(parent: &Span<'_>, child: &Span<'_>) -> bool {
    parent.kind == Some(SpanKind::Producer) && child.kind == Some(SpanKind::Consumer)
}

/// Computes the critical path.
pub(crate) fn compute(spans: &[Span<'_>], w: &mut Warnings) -> CpResult {
    let n = spans.len();
    let virt = n; // virtual root index
                  // Children lists (CSR), excluding non-blocking children; roots go under the virtual root.
    let parent_of = |i: usize| -> usize {
        match spans[i].parent {
            Some(p) => p as usize,
            None => virt,
        }
    };
    let mut off = vec![0u32; n + 2];
    let mut blocking = vec![true; n];
    for i in 0..n {
        if let Some(p) = spans[i].parent {
            if non_blocking(&spans[p as usize], &spans[i]) {
                blocking[i] = false;
                continue;
            }
        }
        off[parent_of(i) + 1] += 1;
    }
    let mut acc = 0;
    for x in off.iter_mut() {
        acc += *x;
        *x = acc;
    }
    let mut fill = off.clone();
    let mut kids = vec![0u32; off[n + 1] as usize];
    for (i, _) in blocking.iter().enumerate().filter(|(_, b)| **b) {
        {
            let p = parent_of(i);
            kids[fill[p] as usize] = i as u32;
            fill[p] += 1;
        }
    }
    // Clamp top-down (BFS from the virtual root's children = roots).
    let mut cs = vec![0i64; n + 1];
    let mut ce = vec![0i64; n + 1];
    let mut alive = vec![false; n + 1];
    let mut queue: Vec<u32> = Vec::new();
    let (mut tmin, mut tmax) = (i64::MAX, i64::MIN);
    for &r in &kids[off[virt] as usize..off[virt + 1] as usize] {
        let s = &spans[r as usize];
        cs[r as usize] = s.start;
        ce[r as usize] = s.end;
        alive[r as usize] = true;
        tmin = tmin.min(s.start);
        tmax = tmax.max(s.end);
        queue.push(r);
    }
    if tmin > tmax {
        // No blocking roots at all (e.g. only non-blocking consumers): fall back to all spans.
        tmin = spans.iter().map(|s| s.start).min().unwrap_or(0);
        tmax = spans.iter().map(|s| s.end).max().unwrap_or(0);
    }
    cs[virt] = tmin;
    ce[virt] = tmax;
    alive[virt] = true;
    let mut head = 0;
    while head < queue.len() {
        let p = queue[head] as usize;
        head += 1;
        for &c in &kids[off[p] as usize..off[p + 1] as usize] {
            let c = c as usize;
            let s = &spans[c];
            if s.start == s.end && s.start >= cs[p] && s.start <= ce[p] {
                // A zero-length span inside its parent: never on the path; dropped silently.
                continue;
            }
            if s.start >= ce[p] || s.end <= cs[p] {
                w.push_with("dropped_span", Some(s.span_id), || {
                    format!(
                        "span {} ({} `{}`) lies entirely outside its parent's interval (clock skew?); left off the critical path",
                        s.span_id, s.service, s.operation
                    )
                });
                continue;
            }
            let (a, b) = (s.start.max(cs[p]), s.end.min(ce[p]));
            if (a, b) != (s.start, s.end) {
                w.push_with("clamped_span", Some(s.span_id), || {
                    format!(
                        "span {} ({} `{}`) sticks out of its parent's interval (clock skew?); clamped by {} ns",
                        s.span_id,
                        s.service,
                        s.operation,
                        (a - s.start) + (s.end - b)
                    )
                });
            }
            cs[c] = a;
            ce[c] = b;
            alive[c] = true;
            queue.push(c as u32);
        }
    }
    // Sort each alive span's alive children by clamped end, descending.
    let mut sorted: Vec<u32> = Vec::with_capacity(kids.len());
    let mut soff = vec![0u32; n + 2];
    for p in 0..=n {
        for &c in &kids[off[p] as usize..off[p + 1] as usize] {
            if alive[c as usize] {
                sorted.push(c);
            }
        }
        soff[p + 1] = sorted.len() as u32;
        let slice = &mut sorted[soff[p] as usize..soff[p + 1] as usize];
        slice.sort_unstable_by_key(|&c| (std::cmp::Reverse(ce[c as usize]), c));
    }
    let mut cursor: Vec<u32> = soff[..=n].to_vec();
    // The walk.
    let mut sections: Vec<(usize, i64, i64)> = Vec::new();
    let mut cur = virt;
    let mut bound = ce[virt];
    let mut returning = false;
    loop {
        let end = soff[cur + 1];
        let mut k = cursor[cur];
        while k < end {
            let c_end = ce[sorted[k as usize] as usize];
            if c_end > bound || (returning && c_end == bound) {
                k += 1;
            } else {
                break;
            }
        }
        cursor[cur] = k;
        if k < end {
            let c = sorted[k as usize] as usize;
            if ce[c] < bound {
                sections.push((cur, ce[c], bound));
            }
            cur = c;
            bound = ce[c];
            returning = false;
        } else {
            if cs[cur] < bound {
                sections.push((cur, cs[cur], bound));
            }
            if cur == virt {
                break;
            }
            bound = cs[cur];
            cur = match spans[cur].parent {
                Some(p) if blocking[cur] => p as usize,
                _ => virt,
            };
            returning = true;
        }
    }
    sections.reverse();
    // Aggregate per span, in order of first section.
    let mut seg_of: FxMap<usize, usize> = FxMap::default();
    let mut segments: Vec<(usize, i64)> = Vec::new();
    for &(s, a, b) in &sections {
        if s == virt {
            continue;
        }
        let k = *seg_of.entry(s).or_insert_with(|| {
            segments.push((s, 0));
            segments.len() - 1
        });
        segments[k].1 += b - a;
    }
    let total = (tmax - tmin).max(0);
    let mut per_service: FxMap<String, i64> = FxMap::default();
    let path = segments
        .iter()
        .map(|&(s, self_ns)| {
            let sp = &spans[s];
            *per_service.entry(sp.service.to_string()).or_insert(0) += self_ns;
            CriticalPathSegment {
                span_id: sp.span_id.to_string(),
                service: sp.service.to_string(),
                operation: sp.operation.to_string(),
                start: Timestamp(sp.start).to_string(),
                duration_ms: ms(sp.duration_ns),
                self_time_ms: ms(self_ns),
                percent_of_total: if total > 0 {
                    100.0 * self_ns as f64 / total as f64
                } else {
                    0.0
                },
            }
        })
        .collect();
    CpResult {
        path: CriticalPath {
            path,
            total_duration_ms: ms(total),
        },
        per_service,
    }
}
