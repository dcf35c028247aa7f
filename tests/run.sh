#!/usr/bin/env bash
# Installs qmroct with its test extras into .venv, starts a throwaway PostgreSQL, and runs the
# whole test suite. This is the README's test line and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# Headless Chromium and its driver for the browser tests (tests/web), from Debian's packages.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
  else
    echo "chromium and chromium-driver are missing: install them (apt-get) for tests/web" >&2
  fi
fi
# Action workers run under bubblewrap (Debian's bubblewrap) so they cannot read the stack's
# credentials; the isolation tests need it.
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null
  else
    echo "bubblewrap is missing: install it (apt-get install bubblewrap) for tests/runtime" >&2
  fi
fi
# A real PostgreSQL server for the ledger tests (installed from Debian's packages if missing).
eval "$(bash infra/postgres/start-test-server.sh)"
export QMROCT_TEST_PG_DSN QMROCT_TEST_PG_DIR
.venv/bin/python -m ruff check .
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
bash infra/postgres/start-test-server.sh --stop >/dev/null 2>&1 || true
exit $rc
