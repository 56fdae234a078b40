//! Dedicated nodes indexed by free capacity, for first-fit placement in about `O(log n)`.
//!
//! Each (group, zone) keeps its nodes in a fixed order (CPU-only nodes first, then by GPU
//! count, then in the cluster's order, so CPU-only work fills CPU-only nodes before it touches
//! GPU nodes) under a segment tree whose inner entries hold the dimension-wise maximum of free
//! resources below them. A search descends only into subtrees where the request could fit,
//! and finds the first node (from a cursor on) where it fits in every dimension.
//!
//! Nodes only lose free capacity within a round, so a node a service's request did not fit
//! stays unfit for the rest of the round: each service keeps a cursor per (group, zone) and
//! never looks behind it again (past the node it used last, under host spread).

use std::collections::BTreeMap;

use eas_core::resources::{NodeId, Resources, Zone};
use eas_core::scheduler::ClusterState;

/// The dimension-wise maximum of two amounts.
const fn max(a: &Resources, b: &Resources) -> Resources {
    const fn m64(x: u64, y: u64) -> u64 {
        if x > y { x } else { y }
    }
    const fn m32(x: u32, y: u32) -> u32 {
        if x > y { x } else { y }
    }
    Resources {
        cpu_millis: m64(a.cpu_millis, b.cpu_millis),
        memory_mb: m64(a.memory_mb, b.memory_mb),
        gpu: m32(a.gpu, b.gpu),
        gpu_memory_gb: m32(a.gpu_memory_gb, b.gpu_memory_gb),
        gpu_core_percent: m32(a.gpu_core_percent, b.gpu_core_percent),
    }
}

/// The nodes of one (group, zone) under a max segment tree.
#[derive(Debug)]
struct Tree {
    /// Position -> slot.
    slots: Vec<usize>,
    /// Leaves from `size`; entry `i` is the maximum of `2i` and `2i + 1`.
    max: Vec<Resources>,
    size: usize,
}

impl Tree {
    fn new(slots: Vec<usize>, free: impl Fn(usize) -> Resources) -> Self {
        let size = slots.len().next_power_of_two();
        let mut tree = Self {
            max: vec![Resources::ZERO; 2 * size],
            slots,
            size,
        };
        for (pos, slot) in tree.slots.iter().enumerate() {
            tree.max[size + pos] = free(*slot);
        }
        for i in (1..size).rev() {
            tree.max[i] = max(&tree.max[2 * i], &tree.max[2 * i + 1]);
        }
        tree
    }

    /// The first position at or after `from` whose free resources hold `need`.
    fn first_fit(&self, from: usize, need: &Resources) -> Option<usize> {
        self.descend(1, 0, self.size, from, need)
    }

    fn descend(
        &self,
        i: usize,
        lo: usize,
        hi: usize,
        from: usize,
        need: &Resources,
    ) -> Option<usize> {
        if hi <= from || lo >= self.slots.len() || !need.fits_in(&self.max[i]) {
            return None;
        }
        if hi - lo == 1 {
            return Some(lo);
        }
        let mid = lo.midpoint(hi);
        self.descend(2 * i, lo, mid, from, need)
            .or_else(|| self.descend(2 * i + 1, mid, hi, from, need))
    }

    fn set(&mut self, pos: usize, free: Resources) {
        let mut i = self.size + pos;
        self.max[i] = free;
        while i > 1 {
            i /= 2;
            self.max[i] = max(&self.max[2 * i], &self.max[2 * i + 1]);
        }
    }
}

/// The zones of one round: the region's zones first (in their order), then any zone a
/// dedicated node is in that the region's list lacks.
#[derive(Debug)]
pub(crate) struct Zones<'a> {
    /// Every zone, by index.
    pub(crate) list: Vec<&'a Zone>,
    /// How many of `list` are the region's zones (where public machines can be bought).
    pub(crate) public: usize,
    by_name: BTreeMap<&'a Zone, usize>,
}

impl<'a> Zones<'a> {
    pub(crate) fn new(cluster: &'a ClusterState) -> Self {
        let mut zones = Self {
            list: Vec::new(),
            public: 0,
            by_name: BTreeMap::new(),
        };
        for zone in &cluster.zones {
            zones.add(zone);
        }
        zones.public = zones.list.len();
        for group in &cluster.groups {
            for node in group.nodes() {
                zones.add(&node.zone);
            }
        }
        zones
    }

    fn add(&mut self, zone: &'a Zone) {
        if !self.by_name.contains_key(zone) {
            self.by_name.insert(zone, self.list.len());
            self.list.push(zone);
        }
    }

    /// The index of `zone`, if this round knows it.
    pub(crate) fn index(&self, zone: &Zone) -> Option<usize> {
        self.by_name.get(zone).copied()
    }
}

/// One dedicated node and what is still free on it this round.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    pub(crate) id: &'a NodeId,
    pub(crate) zone: usize,
    pub(crate) free: Resources,
    tree: usize,
    pos: usize,
}

/// Where a service's searches resume, per tree: nothing before it fits the service.
pub(crate) type Cursors = BTreeMap<usize, usize>;

/// Every dedicated node of the cluster, indexed per (group, zone) by free capacity.
#[derive(Debug)]
pub(crate) struct NodeIndex<'a> {
    pub(crate) slots: Vec<Slot<'a>>,
    trees: Vec<Tree>,
    /// Per group, the tree of each zone index (if the group has nodes there).
    groups: BTreeMap<&'a str, Vec<Option<usize>>>,
    by_id: BTreeMap<(&'a str, &'a NodeId), usize>,
}

