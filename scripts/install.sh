#!/usr/bin/env bash
# Installs OpenAutoGLM Tune into the current Python: torch (CPU), the patched Horovod
# wheel (built once per machine, cached outside the repo), and the project (editable).
#   scripts/install.sh          # runtime: local engine, trial runtime, operator, PostgreSQL client
#   scripts/install.sh --dev    # + what the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
EXTRAS="trial,operator,postgres"
[[ "${1:-}" == "--dev" ]] && EXTRAS="$EXTRAS,dev"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# torch first, pinned: its local CPU build satisfies the open `torch` requirement below,
# which would otherwise pull a multi-GB CUDA build.
"$PY" -m pip install -q torch==2.13.0
PYTHON="$PY" bash scripts/build-horovod-wheel.sh
"$PY" -m pip install -q --find-links "${OPENAUTOGLM_WHEEL_CACHE:-/var/cache/openautoglm/wheels}" -e ".[$EXTRAS]"
command -v pyenv >/dev/null && pyenv rehash || true
echo "installed: $("$PY" -c 'import openautoglm, horovod, torch; print("openautoglm", openautoglm.__version__, "torch", torch.__version__, "horovod", horovod.__version__)')"
