//! One scheduling round: what is still free (dedicated nodes, inventory), which spot markets
//! are unreliable, and how one instance of a service is placed.
//!
//! Tiers, best first: the service's dedicated group (rank 0), then its public instance types
//! in the order given (rank 1, 2, ...). A placement tries the tiers in that order and says,
//! for each tier it passed over, why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use eas_core::resources::{Instance, Market, Placement, Resources, SpreadPolicy, Zone};
use eas_core::scheduler::{InstanceChoice, ScheduleInput, ServiceDemand};
use eas_core::spec::CountOrPercent;

use super::index::{Cursors, NodeIndex, Zones};

/// How long a spot machine bought with protection cannot be reclaimed: one hour.
pub(crate) const SPOT_PROTECTION: Duration = Duration::from_secs(3600);

/// Where one service's instances are, as far as spread and capacity caps care.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Instances per zone index.
    zone: Vec<u32>,
    /// Dedicated slots holding one of its instances.
    nodes: BTreeSet<usize>,
    /// Public instances per instance type.
    types: BTreeMap<String, u32>,
    /// Where its searches of dedicated nodes resume.
    cursors: Cursors,
}

/// What a round has left, shared by every service placed in it.
#[derive(Debug)]
pub(crate) struct Round<'i, 'a> {
    pub(crate) input: &'i ScheduleInput<'a>,
    pub(crate) zones: Zones<'a>,
    pub(crate) nodes: NodeIndex<'a>,
    inventory: BTreeMap<(&'a str, &'a Zone), u32>,
    /// Spot markets (type, zone) with a preemption notice: not bought from this round.
    unreliable: BTreeSet<(&'a str, &'a Zone)>,
}

/// A placement found for one instance, and the reason for it.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) placement: Placement,
    pub(crate) reason: String,
}

impl<'i, 'a> Round<'i, 'a> {
    pub(crate) fn new(input: &'i ScheduleInput<'a>) -> Self {
        let cluster = input.cluster;
        let zones = Zones::new(cluster);
        let nodes = NodeIndex::new(cluster, &zones);
        let inventory = cluster
            .inventory
            .iter()
            .map(|((t, z), n)| ((t.as_str(), z), *n))
            .collect();
        let unreliable = cluster
            .instances
            .iter()
            .filter(|i| i.preemption_notice_at.is_some())
            .filter_map(|i| match &i.placement {
                Placement::Public {
                    instance_type,
                    zone,
                    market: Market::Spot { .. },
                } => Some((instance_type.as_str(), zone)),
                _ => None,
            })
            .collect();
        Self {
            input,
            zones,
            nodes,
            inventory,
            unreliable,
        }
    }

    /// Where `instances` are.
    pub(crate) fn tally(&self, instances: &[&Instance]) -> Tally {
        let mut tally = Tally {
            zone: vec![0; self.zones.list.len()],
            ..Tally::default()
        };
        for i in instances {
            self.count(&mut tally, &i.placement, true);
        }
        tally
    }

    /// Adds (or removes) one instance at `placement` to `tally`.
    pub(crate) fn count(&self, tally: &mut Tally, placement: &Placement, add: bool) {
        let step = |n: &mut u32| *n = if add { *n + 1 } else { n.saturating_sub(1) };
        if let Some(z) = self.zones.index(placement.zone()) {
            step(&mut tally.zone[z]);
        }
        match placement {
            Placement::Dedicated { group, node, .. } => {
                if let Some(slot) = self.nodes.slot_of(group, node) {
                    if add {
                        tally.nodes.insert(slot);
                    } else {
                        tally.nodes.remove(&slot);
                    }
                }
            }
            Placement::Public { instance_type, .. } => {
                step(tally.types.entry(instance_type.clone()).or_default());
            }
        }
    }

