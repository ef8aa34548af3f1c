#!/usr/bin/env bash
# Installs everything the tests need and runs the whole suite (what CI runs).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev || exit 1
bash scripts/install-services.sh || exit 1
bash scripts/install-checkers.sh || exit 1
# In CI a missing PostgreSQL must fail the suite, not skip it.
export OPENAUTOGLM_REQUIRE_POSTGRES=1
python3 -m pytest -q "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests (exit 5)" >&2
  exit 1
fi
exit $rc
