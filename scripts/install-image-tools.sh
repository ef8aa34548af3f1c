#!/usr/bin/env bash
# The image tools the image tier (tests/images/, scripts/build-images.sh) needs: Debian's buildah
# (builds the Dockerfiles without a daemon) and debootstrap (makes the bookworm base where Docker
# Hub cannot be reached: scripts/make-base.sh). Quick when they are installed.
set -euo pipefail
need=()
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "image tools: $(buildah --version) debootstrap $(dpkg-query -W -f '${Version}' debootstrap)"
