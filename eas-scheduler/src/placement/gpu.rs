//! GPU placement on one machine: which of its GPUs an instance gets.
//!
//! An instance asks for GPUs in one of two ways ([`GpuDemand::of`] reads them from
//! [`Resources::per_instance`] of the spec):
//!
//! - **whole GPUs** (`metadata.gpu: N`): `N` GPUs that nothing else holds, not even a slice;
//!   the lowest free ordinals first.
//! - **a slice** (`metadata.gpu_memory` GB and/or `metadata.gpu_core_percentage`, without
//!   `gpu`): a share of one GPU. Slices of several instances are packed onto one GPU as long as
//!   their memory adds up to at most the GPU's memory and their core percentages to at most
//!   100. Among the GPUs where a slice fits, the **best fit** wins: the one with the least
//!   memory left afterwards (then the least core share left, then the lowest ordinal), so that
//!   slices fill used GPUs before they open empty ones, which stay free for whole-GPU
//!   instances. A GB is 2^30 bytes.
//!
//! [`place`] is the rule (a pure function of the GPUs' use and the demand); [`GpuLedger`]
//! keeps the grants of one machine by holder and applies it: [`GpuLedger::grant`] places and
//! records, [`GpuLedger::release`] gives back. A demand that does not fit is a
//! [`GpuRefusal`] that says why, in words.
//!
//! ```
//! use eas_scheduler::placement::gpu::{Gpu, GpuDemand, GpuLedger};
//!
//! const GIB: u64 = 1 << 30;
//! let mut ledger = GpuLedger::new(vec![Gpu::new(0, 16 * GIB), Gpu::new(1, 16 * GIB)]);
//! let slice = GpuDemand::slice(6, 40);
//! assert_eq!(ledger.grant("a", &slice)?.ordinals, vec![0]);
//! assert_eq!(ledger.grant("b", &slice)?.ordinals, vec![0]); // packed onto GPU 0
//! assert_eq!(ledger.grant("c", &GpuDemand::Whole(1))?.ordinals, vec![1]);
//! let refused = ledger.grant("d", &slice).expect_err("GPU 0 has 4 GB left");
//! assert!(refused.to_string().contains("GPU 0"), "{refused}");
//! ledger.release("a");
//! assert_eq!(ledger.grant("d", &slice)?.ordinals, vec![0]);
//! # Ok::<(), eas_scheduler::placement::gpu::GpuRefusal>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use eas_core::resources::Resources;
use serde::Serialize;

/// Bytes in one GB of `metadata.gpu_memory` (2^30).
pub const BYTES_PER_GB: u64 = 1 << 30;

/// One GPU of the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Gpu {
    /// The device ordinal (as CUDA numbers devices in this process).
    pub ordinal: u32,
    /// Its memory, in bytes.
    pub memory_bytes: u64,
}

impl Gpu {
    /// GPU `ordinal` with `memory_bytes` of memory.
    #[must_use]
    pub const fn new(ordinal: u32, memory_bytes: u64) -> Self {
        Self {
            ordinal,
            memory_bytes,
        }
    }
}

/// A share of one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GpuSlice {
    /// Its memory, in bytes (0: no memory share asked).
    pub memory_bytes: u64,
    /// Its compute share, in percent of the GPU (0: none asked).
    pub core_percent: u32,
}

impl GpuSlice {
    /// A slice of `memory_bytes` and `core_percent` % of the GPU's compute.
    #[must_use]
    pub const fn new(memory_bytes: u64, core_percent: u32) -> Self {
        Self {
            memory_bytes,
            core_percent,
        }
    }
}

/// What one instance asks of the machine's GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum GpuDemand {
    /// No GPU: the CPU.
    None,
    /// This many whole GPUs, held by nobody else.
    Whole(u32),
    /// A share of one GPU.
    Slice(GpuSlice),
}

