//! The edge's routes as one service, what the server's connections call: a gRPC call (by its
//! `Content-Type`) goes to the `GRPCInferenceService` (`grpc.rs`), an EAS predict request
//! (`/api/predict/{service}...`) straight to its handler (`predict.rs`), any other request to
//! the axum router. The predict path is the hot one: dispatched here it skips the router's
//! route lookup, its captured-parameter map and its boxed handler clone (six allocations per
//! request).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::Method;
use tower::Service;

use super::Edge;
use super::grpc::{self, Grpc};
use super::predict;

/// The edge's routes: gRPC, predict, and the router for the rest.
#[derive(Clone)]
pub(crate) struct Routes {
    http: Router,
    grpc: Grpc,
    edge: Arc<Edge>,
}

impl Routes {
    /// `http` for the HTTP routes other than predict, which (and gRPC) are served over `edge`.
    pub(crate) fn new(http: Router, edge: Arc<Edge>) -> Self {
        Self {
            http,
            grpc: Grpc::new(Arc::clone(&edge)),
            edge,
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<B> Service<http::Request<B>> for Routes
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Dispatched<<Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.http, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if grpc::is_grpc(request.headers()) {
            Dispatched::Boxed {
                future: Box::pin(self.grpc.clone().serve(request.map(Body::new))),
            }
        } else if predict::is_predict(request.uri().path()) {
            // The body is read as the connection gives it, not boxed first.
            let edge = Arc::clone(&self.edge);
            let head = request.method() == Method::HEAD;
            Dispatched::Boxed {
                future: Box::pin(async move {
                    let mut response = predict::predict(edge, request).await;
                    // An answer to HEAD has no body; HTTP/1 leaves it out, HTTP/2 would send
                    // it (what axum's routes empty for every route).
                    if head {
                        *response.body_mut() = Body::empty();
                    }
                    Ok(response)
                }),
            }
        } else {
            Dispatched::Http {
                future: self.http.call(request.map(Body::new)),
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of the side a request went to.
    #[project = DispatchedProj]
    pub(crate) enum Dispatched<F> {
        Http { #[pin] future: F },
        Boxed { future: BoxFuture },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Dispatched<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DispatchedProj::Http { future } => future.poll(cx),
            DispatchedProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
