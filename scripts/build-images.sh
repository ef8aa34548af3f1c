#!/usr/bin/env bash
# Builds the three images from the repository root, with docker when a daemon answers, else with
# buildah (a Debian package that builds Dockerfiles without a daemon; here as root, chroot
# isolation, layer cache on), and prints each image's size:
#   openautoglm/operator:0.1     Dockerfile
#   openautoglm/trial:0.1        trial_image/Dockerfile
#   openautoglm/own-script:0.1   examples/own-script/Dockerfile (FROM openautoglm/trial:0.1)
# (buildah stores them as localhost/openautoglm/...).
#
#   scripts/build-images.sh [--base IMAGE|debootstrap|auto] [--wheels DIR|auto|none] [--cert FILE|auto|none]
#                           [--only NAME]... [--engine docker|buildah] [--no-cache] [--verbose]
#   --base IMAGE    the Python base (build argument PYTHON_IMAGE), default python:3.11-slim-bookworm;
#                   `debootstrap`: a Debian bookworm stand-in made once per machine (scripts/make-base.sh);
#                   `auto`: the default where its registry answers, else debootstrap
#   --wheels DIR    a directory of wheels (e.g. the machine's torch CPU wheel) that pip may take instead
#                   of downloading (buildah only: mounted read-only into the builders); torch then comes
#                   from PyPI's index plus DIR, where the constraints admit only the CPU build;
#                   `auto` (the default): the first of pip's find-links directories (PIP_FIND_LINKS, pip
#                   config) that holds the pinned torch wheel, if any
#   --cert FILE     the CA bundle pip verifies the index with (buildah only: mounted into the builders as
#                   PIP_CERT), for a network whose TLS proxy the base image's bundle does not know;
#                   `auto` (the default): pip's own setting on this machine (PIP_CERT, pip config), if any
#   --only NAME     operator, trial or own-script; repeatable; default all three
#   --no-cache      rebuild every layer (the layer cache otherwise makes an unchanged build take seconds)
# Each build's output: $OPENAUTOGLM_IMAGE_CACHE/logs/NAME.log (default /var/cache/openautoglm/images).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${OPENAUTOGLM_IMAGE_CACHE:-/var/cache/openautoglm/images}"
TAG=0.1
BASE="python:3.11-slim-bookworm" WHEELS=auto CERT=auto ENGINE="" NOCACHE=0 VERBOSE=0
ONLY=()
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case "$1" in
    --base) BASE="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --cert) CERT="$2"; shift 2 ;;
    --only)
      [[ "$2" =~ ^(operator|trial|own-script)$ ]] || usage
      ONLY+=("$2"); shift 2 ;;
    --engine) ENGINE="$2"; shift 2 ;;
    --no-cache) NOCACHE=1; shift ;;
    --verbose) VERBOSE=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
# In build order (own-script is built FROM the trial image).
ORDER=()
for name in operator trial own-script; do
  [[ ${#ONLY[@]} -eq 0 || " ${ONLY[*]} " == *" $name "* ]] && ORDER+=("$name")
done
if [[ -z "$ENGINE" ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v buildah >/dev/null; then ENGINE=buildah
  else echo "neither a docker daemon nor buildah (bash scripts/install-image-tools.sh)" >&2; exit 1; fi
fi
# The pinned torch wheel's file name prefix, e.g. torch-2.13.0+cpu- (constraints/cpu.txt).
TORCH_WHEEL="torch-$(sed -n 's/^torch==\([^ ;#]*\).*/\1/p' constraints/cpu.txt)-"
pip_config() { python3 -m pip config get "global.$1" 2>/dev/null || true; }
[[ $WHEELS == none ]] && WHEELS=""
if [[ $WHEELS == auto ]]; then
  WHEELS=""
  if [[ $ENGINE == buildah ]]; then
    for dir in ${PIP_FIND_LINKS:-} $(pip_config find-links); do
      if compgen -G "$dir/$TORCH_WHEEL*.whl" >/dev/null; then WHEELS="$dir"; break; fi
    done
  fi
fi
[[ $CERT == none ]] && CERT=""
if [[ $CERT == auto ]]; then
  CERT=""
  [[ $ENGINE == buildah ]] && CERT="${PIP_CERT:-$(pip_config cert)}"
fi
for path in "$WHEELS" "$CERT"; do
  [[ -z "$path" || $ENGINE == buildah ]] || { echo "--wheels, --cert: buildah only (docker build mounts no host path)" >&2; exit 2; }
  [[ -z "$path" || -e "$path" ]] || { echo "no such file or directory: $path" >&2; exit 2; }
done
[[ -n "$WHEELS" ]] && WHEELS="$(realpath "$WHEELS")"
[[ -n "$CERT" ]] && CERT="$(realpath "$CERT")"
if [[ $BASE == auto ]]; then
  # Docker Hub answers 401 to an anonymous /v2/ when it is reachable.
  if curl -s -o /dev/null -m 5 https://registry-1.docker.io/v2/; then BASE="python:3.11-slim-bookworm"
  else BASE=debootstrap; fi
fi
[[ $BASE == debootstrap ]] && BASE="$(bash scripts/make-base.sh --engine "$ENGINE")"
mkdir -p "$CACHE/logs"

declare -A FILE=([operator]=Dockerfile [trial]=trial_image/Dockerfile [own-script]=examples/own-script/Dockerfile)
declare -A CONTEXT=([operator]=. [trial]=. [own-script]=examples/own-script)

build() {
  local name="$1" image="openautoglm/$1:$TAG" log="$CACHE/logs/$1.log" start=$SECONDS
  local args=(-f "${FILE[$name]}" -t "$image")
  if [[ $name != own-script ]]; then
    args+=(--build-arg "PYTHON_IMAGE=$BASE")
    if [[ -n "$WHEELS" ]]; then
      # The PyTorch index may be unreachable; PyPI's index lists torch too, and the constraints
      # (torch==X+cpu) admit only the wheel in DIR.
      args+=(--volume "$WHEELS:/wheels-local:ro" --build-arg PIP_FIND_LINKS=/wheels-local
        --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
    fi
    [[ -n "$CERT" ]] && args+=(--volume "$CERT:/run/pip-ca.crt:ro" --build-arg PIP_CERT=/run/pip-ca.crt)
  fi
  if [[ $ENGINE == docker ]]; then
    ((NOCACHE)) && args+=(--no-cache)
    set -- env DOCKER_BUILDKIT=1 docker build "${args[@]}" "${CONTEXT[$name]}"
  else
    args+=(--layers --force-rm)  # a failed step leaves no working container behind
    ((NOCACHE)) && args+=(--no-cache)
    set -- buildah bud --isolation "${BUILDAH_ISOLATION:-chroot}" "${args[@]}" "${CONTEXT[$name]}"
  fi
  local from="$BASE"
  [[ $name == own-script ]] && from="openautoglm/trial:$TAG"
  echo "building $image ($ENGINE, FROM $from): $*" >&2
  if ((VERBOSE)); then
    "$@" 2>&1 | tee "$log" || { echo "build of $image failed (log: $log)" >&2; return 1; }
  elif ! "$@" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "build of $image failed (log: $log)" >&2
    return 1
  fi
  echo "built $image in $((SECONDS - start)) s" >&2
}

size() {
  if [[ $ENGINE == docker ]]; then docker image ls --format '{{.Size}}' "$1"
  else buildah images --format '{{.Size}}' "$1"; fi
}

for name in "${ORDER[@]}"; do build "$name"; done
for name in "${ORDER[@]}"; do echo "$(size "openautoglm/$name:$TAG")  openautoglm/$name:$TAG"; done
