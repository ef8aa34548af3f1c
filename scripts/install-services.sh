#!/usr/bin/env bash
# Debian packages the integration tests start themselves: PostgreSQL (study storage) and
# Prometheus (metrics source), and Lua (the Argo CD health check). Nothing is started here; the test fixtures do that.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# The Argo CD health check (deploy/argocd) is Lua; tests run it with a real interpreter.
command -v lua5.4 >/dev/null 2>&1 || need+=(lua5.4)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts a cluster and a prometheus service where systemd runs; tests
# use their own private instances, so those are not needed.
echo "services: postgresql $(ls /usr/lib/postgresql/ | tr '\n' ' ')prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
