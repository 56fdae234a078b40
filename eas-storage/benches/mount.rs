//! Mount bench (figures, not pass/fail), for one large model file (512 MiB by default;
//! `EAS_BENCH_MIB` changes it), generated at start-up and uploaded as S3 clients have since
//! 2025 (with a CRC-64/NVME checksum, which S3 keeps for every object), all in one run on one
//! machine and on the same object in the same S3-compatible server (moto, loopback):
//!
//! - **local read**: `std::fs::read` of the same bytes from a local file in the page cache;
//! - **raw ranged GETs**: a plain HTTP client (reqwest, on a presigned URL) with `N`
//!   concurrent ranged GETs of `size / N` bytes each, streamed into one buffer allocated per
//!   run, for each `N` of `EAS_BENCH_SWEEP` (default `1,2,4`); the best `N` is the baseline;
//! - **cold mount**: an eager mount into an empty directory, without a memory cache, with
//!   the same `N` (concurrency `N`, parts of `size / N`; one streamed GET for `N = 1`) and
//!   the mount's default checks (the store's CRC-64); and, at `N = EAS_BENCH_CHECKS_N`
//!   (default 1), twice more to show what the checks cost: with the MD5 of the ETag instead
//!   (what a store without a CRC-64 gets), and with no content check;
//! - **peer hit**: a fresh instance (empty cache and directory) whose peer holds the file in
//!   memory: (a) a lazy read through the cache, the bytes in its memory (the reference's
//!   cachefs "remote hit"; the disk copy is written in the background, outside the timing);
//!   (b) an eager mount: the file on disk and in its memory.
//!
//! Goals, printed as ratios: cold mount (best `N`) >= 0.8x raw ranged GETs (best `N`); peer
//! hit (lazy read) >= 0.5x the local read, and faster than the cold mount.
//!
//! moto re-reads the whole object for every range it serves, so more ranges cost it more:
//! that is why the sweep uses `size / N` parts (and why its best `N` is small), not the
//! mount's default 16 MiB parts (`EAS_BENCH_DEFAULT=1` adds the mount with its defaults).
//!
//! Each figure is the median of `EAS_BENCH_RUNS` runs (default 3); within a run every case
//! is measured once, in turn, so that load on the machine falls on all of them.
//! `EAS_BENCH_ONLY` (a comma list of `local`, `raw`, `cold`, `peer`) keeps some cases, for
//! profiling. Needs `EAS_PYTHON` (moto lives next to it: `source scripts/test-env.sh`).
//! Run: `cargo bench -p eas-storage --bench mount`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use eas_core::StorageMount;
use eas_core::storage::MountMode;
use eas_storage::{BucketMount, MemoryCache, TransferOptions};
use futures::StreamExt as _;
use object_store::signer::Signer as _;

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

/// `N` concurrent ranged GETs of `size / N` bytes each, streamed into one buffer.
async fn ranged_gets(client: &reqwest::Client, url: &str, size: usize, n: usize) -> BytesMut {
    let part = size.div_ceil(n);
    let mut rest = BytesMut::zeroed(size);
    let mut tasks = Vec::new();
    for start in (0..size).step_by(part) {
        let mut buffer = rest.split_to(part.min(size - start));
        let end = start + buffer.len() - 1;
        let request = client
            .get(url)
            .header("range", format!("bytes={start}-{end}"));
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.unwrap().error_for_status().unwrap();
            let mut body = response.bytes_stream();
            let mut at = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.unwrap();
                buffer[at..at + chunk.len()].copy_from_slice(&chunk);
                at += chunk.len();
            }
            assert_eq!(at, buffer.len(), "a whole range");
            buffer
        }));
    }
    let mut whole = BytesMut::new();
    for task in tasks {
        whole.unsplit(task.await.unwrap());
    }
    assert_eq!(whole.len(), size);
    whole
}

/// The mount's options for `n` concurrent parts of `size / n` bytes (one GET for `n = 1`).
fn sweep_options(size: usize, n: usize) -> TransferOptions {
    let part = if n == 1 {
        u64::MAX
    } else {
        size.div_ceil(n) as u64
    };
    TransferOptions::default()
        .with_concurrency(n)
        .with_part_size(part)
}

