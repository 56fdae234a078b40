//! [`PlacementScheduler`]: the default [`Scheduler`].

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::SystemTime;

use eas_core::Scheduler;
use eas_core::resources::{Instance, Market, Placement};
use eas_core::scheduler::{Action, ScheduleInput, ServiceDemand};

use super::round::{Round, protected};

/// Demand a round could not place: the instances missing and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shortfall {
    /// The service.
    pub service: String,
    /// How many of its wanted instances have nowhere to go this round.
    pub missing: u32,
    /// Why, for a person (every tier passed over, with its reason).
    pub reason: String,
}

/// The default placement policy: dedicated group first, bursting, ordered public instance
/// types with spot bids and capacity caps, host and zone spread, preemption replacement,
/// scale-in order, spot protection and rebalancing with doubling probes.
///
/// Deterministic: the same state (probe counts) and input give the same actions. See the
/// [module docs](super) for the rules and the order of actions.
#[derive(Debug, Clone, Default)]
pub struct PlacementScheduler {
    /// Rebalancing probes per service for the next round (1 when absent).
    probes: BTreeMap<String, u32>,
    /// What the last round could not place.
    shortfalls: Vec<Shortfall>,
}

impl PlacementScheduler {
    /// A scheduler with no history: every service starts rebalancing with one probe.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many rebalancing probes `service` gets next round.
    #[must_use]
    pub fn probes(&self, service: &str) -> u32 {
        self.probes.get(service).copied().unwrap_or(1)
    }

    /// What the last [`schedule`](Scheduler::schedule) could not place (no action carries
    /// these: a service short of resources gets no launch, only a shortfall here).
    #[must_use]
    pub fn shortfalls(&self) -> &[Shortfall] {
        &self.shortfalls
    }

    fn service<'a>(
        &mut self,
        round: &mut Round<'_, 'a>,
        demand: &'a ServiceDemand,
        active: &[&'a Instance],
        actions: &mut Vec<Action>,
    ) {
        let now = round.input.now;
        let (mut doomed, survivors): (Vec<&Instance>, Vec<&Instance>) = active
            .iter()
            .partition(|i| i.preemption_notice_at.is_some());
        doomed.sort_by(|a, b| a.id.cmp(&b.id));
        let mut tally = round.tally(&survivors);
        let wanted = demand.replicas;
        let have = u32::try_from(survivors.len()).unwrap_or(u32::MAX);
        let mut stuck = None;
        if have < wanted {
            let mut replaced = doomed.iter();
            for k in 0..wanted - have {
                match round.place(demand, &mut tally, usize::MAX) {
                    Ok(found) => {
                        let reason = match replaced.next() {
                            Some(old) => format!("replaces preempted {}: {}", old.id, found.reason),
                            None => format!("scale-out {have} -> {wanted}: {}", found.reason),
                        };
                        actions.push(Action::launch(&demand.service, found.placement, reason));
                    }
                    Err(why) => {
                        self.shortfalls.push(Shortfall {
                            service: demand.service.clone(),
                            missing: wanted - have - k,
                            reason: why.clone(),
                        });
                        stuck = Some(why);
                        break;
                    }
                }
            }
        } else if have > wanted {
            scale_in(round.input, demand, &survivors, actions);
        }
        for old in &doomed {
            let at = old.preemption_notice_at.map_or_else(String::new, rfc3339);
            let reason = match &stuck {
                Some(why) if have < wanted => {
                    format!("preempted: notice at {at}; no replacement placed ({why})")
                }
                _ => format!("preempted: notice at {at}"),
            };
            actions.push(Action::terminate(old.id.clone(), reason));
        }
        if demand.rebalancing && have == wanted && doomed.is_empty() {
            self.rebalance(round, demand, &survivors, &mut tally, actions, now);
        }
    }

    /// Moves instances on lower-ranked tiers to better ones, `probes` at a time: doubled after
    /// a round where every probe found a place, back to 1 after one that did not.
    fn rebalance<'a>(
        &mut self,
        round: &mut Round<'_, 'a>,
        demand: &'a ServiceDemand,
        survivors: &[&'a Instance],
        tally: &mut super::round::Tally,
        actions: &mut Vec<Action>,
        now: SystemTime,
    ) {
        let input = round.input;
        let mut candidates: Vec<(&Instance, usize, f64)> = survivors
            .iter()
            .map(|i| (*i, rank(demand, &i.placement), price(input, i)))
            .filter(|(i, r, _)| *r > 0 && !protected(demand, i, now))
            .collect();
        candidates.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(b.2.total_cmp(&a.2))
                .then(b.0.launched_at.cmp(&a.0.launched_at))
                .then(a.0.id.cmp(&b.0.id))
        });
        let probes = self.probes(&demand.service);
        let mut moved = 0;
        let mut failed = candidates.is_empty();
        for (old, r, _) in candidates.iter().take(probes as usize) {
            round.count(tally, &old.placement, false);
            match round.place(demand, tally, *r) {
                Ok(found) => {
                    moved += 1;
                    let reason = format!(
                        "rebalance probe {moved}/{probes}: {}; replaces {} (lower priority)",
                        found.reason,
                        where_is(input, old)
                    );
                    actions.push(Action::migrate(old.id.clone(), found.placement, reason));
                }
                Err(_) => {
                    round.count(tally, &old.placement, true);
                    failed = true;
                    break;
                }
            }
        }
        let next = if failed || moved == 0 {
            1
        } else {
            probes.saturating_mul(2).min(demand.replicas.max(1))
        };
        self.probes.insert(demand.service.clone(), next);
    }
}

