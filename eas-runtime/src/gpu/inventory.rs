//! The live GPU ledger of this machine: an instance asks for its GPUs when it starts and
//! gives them back when it stops.
//!
//! [`GpuInventory::lease`] places the instance's [`GpuDemand`] with the same rule the
//! scheduler's tests pin down ([`eas_scheduler::placement::gpu`]: whole GPUs only on free
//! GPUs; slices packed, best fit, onto one GPU within its memory and 100% compute) and
//! records it in a [`GpuLedger`]; the [`GpuLease`] it returns gives the grant back when it is
//! dropped (an instance drops it when it stops). [`GpuLease::apply`] puts the grant into the
//! processor's [`InitContext`]: the device (`Device::Cuda` of the first granted ordinal) and,
//! for a slice, its memory limit and core percentage
//! ([`InitContext::with_gpu_slice`]), which the processor enforces where its backend can.
//!
//! Without GPUs (no driver, or no `cuda` feature) a lease is refused with what is missing.
//!
//! ```
//! use eas_runtime::gpu::{GpuInfo, GpuInventory};
//! use eas_scheduler::placement::gpu::GpuDemand;
//!
//! let gpus = GpuInventory::with_devices(vec![GpuInfo::new(0, "test GPU", 16 << 30, "GPU-0")]);
//! let a = gpus.lease("svc/0", &GpuDemand::slice(8, 50))?.expect("a slice");
//! let b = gpus.lease("svc/1", &GpuDemand::slice(8, 50))?.expect("a slice");
//! assert_eq!((a.ordinals(), b.ordinals()), (&[0][..], &[0][..]));
//! assert!(gpus.lease("svc/2", &GpuDemand::slice(1, 0)).is_err());
//! drop(a); // the instance stopped
//! assert!(gpus.lease("svc/2", &GpuDemand::slice(1, 0)).is_ok());
//! # Ok::<(), String>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use eas_core::processor::{Device, InitContext};
use eas_scheduler::placement::gpu::{Gpu, GpuDemand, GpuGrant, GpuLedger, GpuUse};

use super::{GpuError, GpuInfo, driver};

/// The GPUs of this machine and who holds what on them. Cheap to clone: clones share the
/// ledger.
#[derive(Debug, Clone)]
pub struct GpuInventory {
    devices: Result<Vec<GpuInfo>, GpuError>,
    ledger: Arc<Mutex<GpuLedger>>,
}

impl GpuInventory {
    /// The GPUs [`driver::discover`] finds now (none, with the reason, when it finds none).
    #[must_use]
    pub fn detect() -> Self {
        match driver::discover() {
            Ok(devices) => Self::with_devices(devices),
            Err(e) => Self::unavailable(e),
        }
    }

