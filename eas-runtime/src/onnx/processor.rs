//! [`OnnxProcessor`]: the `onnx` processor, batching requests by stacking them.

use std::path::{Path, PathBuf};

use eas_core::Processor;
use eas_core::processor::{Device, InitContext, ModelMetadata, ProcessError, Request, Response};
use ort::value::DynValue;

use super::codec::{self, Format};
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
/// a 400 saying what is wrong. The bodies are described in the [module docs](super).
#[derive(Debug, Default)]
pub struct OnnxProcessor {
    loaded: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    service: String,
    path: PathBuf,
    spec: ModelSpec,
    pool: SessionPool,
}

/// The outputs of one request, or why it failed.
type Outcome = Result<Vec<Tensor>, ProcessError>;

/// Requests that stack, by the trailing dimensions of each input: (request index, rows).
type Groups = Vec<(Vec<Vec<i64>>, Vec<(usize, usize)>)>;

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
        if ctx.device != Device::Cpu {
            return Err(OnnxError::Unsupported(format!(
                "the onnx processor runs on the CPU only, not on {:?}",
                ctx.device
            ))
            .into());
        }
        let path = model_file(ctx)?;
        let runtime = runtime()?;
        let model_error = |reason: String| OnnxError::Model {
            path: path.clone(),
            reason,
        };
        let pool = SessionPool::new(runtime, &path, ctx.threads)
            .map_err(|e| model_error(e.to_string()))?;
        let spec = pool
            .inspect(ModelSpec::from_session)
            .map_err(|e| model_error(e.to_string()))?
            .map_err(model_error)?;
        self.loaded = Some(Loaded {
            service: ctx.service.clone(),
            path,
            spec,
            pool,
        });
        Ok(())
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
                None
            };
            match stacked {
                Some(split) => {
                    for ((index, _), outputs) in members.iter().zip(split) {
                        outcomes[*index] = Some(Ok(outputs));
                    }
                }
                None => {
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

    /// Runs the members as one inference and splits the outputs by their rows; `None` when
    /// that fails or an output does not have one row per input row (then each runs alone).
    fn run_stacked(
        &self,
        inputs: &[Outcome],
        members: &[(usize, usize)],
    ) -> Option<Vec<Vec<Tensor>>> {
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
            .ok()?;
        let outputs = self.infer(values).ok()?;
        let total: usize = members.iter().map(|(_, rows)| rows).sum();
        if outputs.iter().any(|o| o.rows() != Some(total)) {
            return None;
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
        Some(split)
    }

    /// Runs one request's checked inputs.
    fn run_alone(&self, tensors: &[Tensor]) -> Outcome {
        let values = tensors
            .iter()
            .map(|t| Ok((t.name.clone(), Tensor::stacked_to_ort(&[t])?)))
            .collect::<ort::Result<Vec<_>>>()
            .map_err(|e| ProcessError::internal(format!("cannot build the input tensors: {e}")))?;
        self.infer(values).map_err(|e| match e.code() {
            ort::ErrorCode::InvalidArgument => {
                ProcessError::bad_request(format!("ONNX Runtime refused the inputs: {e}"))
            }
            _ => ProcessError::internal(format!("inference failed: {e}")),
        })
    }

    /// One inference on a pooled session; the outputs in the model's order.
    fn infer(&self, values: Vec<(String, DynValue)>) -> ort::Result<Vec<Tensor>> {
        self.pool.with_session(|session| {
            let outputs = session.run(values)?;
            self.spec
                .outputs
                .iter()
                .map(|spec| {
                    let value = outputs.get(&spec.name).ok_or_else(|| {
                        ort::Error::new(format!("ONNX Runtime returned no output `{}`", spec.name))
                    })?;
                    Tensor::from_ort(&spec.name, spec.dtype, value)
                })
                .collect()
        })
    }
}

/// The model file: `model_entry`, else the one `*.onnx` file in `model_dir` (or `model_dir`
/// itself when it is a file).
fn model_file(ctx: &InitContext) -> Result<PathBuf, OnnxError> {
    let no_model = |reason: String| OnnxError::NoModel { reason };
    if let Some(entry) = &ctx.model_entry {
        return if entry.is_file() {
            Ok(entry.clone())
        } else {
            Err(no_model(format!(
                "model_entry {} is not a file",
                entry.display()
            )))
        };
    }
    let Some(dir) = &ctx.model_dir else {
        return Err(no_model(
            "the spec gives neither model_path nor model_entry; set model_path to an .onnx file \
             or a directory holding one"
                .to_owned(),
        ));
    };
    if dir.is_file() {
        return Ok(dir.clone());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| no_model(format!("cannot list model_path {}: {e}", dir.display())))?;
    let mut models: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|ext| ext.eq_ignore_ascii_case("onnx"))
        })
        .collect();
    models.sort();
    match models.len() {
        1 => Ok(models.remove(0)),
        0 => Err(no_model(format!(
            "no *.onnx file in model_path {}; set model_entry",
            dir.display()
        ))),
        _ => Err(no_model(format!(
            "model_path {} holds several .onnx files ({}); set model_entry to one",
            dir.display(),
            models
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_file_should_explain_missing_or_ambiguous_models() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ctx = InitContext::new("s").with_model_dir(dir.path());
        let err = model_file(&ctx).expect_err("empty dir");
        assert!(err.to_string().contains("no *.onnx file"), "{err}");

        std::fs::write(dir.path().join("a.onnx"), b"x").expect("write");
        assert_eq!(
            model_file(&ctx).expect("one model"),
            dir.path().join("a.onnx")
        );

        std::fs::write(dir.path().join("b.ONNX"), b"x").expect("write");
        let err = model_file(&ctx).expect_err("two models");
        assert!(err.to_string().contains("a.onnx, b.ONNX"), "{err}");

        let entry = InitContext::new("s").with_model_entry(dir.path().join("missing.onnx"));
        let err = model_file(&entry).expect_err("missing entry");
        assert!(
            err.to_string().contains("missing.onnx is not a file"),
            "{err}"
        );

        let err = model_file(&InitContext::new("s")).expect_err("nothing given");
        assert!(
            err.to_string()
                .contains("neither model_path nor model_entry"),
            "{err}"
        );
    }

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
    fn initialize_should_refuse_a_gpu() {
        let err = OnnxProcessor::new()
            .initialize(&InitContext::new("s").with_device(Device::Cuda { ordinal: 0 }))
            .expect_err("cpu only");
        assert!(err.to_string().contains("CPU only"), "{err}");
    }
}
