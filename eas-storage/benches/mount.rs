//! Mount bench (figures, not pass/fail), for one large model file (1 GiB by default;
//! `EAS_BENCH_MIB` changes it), all in one run on one machine:
//!
//! - local disk read: `std::fs::read` of the same bytes from a local file (the baseline);
//! - one plain GET: the whole object from moto into memory (what moto serves by itself);
//! - cold mount: an eager mount from moto (S3-compatible, loopback) into an empty directory,
//!   without a memory cache, once with one streamed GET and once with parallel ranged GETs
//!   (the default for real endpoints; moto re-reads the whole object for every range, so it
//!   is pathological there). Goal: cold (one GET) >= 0.7x the local rate;
//! - peer hit: a fresh instance (empty cache and directory) whose peer holds the file in
//!   memory, (a) eager mount: the file on disk and in its memory; (b) lazy read through the
//!   cache: the bytes in its memory (the reference's cachefs "remote hit"; the disk copy is
//!   written in the background, outside the timing). Goal: >= 6x faster than cold (one GET).
//!
//! Each figure is the median of `EAS_BENCH_RUNS` runs (default 3; cold and peer runs
//! interleave). `EAS_BENCH_CONCURRENCY` (8) and `EAS_BENCH_PART_MIB` (16) set the ranged
//! GETs, `EAS_BENCH_RANGED=0` skips them, `EAS_BENCH_MD5` (1: check MD5 ETags) applies to
//! both cold mounts. Needs `EAS_PYTHON` (moto lives next to it).
//! Run: `cargo bench -p eas-storage --bench mount`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use eas_core::StorageMount;
use eas_core::storage::MountMode;
use eas_storage::{BucketMount, MemoryCache, TransferOptions};
use object_store::ObjectStoreExt as _;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn rate(bytes: usize, time: Duration) -> String {
    format!("{:8.1} MB/s", bytes as f64 / time.as_secs_f64() / 1e6)
}

