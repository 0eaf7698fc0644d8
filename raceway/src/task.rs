//! Carrying the context into spawned tasks with fork/join semantics.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Poll};

use crate::context::{current, Context};

/// Spawns `future` on the tokio runtime as a **forked** logical thread of the current context (if any).
/// Awaiting the returned handle joins it: what follows the `.await` happens after everything the task did.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let raceway = raceway::Raceway::builder().service_name("svc").build().unwrap();
/// let ctx = raceway.new_trace("job");
/// let parent_thread = ctx.thread_id().to_owned();
/// ctx.scope(async move {
///     let child_thread = raceway::spawn(async { raceway::current().unwrap().thread_id().to_owned() })
///         .await
///         .unwrap();
///     assert_eq!(child_thread, format!("{parent_thread}.1"));
/// })
/// .await;
/// # }
/// ```
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(parent) => {
            let child = parent.fork();
            JoinHandle {
                inner: tokio::spawn(child.clone().scope(future)),
                join: Some((parent, child)),
            }
        }
        None => JoinHandle {
            inner: tokio::spawn(future),
            join: None,
        },
    }
}

/// Like [`spawn`] for blocking code (`tokio::task::spawn_blocking`).
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match current() {
        Some(parent) => {
            let child = parent.fork();
            let scoped = child.clone();
            JoinHandle {
                inner: tokio::task::spawn_blocking(move || scoped.in_scope(f)),
                join: Some((parent, child)),
            }
        }
        None => JoinHandle {
            inner: tokio::task::spawn_blocking(f),
            join: None,
        },
    }
}

/// Handle of a task started with [`spawn`] or [`spawn_blocking`]; awaiting it records the join.
#[derive(Debug)]
pub struct JoinHandle<T> {
    inner: tokio::task::JoinHandle<T>,
    join: Option<(Context, Context)>,
}

impl<T> JoinHandle<T> {
    /// Aborts the task (no join is recorded).
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// The forked child's context, when the task was spawned inside a context.
    pub fn context(&self) -> Option<&Context> {
        self.join.as_ref().map(|(_, child)| child)
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let output = ready!(Pin::new(&mut self.inner).poll(cx));
        if let Some((parent, child)) = self.join.take() {
            parent.join(&child);
        }
        Poll::Ready(output)
    }
}

pin_project_lite::pin_project! {
    /// A future running in a forked logical thread of the context that was current when it was created.
    pub struct WithContext<F: Future> {
        #[pin]
        inner: Scoping<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = ScopingProj]
    enum Scoping<F: Future> {
        Scoped { #[pin] future: tokio::task::futures::TaskLocalFuture<Context, F> },
        Plain { #[pin] future: F },
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        match self.project().inner.project() {
            ScopingProj::Scoped { future } => future.poll(cx),
            ScopingProj::Plain { future } => future.poll(cx),
        }
    }
}

/// Extension for futures handed to other spawners (`tokio::spawn`, `JoinSet`, ...).
pub trait InCurrentRacewayContext: Future + Sized {
    /// Runs this future in a forked logical thread of the current context. No join is recorded automatically:
    /// use [`spawn`] for that, or [`Context::join`] with the child's context.
    ///
    /// ```
    /// use raceway::InCurrentRacewayContext;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let raceway = raceway::Raceway::builder().service_name("svc").build().unwrap();
    /// raceway.new_trace("job").scope(async {
    ///     let handle = tokio::spawn(async { raceway::current().is_some() }.in_current_raceway_context());
    ///     assert!(handle.await.unwrap());
    /// }).await;
    /// # }
    /// ```
    #[track_caller]
    fn in_current_raceway_context(self) -> WithContext<Self> {
        match current() {
            Some(parent) => WithContext {
                inner: Scoping::Scoped {
                    future: parent.fork().scope(self),
                },
            },
            None => WithContext {
                inner: Scoping::Plain { future: self },
            },
        }
    }
}

impl<F: Future> InCurrentRacewayContext for F {}