    /// The process's inventory, detected once on first use: every provider of this process
    /// that is not given another shares it, so instances of all services share the GPUs.
    #[must_use]
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<GpuInventory> = OnceLock::new();
        SHARED.get_or_init(Self::detect)
    }

    /// An inventory of `devices` (a share of the machine, or a test's), nothing granted.
    #[must_use]
    pub fn with_devices(devices: Vec<GpuInfo>) -> Self {
        let gpus = devices
            .iter()
            .map(|d| Gpu::new(d.ordinal, d.memory_bytes))
            .collect();
        Self {
            devices: Ok(devices),
            ledger: Arc::new(Mutex::new(GpuLedger::new(gpus))),
        }
    }

    /// No GPUs, because of `error` (what each refused lease says).
    #[must_use]
    pub fn unavailable(error: GpuError) -> Self {
        Self {
            devices: Err(error),
            ledger: Arc::new(Mutex::new(GpuLedger::default())),
        }
    }

    /// The GPUs, or why there are none.
    ///
    /// # Errors
    /// Why there are no GPUs (no driver, no `cuda` feature).
    pub fn devices(&self) -> Result<&[GpuInfo], &GpuError> {
        self.devices.as_deref()
    }

    /// How many GPUs there are (0 when none can be used).
    #[must_use]
    pub fn count(&self) -> u32 {
        self.devices()
            .map_or(0, |d| u32::try_from(d.len()).unwrap_or(u32::MAX))
    }

    /// Each GPU with what is granted on it.
    #[must_use]
    pub fn usage(&self) -> Vec<GpuUse> {
        self.ledger().usage()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, GpuLedger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Grants `demand` to `holder` (a name for logs and the ledger, such as `service/index`):
    /// `Ok(None)` when it asks for no GPU, `Ok(Some(lease))` when it fits.
    ///
    /// # Errors
    /// Why not, in words: what it asks and what is missing (no driver, no `cuda` feature) or
    /// what each GPU has left.
    pub fn lease(&self, holder: &str, demand: &GpuDemand) -> Result<Option<GpuLease>, String> {
        if !demand.wants_gpu() {
            return Ok(None);
        }
        if let Err(e) = &self.devices {
            return Err(format!("it asks for {}, but {e}", describe(demand)));
        }
        // Holders are unique even when a name comes back (a service deleted and created again
        // while its old instances still drain).
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let key = format!("{holder}#{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let grant = self
            .ledger()
            .grant(key.clone(), demand)
            .map_err(|refusal| format!("no GPU for it: it {refusal}"))?;
        Ok(Some(GpuLease {
            ledger: Arc::clone(&self.ledger),
            holder: key,
            grant,
        }))
    }
}

/// `1 whole GPU`, `a GPU slice (4.0 GB, 30% compute)`.
fn describe(demand: &GpuDemand) -> String {
    match demand {
        GpuDemand::Whole(1) => "1 whole GPU".to_owned(),
        GpuDemand::Whole(n) => format!("{n} whole GPUs"),
        GpuDemand::Slice(s) => {
            #[allow(clippy::cast_precision_loss)]
            let gb = s.memory_bytes as f64 / f64::from(1u32 << 30);
            format!("a GPU slice ({gb:.1} GB, {}% compute)", s.core_percent)
        }
        _ => "no GPU".to_owned(),
    }
}

/// GPUs granted to one instance; dropping it gives them back.
#[derive(Debug)]
pub struct GpuLease {
    ledger: Arc<Mutex<GpuLedger>>,
    holder: String,
    grant: GpuGrant,
}

impl GpuLease {
    /// What was granted.
    #[must_use]
    pub const fn grant(&self) -> &GpuGrant {
        &self.grant
    }

    /// The granted GPUs' ordinals.
    #[must_use]
    pub fn ordinals(&self) -> &[u32] {
        &self.grant.ordinals
    }

    /// `ctx` on the granted device (the first ordinal: processors run on one device) with the
    /// slice's memory limit and core percentage when it is a slice.
    #[must_use]
    pub fn apply(&self, ctx: InitContext) -> InitContext {
        let Some(&ordinal) = self.grant.ordinals.first() else {
            return ctx;
        };
        let ctx = ctx.with_device(Device::Cuda { ordinal });
        match self.grant.slice {
            Some(slice) => ctx.with_gpu_slice(
                (slice.memory_bytes > 0).then_some(slice.memory_bytes),
                (slice.core_percent > 0).then_some(slice.core_percent),
            ),
            None => ctx,
        }
    }
}

impl Drop for GpuLease {
    fn drop(&mut self) {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(&self.holder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_should_say_what_is_missing_without_gpus() {
        let none = GpuInventory::unavailable(GpuError::NoDriver {
            searched: "here".into(),
        });
        let refused = none.lease("svc/0", &GpuDemand::Whole(1));
        let why = refused.expect_err("no GPU");
        assert!(why.contains("1 whole GPU"), "{why}");
        assert!(why.contains("no NVIDIA driver"), "{why}");
        assert!(matches!(none.lease("svc/0", &GpuDemand::None), Ok(None)));
        let unbuilt = GpuInventory::unavailable(GpuError::NotBuilt)
            .lease("svc/0", &GpuDemand::slice(2, 0))
            .expect_err("no GPU");
        assert!(unbuilt.contains("`cuda` feature"), "{unbuilt}");
    }

    #[test]
    fn apply_should_set_the_device_and_the_slice() {
        let gpus = GpuInventory::with_devices(vec![
            GpuInfo::new(0, "a", 16 << 30, "GPU-a"),
            GpuInfo::new(1, "b", 16 << 30, "GPU-b"),
        ]);
        let whole = gpus.lease("w", &GpuDemand::Whole(1)).ok().flatten();
        let whole = whole.expect("granted");
        let ctx = whole.apply(InitContext::new("svc"));
        assert_eq!(ctx.device, Device::Cuda { ordinal: 0 });
        assert_eq!(
            (ctx.gpu_memory_limit, ctx.gpu_core_percentage),
            (None, None)
        );
        let slice = gpus.lease("s", &GpuDemand::slice(4, 30)).ok().flatten();
        let slice = slice.expect("granted");
        let ctx = slice.apply(InitContext::new("svc"));
        assert_eq!(ctx.device, Device::Cuda { ordinal: 1 });
        assert_eq!(ctx.gpu_memory_limit, Some(4 << 30));
        assert_eq!(ctx.gpu_core_percentage, Some(30));
        drop(whole);
        assert!(gpus.usage()[0].is_free());
    }
}
