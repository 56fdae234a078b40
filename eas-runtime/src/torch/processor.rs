//! [`TorchProcessor`]: the `torch` processor, batching requests by stacking them.

use std::path::{Path, PathBuf};

use eas_core::Processor;
use eas_core::processor::{Device, InitContext, ModelMetadata, ProcessError, Request, Response};
use tch::CModule;

use super::codec::{self, Decoded, Format};
use super::error::TorchError;
use super::feed::{Feed, Fetched, StackKey};
use super::host::Outputs;

/// The file extensions a TorchScript model is looked for under `model_dir`.
const MODEL_EXTENSIONS: [&str; 3] = ["pt", "pth", "torchscript"];

/// Serves a TorchScript model (a `torch.jit.save` file) with libtorch.
///
/// [`initialize`](Processor::initialize) loads `model_entry` (or the one `*.pt`, `*.pth` or
/// `*.torchscript` file under `model_dir`) onto the context's device and sets libtorch's
/// intra-op threads to `threads` (a process-wide setting: the last instance initialized in a
/// process sets it for all). A CUDA device that libtorch cannot use (a CPU-only libtorch, no
/// driver, no such GPU) fails initialization saying which; it never falls back to the CPU.
/// `gpu_memory_limit` is not enforced: tch 0.26 exposes no per-process limit of the CUDA
/// caching allocator, so the processor logs a warning saying so (`gpu_core_percentage` is the
/// provider's to enforce).
///
/// [`process`](Processor::process) may be called from several threads at once (one module,
/// shared). Requests whose inputs agree on kinds and trailing dimensions run as one `forward`
/// (stacked along the first dimension, every output split back by rows); others run alone.
/// When a stacked run fails, or its outputs do not have one row per input row, each request
/// runs alone, so that only a request at fault fails. A malformed request is a 400 saying
/// what is wrong, and so is a `forward` that fails on a request's inputs (wrong shape or
/// type: TorchScript does not declare them up front); a `forward` that runs out of memory is
/// a 500. The bodies are described in the [module docs](super).
#[derive(Debug, Default)]
pub struct TorchProcessor {
    loaded: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    service: String,
    instance: u32,
    path: PathBuf,
    device: tch::Device,
    module: CModule,
}

/// The outputs of one request, or why it failed.
type Outcome = Result<Outputs, ProcessError>;

impl TorchProcessor {
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

    /// The libtorch device it runs on, once initialized.
    #[must_use]
    pub fn device(&self) -> Option<tch::Device> {
        self.loaded.as_ref().map(|l| l.device)
    }
}

impl Processor for TorchProcessor {
    fn initialize(&mut self, ctx: &InitContext) -> eas_core::Result<()> {
        let device = torch_device(ctx.device)?;
        let path = model_file(ctx)?;
        if let Some(limit) = ctx.gpu_memory_limit {
            // The provider, not the processor, enforces gpu_core_percentage (CUDA MPS).
            tracing::warn!(
                service = %ctx.service,
                instance = ctx.instance_index,
                gpu_memory_limit = limit,
                "the torch processor does not enforce gpu_memory: tch 0.26 exposes no limit of \
                 the CUDA caching allocator (torch.cuda.set_per_process_memory_fraction); the \
                 slice is placed, its memory is not capped"
            );
        }
        if let Ok(threads) = i32::try_from(ctx.threads)
            && threads > 0
        {
            tch::set_num_threads(threads);
        }
        let mut module = CModule::load_on_device(&path, device).map_err(|e| TorchError::Model {
            path: path.clone(),
            reason: summary(&e.to_string()),
        })?;
        module.f_set_eval().map_err(|e| TorchError::Model {
            path: path.clone(),
            reason: summary(&e.to_string()),
        })?;
        self.loaded = Some(Loaded {
            service: ctx.service.clone(),
            instance: ctx.instance_index,
            path,
            device,
            module,
        });
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        let Some(loaded) = &self.loaded else {
            return batch
                .iter()
                .map(|_| {
                    Err(ProcessError::internal(
                        "the torch processor is not initialized",
                    ))
                })
                .collect();
        };
        let formats: Vec<Format> = batch.iter().map(Format::of).collect();
        let decoded: Vec<Result<Decoded, ProcessError>> = batch
            .iter()
            .zip(&formats)
            .map(|(request, &format)| codec::decode(format, &request.body))
            .collect();
        let outcomes = loaded.run_batch(&decoded);
        outcomes
            .into_iter()
            .zip(decoded.iter().zip(formats))
            .map(|(outcome, (decoded, format))| {
                let filter = decoded.as_ref().map_or(&[][..], |d| d.filter.as_slice());
                codec::encode(format, &outcome?, filter)
            })
            .collect()
    }

