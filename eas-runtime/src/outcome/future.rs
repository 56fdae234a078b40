//! The futures the admission layers return: a refusal decided before the inner service is
//! called, and the errors of tower's own layers turned into [`PredictError`]s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use tower::BoxError;

use super::PredictError;

pin_project! {
    /// Either a refusal decided at `call`, or the inner service's future.
    pub struct Decided<F> {
        #[pin]
        inner: Option<F>,
        refused: Option<PredictError>,
    }
}

impl<F> Decided<F> {
    /// A refusal.
    pub(crate) fn refused(error: PredictError) -> Self {
        Self {
            inner: None,
            refused: Some(error),
        }
    }

    /// The inner service's answer.
    pub(crate) fn admitted(inner: F) -> Self {
        Self {
            inner: Some(inner),
            refused: None,
        }
    }
}

impl<F, T> Future for Decided<F>
where
    F: Future<Output = Result<T, PredictError>>,
{
    type Output = Result<T, PredictError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(error) = this.refused.take() {
            return Poll::Ready(Err(error));
        }
        this.inner
            .as_pin_mut()
            .expect("a Decided future polled after it completed")
            .poll(cx)
    }
}

pin_project! {
    /// The future of a tower layer whose own error (`Overloaded`) becomes `refusal`, shared by
    /// every request of the layer; the inner service's [`PredictError`]s pass through unchanged.
    pub struct Refined<F> {
        #[pin]
        inner: F,
        refusal: Arc<PredictError>,
    }
}

impl<F> Refined<F> {
    pub(crate) fn new(inner: F, refusal: Arc<PredictError>) -> Self {
        Self { inner, refusal }
    }
}

impl<F, T> Future for Refined<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, PredictError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.inner
            .poll(cx)
            .map_err(|error| refine(error, this.refusal))
    }
}

/// The inner [`PredictError`] inside a boxed error, or else the layer's own refusal.
pub(crate) fn refine(error: BoxError, refusal: &PredictError) -> PredictError {
    match error.downcast::<PredictError>() {
        Ok(inner) => *inner,
        Err(_) => refusal.clone(),
    }
}
