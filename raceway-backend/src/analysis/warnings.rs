//! Data-quality warnings: header loss, missing parents, clamped spans, duplicates, unmatched spawns/awaits.
//!
//! Header loss is reported (kind `header_loss`) when
//! * a server `span_start` received a valid `traceparent` but its `upstream.clock` status is not a merged
//!   one (`absent`, `conflict`, or a parse error such as `malformed`): the `raceway-clock` header was lost
//!   or damaged between caller and callee;
//! * a server `span_start` has `upstream.clock == ignored`: a clock arrived without a valid `traceparent`,
//!   so the `traceparent` header was lost and the callee started a new trace;
//! * an `outbound_response.callee.trace_id` differs from the caller's own trace id: the callee restarted the
//!   trace (the two traces are stitched through this link).
//!
//! Each kind of warning is reported at most [`MAX_PER_KIND`] times individually; further occurrences are
//! counted in one summary warning of the same kind.

use raceway::event::TraceparentStatus;
use raceway::{ClockStatus, EventKind, SpanId};

use super::fxhash::FxMap;
use super::graph::{Graph, Kind};
use super::model::Warning;

/// Individual warnings per kind before they are summarised.
pub const MAX_PER_KIND: usize = 20;

/// Collects warnings with a cap per kind.
#[derive(Default)]
pub(crate) struct Warnings {
    list: Vec<Warning>,
    /// Kind of each entry of `list`.
    kinds: Vec<&'static str>,
    counts: FxMap<&'static str, usize>,
}

impl Warnings {
    /// Adds a warning.
    pub fn push(&mut self, kind: &'static str, message: String, span: Option<SpanId>) {
        let c = self.counts.entry(kind).or_insert(0);
        *c += 1;
        if *c <= MAX_PER_KIND {
            self.list.push(Warning {
                kind: kind.to_string(),
                message,
                span_id: span.map(|s| s.to_string()),
            });
            self.kinds.push(kind);
        }
    }

    /// Adds a warning built lazily (only when it will be kept).
    pub fn push_with(
        &mut self,
        kind: &'static str,
        span: Option<SpanId>,
        message: impl FnOnce() -> String,
    ) {
        let c = self.counts.entry(kind).or_insert(0);
        *c += 1;
        if *c <= MAX_PER_KIND {
            self.list.push(Warning {
                kind: kind.to_string(),
                message: message(),
                span_id: span.map(|s| s.to_string()),
            });
            self.kinds.push(kind);
        }
    }

    /// Appends warnings collected separately (by a pass that ran in parallel), with the same result as if
    /// they had been pushed here one by one after the ones already here.
    pub fn append(&mut self, other: Warnings) {
        let mut listed: FxMap<&'static str, usize> = FxMap::default();
        for (warning, kind) in other.list.into_iter().zip(other.kinds) {
            *listed.entry(kind).or_insert(0) += 1;
            let c = self.counts.entry(kind).or_insert(0);
            *c += 1;
            if *c <= MAX_PER_KIND {
                self.list.push(warning);
                self.kinds.push(kind);
            }
        }
        // `other` kept the first pushes of each kind; the rest it only counted.
        for (kind, total) in other.counts {
            let unlisted = total - listed.get(kind).copied().unwrap_or(0);
            *self.counts.entry(kind).or_insert(0) += unlisted;
        }
    }

    /// The warnings, with one summary per kind that overflowed.
    pub fn finish(mut self) -> Vec<Warning> {
        let mut over: Vec<(&'static str, usize)> = self
            .counts
            .iter()
            .filter(|(_, &c)| c > MAX_PER_KIND)
            .map(|(&k, &c)| (k, c))
            .collect();
        over.sort_unstable();
        for (kind, c) in over {
            self.list.push(Warning {
                kind: kind.to_string(),
                message: format!(
                    "{} more `{kind}` warnings not listed ({c} in total)",
                    c - MAX_PER_KIND
                ),
                span_id: None,
            });
        }
        self.list
    }
}

/// Header-loss warnings (see module docs).
pub(crate) fn header_loss(g: &Graph<'_>, w: &mut Warnings) {
    let relevant = g
        .kind
        .iter()
        .zip(&g.events)
        .filter(|(k, _)| matches!(k, Kind::SpanStart | Kind::Response))
        .map(|(_, e)| *e);
    for e in relevant {
        match &e.kind {
            EventKind::SpanStart {
                upstream: Some(up),
                operation,
                ..
            } => {
                if up.traceparent == TraceparentStatus::Valid && !up.clock.is_merged() {
                    w.push_with("header_loss", Some(e.span_id), || {
                        format!(
                            "{} `{operation}` received a valid traceparent but no usable raceway-clock (status {}): the clock header was lost between caller and callee; the span is partial",
                            e.service, up.clock.as_str()
                        )
                    });
                } else if up.traceparent != TraceparentStatus::Valid
                    && up.clock == ClockStatus::Ignored
                {
                    w.push_with("header_loss", Some(e.span_id), || {
                        format!(
                            "{} `{operation}` received a raceway-clock without a valid traceparent (status {}): the traceparent header was lost and a new trace was started",
                            e.service, up.traceparent.as_str()
                        )
                    });
                }
            }
            EventKind::OutboundResponse {
                callee: Some(c), ..
            } if c.trace_id != e.trace_id => {
                w.push_with("header_loss", Some(e.span_id), || {
                    format!(
                        "{} called {} which answered from trace {}: the request headers were lost and the callee restarted the trace; the traces are stitched",
                        e.service,
                        c.service.as_deref().unwrap_or("an unknown service"),
                        c.trace_id
                    )
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `kinds` (one warning each, numbered) into `w`.
    fn push_all(w: &mut Warnings, kinds: &[&'static str], from: usize) {
        for (i, &kind) in kinds.iter().enumerate() {
            w.push(kind, format!("{kind} {}", from + i), None);
        }
    }

    #[test]
    fn append_equals_pushing_in_sequence() {
        let kinds: Vec<&'static str> = (0..3 * MAX_PER_KIND)
            .map(|i| ["a", "b", "c"][(i * 7 + i / 5) % 3])
            .collect();
        for split in [
            0,
            1,
            MAX_PER_KIND / 2,
            MAX_PER_KIND,
            kinds.len() - 1,
            kinds.len(),
        ] {
            let mut sequential = Warnings::default();
            push_all(&mut sequential, &kinds, 0);
            let (first, second) = kinds.split_at(split);
            let mut merged = Warnings::default();
            push_all(&mut merged, first, 0);
            let mut other = Warnings::default();
            push_all(&mut other, second, split);
            merged.append(other);
            let (a, b) = (sequential.finish(), merged.finish());
            assert_eq!(
                a.iter().map(|w| &w.message).collect::<Vec<_>>(),
                b.iter().map(|w| &w.message).collect::<Vec<_>>(),
                "split at {split}"
            );
        }
    }
}