    /// Zone indices to try, best first: under zone spread the zones with fewest instances of
    /// the service first (ties by zone order), else the zones in order.
    fn zone_order(demand: &ServiceDemand, counts: &[u32], zones: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..zones).collect();
        if demand.spread == SpreadPolicy::Zone {
            order.sort_by_key(|&z| (counts[z], z));
        }
        order
    }

    /// Places one instance of `demand` on a tier ranked below `max_rank` (0: the dedicated
    /// group; 1 + i: the i-th instance type), charging what it takes. On failure, why not.
    pub(crate) fn place(
        &mut self,
        demand: &'a ServiceDemand,
        tally: &mut Tally,
        max_rank: usize,
    ) -> Result<Found, String> {
        let mut notes: Vec<String> = Vec::new();
        if let Some(group) = demand.resource_group.as_deref() {
            if max_rank == 0 {
                return Err("nothing ranks higher".to_owned());
            }
            match self.dedicated(demand, group, tally) {
                Ok(found) => return Ok(found),
                Err(note) => notes.push(note),
            }
            if !demand.burstable {
                notes.push("not burstable".to_owned());
                return Err(notes.join("; "));
            }
        }
        let limit = max_rank.saturating_sub(1).min(demand.instance_types.len());
        match self.public(demand, tally, limit, &mut notes) {
            Some(found) => {
                let reason = if notes.is_empty() {
                    found.reason
                } else {
                    format!("{}; {}", notes.join("; "), found.reason)
                };
                Ok(Found { reason, ..found })
            }
            None => {
                if limit == 0 && demand.resource_group.is_none() {
                    notes.push("no instance types".to_owned());
                }
                Err(notes.join("; "))
            }
        }
    }

    /// First fit in the dedicated group (zone by zone under zone spread; never a node already
    /// holding the service under host spread).
    fn dedicated(
        &mut self,
        demand: &ServiceDemand,
        group: &str,
        tally: &mut Tally,
    ) -> Result<Found, String> {
        if !self.nodes.has_group(group) {
            return Err(format!("dedicated group {group} unknown"));
        }
        let need = demand.charged_per_instance();
        let host = demand.spread == SpreadPolicy::Host;
        let hosting = &tally.nodes;
        let excluded = |slot: usize| host && hosting.contains(&slot);
        let cursors = &mut tally.cursors;
        let slot = if demand.spread == SpreadPolicy::Zone {
            let zones = self.zones.list.len();
            let order = Self::zone_order(demand, &tally.zone, zones);
            order.into_iter().find_map(|z| {
                self.nodes
                    .first_fit(group, Some(z), &need, cursors, host, excluded)
            })
        } else {
            self.nodes
                .first_fit(group, None, &need, cursors, host, excluded)
        };
        let Some(slot) = slot else {
            let mut why = format!("dedicated group {group} full for {}", describe(&need));
            if demand.best_effort {
                why.push_str(" (BestEffort: CPU not counted)");
            }
            if host {
                why.push_str(" on a node without this service (host spread)");
            }
            return Err(why);
        };
        self.nodes.take(slot, &need);
        let s = &self.nodes.slots[slot];
        let placement = Placement::dedicated(group, s.id.clone(), self.zones.list[s.zone].clone());
        let reason = format!(
            "dedicated group {group} node {} in zone {} (first fit)",
            s.id, self.zones.list[s.zone]
        );
        self.count(tally, &placement, true);
        Ok(Found { placement, reason })
    }

    /// The first instance type (of the first `limit`) with a zone where it can be bought: in
    /// type order then zone order, or under zone spread in zone order then type order.
    fn public(
        &mut self,
        demand: &'a ServiceDemand,
        tally: &mut Tally,
        limit: usize,
        notes: &mut Vec<String>,
    ) -> Option<Found> {
        let choices = &demand.instance_types[..limit];
        if choices.is_empty() {
            return None;
        }
        if self.zones.public == 0 {
            notes.push("no zones to buy public machines in".to_owned());
            return None;
        }
        let order = Self::zone_order(demand, &tally.zone, self.zones.public);
        let blocked: Vec<Option<String>> = choices
            .iter()
            .map(|c| self.blocked(demand, c, tally))
            .collect();
        let mut noted = vec![false; choices.len()];
        let pairs: Vec<(usize, usize)> = if demand.spread == SpreadPolicy::Zone {
            order
                .iter()
                .flat_map(|&z| (0..choices.len()).map(move |c| (c, z)))
                .collect()
        } else {
            (0..choices.len())
                .flat_map(|c| order.iter().map(move |&z| (c, z)))
                .collect()
        };
        let mut hit = None;
        for (c, z) in pairs {
            if let Some(note) = &blocked[c] {
                if !noted[c] {
                    noted[c] = true;
                    notes.push(note.clone());
                }
                continue;
            }
            match self.market(&choices[c], self.zones.list[z]) {
                Ok((market, why)) => {
                    hit = Some((c, z, market, why));
                    break;
                }
                Err(note) => notes.push(note),
            }
        }
        let (c, z, market, why) = hit?;
        let choice: &'a InstanceChoice = &demand.instance_types[c];
        let zone: &'a Zone = self.zones.list[z];
        if let Some(n) = self
            .inventory
            .get_mut(&(choice.instance_type.as_str(), zone))
        {
            *n = n.saturating_sub(1);
        }
        let placement = Placement::public(&choice.instance_type, zone.clone(), market);
        self.count(tally, &placement, true);
        Some(Found {
            placement,
            reason: why,
        })
    }

    /// Why a choice is out in every zone (capacity reached, machine too small), if it is.
    fn blocked(
        &self,
        demand: &ServiceDemand,
        choice: &InstanceChoice,
        tally: &Tally,
    ) -> Option<String> {
        let name = &choice.instance_type;
        let cap = choice.max_instances(demand.replicas);
        if tally.types.get(name).copied().unwrap_or(0) >= cap {
            return Some(match choice.capacity {
                Some(CountOrPercent::Percent(p)) => {
                    format!(
                        "{name}: capacity {p}% of {} = {cap} reached",
                        demand.replicas
                    )
                }
                _ => format!("{name}: capacity {cap} reached"),
            });
        }
        let machine = self.input.cluster.instance_type(name)?;
        let need = demand.charged_per_instance();
        (!need.fits_in(&machine.resources))
            .then(|| format!("{name}: too small for {}", describe(&need)))
    }

    /// Whether `choice` can be bought in `zone` now, and at what market.
    fn market(&self, choice: &InstanceChoice, zone: &Zone) -> Result<(Market, String), String> {
        let name = choice.instance_type.as_str();
        let (market, why) = match choice.spot_price_limit {
            Some(bid) => {
                if self.unreliable.contains(&(name, zone)) {
                    return Err(format!(
                        "{name} in zone {zone}: spot preemption notice this round"
                    ));
                }
                let price = self
                    .input
                    .pricing
                    .spot_price(name, zone, self.input.now)
                    .map_err(|e| format!("{name} in zone {zone}: no spot price ({e})"))?;
                if price > bid {
                    return Err(format!(
                        "{name}: spot price {price} > bid {bid} in zone {zone}"
                    ));
                }
                (
                    Market::Spot {
                        bid_usd_per_hour: bid,
                    },
                    format!("spot {name} in zone {zone} at {price} <= bid {bid}"),
                )
            }
            None => (Market::OnDemand, format!("on-demand {name} in zone {zone}")),
        };
        if self.inventory.get(&(name, zone)).copied().unwrap_or(0) == 0 {
            return Err(format!("{name} in zone {zone}: no inventory"));
        }
        Ok((market, why))
    }
}

/// Whether `instance` is a spot machine still in its protection period.
pub(crate) fn protected(demand: &ServiceDemand, instance: &Instance, now: SystemTime) -> bool {
    demand.spot_protection
        && instance.placement.is_spot()
        && instance.launched_at + SPOT_PROTECTION > now
}

/// Resources for a person: `2000m CPU, 4096 MB, 1 GPU`.
pub(crate) fn describe(r: &Resources) -> String {
    let mut s = format!("{}m CPU, {} MB", r.cpu_millis, r.memory_mb);
    if r.gpu > 0 {
        let _ = write!(s, ", {} GPU", r.gpu);
    }
    if r.gpu_memory_gb > 0 {
        let _ = write!(s, ", {} GB GPU memory", r.gpu_memory_gb);
    }
    if r.gpu_core_percent > 0 {
        let _ = write!(s, ", {}% GPU compute", r.gpu_core_percent);
    }
    s
}
