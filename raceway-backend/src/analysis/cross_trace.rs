//! Races across traces: two requests racing on shared state (e.g. an account balance).
//!
//! Different traces share no explicit edges, so their order can only come from wall-clock time and locks.
//!
//! # Rule
//! Accesses `a` (trace A) and `b` (trace B ≠ A) to the same variable conflict when at least one is a plain
//! write (same rule as within a trace, [`super::races::conflict`]) and they are not protected by a common
//! lock ([`super::races::protected`]: a common lock held exclusively by at least one side). They race when
//! their **enclosing spans overlap in wall-clock time** within the skew tolerance: with span intervals
//! `[s₁, e₁]` and `[s₂, e₂]`, `s₁ ≤ e₂ + tol` and `s₂ ≤ e₁ + tol` (a span's interval is `span_start` →
//! `span_end`, or its events' extent when one is missing). The tolerance absorbs clock skew between hosts:
//! two requests whose spans are further apart than `tol` are taken as ordered by time.
//!
//! # Lost update
//! For a racing pair of traces on variable `x`, let `w_A` be A's last plain write of `x` and `r_A` A's
//! earliest read of `x` before `w_A` (likewise for B). When both exist, `r_A ≤ w_B + tol`,
//! `r_B ≤ w_A + tol` (each read before the other's write, within the tolerance) and neither read/write
//! pair across the traces is lock-protected, the pair is reported once with kind `lost_update`, severity
//! `critical`, `first`/`second` = the two writes in time order (the first write is the one lost).
//! Otherwise the pair of traces is reported once with its most severe racing pair (write/write before
//! read/write; earliest first).
//!
//! # Cost
//! Per variable, accesses are swept in order of interval start with an active set of intervals still
//! open: O(n log n + overlapping pairs). The overlapping-pair work is capped at [`WORK_BUDGET`] steps and
//! at [`MAX_RACES`] reported races.

use std::time::Duration;

use raceway::{Access, Event, EventKind, SpanId};
use uuid::Uuid;

use super::fxhash::FxMap;
use super::model::Race;
use super::races::{conflict, make_race, protected, race_access};

/// Maximum races reported by one call.
pub const MAX_RACES: usize = 10_000;
/// Maximum pair checks per call.
pub const WORK_BUDGET: u64 = 20_000_000;

/// Unordered pair of traces.
type TracePair = (Uuid, Uuid);
/// Severity rank and the two accesses of the most severe racing pair.
type Best = (u8, usize, usize);

struct Acc<'a> {
    e: &'a Event,
    access: Access,
    lo: i64,
    hi: i64,
}