impl GpuDemand {
    /// What `per_instance` asks: whole GPUs when `gpu > 0` (its `gpu_memory_gb` and
    /// `gpu_core_percent` are then ignored: a whole GPU has all of both), else a slice when
    /// either of `gpu_memory_gb` and `gpu_core_percent` is set, else none.
    #[must_use]
    pub const fn of(per_instance: &Resources) -> Self {
        if per_instance.gpu > 0 {
            Self::Whole(per_instance.gpu)
        } else if per_instance.gpu_memory_gb > 0 || per_instance.gpu_core_percent > 0 {
            Self::slice(per_instance.gpu_memory_gb, per_instance.gpu_core_percent)
        } else {
            Self::None
        }
    }

    /// A slice of `memory_gb` GB (2^30 bytes each) and `core_percent` % of one GPU.
    #[must_use]
    pub const fn slice(memory_gb: u32, core_percent: u32) -> Self {
        Self::Slice(GpuSlice::new(
            (memory_gb as u64).saturating_mul(BYTES_PER_GB),
            core_percent,
        ))
    }

    /// Whether it asks for any GPU.
    #[must_use]
    pub const fn wants_gpu(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// The GPUs an instance got.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct GpuGrant {
    /// The ordinals of its GPUs (one for a slice; none for no GPU).
    pub ordinals: Vec<u32>,
    /// Its share of `ordinals[0]` when it got a slice; `None` for whole GPUs.
    pub slice: Option<GpuSlice>,
}

/// Why a demand does not fit on the machine's GPUs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
#[non_exhaustive]
pub struct GpuRefusal {
    /// What was asked and what each GPU has left, in words.
    pub reason: String,
}

impl GpuRefusal {
    fn new(reason: String) -> Self {
        Self { reason }
    }
}

/// One GPU and what is granted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GpuUse {
    /// The GPU.
    pub gpu: Gpu,
    /// Whether an instance holds it whole.
    pub whole: bool,
    /// Slices granted on it.
    pub slices: u32,
    /// Memory of those slices, in bytes.
    pub memory_bytes: u64,
    /// Compute share of those slices, in percent.
    pub core_percent: u32,
}

impl GpuUse {
    /// A GPU with nothing granted on it.
    #[must_use]
    pub const fn free(gpu: Gpu) -> Self {
        Self {
            gpu,
            whole: false,
            slices: 0,
            memory_bytes: 0,
            core_percent: 0,
        }
    }

    /// Whether nothing is granted on it.
    #[must_use]
    pub const fn is_free(&self) -> bool {
        !self.whole && self.slices == 0
    }

    /// Memory not granted to slices, in bytes (0 when held whole).
    #[must_use]
    pub const fn memory_left(&self) -> u64 {
        if self.whole {
            0
        } else {
            self.gpu.memory_bytes.saturating_sub(self.memory_bytes)
        }
    }

    /// Compute share not granted to slices, in percent (0 when held whole).
    #[must_use]
    pub const fn core_left(&self) -> u32 {
        if self.whole {
            0
        } else {
            100u32.saturating_sub(self.core_percent)
        }
    }

    /// What it holds, in words (`free`, `held whole`, `2 slices, 4.0 of 16.0 GB and 60% left`).
    fn describe(&self) -> String {
        if self.whole {
            return "held whole".to_owned();
        }
        if self.slices == 0 {
            return format!("free, {}", gb(self.gpu.memory_bytes));
        }
        format!(
            "{} slice{}, {} of {} and {}% left",
            self.slices,
            if self.slices == 1 { "" } else { "s" },
            gb(self.memory_left()),
            gb(self.gpu.memory_bytes),
            self.core_left()
        )
    }
}

/// `bytes` as GB with one decimal (`16.0 GB`).
#[allow(clippy::cast_precision_loss)]
fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / BYTES_PER_GB as f64)
}

/// Which GPUs of `gpus` an instance asking `demand` gets (see the [module docs](self) for the
/// rule); a refusal says what was asked and what each GPU has left.
///
/// # Errors
/// [`GpuRefusal`] when the demand does not fit.
pub fn place(gpus: &[GpuUse], demand: &GpuDemand) -> Result<GpuGrant, GpuRefusal> {
    match *demand {
        GpuDemand::None => Ok(GpuGrant::default()),
        GpuDemand::Whole(n) => place_whole(gpus, n),
        GpuDemand::Slice(slice) => place_slice(gpus, slice),
    }
}

