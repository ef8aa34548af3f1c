#!/usr/bin/env bash
# Builds Horovod 0.28.1 for the installed torch (CPU, Gloo only) once per machine and
# caches the wheel outside the repository. Horovod's last release is an sdist that
# pins C++14, which torch >= 2.1 headers reject; we patch the standard to C++17.
set -euo pipefail
VERSION="${HOROVOD_VERSION:-0.28.1}"
CACHE="${OPENAUTOGLM_WHEEL_CACHE:-/var/cache/openautoglm/wheels}"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE"
if ls "$CACHE"/horovod-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "horovod wheel cached: $(ls "$CACHE"/horovod-"$VERSION"-*.whl)"
  exit 0
fi
"$PY" -c 'import torch' 2>/dev/null || { echo "install torch first (pip install torch==2.13.0)" >&2; exit 1; }
# cmake<4: CMake 4 refuses the cmake_minimum_required of Horovod's bundled gloo.
"$PY" -m pip install -q numpy 'cmake<4' wheel packaging
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: "horovod==$VERSION" -d "$WORK"
tar -xzf "$WORK"/horovod-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/horovod-$VERSION"
sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' \
  "$SRC/CMakeLists.txt" "$SRC/horovod/torch/CMakeLists.txt"
grep -q 'CMAKE_CXX_STANDARD 17' "$SRC/horovod/torch/CMakeLists.txt"
HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=GLOO \
MAKEFLAGS="-j$(nproc)" \
  "$PY" -m pip wheel --no-build-isolation --no-deps -w "$CACHE" "$SRC"
ls "$CACHE"/horovod-"$VERSION"-*.whl
