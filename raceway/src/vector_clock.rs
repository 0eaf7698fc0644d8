//! Sparse vector clocks keyed by `service#instance` (spec/PROPAGATION.md §4).

use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest counter value: 2^53 − 1, the largest integer every SDK's JSON can carry exactly.
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// The default number of components an SDK keeps in the clock it sends.
pub const DEFAULT_MAX_COMPONENTS: usize = 64;

/// The default age after which a component that has not advanced may be dropped.
pub const DEFAULT_COMPONENT_TTL: Duration = Duration::from_secs(15 * 60);

/// Causal order of two clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CausalOrder {
    /// The left clock happened before the right one.
    Before,
    /// The left clock happened after the right one.
    After,
    /// Both clocks are identical.
    Equal,
    /// Neither happened before the other.
    Concurrent,
}

/// Whole seconds since the first call, for the stale-component rule. Read on every tick, so on Linux it uses the
/// coarse monotonic clock (a plain memory read in the vDSO, ~5 ns, millisecond resolution) instead of `Instant`.
fn process_seconds() -> u32 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        fn coarse_seconds() -> u64 {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid, writable `timespec`, and CLOCK_MONOTONIC_COARSE exists since Linux 2.6.32.
            let status = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
            if status == 0 {
                now.tv_sec as u64
            } else {
                0
            }
        }
        static START: OnceLock<u64> = OnceLock::new();
        let start = *START.get_or_init(coarse_seconds);
        coarse_seconds().saturating_sub(start) as u32
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs() as u32
    }
}

#[derive(Clone)]
struct Component {
    key: Arc<str>,
    counter: u64,
    /// Seconds since process start when this component last advanced locally (for the drop rule only).
    touched: u32,
}

/// A sparse vector clock: components ordered bytewise by key; a missing key counts as 0.
///
/// ```
/// use raceway::{CausalOrder, VectorClock};
/// let mut a = VectorClock::new();
/// a.tick("orders#1");
/// let mut b = a.clone();
/// b.tick("payments#1");
/// assert_eq!(a.compare(&b), CausalOrder::Before);
/// a.tick("orders#1");
/// assert_eq!(a.compare(&b), CausalOrder::Concurrent);
/// a.merge(&b);
/// assert_eq!(a.get("payments#1"), 1);
/// ```
#[derive(Clone, Default)]
pub struct VectorClock {
    components: Vec<Component>,
}

impl VectorClock {
    /// An empty clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a clock from `(key, counter)` pairs in any order; duplicate keys keep the maximum and counters are
    /// capped at [`MAX_COUNTER`].
    pub fn from_pairs<K: Into<Arc<str>>>(pairs: impl IntoIterator<Item = (K, u64)>) -> Self {
        let now = process_seconds();
        let mut components: Vec<Component> = pairs
            .into_iter()
            .map(|(key, counter)| Component {
                key: key.into(),
                counter: counter.min(MAX_COUNTER),
                touched: now,
            })
            .collect();
        components.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        components.dedup_by(|later, kept| {
            if later.key == kept.key {
                kept.counter = kept.counter.max(later.counter);
                true
            } else {
                false
            }
        });
        Self { components }
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.components
            .binary_search_by(|c| c.key.as_bytes().cmp(key.as_bytes()))
    }

    /// The counter of `key` (0 when absent).
    pub fn get(&self, key: &str) -> u64 {
        self.position(key)
            .map(|i| self.components[i].counter)
            .unwrap_or(0)
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.components.len()
    }