fn place_whole(gpus: &[GpuUse], n: u32) -> Result<GpuGrant, GpuRefusal> {
    let mut free: Vec<u32> = gpus
        .iter()
        .filter(|g| g.is_free())
        .map(|g| g.gpu.ordinal)
        .collect();
    free.sort_unstable();
    let wanted = usize::try_from(n).unwrap_or(usize::MAX);
    if free.len() >= wanted {
        free.truncate(wanted);
        return Ok(GpuGrant {
            ordinals: free,
            slice: None,
        });
    }
    let mut why = format!(
        "asks {n} whole GPU{}, {} of {} free",
        if n == 1 { "" } else { "s" },
        free.len(),
        gpus.len()
    );
    append_state(&mut why, gpus);
    Err(GpuRefusal::new(why))
}

fn place_slice(gpus: &[GpuUse], slice: GpuSlice) -> Result<GpuGrant, GpuRefusal> {
    let asks = format!(
        "asks a GPU slice of {} and {}% compute",
        gb(slice.memory_bytes),
        slice.core_percent
    );
    if slice.core_percent > 100 {
        return Err(GpuRefusal::new(format!(
            "{asks}: a slice is a share of one GPU, at most 100%"
        )));
    }
    let best = gpus
        .iter()
        .filter(|g| {
            !g.whole && slice.memory_bytes <= g.memory_left() && slice.core_percent <= g.core_left()
        })
        .min_by_key(|g| {
            (
                g.memory_left() - slice.memory_bytes,
                g.core_left() - slice.core_percent,
                g.gpu.ordinal,
            )
        });
    if let Some(g) = best {
        return Ok(GpuGrant {
            ordinals: vec![g.gpu.ordinal],
            slice: Some(slice),
        });
    }
    let mut why = asks;
    if gpus.is_empty() {
        why.push_str(": the machine has no GPU");
    } else if let Some(largest) = gpus.iter().map(|g| g.gpu.memory_bytes).max()
        && slice.memory_bytes > largest
    {
        let _ = write!(why, ": more than the largest GPU has ({})", gb(largest));
    } else {
        why.push_str(": no GPU has that much left");
        append_state(&mut why, gpus);
    }
    Err(GpuRefusal::new(why))
}

/// Appends `(GPU 0: held whole; GPU 1: free, 16.0 GB)`.
fn append_state(why: &mut String, gpus: &[GpuUse]) {
    if gpus.is_empty() {
        why.push_str(" (the machine has no GPU)");
        return;
    }
    let parts: Vec<String> = gpus
        .iter()
        .map(|g| format!("GPU {}: {}", g.gpu.ordinal, g.describe()))
        .collect();
    let _ = write!(why, " ({})", parts.join("; "));
}

/// The GPUs of one machine and who holds what on them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GpuLedger {
    gpus: Vec<Gpu>,
    held: BTreeMap<String, GpuGrant>,
}

impl GpuLedger {
    /// A machine with `gpus` and nothing granted.
    #[must_use]
    pub fn new(gpus: Vec<Gpu>) -> Self {
        Self {
            gpus,
            held: BTreeMap::new(),
        }
    }

    /// Its GPUs.
    #[must_use]
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// Each GPU with what is granted on it, in the order of [`gpus`](Self::gpus).
    #[must_use]
    pub fn usage(&self) -> Vec<GpuUse> {
        let mut uses: Vec<GpuUse> = self.gpus.iter().cloned().map(GpuUse::free).collect();
        for grant in self.held.values() {
            for ordinal in &grant.ordinals {
                let Some(u) = uses.iter_mut().find(|u| u.gpu.ordinal == *ordinal) else {
                    continue;
                };
                match grant.slice {
                    None => u.whole = true,
                    Some(slice) => {
                        u.slices += 1;
                        u.memory_bytes = u.memory_bytes.saturating_add(slice.memory_bytes);
                        u.core_percent = u.core_percent.saturating_add(slice.core_percent);
                    }
                }
            }
        }
        uses
    }

