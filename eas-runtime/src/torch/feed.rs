//! [`Feed`] (one request's inputs) and [`Fetched`] (a model's outputs): how they become
//! `forward` arguments and come back, and how several requests' inputs stack along the first
//! dimension.

use tch::{IValue, Kind, Tensor};

/// One request's inputs, on the CPU.
#[derive(Debug)]
pub(crate) struct Feed {
    /// `Some(names)` when `forward` takes one `Dict[str, Tensor]` (the protobuf's
    /// `map_inputs`), the names sorted; `None` for positional arguments.
    pub keys: Option<Vec<String>>,
    /// The tensors, in argument (or key) order.
    pub tensors: Vec<Tensor>,
}

/// What requests must share to stack: the same keys, and per input the same kind and
/// trailing dimensions.
pub(crate) type StackKey = (Option<Vec<String>>, Vec<(Kind, Vec<i64>)>);

impl Feed {
    /// The rows and the stacking key, when every input has a first dimension.
    pub fn stack_key(&self) -> Option<(i64, StackKey)> {
        let mut rows = None;
        let mut parts = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let size = t.size();
            let (&first, rest) = size.split_first()?;
            if *rows.get_or_insert(first) != first {
                return None;
            }
            parts.push((t.kind(), rest.to_vec()));
        }
        Some((rows?, (self.keys.clone(), parts)))
    }

    /// The inputs of all `feeds` concatenated along the first dimension (they share a
    /// [`StackKey`]).
    pub fn stack(feeds: &[&Self]) -> Result<Self, tch::TchError> {
        let Some(first) = feeds.first() else {
            return Err(tch::TchError::Kind("no request to stack".to_owned()));
        };
        let tensors = (0..first.tensors.len())
            .map(|j| {
                let parts: Vec<&Tensor> = feeds.iter().map(|f| &f.tensors[j]).collect();
                Tensor::f_cat(&parts, 0)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keys: first.keys.clone(),
            tensors,
        })
    }

    /// The `forward` arguments, moved to `device`.
    pub fn to_ivalues(&self, device: tch::Device) -> Result<Vec<IValue>, tch::TchError> {
        let tensors = self
            .tensors
            .iter()
            .map(|t| t.f_to_device(device))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match &self.keys {
            None => tensors.into_iter().map(IValue::Tensor).collect(),
            Some(keys) => vec![IValue::GenericDict(
                keys.iter()
                    .cloned()
                    .map(IValue::String)
                    .zip(tensors.into_iter().map(IValue::Tensor))
                    .collect(),
            )],
        })
    }
}

/// A model's outputs.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// `Some(names)` when `forward` returned a `Dict[str, Tensor]`; `None` for a tensor, or a
    /// tuple or list of tensors.
    pub keys: Option<Vec<String>>,
    /// The tensors, in the model's order.
    pub tensors: Vec<Tensor>,
}

impl Fetched {
    /// The outputs in what `forward` returned: a tensor, a tuple or list of tensors, or a dict
    /// of string to tensor. Anything else is an error naming what it was.
    pub fn from_ivalue(value: IValue) -> Result<Self, String> {
        let tensor = |v: IValue| match v {
            IValue::Tensor(t) => Ok(t),
            other => Err(describe(&other)),
        };
        let unsupported = |what: String| {
            format!(
                "the model returned {what}; the torch processor sends a tensor, a tuple or list \
                 of tensors, or a dict of str to tensor"
            )
        };
        match value {
            IValue::Tensor(t) => Ok(Self {
                keys: None,
                tensors: vec![t],
            }),
            IValue::TensorList(tensors) => Ok(Self {
                keys: None,
                tensors,
            }),
            IValue::Tuple(items) | IValue::GenericList(items) => Ok(Self {
                keys: None,
                tensors: items
                    .into_iter()
                    .map(tensor)
                    .collect::<Result<_, _>>()
                    .map_err(|what| unsupported(format!("a sequence holding {what}")))?,
            }),
            IValue::GenericDict(entries) => {
                let mut keys = Vec::with_capacity(entries.len());
                let mut tensors = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let IValue::String(key) = key else {
                        return Err(unsupported(format!("a dict keyed by {}", describe(&key))));
                    };
                    keys.push(key);
                    tensors.push(
                        tensor(value)
                            .map_err(|what| unsupported(format!("a dict holding {what}")))?,
                    );
                }
                Ok(Self {
                    keys: Some(keys),
                    tensors,
                })
            }
            other => Err(unsupported(describe(&other))),
        }
    }
}

/// What an `IValue` is, for error messages.
fn describe(value: &IValue) -> String {
    match value {
        IValue::None => "None".to_owned(),
        IValue::Tensor(_) => "a tensor".to_owned(),
        IValue::Double(v) => format!("a float ({v})"),
        IValue::Int(v) => format!("an int ({v})"),
        IValue::Bool(v) => format!("a bool ({v})"),
        IValue::Tuple(_) => "a tuple".to_owned(),
        IValue::IntList(_) => "a list of ints".to_owned(),
        IValue::DoubleList(_) => "a list of floats".to_owned(),
        IValue::BoolList(_) => "a list of bools".to_owned(),
        IValue::String(_) | IValue::StringList(_) => "strings".to_owned(),
        IValue::TensorList(_) => "a list of tensors".to_owned(),
        IValue::GenericList(_) => "a list".to_owned(),
        IValue::GenericDict(_) => "a dict".to_owned(),
        IValue::Object(_) => "an object".to_owned(),
        IValue::Device(_) => "a device".to_owned(),
        _ => "a value of another type".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(rows: i64, cols: i64) -> Feed {
        Feed {
            keys: None,
            tensors: vec![
                Tensor::from_slice(&vec![1.0_f32; (rows * cols) as usize]).reshape([rows, cols]),
            ],
        }
    }

    #[test]
    fn feeds_with_the_same_trailing_dims_should_stack() {
        let (a, b) = (feed(1, 3), feed(2, 3));
        assert_eq!(a.stack_key().map(|k| k.1), b.stack_key().map(|k| k.1));
        assert_ne!(
            a.stack_key().map(|k| k.1),
            feed(1, 4).stack_key().map(|k| k.1)
        );
        let stacked = Feed::stack(&[&a, &b]).expect("stacks");
        assert_eq!(stacked.tensors[0].size(), vec![3, 3]);
        assert_eq!(
            Vec::<f32>::try_from(&stacked.tensors[0].reshape([-1]))
                .expect("f32")
                .len(),
            9
        );
    }

    #[test]
    fn a_scalar_input_should_not_stack() {
        let scalar = Feed {
            keys: None,
            tensors: vec![Tensor::from(1.0_f32)],
        };
        assert!(scalar.stack_key().is_none());
    }

    #[test]
    fn outputs_other_than_tensors_should_be_named_in_the_error() {
        let err = Fetched::from_ivalue(IValue::Int(3)).expect_err("an int");
        assert!(err.contains("an int (3)"), "{err}");
        let dict = IValue::GenericDict(vec![(
            IValue::String("y".into()),
            IValue::Tensor(Tensor::from(1.0_f32)),
        )]);
        let fetched = Fetched::from_ivalue(dict).expect("a dict");
        assert_eq!(fetched.keys, Some(vec!["y".to_owned()]));
    }
}