/// Cross-trace races among the events of several traces (see module docs).
pub fn cross_trace_races(events: &[&Event], skew_tolerance: Duration) -> Vec<Race> {
    let tol = skew_tolerance.as_nanos().min(i64::MAX as u128) as i64;
    // Span intervals.
    let mut spans: FxMap<(Uuid, SpanId), (i64, i64, bool, bool)> = FxMap::default();
    for e in events {
        let ts = e.timestamp.0;
        let s = spans
            .entry((e.trace_id, e.span_id))
            .or_insert((i64::MAX, i64::MIN, false, false));
        match e.kind {
            EventKind::SpanStart { .. } if !s.2 => {
                s.0 = ts;
                s.2 = true;
            }
            EventKind::SpanEnd { .. } if !s.3 => {
                s.1 = ts;
                s.3 = true;
            }
            _ => {}
        }
        if !s.2 {
            s.0 = s.0.min(ts);
        }
        if !s.3 {
            s.1 = s.1.max(ts);
        }
    }
    // Accesses per variable.
    let mut vars: FxMap<&str, Vec<Acc<'_>>> = FxMap::default();
    for e in events {
        if let EventKind::StateChange {
            variable, access, ..
        } = &e.kind
        {
            let (lo, hi, _, _) = spans[&(e.trace_id, e.span_id)];
            let (lo, hi) = (lo.min(e.timestamp.0), hi.max(e.timestamp.0));
            vars.entry(variable).or_default().push(Acc {
                e,
                access: *access,
                lo,
                hi,
            });
        }
    }
    let mut names: Vec<&str> = vars.keys().copied().collect();
    names.sort_unstable();
    let mut out: Vec<Race> = Vec::new();
    let mut work = 0u64;
    for name in names {
        let mut accs = vars.remove(name).expect("key listed");
        accs.sort_by_key(|a| (a.lo, a.hi, a.e.timestamp.0));
        // Most severe racing pair per unordered trace pair.
        let mut pairs: FxMap<TracePair, Best> = FxMap::default();
        let mut active: Vec<usize> = Vec::new();
        'sweep: for j in 0..accs.len() {
            let b = &accs[j];
            active.retain(|&i| accs[i].hi + tol >= b.lo);
            for &i in &active {
                work += 1;
                if work > WORK_BUDGET {
                    break 'sweep;
                }
                let a = &accs[i];
                if a.e.trace_id == b.e.trace_id {
                    continue;
                }
                let Some(kind) = conflict(a.access, b.access) else {
                    continue;
                };
                if protected(&a.e.locks_held, &b.e.locks_held) {
                    continue;
                }
                let rank = if kind == "write_write" { 2 } else { 1 };
                let (x, y) = if a.e.timestamp <= b.e.timestamp {
                    (i, j)
                } else {
                    (j, i)
                };
                let key = ordered(a.e.trace_id, b.e.trace_id);
                let slot = pairs.entry(key).or_insert((0, x, y));
                let better = rank > slot.0
                    || (rank == slot.0 && accs[x].e.timestamp < accs[slot.1].e.timestamp);
                if better {
                    *slot = (rank, x, y);
                }
            }
            active.push(j);
        }
        // Per-trace access lists for the lost-update check.
        let mut by_trace: FxMap<Uuid, Vec<usize>> = FxMap::default();
        for (i, a) in accs.iter().enumerate() {
            by_trace.entry(a.e.trace_id).or_default().push(i);
        }
        let mut found: Vec<(TracePair, Best)> = pairs.into_iter().collect();
        found.sort_by_key(|(_, (_, x, y))| (accs[*x].e.timestamp, accs[*y].e.timestamp));
        for ((ta, tb), (rank, x, y)) in found {
            if out.len() >= MAX_RACES {
                return out;
            }
            if let Some(race) = lost_update(name, &accs, &by_trace[&ta], &by_trace[&tb], tol) {
                out.push(race);
                continue;
            }
            let kind = if rank == 2 {
                "write_write"
            } else {
                "read_write"
            };
            let mut race = make_race(name, kind, accs[x].e, accs[y].e);
            race.description = format!(
                "requests {} and {} {} `{name}` while their spans overlapped in time, with no common lock",
                accs[x].e.trace_id,
                accs[y].e.trace_id,
                if rank == 2 {
                    "both wrote"
                } else {
                    "read and wrote"
                }
            );
            out.push(race);
        }
    }
    out
}

fn ordered(a: Uuid, b: Uuid) -> (Uuid, Uuid) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// `(earliest read before the last write, last write)` of one trace's accesses.
fn read_then_write<'a>(accs: &'a [Acc<'a>], list: &[usize]) -> Option<(&'a Event, &'a Event)> {
    let w = list
        .iter()
        .map(|&i| &accs[i])
        .filter(|a| a.access == Access::Write)
        .max_by_key(|a| (a.e.timestamp, a.e.seq))?;
    let r = list
        .iter()
        .map(|&i| &accs[i])
        .filter(|a| !a.access.is_write() && (a.e.timestamp, a.e.seq) < (w.e.timestamp, w.e.seq))
        .min_by_key(|a| (a.e.timestamp, a.e.seq))?;
    Some((r.e, w.e))
}

fn lost_update(name: &str, accs: &[Acc<'_>], a: &[usize], b: &[usize], tol: i64) -> Option<Race> {
    let (ra, wa) = read_then_write(accs, a)?;
    let (rb, wb) = read_then_write(accs, b)?;
    let ok = ra.timestamp.0 <= wb.timestamp.0 + tol
        && rb.timestamp.0 <= wa.timestamp.0 + tol
        && !protected(&ra.locks_held, &wb.locks_held)
        && !protected(&rb.locks_held, &wa.locks_held)
        && !protected(&wa.locks_held, &wb.locks_held);
    if !ok {
        return None;
    }
    let (w1, w2) = if wa.timestamp <= wb.timestamp {
        (wa, wb)
    } else {
        (wb, wa)
    };
    Some(Race {
        variable: name.to_string(),
        severity: "critical".to_string(),
        kind: "lost_update".to_string(),
        first: race_access(w1),
        second: race_access(w2),
        description: format!(
            "lost update on `{name}`: requests {} and {} both read it before either wrote it, then both wrote; the write at {} was overwritten",
            ra.trace_id, rb.trace_id, w1.timestamp
        ),
    })
}