    /// `true` when no component is present.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// Components in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, u64)> + '_ {
        self.components.iter().map(|c| (&*c.key, c.counter))
    }

    /// The components in order, with `key`'s counter replaced by `counter` (or `key` inserted in its place)
    /// when `counter` is given: a clock and a newer local counter read as one clock, without a copy.
    pub(crate) fn iter_with_counter<'a>(
        &'a self,
        key: &'a str,
        counter: Option<u64>,
    ) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        let (at, replaces) = match (counter, self.position(key)) {
            (None, _) => (self.components.len(), false),
            (Some(_), Ok(i)) => (i, true),
            (Some(_), Err(i)) => (i, false),
        };
        let (before, after) = self.components.split_at(at);
        let after = &after[usize::from(replaces)..];
        before
            .iter()
            .map(|c| (&*c.key, c.counter))
            .chain(counter.map(|n| (key, n)))
            .chain(after.iter().map(|c| (&*c.key, c.counter)))
    }

    /// Adds one to `key` (saturating at [`MAX_COUNTER`]) and returns the new value.
    pub fn tick(&mut self, key: &str) -> u64 {
        self.tick_with(key, || Arc::from(key))
    }

    /// Like [`tick`](Self::tick) with a shared key, avoiding an allocation when the key is new.
    pub fn tick_shared(&mut self, key: &Arc<str>) -> u64 {
        self.tick_with(key, || Arc::clone(key))
    }

    fn tick_with(&mut self, key: &str, owned_key: impl FnOnce() -> Arc<str>) -> u64 {
        let now = process_seconds();
        match self.position(key) {
            Ok(i) => {
                let c = &mut self.components[i];
                c.counter = (c.counter + 1).min(MAX_COUNTER);
                c.touched = now;
                c.counter
            }
            Err(i) => {
                self.components.insert(
                    i,
                    Component {
                        key: owned_key(),
                        counter: 1,
                        touched: now,
                    },
                );
                1
            }
        }
    }

    /// Replaces each component's key by `share(key)` when that is the same text, typically an interner's copy,
    /// so that the clocks of many events share their key allocations. Keys `share` returns with other text are
    /// ignored: the clock never changes.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let mut clock = raceway::VectorClock::from_pairs([("a#1", 2u64), ("b#1", 1)]);
    /// let shared: Arc<str> = Arc::from("a#1");
    /// clock.share_keys(|key| (key == "a#1").then(|| Arc::clone(&shared)));
    /// assert_eq!(clock, raceway::VectorClock::from_pairs([("a#1", 2u64), ("b#1", 1)]));
    /// ```
    pub fn share_keys(&mut self, mut share: impl FnMut(&str) -> Option<Arc<str>>) {
        for c in &mut self.components {
            if let Some(shared) = share(&c.key) {
                if shared == c.key {
                    c.key = shared;
                }
            }
        }
    }

    /// A copy with `key`'s counter set to `counter` (inserted when missing), in one allocation.
    pub(crate) fn with_counter(&self, key: &Arc<str>, counter: u64) -> VectorClock {
        let mut components = Vec::with_capacity(self.components.len() + 1);
        match self.position(key) {
            Ok(i) => {
                components.extend_from_slice(&self.components);
                components[i].counter = counter;
            }
            Err(i) => {
                components.extend_from_slice(&self.components[..i]);
                components.push(Component {
                    key: Arc::clone(key),
                    counter,
                    touched: process_seconds(),
                });
                components.extend_from_slice(&self.components[i..]);
            }
        }
        VectorClock { components }
    }

    /// Sets `key`'s counter (inserting it when missing), for rebuilding a clock from a shared snapshot.
    pub(crate) fn set_counter(&mut self, key: &Arc<str>, counter: u64) {
        match self.position(key) {
            Ok(i) => self.components[i].counter = counter,
            Err(i) => self.components.insert(
                i,
                Component {
                    key: Arc::clone(key),
                    counter,
                    touched: process_seconds(),
                },
            ),
        }
    }

    /// Element-wise maximum with `other`.
    pub fn merge(&mut self, other: &VectorClock) {
        if other.components.is_empty() {
            return;
        }
        let now = process_seconds();
        // One spare slot: a merge is usually followed by a tick of the local component, which may be new here.
        let mut merged = Vec::with_capacity(self.components.len().max(other.components.len()) + 1);
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.components, &other.components);
        while i < a.len() || j < b.len() {
            let ord = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.key.as_bytes().cmp(y.key.as_bytes()),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    merged.push(a[i].clone());
                    i += 1;
                }
                Ordering::Greater => {
                    let mut c = b[j].clone();
                    c.touched = now;
                    merged.push(c);
                    j += 1;
                }
                Ordering::Equal => {
                    let mut c = a[i].clone();
                    if b[j].counter > c.counter {
                        c.counter = b[j].counter;
                        c.touched = now;
                    }
                    merged.push(c);
                    i += 1;
                    j += 1;
                }
            }
        }
        self.components = merged;
    }

    /// Causal order of `self` relative to `other`.
    pub fn compare(&self, other: &VectorClock) -> CausalOrder {
        let (mut less, mut greater) = (false, false);
        let (a, b) = (&self.components, &other.components);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let (x, y) = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => match x.key.as_bytes().cmp(y.key.as_bytes()) {
                    Ordering::Less => {
                        i += 1;
                        (x.counter, 0)
                    }
                    Ordering::Greater => {
                        j += 1;
                        (0, y.counter)
                    }
                    Ordering::Equal => {
                        i += 1;
                        j += 1;
                        (x.counter, y.counter)
                    }
                },
                (Some(x), None) => {
                    i += 1;
                    (x.counter, 0)
                }
                (None, Some(y)) => {
                    j += 1;
                    (0, y.counter)
                }
                (None, None) => unreachable!("loop condition"),
            };
            less |= x < y;
            greater |= x > y;
            if less && greater {
                return CausalOrder::Concurrent;
            }
        }
        match (less, greater) {
            (false, false) => CausalOrder::Equal,
            (true, false) => CausalOrder::Before,
            (false, true) => CausalOrder::After,
            (true, true) => CausalOrder::Concurrent,
        }
    }

    /// `true` when `self` happened strictly before `other`.
    pub fn happened_before(&self, other: &VectorClock) -> bool {
        self.compare(other) == CausalOrder::Before
    }

    /// Applies the drop rule of spec/PROPAGATION.md §3.3: keep at most `max` components, never dropping `own`;
    /// drop components not advanced within `ttl` first, then the least recently advanced (ties: smallest counter,
    /// then smallest key).
    pub fn bound(&mut self, max: usize, own: &str, ttl: Duration) {
        if self.components.len() <= max {
            return;
        }
        let now = process_seconds();
        let ttl_secs = ttl.as_secs().min(u32::MAX as u64) as u32;
        let stale = |c: &Component| now.saturating_sub(c.touched) > ttl_secs;
        // Rank every droppable component; the first `excess` of the ranking go.
        let mut candidates: Vec<usize> = (0..self.components.len())
            .filter(|&i| &*self.components[i].key != own)
            .collect();
        let comps = &self.components;
        candidates.sort_by(|&x, &y| {
            let (a, b) = (&comps[x], &comps[y]);
            stale(b)
                .cmp(&stale(a))
                .then(a.touched.cmp(&b.touched))
                .then(a.counter.cmp(&b.counter))
                .then(a.key.as_bytes().cmp(b.key.as_bytes()))
        });
        let excess = self.components.len() - max;
        let mut drop = vec![false; self.components.len()];
        for &i in candidates.iter().take(excess) {
            drop[i] = true;
        }
        let mut index = 0;
        self.components.retain(|_| {
            let keep = !drop[index];
            index += 1;
            keep
        });
    }
}

