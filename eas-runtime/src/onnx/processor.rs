//! [`OnnxProcessor`]: the `onnx` processor, batching requests by stacking them.

use std::path::{Path, PathBuf};

use eas_core::Processor;
use eas_core::processor::{Device, InitContext, ModelMetadata, ProcessError, Request, Response};
use ort::value::DynValue;

use super::codec::{self, Format};
use super::cuda::CudaDevice;
use super::error::OnnxError;
use super::library::runtime;
use super::model::ModelSpec;
use super::pool::SessionPool;
use super::tensor::Tensor;

/// Serves an ONNX model with ONNX Runtime.
///
/// [`initialize`](Processor::initialize) loads `model_entry` (or the one `*.onnx` file under
/// `model_dir`) with `threads` intra-op threads per session. [`process`](Processor::process)
/// may be called from several threads at once: each call takes its own session from a pool
/// that grows on demand. A batch runs as one inference when its requests agree on input
/// types and trailing dimensions (they are stacked along the first dimension and the outputs
/// split back); any other request runs on its own, and a bad request fails only itself, with
/// a 400 saying what is wrong. When a stacked run fails, the failure is logged and what
/// follows depends on whose fault it can be: one request's (ONNX Runtime refused the data, or
/// ran out of memory for the stack), then each request runs alone and gets its own answer; not
/// any request's (no session could be built, the inputs could not be handed over, the
/// outputs were unreadable, the execution provider or engine failed), then every request of
/// the stack gets that error, a 500, without running again. The bodies are described in the
/// [module docs](super).
#[derive(Debug, Default)]
pub struct OnnxProcessor {
    loaded: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// Whether its sessions run on the CPU.
    on_cpu: bool,
    service: String,
    instance: u32,
    path: PathBuf,
    spec: ModelSpec,
    pool: SessionPool,
}

/// The outputs of one request, or why it failed.
type Outcome = Result<Vec<Tensor>, ProcessError>;

/// Requests that stack, by the trailing dimensions of each input: (request index, rows).
type Groups = Vec<(Vec<Vec<i64>>, Vec<(usize, usize)>)>;

/// Where an inference failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Getting a session: the pool had no idle one and could not build another.
    Session,
    /// Handing the inputs to ONNX Runtime (building its tensors).
    Inputs,
    /// `Session::run`.
    Run,
    /// Reading the outputs back (missing, or not of the model's type).
    Outputs,
}

/// An inference that failed, and where.
#[derive(Debug)]
struct InferError {
    stage: Stage,
    error: ort::Error,
}

impl From<ort::Error> for InferError {
    /// The pool's own error: it could not build a session.
    fn from(error: ort::Error) -> Self {
        Self::at(Stage::Session, error)
    }
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stage {
            Stage::Session => write!(f, "no ONNX Runtime session: {}", self.error),
            Stage::Inputs | Stage::Run | Stage::Outputs => self.error.fmt(f),
        }
    }
}

impl InferError {
    fn at(stage: Stage, error: ort::Error) -> Self {
        Self { stage, error }
    }

    /// Whose fault the failure can be.
    fn blame(&self) -> Blame {
        blame(self.stage, self.error.code())
    }

    /// What a request that got this failure is answered: a 400 when ONNX Runtime refused its
    /// inputs, else a 500.
    fn to_process_error(&self) -> ProcessError {
        match (self.stage, self.error.code()) {
            (Stage::Run, ort::ErrorCode::InvalidArgument) => {
                ProcessError::bad_request(format!("ONNX Runtime refused the inputs: {self}"))
            }
            (Stage::Inputs, _) => {
                ProcessError::internal(format!("cannot build the input tensors: {self}"))
            }
            _ => ProcessError::internal(format!("inference failed: {self}")),
        }
    }
}

