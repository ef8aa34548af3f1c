#!/usr/bin/env bash
# Debian packages the integration tests start themselves: PostgreSQL (study storage),
# Prometheus (metrics source and the dashboard's panels), Lua (the Argo CD health check) and
# Chromium (optuna-dashboard in a browser). Nothing is started here; the test fixtures do that.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# The Argo CD health check (deploy/argocd) is Lua; tests run it with a real interpreter.
command -v lua5.4 >/dev/null 2>&1 || need+=(lua5.4)
# optuna-dashboard is checked in a real headless browser (tests/engine/test_dashboard_browser.py),
# with a font so that its screenshot shows text.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts a cluster and a prometheus service where systemd runs; tests
# use their own private instances, so those are not needed.
echo "services: postgresql $(ls /usr/lib/postgresql/ | tr '\n' ' ')prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') $(chromium --version 2>/dev/null)"