impl PartialEq for VectorClock {
    fn eq(&self, other: &Self) -> bool {
        self.compare(other) == CausalOrder::Equal
    }
}
impl Eq for VectorClock {}

impl fmt::Debug for VectorClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for VectorClock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.components.len()))?;
        for c in &self.components {
            seq.serialize_element(&(&*c.key, c.counter))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for VectorClock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClockVisitor;
        impl<'de> Visitor<'de> for ClockVisitor {
            type Value = VectorClock;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of [key, counter] pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VectorClock, A::Error> {
                let mut pairs: Vec<(Arc<str>, u64)> =
                    Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some((Key(key), counter)) = seq.next_element::<(Key<'de>, u64)>()? {
                    if pairs.len() == crate::clock_header::MAX_WIRE_COMPONENTS {
                        return Err(serde::de::Error::custom("too many clock components"));
                    }
                    if key.is_empty() || key.len() > 256 {
                        return Err(serde::de::Error::custom("clock key must be 1-256 bytes"));
                    }
                    if counter > MAX_COUNTER {
                        return Err(serde::de::Error::custom("clock counter above 2^53-1"));
                    }
                    pairs.push((Arc::from(&*key), counter));
                }
                Ok(VectorClock::from_pairs(pairs))
            }
        }
        deserializer.deserialize_seq(ClockVisitor)
    }
}