/// Whose fault a failed stacked run can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    /// Possibly one request's (or the stack's size): each request runs alone, so that only
    /// the request at fault fails.
    Request,
    /// No request's: ONNX Runtime or the model failed, and each request alone would fail the
    /// same way; every request of the stack gets the error.
    Runtime,
}

/// Whose fault a failure at `stage` with ONNX Runtime's `code` can be.
///
/// Only `Session::run` sees the requests' data. ONNX Runtime's kernels refuse bad data with
/// `INVALID_ARGUMENT` (an index out of range), but also with `FAIL` (a shape a `Reshape` cannot
/// take: their `ORT_ENFORCE` checks) or `RUNTIME_EXCEPTION`, the codes it runs out of memory
/// with too (which a smaller run may not); so those three are blamed on the requests. Its
/// other codes (engine, execution provider, device, graph, model) are not about the data, and
/// nor is a failure before the run (no session, no input tensors) or after it (outputs that
/// are missing or not of the model's type).
fn blame(stage: Stage, code: ort::ErrorCode) -> Blame {
    use ort::ErrorCode as Code;
    match (stage, code) {
        (Stage::Run, Code::InvalidArgument | Code::GenericFailure | Code::RuntimeException) => {
            Blame::Request
        }
        _ => Blame::Runtime,
    }
}

/// What became of a stack of requests.
#[derive(Debug)]
enum Stacked {
    /// Each member's outputs.
    Split(Vec<Vec<Tensor>>),
    /// Run each member alone: the run failed, possibly through one member's fault, or the
    /// outputs do not have one row per input row.
    Alone,
    /// Every member gets this error.
    Failed(ProcessError),
}

impl OnnxProcessor {
    /// A processor with no model yet: call [`Processor::initialize`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The model file it loaded, once initialized.
    #[must_use]
    pub fn model_path(&self) -> Option<&Path> {
        self.loaded.as_ref().map(|l| l.path.as_path())
    }

    /// The number of idle ONNX Runtime sessions (all the sessions built so far, when no
    /// `process` call is running).
    #[must_use]
    pub fn idle_sessions(&self) -> usize {
        self.loaded.as_ref().map_or(0, |l| l.pool.idle_sessions())
    }
}

impl Processor for OnnxProcessor {
    fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
        let cuda = match ctx.device {
            Device::Cpu => None,
            Device::Cuda { ordinal } => Some(CudaDevice {
                ordinal,
                memory_limit: ctx.gpu_memory_limit,
            }),
        };
        let path = model_file(ctx)?;
        let runtime = runtime()?;
        if let Some(cuda) = &cuda {
            super::cuda::check(runtime, cuda)?;
        }
        let model_error = |reason: String| OnnxError::Model {
            path: path.clone(),
            reason,
        };
        let on_cpu = cuda.is_none();
        let pool = SessionPool::new(runtime, &path, ctx.threads, cuda)
            .map_err(|e| model_error(e.to_string()))?;
        let spec = pool
            .inspect(ModelSpec::from_session)
            .map_err(|e| model_error(e.to_string()))?
            .map_err(model_error)?;
        self.loaded = Some(Loaded {
            on_cpu,
            service: ctx.service.clone(),
            instance: ctx.instance_index,
            path,
            spec,
            pool,
        });
        Ok(())
    }

    /// One on the CPU: each run already uses the instance's `cpu` cores (its session's
    /// intra-op threads), so two at once share them and both take longer (measured with the
    /// batching bench's MLP on 2 cores: 5 workers got ~0.85x the rows/s of 1 or 2 at 8 and 16
    /// connections, at ~15% more CPU per row). On a GPU, as many as `rpc.worker_threads`.
    fn max_concurrent_batches(&self) -> Option<usize> {
        self.loaded.as_ref().is_some_and(|l| l.on_cpu).then_some(1)
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        let Some(loaded) = &self.loaded else {
            return batch
                .iter()
                .map(|_| {
                    Err(ProcessError::internal(
                        "the onnx processor is not initialized",
                    ))
                })
                .collect();
        };
        let formats: Vec<Format> = batch.iter().map(Format::of).collect();
        let inputs: Vec<Outcome> = batch
            .iter()
            .zip(&formats)
            .map(|(request, &format)| {
                let tensors = codec::decode(format, &request.body, &loaded.spec)?;
                loaded.spec.check(tensors)
            })
            .collect();
        let outcomes = loaded.run_batch(&inputs);
        outcomes
            .into_iter()
            .zip(formats)
            .map(|(outcome, format)| outcome.map(|outputs| codec::encode(format, &outputs)))
            .collect()
    }

    fn metadata(&self) -> ModelMetadata {
        self.loaded
            .as_ref()
            .map(|l| l.spec.metadata(&l.service))
            .unwrap_or_default()
    }
}

