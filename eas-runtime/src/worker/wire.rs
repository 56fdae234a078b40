//! What the parent and a worker process say to each other over a Unix socket: frames of a
//! 4-byte little-endian length and a postcard body, at most [`MAX_FRAME`] bytes each.
//!
//! ```text
//! parent                                   worker (EAS_WORKER_SOCKET set)
//!   bind socket, spawn  ------------------>  connect (the control connection)
//!   Hello {spec, init, connections, limits} ->  apply limits, build + initialize the processor
//!                       <------------------  Started::Ready {metadata} | Started::Failed(why)
//!                       <------------------  connect `connections` times (data connections)
//!   Batch [requests]    ------------------>  processor.process on the connection's thread
//!                       <------------------  Results {outcomes, custom metrics} | Panicked(why)
//!   close / SIGTERM / SIGKILL                exits at end of input (or on the signal)
//! ```
//!
//! Both ends are the same binary, so the format needs no versioning; a frame past the bound
//! or that does not decode ends the connection (and the worker).

use std::io::{self, Read, Write};
use std::path::PathBuf;

use bytes::Bytes;
use eas_core::processor::{
    Device, HeaderName, HeaderValue, InitContext, ModelMetadata, ProcessError, Request, Response,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The environment variable that puts a binary in worker mode: the socket to connect to.
pub const SOCKET_ENV: &str = "EAS_WORKER_SOCKET";

/// The largest frame either end sends or accepts: a batch of bodies within the server's body
/// limits fits many times over; a corrupt length cannot make the reader allocate more.
pub const MAX_FRAME: usize = 1 << 30;

/// The first message, on the control connection: what to run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The service spec, as JSON (the processor factories read it).
    pub spec: String,
    /// The processor's initialization context.
    pub init: Init,
    /// How many data connections to open (one per worker thread of the instance).
    pub connections: u32,
    /// The memory limit to apply to itself (`RLIMIT_DATA`), when cgroups cannot.
    pub memory_rlimit: Option<u64>,
}

/// An [`InitContext`] without its metric reporter (the worker makes its own and sends the
/// values back with each answer).
#[derive(Debug, Serialize, Deserialize)]
pub struct Init {
    service: String,
    instance_index: u32,
    model_entry: Option<PathBuf>,
    model_dir: Option<PathBuf>,
    model_config: Option<String>,
    /// `None`: the CPU; else the CUDA device's ordinal (`Device` is tagged, which postcard
    /// cannot read back).
    cuda: Option<u32>,
    /// A GPU slice's memory limit in bytes, and its core percentage (`InitContext::with_gpu_slice`).
    gpu_memory_limit: Option<u64>,
    gpu_core_percentage: Option<u32>,
    threads: usize,
}

impl From<&InitContext> for Init {
    fn from(ctx: &InitContext) -> Self {
        Self {
            service: ctx.service.clone(),
            instance_index: ctx.instance_index,
            model_entry: ctx.model_entry.clone(),
            model_dir: ctx.model_dir.clone(),
            model_config: ctx.model_config.clone(),
            cuda: match ctx.device {
                Device::Cpu => None,
                Device::Cuda { ordinal } => Some(ordinal),
            },
            gpu_memory_limit: ctx.gpu_memory_limit,
            gpu_core_percentage: ctx.gpu_core_percentage,
            threads: ctx.threads,
        }
    }
}

impl Init {
    /// The context the worker's processor is initialized with.
    #[must_use]
    pub fn context(&self) -> InitContext {
        let mut ctx = InitContext::new(self.service.clone())
            .with_instance_index(self.instance_index)
            .with_device(
                self.cuda
                    .map_or(Device::Cpu, |ordinal| Device::Cuda { ordinal }),
            )
            .with_gpu_slice(self.gpu_memory_limit, self.gpu_core_percentage)
            .with_threads(self.threads);
        if let Some(entry) = &self.model_entry {
            ctx = ctx.with_model_entry(entry.clone());
        }
        if let Some(dir) = &self.model_dir {
            ctx = ctx.with_model_dir(dir.clone());
        }
        if let Some(config) = &self.model_config {
            ctx = ctx.with_model_config(config.clone());
        }
        ctx
    }
}

/// The worker's answer to [`Hello`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Started {
    /// The processor is initialized; its description of the model, if it gives one.
    Ready(Option<ModelMetadata>),
    /// The processor could not be built or initialized.
    Failed(String),
}

/// One request of a batch.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireRequest {
    body: Bytes,
    content_type: Option<String>,
    path: String,
    /// Names and raw values (a header value need not be text).
    headers: Vec<(String, Bytes)>,
}

impl From<&Request> for WireRequest {
    fn from(request: &Request) -> Self {
        Self {
            body: request.body.clone(),
            content_type: request.content_type.clone(),
            path: request.path.clone(),
            headers: request
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        Bytes::copy_from_slice(value.as_bytes()),
                    )
                })
                .collect(),
        }
    }
}

impl From<WireRequest> for Request {
    fn from(wire: WireRequest) -> Self {
        let mut request = Request::new(wire.body).with_path(wire.path);
        request.content_type = wire.content_type;
        // What the other side sent came from a `HeaderMap`; a pair that is not a header (the
        // pipe corrupted) is left out rather than trusted.
        request.headers = wire
            .headers
            .into_iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_maybe_shared(value).ok()?,
                ))
            })
            .collect();
        request
    }
}

