//! Loading a trace for analysis: stored JSON text → [`Event`]s whose strings are shared per trace.
//!
//! `serde_json` gives every event its own allocation for each thread id, service, instance, clock key,
//! variable and lock name. The analysis has to identify those strings for every event, and reading
//! hundreds of thousands of small scattered allocations is most of its cost. [`TraceLoader`] interns
//! them while each event is still hot in the cache: after loading, equal strings of one trace are one
//! `Arc<str>`, so the analysis can recognise them by address (`StrIds`, `same_str`) instead of
//! comparing their bytes.
//!
//! Interning is an optimisation only: the analysis never *relies* on it. Two different addresses with
//! equal text are still equal (content fallback), so events built or loaded any other way analyse to
//! exactly the same result.

use std::sync::Arc;

use raceway::{Event, EventKind};

use super::fxhash::{FxMap, FxSet};

/// Parses stored events and interns their per-trace strings (see the module docs).
///
/// One loader per read request: its table lives as long as the loader, so it is bounded by the trace(s)
/// being read.
///
/// ```
/// use raceway_backend::analysis::load::TraceLoader;
/// let json = std::fs::read_to_string(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/../spec/vectors/events/valid_batch.json"
/// ))
/// .unwrap();
/// let batch: serde_json::Value = serde_json::from_str(&json).unwrap();
/// let mut loader = TraceLoader::default();
/// let events: Vec<raceway::Event> = batch["events"]
///     .as_array()
///     .unwrap()
///     .iter()
///     .map(|e| loader.event(&e.to_string()).unwrap())
///     .collect();
/// // Equal strings of the trace are one allocation.
/// assert!(std::sync::Arc::ptr_eq(&events[0].service, &events[1].service));
/// assert_eq!(
///     raceway_backend::analysis::analyze_trace(&events, &Default::default()),
///     raceway_backend::analysis::analyze_trace(&batch_events(&json), &Default::default())
/// );
/// # fn batch_events(json: &str) -> Vec<raceway::Event> {
/// #     serde_json::from_str::<raceway::EventBatch>(json).unwrap().events
/// # }
/// ```
#[derive(Default)]
pub struct TraceLoader {
    strings: FxSet<Arc<str>>,
}

impl TraceLoader {
    /// Deserialises one stored event (exactly as `serde_json::from_str::<Event>` does, same errors) and
    /// interns its strings.
    pub fn event(&mut self, json: &str) -> serde_json::Result<Event> {
        let mut e: Event = serde_json::from_str(json)?;
        self.intern_event(&mut e);
        Ok(e)
    }

    /// Replaces the strings the analysis reads (thread ids, service, instance, clock keys, variables,
    /// lock names, child thread ids) by the loader's shared copies. Never changes what the event says.
    pub fn intern_event(&mut self, e: &mut Event) {
        self.intern(&mut e.thread_id);
        self.intern(&mut e.service);
        self.intern(&mut e.instance);
        if let Some(l) = &mut e.location {
            self.intern(l);
        }
        for h in &mut e.locks_held {
            self.intern(&mut h.lock);
        }
        match &mut e.kind {
            EventKind::StateChange { variable, .. } => self.intern(variable),
            EventKind::LockAcquire { lock, .. } | EventKind::LockRelease { lock, .. } => {
                self.intern(lock)
            }
            EventKind::AsyncSpawn { child_thread_id }
            | EventKind::AsyncAwait { child_thread_id } => self.intern(child_thread_id),
            _ => {}
        }
        e.vector_clock.share_keys(|key| Some(self.shared(key)));
    }

    fn intern(&mut self, s: &mut Arc<str>) {
        match self.strings.get(&**s) {
            Some(shared) => {
                if !Arc::ptr_eq(shared, s) {
                    *s = Arc::clone(shared);
                }
            }
            None => {
                self.strings.insert(Arc::clone(s));
            }
        }
    }

    fn shared(&mut self, s: &str) -> Arc<str> {
        match self.strings.get(s) {
            Some(shared) => Arc::clone(shared),
            None => {
                let a: Arc<str> = Arc::from(s);
                self.strings.insert(Arc::clone(&a));
                a
            }
        }
    }
}

/// `true` when two strings are equal: by address first (interned strings), by content otherwise.
#[inline]
pub(crate) fn same_str(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// Dense ids for the strings of one trace, in order of first appearance.
///
/// Looks a string up by its address first (one hash of two words, no read of the text: with interned
/// events each distinct text has one address), and by its text on a miss. Events that were not interned
/// give a miss for almost every string; then the address table is switched off so it does not grow with
/// the number of events.
pub(crate) struct StrIds<'a> {
    by_addr: FxMap<(usize, usize), u32>,
    by_text: FxMap<&'a str, u32>,
    names: Vec<&'a str>,
    addr_on: bool,
}

impl<'a> Default for StrIds<'a> {
    fn default() -> Self {
        StrIds {
            by_addr: FxMap::default(),
            by_text: FxMap::default(),
            names: Vec::new(),
            addr_on: true,
        }
    }
}

impl<'a> StrIds<'a> {
    /// The id of `s`, assigning the next one when its text is new.
    #[inline]
    pub fn id(&mut self, s: &'a str) -> u32 {
        // The strings are borrowed for `'a`, so an address (with its length) can only ever denote one
        // text while this table exists.
        let addr = (s.as_ptr() as usize, s.len());
        if self.addr_on {
            if let Some(&id) = self.by_addr.get(&addr) {
                return id;
            }
        }
        let next = self.names.len() as u32;
        let id = *self.by_text.entry(s).or_insert(next);
        if id == next {
            self.names.push(s);
        }
        if self.addr_on {
            // Many addresses per text: the events are not interned and the table would only grow.
            if self.by_addr.len() > 4 * self.names.len() + 64 {
                self.addr_on = false;
                self.by_addr = FxMap::default();
            } else {
                self.by_addr.insert(addr, id);
            }
        }
        id
    }

    /// The id of `s` if it was seen, without assigning one.
    pub fn get(&self, s: &str) -> Option<u32> {
        if self.addr_on {
            if let Some(&id) = self.by_addr.get(&(s.as_ptr() as usize, s.len())) {
                return Some(id);
            }
        }
        self.by_text.get(s).copied()
    }

    /// The text of an id.
    pub fn name(&self, id: u32) -> &'a str {
        self.names[id as usize]
    }

    /// Number of distinct texts.
    pub fn len(&self) -> usize {
        self.names.len()
    }
}