impl<'a> NodeIndex<'a> {
    pub(crate) fn new(cluster: &'a ClusterState, zones: &Zones<'a>) -> Self {
        let mut index = Self {
            slots: Vec::new(),
            trees: Vec::new(),
            groups: BTreeMap::new(),
            by_id: BTreeMap::new(),
        };
        for group in cluster.groups.iter().filter(|g| !g.is_public()) {
            if index.groups.contains_key(group.id()) {
                continue;
            }
            let mut per_zone: Vec<Vec<usize>> = vec![Vec::new(); zones.list.len()];
            for node in group.nodes() {
                let Some(zone) = zones.index(&node.zone) else {
                    continue;
                };
                let slot = index.slots.len();
                index.by_id.insert((group.id(), &node.id), slot);
                per_zone[zone].push(slot);
                index.slots.push(Slot {
                    id: &node.id,
                    zone,
                    free: node.free(),
                    tree: 0,
                    pos: 0,
                });
            }
            let mut trees = Vec::with_capacity(per_zone.len());
            for mut slots in per_zone {
                if slots.is_empty() {
                    trees.push(None);
                    continue;
                }
                slots.sort_by_key(|&s| (index.slots[s].free.gpu > 0, index.slots[s].free.gpu, s));
                let id = index.trees.len();
                for (pos, &slot) in slots.iter().enumerate() {
                    index.slots[slot].tree = id;
                    index.slots[slot].pos = pos;
                }
                let all = &index.slots;
                index.trees.push(Tree::new(slots, |s| all[s].free));
                trees.push(Some(id));
            }
            index.groups.insert(group.id(), trees);
        }
        index
    }

    /// Whether the cluster has a dedicated group with this identifier.
    pub(crate) fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// The slot of node `id` in `group`.
    pub(crate) fn slot_of(&self, group: &str, id: &NodeId) -> Option<usize> {
        self.by_id.get(&(group, id)).copied()
    }

    /// The first node of `group` (in `zone`, or zone by zone) from the service's cursors on
    /// where `need` fits and `excluded` does not hold. Moves the cursors past what it passed
    /// over (and past the node found when `exclusive`, as under host spread).
    pub(crate) fn first_fit(
        &self,
        group: &str,
        zone: Option<usize>,
        need: &Resources,
        cursors: &mut Cursors,
        exclusive: bool,
        excluded: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let trees = self.groups.get(group)?;
        for (z, tree_id) in trees.iter().enumerate() {
            let Some(t) = *tree_id else { continue };
            if zone.is_some_and(|want| want != z) {
                continue;
            }
            let tree = &self.trees[t];
            let mut from = cursors.get(&t).copied().unwrap_or(0);
            while let Some(pos) = tree.first_fit(from, need) {
                let slot = tree.slots[pos];
                if excluded(slot) {
                    from = pos + 1;
                    continue;
                }
                cursors.insert(t, pos + usize::from(exclusive));
                return Some(slot);
            }
            cursors.insert(t, tree.slots.len());
        }
        None
    }

    /// Charges `need` to the node in `slot`.
    pub(crate) fn take(&mut self, slot: usize, need: &Resources) {
        let s = &mut self.slots[slot];
        s.free = s.free.saturating_sub(need);
        self.trees[s.tree].set(s.pos, s.free);
    }
}

#[cfg(test)]
mod tests {
    use eas_core::resources::{Node, ResourceGroup};

    use super::*;

    fn cluster() -> ClusterState {
        let node = |id: &str, zone: &str, cpu, mem| {
            Node::new(NodeId::from(id), Zone::from(zone), Resources::new(cpu, mem))
        };
        let mut gpu = node("gpu", "a", 16_000, 65_536);
        gpu.capacity = gpu.capacity.with_gpu(1, 16);
        ClusterState {
            groups: vec![
                ResourceGroup::dedicated(
                    "g",
                    vec![
                        gpu,
                        node("big", "a", 16_000, 32_768),
                        node("small", "b", 4_000, 8_192),
                    ],
                ),
                ResourceGroup::Public,
            ],
            zones: vec![Zone::from("a")],
            ..ClusterState::default()
        }
    }

    #[test]
    fn zones_should_list_region_zones_first_then_node_zones() {
        let c = cluster();
        let zones = Zones::new(&c);
        assert_eq!(zones.public, 1);
        assert_eq!(zones.index(&Zone::from("b")), Some(1));
        assert_eq!(zones.index(&Zone::from("c")), None);
    }

    #[test]
    fn first_fit_should_prefer_cpu_nodes_follow_takes_and_move_cursors() {
        let c = cluster();
        let zones = Zones::new(&c);
        let mut index = NodeIndex::new(&c, &zones);
        let need = Resources::new(8_000, 16_384);
        let mut cursors = Cursors::new();
        let first = index.first_fit("g", None, &need, &mut cursors, false, |_| false);
        assert_eq!(first, Some(1), "the CPU node before the GPU node");
        index.take(1, &need);
        index.take(1, &need);
        assert_eq!(index.slots[1].free, Resources::ZERO);
        let next = index.first_fit("g", None, &need, &mut cursors, true, |_| false);
        assert_eq!(next, Some(0), "then the GPU node");
        let mut fresh = Cursors::new();
        assert_eq!(
            index.first_fit("g", Some(1), &need, &mut fresh, false, |_| false),
            None
        );
        let gpu_need = Resources::ZERO.with_gpu(1, 8);
        assert_eq!(
            index.first_fit("g", None, &gpu_need, &mut fresh, false, |_| false),
            Some(0)
        );
        assert_eq!(
            index.first_fit("g", None, &gpu_need, &mut Cursors::new(), false, |s| s == 0),
            None
        );
        assert_eq!(
            index.first_fit("nope", None, &need, &mut fresh, false, |_| false),
            None
        );
        assert!(index.has_group("g") && !index.has_group("public"));
    }
}