#[tokio::main]
async fn main() {
    let mib = env_usize("EAS_BENCH_MIB", 1024);
    let runs = env_usize("EAS_BENCH_RUNS", 3).max(1);
    let size = mib << 20;
    let Some(moto) = support::Moto::start("bench mount").await else {
        return;
    };
    moto.create_bucket("models").await;
    let content = support::bytes(size, 7);
    moto.put("models", &[("big/model.bin", &content)]).await;
    let work = tempfile::tempdir_in(
        std::env::var("EAS_BENCH_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into()),
    )
    .unwrap();

    let local_file = work.path().join("local.bin");
    std::fs::write(&local_file, &content).unwrap();
    drop(content);
    let store = moto.store("models");

    let part_mib = env_usize("EAS_BENCH_PART_MIB", 16);
    let ranged = TransferOptions::default()
        .with_concurrency(env_usize("EAS_BENCH_CONCURRENCY", 8))
        .with_part_size(part_mib as u64 * (1 << 20))
        .with_verify_md5(env_usize("EAS_BENCH_MD5", 1) == 1);
    let with_ranges = env_usize("EAS_BENCH_RANGED", 1) == 1;
    // One streamed GET: a part size no object reaches.
    let single = ranged.with_part_size(u64::MAX);
    let mount =
        |dir: std::path::PathBuf, transfer: TransferOptions, cache: Option<Arc<MemoryCache>>| {
            let mut builder = BucketMount::builder(moto.location("models", "big/"), dir)
                .credentials(support::credentials())
                .options(transfer);
            if let Some(cache) = cache {
                builder = builder.cache(cache);
            }
            builder.build().unwrap()
        };

    // The peer: an instance that holds the file in memory and serves it over HTTP.
    let secret = eas_storage::peer::PeerSecret::new("bench-secret").unwrap();
    let first_cache =
        Arc::new(MemoryCache::new(size as u64 + (1 << 20)).with_peer_secret(secret.clone()));
    let server = support::serve(eas_storage::peer::router(Arc::clone(&first_cache))).await;
    mount(
        work.path().join("first"),
        single,
        Some(Arc::clone(&first_cache)),
    )
    .mount(MountMode::Eager, None)
    .await
    .unwrap();

    // Every run measures each case once, in turn, so that load on the machine falls on all.
    let mut local = Vec::new();
    let mut raw = Vec::new();
    let mut cold_single = Vec::new();
    let mut cold_ranged = Vec::new();
    let mut peer_mount = Vec::new();
    let mut peer_read = Vec::new();
    for run in 0..runs {
        // Baseline: the same bytes read from a local file.
        let start = Instant::now();
        let bytes = std::fs::read(&local_file).unwrap();
        local.push(start.elapsed());
        assert_eq!(bytes.len(), size);
        drop(bytes);

        // For reference: one plain GET of the whole object, what moto serves by itself.
        let start = Instant::now();
        let bytes = store
            .get(&"big/model.bin".into())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        raw.push(start.elapsed());
        assert_eq!(bytes.len(), size);
        drop(bytes);

        // Cold: a fresh directory, straight from the store, without a memory cache.
        for (transfer, samples) in [(single, &mut cold_single), (ranged, &mut cold_ranged)] {
            if transfer == ranged && !with_ranges {
                continue;
            }
            let target = work.path().join(format!("cold-{run}"));
            let start = Instant::now();
            let report = mount(target.clone(), transfer, None)
                .mount(MountMode::Eager, None)
                .await
                .unwrap();
            samples.push(start.elapsed());
            assert_eq!(report.fetched_bytes, size as u64);
            std::fs::remove_dir_all(target).unwrap();
        }

        // Peer hits: a fresh instance (empty cache and directory) whose only peer is the first.
        for eager in [true, false] {
            let target = work.path().join(format!("peer-{run}"));
            let cache = Arc::new(
                MemoryCache::new(size as u64 + (1 << 20))
                    .with_peers([server.base.clone()])
                    .with_peer_secret(secret.clone()),
            );
            let instance = mount(target.clone(), single, Some(Arc::clone(&cache)));
            let start = Instant::now();
            if eager {
                // The model file on disk (and in this instance's memory).
                instance.mount(MountMode::Eager, None).await.unwrap();
                peer_mount.push(start.elapsed());
            } else {
                // A lazy read through the cache: the bytes in this instance's memory, as the
                // reference's cachefs remote hit; the disk copy follows in the background.
                instance.mount(MountMode::Lazy, None).await.unwrap();
                let bytes = instance.read("model.bin").await.unwrap();
                peer_read.push(start.elapsed());
                assert_eq!(bytes.len(), size);
            }
            assert_eq!(cache.stats().peer_hits, 1, "served by the peer");
            drop(instance);
            // Let the background disk copy land before the directory goes.
            while std::fs::metadata(target.join("model.bin"))
                .map_or(true, |m| m.len() != size as u64)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            std::fs::remove_dir_all(target).unwrap();
        }
    }

    println!(
        "mount bench: {mib} MiB file, median of {runs} runs, ranged: concurrency {}, parts of {part_mib} MiB; MD5 check {}",
        ranged.concurrency, ranged.verify_md5
    );
    let line = |name: &str, samples: Vec<Duration>| {
        if samples.is_empty() {
            return None;
        }
        let (low, high) = (samples.iter().min()?, samples.iter().max()?);
        let spread = format!("{:.2}-{:.2}", low.as_secs_f64(), high.as_secs_f64());
        let time = median(samples.clone());
        println!(
            "  {name:<34}{:>9.3} s  {}  (runs {spread} s)",
            time.as_secs_f64(),
            rate(size, time)
        );
        Some(time.as_secs_f64())
    };
    let local = line("local disk read", local).unwrap();
    let raw = line("one plain GET (into memory)", raw).unwrap();
    let cold = line("cold mount, one streamed GET", cold_single).unwrap();
    let cold_ranged = line("cold mount, ranged GETs", cold_ranged);
    let peer_mount = line("peer hit, eager mount (disk)", peer_mount).unwrap();
    let peer_read = line("peer hit, lazy read (memory)", peer_read).unwrap();
    println!(
        "  cold (one GET) / local rate: {:.2}x (goal >= 0.7x); / plain GET rate: {:.2}x",
        local / cold,
        raw / cold
    );
    if let Some(cold_ranged) = cold_ranged {
        println!("  cold (ranged)  / local rate: {:.2}x", local / cold_ranged);
    }
    println!(
        "  peer hit vs cold (one GET): eager mount {:.2}x, lazy read {:.2}x faster (goal >= 6x)",
        cold / peer_mount,
        cold / peer_read
    );
}
