# Sourced by .ci/run: headless Chromium (Debian's chromium), which eas-runtime/tests/console.rs
# drives to check that the web console renders live figures (DOM after scripts, a screenshot).
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }
fi
chromium --version 2>&1 | head -1
