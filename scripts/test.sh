#!/usr/bin/env bash
# Installs everything the tests need and runs the whole suite (what CI runs).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev || exit 1
bash scripts/install-services.sh || exit 1
bash scripts/install-checkers.sh || exit 1
bash scripts/install-image-tools.sh || exit 1
# The image tier's images (tests/images/), built here in set-up where the downloads are (the base,
# PyPI, Debian's mirror); the tier finds them in the layer cache. Docker Hub's python image where it
# answers, else a debootstrapped bookworm; torch from a local wheel directory pip knows, if any.
bash scripts/build-images.sh --base auto --wheels auto || exit 1
# In CI a missing PostgreSQL must fail the suite, not skip it.
export OPENAUTOGLM_REQUIRE_POSTGRES=1
export OPENAUTOGLM_REQUIRE_IMAGES=1  # likewise the image tier (tests/images) without buildah or docker
python3 -m pytest -q "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests (exit 5)" >&2
  exit 1
fi
exit $rc