impl Scheduler for PlacementScheduler {
    fn schedule(&mut self, input: &ScheduleInput<'_>) -> Vec<Action> {
        self.shortfalls.clear();
        let mut round = Round::new(input);
        let mut active: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for i in input
            .cluster
            .instances
            .iter()
            .filter(|i| i.state.is_active())
        {
            active.entry(i.service.as_str()).or_default().push(i);
        }
        let mut actions = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for demand in input.demand {
            if !seen.insert(demand.service.as_str()) {
                continue;
            }
            let mine = active.remove(demand.service.as_str()).unwrap_or_default();
            self.service(&mut round, demand, &mine, &mut actions);
        }
        actions
    }
}

/// Where an instance sits in the service's preference order: 0 for a dedicated node, 1 + i
/// for the i-th instance type (matching the market when the type is listed twice), after
/// every listed type otherwise.
fn rank(demand: &ServiceDemand, placement: &Placement) -> usize {
    match placement {
        Placement::Dedicated { .. } => 0,
        Placement::Public {
            instance_type,
            market,
            ..
        } => {
            let types = &demand.instance_types;
            let same_type =
                |c: &&eas_core::scheduler::InstanceChoice| &c.instance_type == instance_type;
            types
                .iter()
                .position(|c| same_type(&c) && c.is_spot() == market.is_spot())
                .or_else(|| types.iter().position(|c| same_type(&c)))
                .map_or(types.len() + 1, |i| i + 1)
        }
    }
}

/// What an instance costs per hour now: nothing more on a dedicated node, the spot price (or
/// its bid when unknown) for spot, the on-demand price otherwise.
fn price(input: &ScheduleInput<'_>, instance: &Instance) -> f64 {
    match &instance.placement {
        Placement::Dedicated { .. } => 0.0,
        Placement::Public {
            instance_type,
            zone,
            market: Market::Spot { bid_usd_per_hour },
        } => input
            .pricing
            .spot_price(instance_type, zone, input.now)
            .unwrap_or(*bid_usd_per_hour),
        Placement::Public { instance_type, .. } => input
            .pricing
            .on_demand_price(instance_type)
            .unwrap_or_else(|_| {
                input
                    .cluster
                    .instance_type(instance_type)
                    .map_or(0.0, |t| t.on_demand_usd_per_hour)
            }),
    }
}

/// An instance's placement for a person.
fn where_is(input: &ScheduleInput<'_>, instance: &Instance) -> String {
    let p = price(input, instance);
    match &instance.placement {
        Placement::Dedicated { group, node, .. } => {
            format!("{} on dedicated group {group} node {node}", instance.id)
        }
        Placement::Public {
            instance_type,
            zone,
            market,
        } => {
            let kind = if market.is_spot() {
                "spot"
            } else {
                "on-demand"
            };
            format!(
                "{} on public {kind} {instance_type} in zone {zone} at {p}/h",
                instance.id
            )
        }
    }
}

/// Terminates the surplus: instances out of spot protection before protected ones, public
/// before dedicated, the most expensive at current prices first, then the newest.
fn scale_in(
    input: &ScheduleInput<'_>,
    demand: &ServiceDemand,
    survivors: &[&Instance],
    actions: &mut Vec<Action>,
) {
    let wanted = demand.replicas;
    let have = survivors.len();
    let mut order: Vec<(&Instance, bool, bool, f64)> = survivors
        .iter()
        .map(|i| {
            let dedicated = matches!(i.placement, Placement::Dedicated { .. });
            (
                *i,
                protected(demand, i, input.now),
                dedicated,
                price(input, i),
            )
        })
        .collect();
    order.sort_by(|a, b| {
        (a.1, a.2)
            .cmp(&(b.1, b.2))
            .then(b.3.total_cmp(&a.3))
            .then(Reverse(a.0.launched_at).cmp(&Reverse(b.0.launched_at)))
            .then(a.0.id.cmp(&b.0.id))
    });
    for (victim, is_protected, _, _) in order.into_iter().take(have - wanted as usize) {
        let mut reason = format!(
            "scale-in {have} -> {wanted}: {} (public before dedicated, most expensive first)",
            where_is(input, victim)
        );
        if is_protected {
            reason.push_str("; in spot protection, chosen only after every unprotected one");
        }
        actions.push(Action::terminate(victim.id.clone(), reason));
    }
}

/// A time for a person, RFC 3339 in UTC.
fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