/// One answer of a batch.
#[derive(Debug, Serialize, Deserialize)]
pub enum Outcome {
    /// The processor's response.
    Ok {
        /// Its body.
        body: Bytes,
        /// Its content type.
        content_type: Option<String>,
        /// Its status.
        status: u16,
    },
    /// The processor refused or failed the request.
    Err {
        /// The status it asked for.
        status: u16,
        /// Why.
        message: String,
    },
}

impl From<Result<Response, ProcessError>> for Outcome {
    fn from(result: Result<Response, ProcessError>) -> Self {
        match result {
            Ok(response) => Self::Ok {
                body: response.body,
                content_type: response.content_type,
                status: response.status,
            },
            Err(error) => Self::Err {
                status: error.status,
                message: error.message,
            },
        }
    }
}

impl From<Outcome> for Result<Response, ProcessError> {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ok {
                body,
                content_type,
                status,
            } => {
                let mut response = Response::with_status(status, body);
                response.content_type = content_type;
                Ok(response)
            }
            Outcome::Err { status, message } => Err(ProcessError::new(status, message)),
        }
    }
}

/// The worker's answer to a batch.
#[derive(Debug, Serialize, Deserialize)]
pub enum Results {
    /// One outcome per request, and the processor's custom metrics now.
    Done {
        /// One per request, in order.
        outcomes: Vec<Outcome>,
        /// The latest value of each custom metric the processor reported.
        custom: Vec<(String, f64)>,
    },
    /// The processor panicked on the batch (the worker goes on; the parent decides).
    Panicked(String),
}

/// Writes one frame.
///
/// # Errors
/// When the message does not encode or the connection fails.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let body = postcard::to_stdvec(message).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other(format!(
            "a frame of {} bytes is over the limit of {MAX_FRAME}",
            body.len()
        )));
    }
    let length = u32::try_from(body.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&body);
    out.write_all(&frame)?;
    out.flush()
}

/// Reads one frame; `UnexpectedEof` when the other end closed the connection between frames.
///
/// # Errors
/// When the connection fails or closes, the length is over [`MAX_FRAME`], or the body does
/// not decode.
pub fn receive<T: DeserializeOwned>(input: &mut impl Read) -> io::Result<T> {
    let mut length = [0u8; 4];
    input.read_exact(&mut length)?;
    let length = u32::from_le_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes is over the limit of {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body)?;
    postcard::from_bytes(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_and_its_results_should_cross_unchanged() {
        let request = Request::new("hello")
            .with_content_type("text/plain")
            .with_path("/sub")
            .with_header("x-a", "1");
        let mut buffer = Vec::new();
        send(&mut buffer, &vec![WireRequest::from(&request)]).expect("send");
        let back: Vec<WireRequest> = receive(&mut buffer.as_slice()).expect("receive");
        let back: Vec<Request> = back.into_iter().map(Request::from).collect();
        assert_eq!(back, vec![request]);

        let answers = vec![
            Outcome::from(Ok(Response::ok("out"))),
            Outcome::from(Err(ProcessError::bad_request("no"))),
        ];
        let mut buffer = Vec::new();
        send(&mut buffer, &answers).expect("send");
        let back: Vec<Outcome> = receive(&mut buffer.as_slice()).expect("receive");
        let back: Vec<Result<Response, ProcessError>> = back.into_iter().map(Into::into).collect();
        assert_eq!(
            back,
            vec![
                Ok(Response::ok("out")),
                Err(ProcessError::bad_request("no"))
            ]
        );
    }

    #[test]
    fn a_hello_should_cross_with_its_context() {
        let ctx = InitContext::new("svc")
            .with_instance_index(3)
            .with_device(Device::Cuda { ordinal: 1 })
            .with_gpu_slice(Some(4 << 30), Some(30))
            .with_model_entry("/m/model.onnx")
            .with_threads(2);
        let hello = Hello {
            spec: "{}".into(),
            init: Init::from(&ctx),
            connections: 2,
            memory_rlimit: Some(1 << 30),
        };
        let mut buffer = Vec::new();
        send(&mut buffer, &hello).expect("send");
        let back: Hello = receive(&mut buffer.as_slice()).expect("receive");
        let back = back.init.context();
        assert_eq!(
            (
                back.instance_index,
                back.device,
                back.model_entry,
                back.threads
            ),
            (3, Device::Cuda { ordinal: 1 }, ctx.model_entry, 2)
        );
        assert_eq!(
            (back.gpu_memory_limit, back.gpu_core_percentage),
            (Some(4 << 30), Some(30))
        );
        let mut buffer = Vec::new();
        let metadata = ModelMetadata {
            name: "m".into(),
            ..ModelMetadata::default()
        };
        send(&mut buffer, &Started::Ready(Some(metadata.clone()))).expect("send");
        let back: Started = receive(&mut buffer.as_slice()).expect("receive");
        assert!(matches!(back, Started::Ready(Some(m)) if m == metadata));
    }

    #[test]
    fn a_frame_over_the_limit_or_cut_short_should_be_refused_without_allocating_it() {
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"xx");
        let error = receive::<Vec<WireRequest>>(&mut huge.as_slice()).expect_err("too big");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");

        let mut cut = 100u32.to_le_bytes().to_vec();
        cut.extend_from_slice(b"short");
        let error = receive::<Vec<WireRequest>>(&mut cut.as_slice()).expect_err("cut");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }
}
