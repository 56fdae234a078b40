//! `eas-runtime`: what runs. HTTP serving of the EAS predict protocol, dynamic batching,
//! worker pools, limits, metrics, sinks and processor backends.
//!
//! Compose a server in your own binary:
//!
//! ```no_run
//! use eas_core::spec::ServiceSpec;
//! use eas_runtime::registry::ProcessorRegistry;
//! use eas_runtime::server::Server;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = ServiceSpec::from_json_str(
//!     r#"{"metadata": {"name": "echo", "instance": 1}, "processor": "echo", "token": "t"}"#,
//! )?;
//! let server = Server::builder()
//!     .registry(ProcessorRegistry::with_builtins())
//!     .service(spec)
//!     .bind("127.0.0.1:8080".parse()?)
//!     .start()
//!     .await?;
//! println!("serving on http://{}", server.local_addr());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod api_error;
pub mod auth;
pub mod error;
pub mod gateway;
pub mod instance;
pub mod limit;
pub mod metrics;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod proto;
pub mod queue;
pub mod registry;
pub mod server;
pub mod service;
pub mod sink;

pub use api_error::ApiError;
pub use error::{Error, Result};