    fn metadata(&self) -> ModelMetadata {
        // TorchScript does not declare its inputs' types and shapes to callers.
        self.loaded
            .as_ref()
            .map(|l| ModelMetadata {
                name: l.service.clone(),
                platform: "pytorch".to_owned(),
                inputs: Vec::new(),
                outputs: Vec::new(),
            })
            .unwrap_or_default()
    }
}

impl Loaded {
    /// Runs every decoded request: stacked with the others of its shape where it can be, alone
    /// otherwise; one outcome per entry (failed decodes pass through).
    fn run_batch(&self, decoded: &[Result<Decoded, ProcessError>]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = decoded.iter().map(|_| None).collect();
        let mut groups: Vec<(StackKey, Vec<(usize, i64)>)> = Vec::new();
        for (index, request) in decoded.iter().enumerate() {
            match request {
                Err(e) => outcomes[index] = Some(Err(e.clone())),
                Ok(d) => match d.feed.stack_key() {
                    Some((rows, key)) => match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, members)) => members.push((index, rows)),
                        None => groups.push((key, vec![(index, rows)])),
                    },
                    None => outcomes[index] = Some(self.run(&d.feed)),
                },
            }
        }
        for (_, members) in groups {
            let split = if members.len() > 1 {
                self.run_stacked(decoded, &members)
            } else {
                None
            };
            match split {
                Some(parts) => {
                    for ((index, _), part) in members.iter().zip(parts) {
                        outcomes[*index] = Some(Ok(part));
                    }
                }
                None => {
                    for (index, _) in members {
                        if let Ok(d) = &decoded[index] {
                            outcomes[index] = Some(self.run(&d.feed));
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

    /// Runs the members as one `forward` and splits the outputs by their rows; `None` (run
    /// each alone) when that fails or the outputs do not have one row per input row.
    fn run_stacked(
        &self,
        decoded: &[Result<Decoded, ProcessError>],
        members: &[(usize, i64)],
    ) -> Option<Vec<Outputs>> {
        let feeds: Vec<&Feed> = members
            .iter()
            .filter_map(|(index, _)| decoded[*index].as_ref().ok().map(|d| &d.feed))
            .collect();
        let outcome = Feed::stack(&feeds)
            .map_err(|e| ProcessError::internal(format!("cannot stack the inputs: {e}")))
            .and_then(|stacked| self.run(&stacked));
        let rows: Vec<usize> = members
            .iter()
            .map(|(_, rows)| usize::try_from(*rows).unwrap_or(usize::MAX))
            .collect();
        match outcome.map(|fetched| fetched.split(&rows)) {
            Ok(Some(parts)) => Some(parts),
            Ok(None) => {
                tracing::debug!(
                    service = %self.service,
                    instance = self.instance,
                    "the outputs of a stacked run do not have one row per input row; running \
                     each request alone"
                );
                None
            }
            Err(error) => {
                tracing::warn!(
                    service = %self.service,
                    instance = self.instance,
                    requests = members.len(),
                    error = %error.message,
                    "a stacked TorchScript run failed; running each request alone"
                );
                None
            }
        }
    }

    /// One `forward` on `feed`.
    fn run(&self, feed: &Feed) -> Outcome {
        let _no_grad = tch::no_grad_guard();
        let inputs = feed.to_ivalues(self.device).map_err(|e| {
            ProcessError::internal(format!(
                "cannot move the inputs to {:?}: {}",
                self.device,
                summary(&e.to_string())
            ))
        })?;
        let output = self
            .module
            .forward_is(&inputs)
            .map_err(|e| forward_error(&e.to_string()))?;
        let fetched = Fetched::from_ivalue(output).map_err(ProcessError::internal)?;
        Outputs::read(&fetched).map_err(ProcessError::internal)
    }
}

/// What a request whose `forward` failed is answered: a 500 when libtorch ran out of memory
/// (a smaller batch may pass), else a 400 (the model refused the inputs' shapes or types).
fn forward_error(message: &str) -> ProcessError {
    let summary = summary(message);
    if message.to_ascii_lowercase().contains("out of memory") {
        ProcessError::internal(format!("the model ran out of memory: {summary}"))
    } else {
        ProcessError::bad_request(format!("the model refused the inputs: {summary}"))
    }
}

/// The line of a libtorch error that says what went wrong: the last `...Error: ...` line of a
/// TorchScript traceback, else the first line; at most 500 characters.
fn summary(message: &str) -> String {
    let line = message
        .lines()
        .rev()
        .find(|l| {
            l.trim_start()
                .split(' ')
                .next()
                .is_some_and(|w| w.ends_with("Error:"))
        })
        .or_else(|| message.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or(message)
        .trim();
    line.chars().take(500).collect()
}

/// The libtorch device for `device`; a CUDA device must be one libtorch can use.
fn torch_device(device: Device) -> Result<tch::Device, TorchError> {
    match device {
        Device::Cpu => Ok(tch::Device::Cpu),
        Device::Cuda { ordinal } => {
            if !tch::Cuda::is_available() {
                return Err(TorchError::Device(format!(
                    "the spec asks for CUDA device {ordinal}, but libtorch finds no CUDA: either \
                     this libtorch is CPU-only (no libtorch_cuda.so beside libtorch_cpu.so in \
                     $LIBTORCH/lib, as scripts/libtorch.sh provisions), or no NVIDIA driver or \
                     GPU is present; build with a CUDA libtorch 2.13.0 on a GPU machine, or run \
                     the service on the CPU"
                )));
            }
            let count = tch::Cuda::device_count();
            if i64::from(ordinal) >= count {
                return Err(TorchError::Device(format!(
                    "the spec asks for CUDA device {ordinal}, but libtorch sees {count} GPU(s)"
                )));
            }
            usize::try_from(ordinal)
                .map(tch::Device::Cuda)
                .map_err(|e| TorchError::Device(format!("CUDA device {ordinal}: {e}")))
        }
    }
}

/// The model file: `model_entry`, else the one TorchScript file in `model_dir` (or
/// `model_dir` itself when it is a file).
fn model_file(ctx: &InitContext) -> Result<PathBuf, TorchError> {
    crate::model_file::find(ctx, &MODEL_EXTENSIONS).map_err(|reason| TorchError::NoModel { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_should_keep_the_error_line_of_a_traceback() {
        let traceback = "The following operation failed in the TorchScript interpreter.\n\
            Traceback of TorchScript (most recent call last):\n  File \"code\", line 3\n\
            RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x3 and 4x8)\n";
        assert_eq!(
            summary(traceback),
            "RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x3 and 4x8)"
        );
        assert_eq!(summary("one line\nmore"), "one line");
        assert_eq!(forward_error("CUDA out of memory.").status, 500);
        assert_eq!(forward_error(traceback).status, 400);
    }

    #[test]
    fn process_before_initialize_should_fail_every_request() {
        let out = TorchProcessor::new().process(&[Request::new("a"), Request::new("b")]);
        assert!(
            out.iter()
                .all(|r| r.as_ref().is_err_and(|e| e.status == 500))
        );
    }
}