#[tokio::main]
async fn main() {
    let mib = env_usize("EAS_BENCH_MIB", 512);
    let runs = env_usize("EAS_BENCH_RUNS", 3).max(1);
    let with_default = env_usize("EAS_BENCH_DEFAULT", 0) == 1;
    let checks_n = env_usize("EAS_BENCH_CHECKS_N", 1).max(1);
    let sweep: Vec<usize> = std::env::var("EAS_BENCH_SWEEP")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let only = std::env::var("EAS_BENCH_ONLY").unwrap_or_default();
    let wants = |case: &str| only.is_empty() || only.split(',').any(|c| c.trim() == case);
    let size = mib << 20;
    let Some(moto) = support::Moto::start("bench mount").await else {
        return;
    };
    moto.create_bucket("models").await;
    let content = support::bytes(size, 7);
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &content);
    moto.put_with_crc64("models", "big/model.bin", &content, crc)
        .await;
    let work = tempfile::tempdir_in(
        std::env::var("EAS_BENCH_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into()),
    )
    .unwrap();

    let local_file = work.path().join("local.bin");
    std::fs::write(&local_file, &content).unwrap();
    drop(content);
    // A presigned URL: the raw client sends plain GETs with a `range` header, nothing else.
    let url = eas_storage::bucket::s3_store(&moto.location("models", ""), &support::credentials())
        .unwrap()
        .signed_url(
            reqwest::Method::GET,
            &"big/model.bin".into(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap()
        .to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
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
    let single = sweep_options(size, 1);

    // The peer: an instance that holds the file in memory and serves it over HTTP.
    let secret = eas_storage::peer::PeerSecret::new("bench-secret").unwrap();
    let first_cache =
        Arc::new(MemoryCache::new(size as u64 + (1 << 20)).with_peer_secret(secret.clone()));
    let server = support::serve(eas_storage::peer::router(Arc::clone(&first_cache))).await;
    if wants("peer") {
        mount(
            work.path().join("first"),
            single,
            Some(Arc::clone(&first_cache)),
        )
        .mount(MountMode::Eager, None)
        .await
        .unwrap();
    }

    let mut local = Vec::new();
    let mut raw: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    let mut cold: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    let mut cold_default = Vec::new();
    let mut cold_md5 = Vec::new();
    let mut cold_unchecked = Vec::new();
    let mut peer_read = Vec::new();
    let mut peer_mount = Vec::new();
    for run in 0..runs {
        if wants("local") {
            let start = Instant::now();
            let bytes = std::fs::read(&local_file).unwrap();
            local.push(start.elapsed());
            assert_eq!(bytes.len(), size);
        }
        for &n in &sweep {
            if wants("raw") {
                let start = Instant::now();
                let bytes = ranged_gets(&client, &url, size, n).await;
                raw.entry(n).or_default().push(start.elapsed());
                drop(bytes);
            }
            if wants("cold") {
                let target = work.path().join(format!("cold-{run}-{n}"));
                let start = Instant::now();
                let report = mount(target.clone(), sweep_options(size, n), None)
                    .mount(MountMode::Eager, None)
                    .await
                    .unwrap();
                cold.entry(n).or_default().push(start.elapsed());
                assert_eq!(report.fetched_bytes, size as u64);
                std::fs::remove_dir_all(target).unwrap();
            }
        }
        if wants("cold") {
            let checks = sweep_options(size, checks_n).with_verify_crc64(false);
            for (name, options, samples) in [
                ("md5", checks, &mut cold_md5),
                (
                    "unchecked",
                    checks.with_verify_md5(false),
                    &mut cold_unchecked,
                ),
            ] {
                let target = work.path().join(format!("cold-{run}-{name}"));
                let start = Instant::now();
                mount(target.clone(), options, None)
                    .mount(MountMode::Eager, None)
                    .await
                    .unwrap();
                samples.push(start.elapsed());
                std::fs::remove_dir_all(target).unwrap();
            }
        }
        if with_default && wants("cold") {
            let target = work.path().join(format!("cold-{run}-default"));
            let start = Instant::now();
            mount(target.clone(), TransferOptions::default(), None)
                .mount(MountMode::Eager, None)
                .await
                .unwrap();
            cold_default.push(start.elapsed());
            std::fs::remove_dir_all(target).unwrap();
        }
        if !wants("peer") {
            continue;
        }
        // Peer hits: a fresh instance (empty cache and directory) whose only peer is the first.
        for eager in [false, true] {
            let target = work.path().join(format!("peer-{run}"));
            let cache = Arc::new(
                MemoryCache::new(size as u64 + (1 << 20))
                    .with_peers([server.base.clone()])
                    .with_peer_secret(secret.clone()),
            );
            let instance = mount(target.clone(), single, Some(Arc::clone(&cache)));
            let start = Instant::now();
            if eager {
                instance.mount(MountMode::Eager, None).await.unwrap();
                peer_mount.push(start.elapsed());
            } else {
                instance.mount(MountMode::Lazy, None).await.unwrap();
                let bytes = instance.read("model.bin").await.unwrap();
                peer_read.push(start.elapsed());
                assert_eq!(bytes.len(), size);
            }
            assert_eq!(cache.stats().peer_hits, 1, "served by the peer");
            drop(instance);
            drop(cache);
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
        "mount bench: {mib} MiB object, median of {runs} runs; sweep N = {sweep:?} (N ranged GETs of size/N)"
    );
    let line = |name: &str, samples: &[Duration]| -> Option<f64> {
        if samples.is_empty() {
            return None;
        }
        let (low, high) = (samples.iter().min()?, samples.iter().max()?);
        let time = median(samples.to_vec());
        let rate = size as f64 / time.as_secs_f64() / 1e6;
        println!(
            "  {name:<40}{:>8.3} s {rate:>8.1} MB/s  (runs {:.2}-{:.2} s)",
            time.as_secs_f64(),
            low.as_secs_f64(),
            high.as_secs_f64()
        );
        Some(rate)
    };
    let best = |rates: Vec<(usize, f64)>| rates.into_iter().max_by(|a, b| a.1.total_cmp(&b.1));
    let local = line("local read (page cache)", &local);
    let raw = best(
        raw.iter()
            .filter_map(|(n, s)| Some((*n, line(&format!("raw ranged GETs, N = {n}"), s)?)))
            .collect(),
    );
    let cold = best(
        cold.iter()
            .filter_map(|(n, s)| Some((*n, line(&format!("cold mount, N = {n}"), s)?)))
            .collect(),
    );
    let cold_md5 = line(
        &format!("cold mount, N = {checks_n}, MD5 not CRC-64"),
        &cold_md5,
    );
    let cold_unchecked = line(
        &format!("cold mount, N = {checks_n}, no content check"),
        &cold_unchecked,
    );
    line("cold mount, default options", &cold_default);
    let peer_read = line("peer hit, lazy read (memory)", &peer_read);
    let peer_mount = line("peer hit, eager mount (disk + memory)", &peer_mount);
    if let (Some((cn, cold)), Some((rn, raw))) = (cold, raw) {
        println!(
            "  cold mount (N = {cn}) / raw ranged GETs (N = {rn}): {:.2}x (goal >= 0.8x)",
            cold / raw
        );
    }
    for (name, rate) in [
        ("MD5 not CRC-64", cold_md5),
        ("no content check", cold_unchecked),
    ] {
        if let (Some(cold), Some((rn, raw))) = (rate, raw) {
            println!(
                "  cold mount (N = {checks_n}, {name}) / raw ranged GETs (N = {rn}): {:.2}x",
                cold / raw
            );
        }
    }
    if let (Some(peer), Some(local)) = (peer_read, local) {
        println!(
            "  peer hit (lazy read) / local read: {:.2}x (goal >= 0.5x)",
            peer / local
        );
    }
    if let (Some(peer), Some(local)) = (peer_mount, local) {
        println!(
            "  peer hit (eager mount) / local read: {:.2}x",
            peer / local
        );
    }
    if let Some((_, cold)) = cold {
        for (name, peer) in [("lazy read", peer_read), ("eager mount", peer_mount)] {
            if let Some(peer) = peer {
                println!(
                    "  peer hit ({name}) vs cold mount: {:.2}x faster (goal > 1x: {})",
                    peer / cold,
                    if peer > cold { "yes" } else { "no" }
                );
            }
        }
    }
}
