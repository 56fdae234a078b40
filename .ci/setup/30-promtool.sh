# Sourced by .ci/run: promtool (Debian's prometheus package), which checks that /metrics
# follows the Prometheus text format and naming conventions.
if ! command -v promtool >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
fi
promtool --version 2>&1 | head -1
