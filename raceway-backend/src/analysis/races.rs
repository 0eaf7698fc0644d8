//! Races within a (merged) trace.
//!
//! # Race rule
//! Two `state_change` events `a`, `b` race when
//! 1. they name the same `variable` (variables are global names: `account:42` in two services is one
//!    resource);
//! 2. at least one of them is a **plain write** (`access == write`); so atomics never race with atomics, and
//!    a plain read never races with an atomic write;
//! 3. neither happens before the other (vector clocks of [`super::graph`]; same logical thread ⇒ ordered);
//! 4. they are not **protected by a common lock**: no lock name appears in both `locks_held` lists with at
//!    least one of the two holding it in `exclusive` mode (two shared holders of a read/write lock do not
//!    exclude each other, so shared/shared protects nothing).
//!
//! Severity: both accesses modify the variable (`is_write()`) → kind `write_write`, severity `critical`;
//! otherwise kind `read_write`, severity `warning`. `first` is the access earlier in the topological order.
//!
//! # De-duplication
//! Racing pairs are reported once per **race site**: `(variable, kind, {site(a), site(b)})` where `site` is
//! the event's `location` when present, else `service@operation-less:<service>` (the service name). The
//! first pair found for a site is reported. The property tests compare this set with the brute-force
//! all-pairs definition under the same key.
//!
//! # Algorithm (never all-pairs)
//! During the topological vector-clock sweep of [`super::graph`] (clocks over *chains*: totally ordered
//! runs of events, so a sequential call chain of any depth is one chain), each variable keeps, per chain,
//! the list of its accesses in chain order. For an access `b` with clock `C`, the accesses of another
//! chain `u` that are concurrent with `b` are exactly the **suffix** of `u`'s list with position
//! `> C[u]`; they are found by walking `u`'s list backwards and stopping at the first ordered access. The
//! cost is O(chains that touched the variable + racing pairs found) per access: O(1) for chains of calls,
//! locked sections and forks that are joined before the next ones start; proportional to the real
//! concurrency otherwise. To stay bounded on adversarial traces (100k concurrent tasks all writing one
//! variable without synchronisation = 5·10⁹ racing pairs), the search stops after [`WORK_BUDGET`] steps or
//! [`MAX_RACES`] distinct races and says so in a `race_detection_truncated` warning.

use raceway::{Access, Event, EventKind, HeldLock, LockMode};

use super::fxhash::FxSet;
use super::graph::{ChainClock, Graph, Kind};
use super::load::StrIds;
use super::model::{Race, RaceAccess};
use super::warnings::Warnings;

/// Maximum distinct races reported per trace.
pub const MAX_RACES: usize = 1_000;
/// Maximum work steps (thread scans + pair checks) of the race search per trace.
pub const WORK_BUDGET: u64 = 50_000_000;

/// `true` when two accesses hold a common lock and at least one holds it exclusively.
pub fn protected(a: &[HeldLock], b: &[HeldLock]) -> bool {
    a.iter().any(|la| {
        b.iter().any(|lb| {
            la.lock == lb.lock && (la.mode == LockMode::Exclusive || lb.mode == LockMode::Exclusive)
        })
    })
}

/// Kind of conflict between two accesses, if they can race at all (rule 2).
pub fn conflict(a: Access, b: Access) -> Option<&'static str> {
    if a != Access::Write && b != Access::Write {
        return None;
    }
    Some(if a.is_write() && b.is_write() {
        "write_write"
    } else {
        "read_write"
    })
}

/// Severity of a race kind.
pub fn severity(kind: &str) -> &'static str {
    match kind {
        "read_write" => "warning",
        _ => "critical",
    }
}

/// The de-duplication site of an access.
pub fn site(e: &Event) -> String {
    match &e.location {
        Some(l) => l.to_string(),
        None => format!("service:{}", e.service),
    }
}

/// The de-duplication key of a racing pair.
pub fn race_key(
    variable: &str,
    kind: &str,
    a: &Event,
    b: &Event,
) -> (String, String, String, String) {
    let (mut x, mut y) = (site(a), site(b));
    if x > y {
        std::mem::swap(&mut x, &mut y);
    }
    (variable.to_string(), kind.to_string(), x, y)
}

pub(crate) fn access_of(e: &Event) -> Option<(&str, Access)> {
    match &e.kind {
        EventKind::StateChange {
            variable, access, ..
        } => Some((variable, *access)),
        _ => None,
    }
}

