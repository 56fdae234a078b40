# Sourced by .ci/run: cargo-machete, which finds dependencies that a Cargo.toml declares and
# no source of the crate names (a declared, unused dependency is a design that did not happen).
# Pinned: what counts as used is the tool's own rule, so a new version could flag other things.
if [ "$(cargo machete --version 2>/dev/null)" != "0.9.2" ]; then
  cargo install --quiet --locked cargo-machete@0.9.2
fi
cargo machete --version