/// A clock key as read: borrowed from the input when it has no escapes, so that it is copied once, into its
/// `Arc<str>`.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a clock key string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clock() -> impl Strategy<Value = VectorClock> {
        proptest::collection::vec(("[a-d]#[12]", 0u64..6), 0..6).prop_map(VectorClock::from_pairs)
    }

    fn dominates(big: &VectorClock, small: &VectorClock) -> bool {
        small.iter().all(|(k, n)| big.get(k) >= n)
    }

    #[test]
    fn keys_with_and_without_escapes_deserialize_alike() {
        let plain: VectorClock = serde_json::from_str(r#"[["a#1",2],["b\"q#1",3]]"#).unwrap();
        let escaped: VectorClock =
            serde_json::from_str(r#"[["\u0061#1",2],["b\"q#1",3]]"#).unwrap();
        assert_eq!(plain, escaped);
        assert_eq!(plain.get("a#1"), 2);
        assert_eq!(plain.get("b\"q#1"), 3);
        // From a reader (no borrowing possible) too.
        let read: VectorClock =
            serde_json::from_reader(&br#"[["a#1",2],["b\"q#1",3]]"#[..]).unwrap();
        assert_eq!(read, plain);
        assert!(serde_json::from_str::<VectorClock>(r#"[["",1]]"#).is_err());
        assert!(serde_json::from_str::<VectorClock>(r#"[[7,1]]"#).is_err());
    }

    proptest! {
        #[test]
        fn with_counter_is_set_counter_on_a_copy(a in clock(), key in "[a-d]#[12]", counter in 0u64..100) {
            let key: Arc<str> = Arc::from(key.as_str());
            let mut oracle = a.clone();
            oracle.set_counter(&key, counter);
            prop_assert_eq!(a.with_counter(&key, counter), oracle);
        }

        #[test]
        fn iter_with_counter_reads_as_the_updated_copy(
            a in clock(),
            key in "[a-d]#[12]",
            counter in proptest::option::of(0u64..100),
        ) {
            let mut oracle = a.clone();
            if let Some(n) = counter {
                oracle.set_counter(&Arc::from(key.as_str()), n);
            }
            let got: Vec<(&str, u64)> = a.iter_with_counter(&key, counter).collect();
            prop_assert_eq!(got, oracle.iter().collect::<Vec<_>>());
        }

        #[test]
        fn merge_is_commutative(a in clock(), b in clock()) {
            let mut ab = a.clone(); ab.merge(&b);
            let mut ba = b.clone(); ba.merge(&a);
            prop_assert_eq!(ab, ba);
        }

        #[test]
        fn merge_is_associative(a in clock(), b in clock(), c in clock()) {
            let mut left = a.clone(); left.merge(&b); left.merge(&c);
            let mut bc = b.clone(); bc.merge(&c);
            let mut right = a.clone(); right.merge(&bc);
            prop_assert_eq!(left, right);
        }

        #[test]
        fn merge_is_idempotent(a in clock()) {
            let mut aa = a.clone(); aa.merge(&a);
            prop_assert_eq!(aa, a);
        }

        #[test]
        fn merge_dominates_both_inputs(a in clock(), b in clock()) {
            let mut m = a.clone(); m.merge(&b);
            prop_assert!(dominates(&m, &a) && dominates(&m, &b));
            prop_assert!(matches!(a.compare(&m), CausalOrder::Before | CausalOrder::Equal));
        }

        #[test]
        fn happens_before_is_a_strict_partial_order(a in clock(), b in clock(), c in clock()) {
            prop_assert!(!a.happened_before(&a));
            prop_assert!(!(a.happened_before(&b) && b.happened_before(&a)));
            if a.happened_before(&b) && b.happened_before(&c) {
                prop_assert!(a.happened_before(&c));
            }
        }

        #[test]
        fn compare_is_antisymmetric_and_matches_pointwise_order(a in clock(), b in clock()) {
            let expected = match (dominates(&b, &a), dominates(&a, &b)) {
                (true, true) => CausalOrder::Equal,
                (true, false) => CausalOrder::Before,
                (false, true) => CausalOrder::After,
                (false, false) => CausalOrder::Concurrent,
            };
            prop_assert_eq!(a.compare(&b), expected);
            let flipped = match expected {
                CausalOrder::Before => CausalOrder::After,
                CausalOrder::After => CausalOrder::Before,
                other => other,
            };
            prop_assert_eq!(b.compare(&a), flipped);
        }

        #[test]
        fn tick_moves_strictly_forward(a in clock(), key in "[a-e]#[123]") {
            let mut t = a.clone();
            t.tick(&key);
            prop_assert_eq!(a.compare(&t), CausalOrder::Before);
        }
    }

    #[test]
    fn bound_keeps_own_and_drops_least_recent() {
        let mut c = VectorClock::from_pairs((0..10).map(|i| (format!("s{i}#1"), i + 1)));
        c.tick("me#1");
        c.bound(4, "me#1", DEFAULT_COMPONENT_TTL);
        assert_eq!(c.len(), 4);
        assert_eq!(c.get("me#1"), 1);
        // Same age: smallest counters go first.
        assert_eq!(c.get("s9#1"), 10);
        assert_eq!(c.get("s0#1"), 0);
    }

    #[test]
    fn tick_saturates() {
        let mut c = VectorClock::from_pairs([("a", MAX_COUNTER)]);
        assert_eq!(c.tick("a"), MAX_COUNTER);
    }
}
