//! Placement throughput (written with the placement policy).

fn main() {}