impl Loaded {
    /// Runs every checked request: stacked with the others of its shape where it can be,
    /// alone otherwise; one outcome per entry of `inputs` (failed checks pass through).
    fn run_batch(&self, inputs: &[Outcome]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; inputs.len()];
        // Groups of request indexes that stack: same trailing dimensions for every input.
        let mut groups: Groups = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            match input {
                Err(e) => outcomes[index] = Some(Err(e.clone())),
                Ok(tensors) => match self.spec.stack_key(tensors) {
                    Some((rows, key)) => match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, members)) => members.push((index, rows)),
                        None => groups.push((key, vec![(index, rows)])),
                    },
                    None => outcomes[index] = Some(self.run_alone(tensors)),
                },
            }
        }
        for (_, members) in groups {
            let stacked = if members.len() > 1 {
                self.run_stacked(inputs, &members)
            } else {
                Stacked::Alone
            };
            match stacked {
                Stacked::Split(split) => {
                    for ((index, _), outputs) in members.iter().zip(split) {
                        outcomes[*index] = Some(Ok(outputs));
                    }
                }
                Stacked::Failed(error) => {
                    for (index, _) in members {
                        outcomes[index] = Some(Err(error.clone()));
                    }
                }
                Stacked::Alone => {
                    for (index, _) in members {
                        if let Ok(tensors) = &inputs[index] {
                            outcomes[index] = Some(self.run_alone(tensors));
                        }
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(ProcessError::internal("request was not run"))))
            .collect()
    }

    /// Runs the members as one inference and splits the outputs by their rows. When that
    /// fails, the failure is logged and [`blame`]d: each member runs alone when a member may be
    /// at fault, and every member gets the error when none is. Outputs without one row per
    /// input row (the model does not treat rows independently) also send each member alone.
    fn run_stacked(&self, inputs: &[Outcome], members: &[(usize, usize)]) -> Stacked {
        let requests: Vec<&Vec<Tensor>> = members
            .iter()
            .filter_map(|(index, _)| inputs[*index].as_ref().ok())
            .collect();
        let values = self
            .spec
            .inputs
            .iter()
            .enumerate()
            .map(|(j, spec)| {
                let parts: Vec<&Tensor> = requests.iter().map(|r| &r[j]).collect();
                Ok((spec.name.clone(), Tensor::stacked_to_ort(&parts)?))
            })
            .collect::<ort::Result<Vec<_>>>()
            .map_err(|e| InferError::at(Stage::Inputs, e));
        let outputs = match values.and_then(|values| self.infer(values)) {
            Ok(outputs) => outputs,
            Err(error) => return self.after_stacked_failure(&error, members.len()),
        };
        let total: usize = members.iter().map(|(_, rows)| rows).sum();
        if outputs.iter().any(|o| o.rows() != Some(total)) {
            tracing::debug!(
                service = %self.service,
                instance = self.instance,
                "the outputs of a stacked run do not have one row per input row; running each \
                 request alone"
            );
            return Stacked::Alone;
        }
        let mut start = 0;
        let split = members
            .iter()
            .map(|&(_, rows)| {
                let part = outputs.iter().map(|o| o.rows_slice(start, rows)).collect();
                start += rows;
                part
            })
            .collect();
        Stacked::Split(split)
    }

    /// Logs a failed stacked run of `requests` requests and says what follows.
    fn after_stacked_failure(&self, error: &InferError, requests: usize) -> Stacked {
        let blame = error.blame();
        let code = error.error.code();
        match blame {
            Blame::Request => tracing::warn!(
                service = %self.service,
                instance = self.instance,
                requests,
                ?code,
                error = %error,
                "a stacked ONNX Runtime run failed, possibly through one request's inputs; \
                 running each request alone"
            ),
            Blame::Runtime => tracing::warn!(
                service = %self.service,
                instance = self.instance,
                requests,
                ?code,
                error = %error,
                "a stacked ONNX Runtime run failed, through no request's fault; failing every \
                 request of the stack"
            ),
        }
        match blame {
            Blame::Request => Stacked::Alone,
            Blame::Runtime => Stacked::Failed(error.to_process_error()),
        }
    }

    /// Runs one request's checked inputs.
    fn run_alone(&self, tensors: &[Tensor]) -> Outcome {
        let values = tensors
            .iter()
            .map(|t| Ok((t.name.clone(), Tensor::stacked_to_ort(&[t])?)))
            .collect::<ort::Result<Vec<_>>>()
            .map_err(|e| InferError::at(Stage::Inputs, e).to_process_error())?;
        self.infer(values).map_err(|e| e.to_process_error())
    }

    /// One inference on a pooled session; the outputs in the model's order.
    fn infer(&self, values: Vec<(String, DynValue)>) -> Result<Vec<Tensor>, InferError> {
        self.pool.with_session(|session| {
            let outputs = session
                .run(values)
                .map_err(|e| InferError::at(Stage::Run, e))?;
            self.spec
                .outputs
                .iter()
                .map(|spec| {
                    let value = outputs.get(&spec.name).ok_or_else(|| {
                        ort::Error::new(format!("ONNX Runtime returned no output `{}`", spec.name))
                    })?;
                    Tensor::from_ort(&spec.name, spec.dtype, value)
                })
                .collect::<ort::Result<Vec<_>>>()
                .map_err(|e| InferError::at(Stage::Outputs, e))
        })
    }
}

