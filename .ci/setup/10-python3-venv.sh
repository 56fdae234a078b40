# Sourced by .ci/run: python3 with its venv module (Debian's python3-venv), from which
# scripts/test makes the tests' virtualenvs (scripts/test-env.sh).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends python3-venv >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends python3-venv >/dev/null; }
fi
python3 --version
