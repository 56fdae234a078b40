//! What a predict request ends with: the processor's answer ([`Answered`]) or why there is
//! none ([`PredictError`]), and the futures the admission layers return ([`future`]). A leaf:
//! the layers at every level ([`crate::admission`], [`crate::replica::admission`]), the
//! queue consumer and the HTTP edge all speak it.

mod error;
pub mod future;
mod refusal;

use eas_core::processor::Response;

pub use error::PredictError;
pub use refusal::{Failure, ReplicaError};

/// The processor's answer and the instance that gave it.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The answer.
    pub response: Response,
    /// The instance that ran it.
    pub instance: u32,
    /// The version of the service that instance runs.
    pub version: u32,
}
