//! Placement throughput of [`PlacementScheduler`]: N new instances of eight services onto
//! N/10 dedicated nodes of mixed sizes in three zones (two services with host spread, one
//! with zone spread, one BestEffort), for N = 1k, 10k and 100k. One `schedule` call places
//! all N; criterion reports placements per second (elements/s).

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eas_core::Scheduler;
use eas_core::resources::{Node, NodeId, ResourceGroup, Resources, SpreadPolicy, Zone};
use eas_core::scheduler::{Action, ClusterState, ScheduleInput, ServiceDemand};
use eas_core::testing::StaticPrices;
use eas_scheduler::placement::PlacementScheduler;

/// N/10 nodes of 8, 16 or 32 cores (4 GB per core), zones a, b, c.
fn cluster(n: u32) -> ClusterState {
    let zones: Vec<Zone> = ["a", "b", "c"].into_iter().map(Zone::from).collect();
    let nodes = (0..n / 10)
        .map(|i| {
            let cores = [8_u64, 16, 32][i as usize % 3];
            let zone = zones[(i as usize / 3) % 3].clone();
            Node::new(
                NodeId::new(format!("n{i}")),
                zone,
                Resources::new(cores * 1_000, cores * 4_096),
            )
        })
        .collect();
    ClusterState {
        groups: vec![ResourceGroup::dedicated("g", nodes), ResourceGroup::Public],
        zones,
        ..ClusterState::default()
    }
}

/// Eight services sharing N instances: 1 to 2 cores, 2 to 6 GB each.
fn demand(n: u32) -> Vec<ServiceDemand> {
    let host = n / 40; // at most one per node: N/40 < N/10
    let rest = (n - 2 * host) / 6;
    (0..8)
        .map(|s| {
            let replicas = match s {
                0 | 1 => host,
                7 => n - 2 * host - 5 * rest,
                _ => rest,
            };
            let per = Resources::new(1_000 + 500 * (s % 3), 2_048 * (1 + s % 3));
            let d = ServiceDemand::new(format!("svc{s}"), replicas, per).with_resource_group("g");
            match s {
                0 | 1 => d.with_spread(SpreadPolicy::Host),
                2 => d.with_spread(SpreadPolicy::Zone),
                3 => d.with_best_effort(true),
                _ => d,
            }
        })
        .collect()
}

fn placements(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group.sample_size(10);
    let prices = StaticPrices::new();
    for n in [1_000_u32, 10_000, 100_000] {
        let cluster = cluster(n);
        let demand = demand(n);
        let input = ScheduleInput::new(SystemTime::UNIX_EPOCH, &demand, &cluster, &prices);
        let placed = PlacementScheduler::new()
            .schedule(&input)
            .iter()
            .filter(|a| matches!(a, Action::Launch { .. }))
            .count();
        assert_eq!(placed, n as usize, "every instance fits");
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_with_input(BenchmarkId::new("schedule", n), &input, |b, input| {
            let mut scheduler = PlacementScheduler::new();
            b.iter(|| black_box(scheduler.schedule(black_box(input))));
        });
    }
    group.finish();
}

criterion_group!(benches, placements);
criterion_main!(benches);