    /// Places `demand` ([`place`]) and records the grant under `holder` (replacing what
    /// `holder` held before, which is released first).
    ///
    /// # Errors
    /// [`GpuRefusal`] when it does not fit; then nothing changes.
    pub fn grant(
        &mut self,
        holder: impl Into<String>,
        demand: &GpuDemand,
    ) -> Result<GpuGrant, GpuRefusal> {
        let holder = holder.into();
        let previous = self.held.remove(&holder);
        match place(&self.usage(), demand) {
            Ok(grant) => {
                if demand.wants_gpu() {
                    self.held.insert(holder, grant.clone());
                }
                Ok(grant)
            }
            Err(refusal) => {
                if let Some(previous) = previous {
                    self.held.insert(holder, previous);
                }
                Err(refusal)
            }
        }
    }

    /// Gives back what `holder` holds; returns it (`None`: it held nothing).
    pub fn release(&mut self, holder: &str) -> Option<GpuGrant> {
        self.held.remove(holder)
    }

    /// What `holder` holds.
    #[must_use]
    pub fn held_by(&self, holder: &str) -> Option<&GpuGrant> {
        self.held.get(holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = BYTES_PER_GB;

    fn ledger(memory_gb: &[u64]) -> GpuLedger {
        GpuLedger::new(
            memory_gb
                .iter()
                .enumerate()
                .map(|(i, gb)| Gpu::new(u32::try_from(i).unwrap_or(0), gb * GIB))
                .collect(),
        )
    }

    /// Each case: GPUs (GB each), grants made in order `(holder, demand)`, releases in between
    /// as `(holder, None)`, and what each grant gives (`Ok(ordinals)` or `Err(substring)`).
    #[allow(clippy::type_complexity)]
    #[test]
    fn ledger_should_pack_slices_and_keep_whole_gpus_whole() {
        let cases: &[(
            &str,
            &[u64],
            &[(&str, Option<GpuDemand>, Result<&[u32], &str>)],
        )] = &[
            (
                "several slices pack onto one GPU",
                &[16, 16],
                &[
                    ("a", Some(GpuDemand::slice(4, 25)), Ok(&[0])),
                    ("b", Some(GpuDemand::slice(4, 25)), Ok(&[0])),
                    ("c", Some(GpuDemand::slice(8, 50)), Ok(&[0])),
                    ("d", Some(GpuDemand::slice(1, 0)), Ok(&[1])),
                ],
            ),
            (
                "memory overflow goes to the next GPU, then is refused",
                &[16, 16],
                &[
                    ("a", Some(GpuDemand::slice(10, 0)), Ok(&[0])),
                    ("b", Some(GpuDemand::slice(10, 0)), Ok(&[1])),
                    (
                        "c",
                        Some(GpuDemand::slice(10, 0)),
                        Err("no GPU has that much left"),
                    ),
                    ("d", Some(GpuDemand::slice(6, 0)), Ok(&[0])),
                ],
            ),
            (
                "core share overflow is refused",
                &[16],
                &[
                    ("a", Some(GpuDemand::slice(1, 60)), Ok(&[0])),
                    ("b", Some(GpuDemand::slice(1, 60)), Err("40% left")),
                    ("c", Some(GpuDemand::slice(0, 40)), Ok(&[0])),
                ],
            ),
            (
                "best fit: the fuller GPU that still fits",
                &[16, 24],
                &[
                    ("a", Some(GpuDemand::slice(8, 0)), Ok(&[0])),
                    ("b", Some(GpuDemand::slice(20, 0)), Ok(&[1])),
                    // 8 GB left on 0, 4 GB on 1: 4 GB goes to 1 (nothing left there).
                    ("c", Some(GpuDemand::slice(4, 0)), Ok(&[1])),
                    ("d", Some(GpuDemand::slice(8, 0)), Ok(&[0])),
                ],
            ),
            (
                "whole GPUs only on free GPUs",
                &[16, 16, 16],
                &[
                    ("s", Some(GpuDemand::slice(2, 10)), Ok(&[0])),
                    ("w", Some(GpuDemand::Whole(2)), Ok(&[1, 2])),
                    (
                        "x",
                        Some(GpuDemand::Whole(1)),
                        Err("asks 1 whole GPU, 0 of 3 free"),
                    ),
                    ("t", Some(GpuDemand::slice(2, 10)), Ok(&[0])),
                ],
            ),
            (
                "slices never land on a whole GPU",
                &[16, 16],
                &[
                    ("w", Some(GpuDemand::Whole(1)), Ok(&[0])),
                    ("s", Some(GpuDemand::slice(1, 1)), Ok(&[1])),
                    ("t", Some(GpuDemand::slice(16, 0)), Err("GPU 0: held whole")),
                ],
            ),
            (
                "release frees capacity",
                &[16],
                &[
                    ("w", Some(GpuDemand::Whole(1)), Ok(&[0])),
                    ("s", Some(GpuDemand::slice(4, 0)), Err("GPU 0: held whole")),
                    ("w", None, Ok(&[])),
                    ("s", Some(GpuDemand::slice(4, 0)), Ok(&[0])),
                    ("w", Some(GpuDemand::Whole(1)), Err("0 of 1 free")),
                    ("s", None, Ok(&[])),
                    ("w", Some(GpuDemand::Whole(1)), Ok(&[0])),
                ],
            ),
            (
                "no GPU at all",
                &[],
                &[
                    (
                        "s",
                        Some(GpuDemand::slice(4, 0)),
                        Err("the machine has no GPU"),
                    ),
                    (
                        "w",
                        Some(GpuDemand::Whole(1)),
                        Err("the machine has no GPU"),
                    ),
                    ("c", Some(GpuDemand::None), Ok(&[])),
                ],
            ),
            (
                "a slice bigger than any GPU, or over 100%",
                &[16, 8],
                &[
                    (
                        "s",
                        Some(GpuDemand::slice(17, 0)),
                        Err("largest GPU has (16.0 GB)"),
                    ),
                    ("t", Some(GpuDemand::slice(1, 101)), Err("at most 100%")),
                ],
            ),
        ];
        for (name, gpus, steps) in cases {
            let mut ledger = ledger(gpus);
            for (holder, demand, expected) in *steps {
                let Some(demand) = demand else {
                    ledger.release(holder);
                    continue;
                };
                let got = ledger.grant(*holder, demand);
                match (expected, got) {
                    (Ok(ordinals), Ok(grant)) => {
                        assert_eq!(grant.ordinals, *ordinals, "{name}: {holder}");
                    }
                    (Err(part), Err(refusal)) => {
                        assert!(
                            refusal.reason.contains(part),
                            "{name}: {holder}: `{refusal}` should contain `{part}`"
                        );
                    }
                    (expected, got) => panic!("{name}: {holder}: {expected:?}, got {got:?}"),
                }
            }
        }
    }

    #[test]
    fn demand_should_read_whole_gpus_before_slices() {
        let cases = [
            (Resources::new(1_000, 0), GpuDemand::None),
            (
                Resources::new(1_000, 0).with_gpu(2, 16),
                GpuDemand::Whole(2),
            ),
            (
                Resources::new(1_000, 0).with_gpu(0, 4),
                GpuDemand::slice(4, 0),
            ),
            (
                Resources::new(1_000, 0).with_gpu_core_percent(30),
                GpuDemand::slice(0, 30),
            ),
        ];
        for (resources, expected) in cases {
            assert_eq!(GpuDemand::of(&resources), expected, "{resources:?}");
        }
    }

    #[test]
    fn refused_grant_should_keep_what_the_holder_had() {
        let mut ledger = ledger(&[16]);
        let first = ledger.grant("a", &GpuDemand::slice(4, 0));
        assert!(first.is_ok());
        assert!(ledger.grant("a", &GpuDemand::slice(40, 0)).is_err());
        assert_eq!(
            ledger.held_by("a").map(|g| g.slice),
            Some(Some(GpuSlice::new(4 * GIB, 0)))
        );
        assert_eq!(ledger.usage()[0].memory_bytes, 4 * GIB);
    }
}
