//! Pricing oracles: static tables and replays of real spot price traces.
