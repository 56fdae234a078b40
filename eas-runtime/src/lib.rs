//! `eas-runtime`: what runs. HTTP serving (the EAS predict protocol and the Open Inference
//! Protocol), dynamic batching, worker pools, queues, processor backends and the controller
//! that reconciles specs with instances.

pub mod error;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod proto;

pub use error::{Error, Result};