/// The model file: `model_entry`, else the one `*.onnx` file in `model_dir` (or `model_dir`
/// itself when it is a file).
fn model_file(ctx: &InitContext) -> Result<PathBuf, OnnxError> {
    crate::model_file::find(ctx, &["onnx"]).map_err(|reason| OnnxError::NoModel { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_before_initialize_should_fail_every_request() {
        let out = OnnxProcessor::new().process(&[Request::new("a"), Request::new("b")]);
        assert_eq!(out.len(), 2);
        assert!(
            out.iter()
                .all(|r| r.as_ref().is_err_and(|e| e.status == 500))
        );
    }

    #[test]
    fn only_a_run_that_may_have_failed_on_some_request_should_rerun_requests_alone() {
        use ort::ErrorCode as Code;
        for code in [
            Code::InvalidArgument,
            Code::GenericFailure,
            Code::RuntimeException,
        ] {
            assert_eq!(blame(Stage::Run, code), Blame::Request, "{code:?}");
            for stage in [Stage::Session, Stage::Inputs, Stage::Outputs] {
                assert_eq!(blame(stage, code), Blame::Runtime, "{stage:?} {code:?}");
            }
        }
        for code in [
            Code::EngineError,
            Code::ExecutionProviderFailure,
            Code::DeviceReset,
            Code::NotImplemented,
            Code::InvalidGraph,
            Code::NoModel,
            Code::NoSuchFile,
            Code::ModelLoaded,
            Code::InvalidProtobuf,
        ] {
            assert_eq!(blame(Stage::Run, code), Blame::Runtime, "{code:?}");
        }
    }

    /// Skips (or fails, with `EAS_REQUIRE_ALL=1`) without an ONNX Runtime library.
    fn ort_or_skip(test: &str) -> bool {
        match runtime() {
            Ok(_) => true,
            Err(e) => {
                assert!(
                    std::env::var("EAS_REQUIRE_ALL").as_deref() != Ok("1"),
                    "{test}: {e} (EAS_REQUIRE_ALL=1)"
                );
                println!("SKIPPED: {test}: {e}");
                false
            }
        }
    }

    #[test]
    fn a_stack_that_fails_through_no_requests_fault_should_fail_every_request_without_rerunning() {
        let test = "a_stack_that_fails_through_no_requests_fault_should_fail_every_request";
        if !ort_or_skip(test) {
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let model = dir.path().join("mlp.onnx");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/mlp.onnx"),
            &model,
        )
        .expect("example model");
        let mut onnx = OnnxProcessor::new();
        onnx.initialize(&InitContext::new("s").with_model_entry(&model))
            .expect("initializes");
        let request = || Request::new(r#"{"inputs": {"x": [[5.1, 3.5, 1.4, 0.2]]}}"#);
        assert!(
            onnx.process(&[request(), request()])
                .iter()
                .all(Result::is_ok)
        );
        // No idle session and no model file to build one from: ONNX Runtime fails whatever
        // the requests hold.
        let pool = &onnx.loaded.as_ref().expect("loaded").pool;
        pool.drop_idle();
        std::fs::remove_file(&model).expect("remove the model");
        let built = pool.built();
        let answers = onnx.process(&[request(), request(), request()]);
        assert_eq!(answers.len(), 3);
        for answer in &answers {
            let err = answer.as_ref().expect_err("no session");
            assert_eq!(err.status, 500, "{err}");
            assert!(err.message.contains("no ONNX Runtime session"), "{err}");
        }
        assert_eq!(
            pool.built(),
            built + 1,
            "one failed attempt for the stack, none per request"
        );
    }

    /// With the CPU-only ONNX Runtime (what CI has), a GPU instance fails to initialize and
    /// says that the GPU build is missing: never a silent CPU fallback. With a GPU and the GPU
    /// build (`EAS_REQUIRE_GPU=1`, scripts/gpu-check) it initializes on the GPU.
    #[test]
    fn initialize_on_a_gpu_should_need_the_gpu_build_of_onnx_runtime() {
        let test = "initialize_on_a_gpu_should_need_the_gpu_build_of_onnx_runtime";
        if !ort_or_skip(test) {
            return;
        }
        // scripts/gpu-check runs this from a bundle with its own copy of the model.
        let model = std::env::var_os("EAS_EXAMPLE_MODELS")
            .map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models"),
                std::path::PathBuf::from,
            )
            .join("mlp.onnx");
        let ctx = InitContext::new("s")
            .with_model_entry(&model)
            .with_device(Device::Cuda { ordinal: 0 })
            .with_gpu_slice(Some(1 << 30), None);
        let mut onnx = OnnxProcessor::new();
        let result = onnx.initialize(&ctx);
        if std::env::var("EAS_REQUIRE_GPU").as_deref() == Ok("1") {
            result.expect("EAS_REQUIRE_GPU=1: the onnx processor should initialize on GPU 0");
            return;
        }
        let err = result.expect_err("no CUDA execution provider here");
        let text = err.to_string();
        if cfg!(feature = "cuda") {
            assert!(text.contains("onnxruntime-gpu"), "{text}");
            assert!(text.contains("cannot run on the GPU"), "{text}");
        } else {
            assert!(text.contains("`cuda` feature"), "{text}");
        }
        assert!(
            onnx.model_path().is_none(),
            "nothing loaded on the CPU instead"
        );
    }
}
