//! `eas-runtime`: what runs. HTTP serving (the EAS predict protocol and the Open Inference
//! Protocol), dynamic batching, worker pools, queues, processor backends and the controller
//! that reconciles specs with instances.
//!
//! Serving arrives with its own issue; this crate already owns its [`Error`].

pub mod error;

pub use error::{Error, Result};