/// One side of a race, for the output.
pub fn race_access(e: &Event) -> RaceAccess {
    let access = match access_of(e).map(|a| a.1) {
        Some(Access::Read) => "read",
        Some(Access::Write) => "write",
        Some(Access::AtomicRead) => "atomic_read",
        Some(Access::AtomicWrite) => "atomic_write",
        Some(Access::AtomicRmw) => "atomic_rmw",
        None => "none",
    };
    RaceAccess {
        event_id: e.id,
        trace_id: e.trace_id,
        span_id: e.span_id.to_string(),
        service: e.service.to_string(),
        instance: e.instance.to_string(),
        thread_id: e.thread_id.to_string(),
        access: access.to_string(),
        location: e.location.as_deref().map(str::to_owned),
        timestamp: e.timestamp.to_string(),
    }
}

/// Builds the output record of a racing pair.
pub fn make_race(variable: &str, kind: &str, a: &Event, b: &Event) -> Race {
    let where_ = |e: &Event| match &e.location {
        Some(l) => format!("{} ({}, thread {})", e.service, l, e.thread_id),
        None => format!("{} (thread {})", e.service, e.thread_id),
    };
    let what = if kind == "write_write" {
        "concurrent writes"
    } else {
        "a read concurrent with a write"
    };
    Race {
        variable: variable.to_string(),
        severity: severity(kind).to_string(),
        kind: kind.to_string(),
        first: race_access(a),
        second: race_access(b),
        description: format!(
            "{what} to `{variable}` by {} and {}, not ordered by any causal edge and not protected by a common lock",
            where_(a),
            where_(b)
        ),
    }
}

#[derive(Default)]
struct VarState {
    /// Chains that accessed the variable, in first-access order.
    threads: Vec<u32>,
    /// Per chain (same index as `threads`): (position in chain, canonical event) of its accesses.
    lists: Vec<Vec<(u32, u32)>>,
}

/// The streaming race detector plugged into [`Graph::sweep`].
pub(crate) struct RaceDetector<'g, 'a> {
    g: &'g Graph<'a>,
    var_ids: StrIds<'a>,
    vars: Vec<VarState>,
    seen: FxSet<(String, String, String, String)>,
    pub races: Vec<Race>,
    work: u64,
    truncated: bool,
}

impl<'g, 'a> RaceDetector<'g, 'a> {
    pub fn new(g: &'g Graph<'a>) -> Self {
        RaceDetector {
            g,
            var_ids: StrIds::default(),
            vars: Vec::new(),
            seen: FxSet::default(),
            races: Vec::new(),
            work: 0,
            truncated: false,
        }
    }

    /// Called for every event in topological order with its chain, position and clock.
    pub fn visit(&mut self, v: u32, t: u32, own: u32, clock: &ChainClock<'_>) {
        let g = self.g;
        if g.kind[v as usize] != Kind::Access {
            return;
        }
        let e = g.events[v as usize];
        let Some((var, acc)) = access_of(e) else {
            return;
        };
        let id = self.var_ids.id(var) as usize;
        if id == self.vars.len() {
            self.vars.push(VarState::default());
        }
        let state = &mut self.vars[id];
        if !self.truncated {
            'threads: for (i, &u) in state.threads.iter().enumerate() {
                self.work += 1;
                if u == t {
                    continue;
                }
                let known = clock.get(u);
                for &(p, a) in state.lists[i].iter().rev() {
                    if p <= known {
                        break;
                    }
                    self.work += 1;
                    let ea = g.events[a as usize];
                    let Some((_, acc_a)) = access_of(ea) else {
                        continue;
                    };
                    let Some(kind) = conflict(acc_a, acc) else {
                        continue;
                    };
                    if protected(&ea.locks_held, &e.locks_held) {
                        continue;
                    }
                    let key = race_key(var, kind, ea, e);
                    if self.seen.contains(&key) {
                        continue;
                    }
                    self.seen.insert(key);
                    self.races.push(make_race(var, kind, ea, e));
                    if self.races.len() >= MAX_RACES {
                        self.truncated = true;
                        break 'threads;
                    }
                }
                if self.work > WORK_BUDGET {
                    self.truncated = true;
                    break;
                }
            }
        }
        // A linear search: the scan above already walks every chain of the variable.
        let slot = match state.threads.iter().position(|&u| u == t) {
            Some(s) => s,
            None => {
                state.threads.push(t);
                state.lists.push(Vec::new());
                state.threads.len() - 1
            }
        };
        state.lists[slot].push((own, v));
    }

    /// Adds the truncation warning if needed and returns the races.
    pub fn finish(self, w: &mut Warnings) -> Vec<Race> {
        if self.truncated {
            w.push(
                "race_detection_truncated",
                format!(
                    "race search stopped after {} distinct races / {} steps; more racing pairs may exist",
                    self.races.len(),
                    self.work
                ),
                None,
            );
        }
        self.races
    }
}
