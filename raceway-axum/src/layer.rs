//! [`RacewayLayer`].

use raceway::Raceway;
use tower::Layer;

use crate::make_operation::{DefaultMakeOperation, MakeOperation};
use crate::service::RacewayService;

/// A [`tower::Layer`] that wraps services in [`RacewayService`]. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct RacewayLayer<M = DefaultMakeOperation> {
    raceway: Raceway,
    make_operation: M,
}

impl RacewayLayer {
    /// A layer recording to `raceway`, naming spans with [`DefaultMakeOperation`].
    pub fn new(raceway: Raceway) -> Self {
        Self {
            raceway,
            make_operation: DefaultMakeOperation,
        }
    }
}

impl<M> RacewayLayer<M> {
    /// Names server spans with `make_operation` instead.
    pub fn make_operation_with<M2: MakeOperation>(self, make_operation: M2) -> RacewayLayer<M2> {
        RacewayLayer {
            raceway: self.raceway,
            make_operation,
        }
    }
}

impl<S, M: Clone> Layer<S> for RacewayLayer<M> {
    type Service = RacewayService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        RacewayService::new(inner, self.raceway.clone(), self.make_operation.clone())
    }
}
