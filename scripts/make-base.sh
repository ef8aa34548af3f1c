#!/usr/bin/env bash
# A stand-in for python:3.11-slim-bookworm where Docker Hub cannot be reached: Debian bookworm made
# with debootstrap (minbase + python3, pip, venv), `python` and `pip` on PATH as in the official
# image, PEP 668's EXTERNALLY-MANAGED removed so that `pip install` works as it does there.
#   scripts/make-base.sh [--engine docker|buildah] [--rebuild]     prints the image's name
# The root file system is made once per machine and kept as a tarball (OPENAUTOGLM_IMAGE_CACHE,
# default /var/cache/openautoglm/images/bookworm-rootfs-<recipe>.tar.gz); the image is imported from it when
# the engine's storage lacks it. Needs root and Debian's debootstrap (scripts/install-image-tools.sh).
set -euo pipefail
CACHE="${OPENAUTOGLM_IMAGE_CACHE:-/var/cache/openautoglm/images}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE="localhost/openautoglm-base:bookworm"
# The recipe (this script) names the tarball and labels the image: a changed recipe makes a new base.
RECIPE="$(sha256sum "$0" | cut -c1-12)"
TARBALL="$CACHE/bookworm-rootfs-$RECIPE.tar.gz"
ENGINE="" REBUILD=0
while (($#)); do
  case "$1" in
    --engine) ENGINE="$2"; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    *) echo "usage: $0 [--engine docker|buildah] [--rebuild]" >&2; exit 2 ;;
  esac
done
if [[ -z "$ENGINE" ]]; then
  if docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=buildah; fi
fi
log() { echo "make-base: $*" >&2; }

have_image() {
  local format='{{index .Config.Labels "io.openautoglm.base-recipe"}}'
  if [[ $ENGINE == docker ]]; then [[ "$(docker image inspect --format "$format" "$IMAGE" 2>/dev/null)" == "$RECIPE" ]]
  else [[ "$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"io.openautoglm.base-recipe\"}}" "$IMAGE" 2>/dev/null)" == "$RECIPE" ]]; fi
}

make_rootfs() {
  local root
  mkdir -p "$CACHE"
  root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  [[ -d "$root" && "$root" == "$CACHE"/rootfs.* ]] || { log "no work directory"; exit 1; }
  # shellcheck disable=SC2064
  trap "umount -R '$root/proc' 2>/dev/null || true; rm -rf '$root'" EXIT
  log "debootstrap bookworm into $root (a few minutes)"
  # The official image has the whole standard library and the C headers (Horovod's build in the
  # trial image compiles against them); Debian splits them into python3-distutils, -lib2to3, -dev.
  # useradd (passwd) and apt are in minbase; the Dockerfiles' RUN lines need nothing else.
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python3-dev,python3-distutils,python3-lib2to3,ca-certificates \
    bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # The official image's sources: the release, its updates and the security archive.
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # python and pip as the official image has them (it installs Python under /usr/local).
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  # Slim as debian:bookworm-slim (the official image's base): no manuals, docs (but the copyrights) or
  # translations, now and for every package a Dockerfile installs later.
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/groff/* \
    "$root"/usr/share/lintian/* "$root"/usr/share/locale/*
  # What an image does not need: downloaded packages, package lists, logs.
  rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
  : >"$root/etc/hostname"
  log "packing $TARBALL"
  tar --numeric-owner -czf "$TARBALL.tmp" -C "$root" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$root"
  trap - EXIT
}

import_image() {
  log "importing $TARBALL as $IMAGE ($ENGINE)"
  local env_path="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  if [[ $ENGINE == docker ]]; then
    docker import --change "ENV $env_path" --change "ENV LANG=C.UTF-8" --change 'CMD ["python3"]' \
      --change "LABEL io.openautoglm.base-recipe=$RECIPE" \
      "$TARBALL" "$IMAGE" >/dev/null
  else
    local ctr
    ctr="$(buildah from scratch)"
    buildah add --quiet "$ctr" "$TARBALL" / >/dev/null
    buildah config --env "$env_path" --env LANG=C.UTF-8 --cmd python3 --label "io.openautoglm.base-recipe=$RECIPE" \
      --os linux --arch "$(dpkg --print-architecture)" "$ctr"
    buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
  fi
}

if ((REBUILD)); then
  rm -f "$TARBALL"
  if [[ $ENGINE == docker ]]; then docker image rm "$IMAGE" >/dev/null 2>&1 || true
  else buildah rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
fi
if ! have_image; then
  if [[ ! -s "$TARBALL" ]]; then
    rm -f "$CACHE"/bookworm-rootfs-*.tar.gz  # an older recipe's
    make_rootfs
  fi
  import_image
fi
echo "$IMAGE"
