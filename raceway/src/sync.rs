//! Tracked async locks: they record `lock_acquire` after acquiring and `lock_release` before releasing, so the
//! backend sees lock hand-offs as happens-before edges and knows which accesses a lock protects.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;

use crate::context::{current, Context};
use crate::LockMode;

struct Tracker {
    ctx: Option<Context>,
    name: Arc<str>,
    mode: LockMode,
}

impl Tracker {
    fn acquired(name: &Arc<str>, mode: LockMode, location: &'static Location<'static>) -> Self {
        let ctx = current();
        if let Some(ctx) = &ctx {
            ctx.lock_acquired_at(name, mode, location);
        }
        Self {
            ctx,
            name: Arc::clone(name),
            mode,
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Some(ctx) = &self.ctx {
            ctx.lock_releasing(&self.name, self.mode);
        }
    }
}

/// A `tokio::sync::Mutex` whose lock and unlock are tracked under a global lock name.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let balance = raceway::sync::Mutex::new("account:42", 100);
/// *balance.lock().await -= 10;
/// assert_eq!(*balance.lock().await, 90);
/// # }
/// ```
#[derive(Debug)]
pub struct Mutex<T> {
    name: Arc<str>,
    inner: tokio::sync::Mutex<T>,
}

/// Guard of a tracked [`Mutex`]; the release is recorded when it drops, before the lock is released.
pub struct MutexGuard<'a, T> {
    // Field order matters: the tracker records the release before the inner guard unlocks.
    _tracker: Tracker,
    guard: tokio::sync::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    /// A tracked mutex named `name` (name it globally, like variables).
    pub fn new(name: impl Into<Arc<str>>, value: T) -> Self {
        Self {
            name: name.into(),
            inner: tokio::sync::Mutex::new(value),
        }
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Acquires the lock and records the acquisition.
    #[track_caller]
    pub fn lock(&self) -> impl std::future::Future<Output = MutexGuard<'_, T>> {
        let location = Location::caller();
        async move {
            let guard = self.inner.lock().await;
            MutexGuard {
                _tracker: Tracker::acquired(&self.name, LockMode::Exclusive, location),
                guard,
            }
        }
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A `tokio::sync::RwLock` whose read (shared) and write (exclusive) locks are tracked.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = raceway::sync::RwLock::new("config", 1);
/// assert_eq!(*config.read().await, 1);
/// *config.write().await = 2;
/// # }
/// ```
#[derive(Debug)]
pub struct RwLock<T> {
    name: Arc<str>,
    inner: tokio::sync::RwLock<T>,
}

/// Shared guard of a tracked [`RwLock`].
pub struct RwLockReadGuard<'a, T> {
    _tracker: Tracker,
    guard: tokio::sync::RwLockReadGuard<'a, T>,
}

/// Exclusive guard of a tracked [`RwLock`].
pub struct RwLockWriteGuard<'a, T> {
    _tracker: Tracker,
    guard: tokio::sync::RwLockWriteGuard<'a, T>,
}

impl<T> RwLock<T> {
    /// A tracked read-write lock named `name`.
    pub fn new(name: impl Into<Arc<str>>, value: T) -> Self {
        Self {
            name: name.into(),
            inner: tokio::sync::RwLock::new(value),
        }
    }

    /// Acquires a shared lock.
    #[track_caller]
    pub fn read(&self) -> impl std::future::Future<Output = RwLockReadGuard<'_, T>> {
        let location = Location::caller();
        async move {
            let guard = self.inner.read().await;
            RwLockReadGuard {
                _tracker: Tracker::acquired(&self.name, LockMode::Shared, location),
                guard,
            }
        }
    }

    /// Acquires the exclusive lock.
    #[track_caller]
    pub fn write(&self) -> impl std::future::Future<Output = RwLockWriteGuard<'_, T>> {
        let location = Location::caller();
        async move {
            let guard = self.inner.write().await;
            RwLockWriteGuard {
                _tracker: Tracker::acquired(&self.name, LockMode::Exclusive, location),
                guard,
            }
        }
    }
}

impl<T> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
