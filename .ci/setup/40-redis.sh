# Sourced by .ci/run: redis-server (Debian), which the queue tests start on a free loopback port
# (the Redis Streams backend, cargo feature `redis`). Nothing is left running: each test starts
# and stops its own server.
if ! command -v redis-server >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends redis-server >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends redis-server >/dev/null; }
fi
redis-server --version | head -1
