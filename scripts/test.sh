#!/usr/bin/env bash
# Set up everything (venv, packages, a private Docker engine) and run every check:
# ruff, mypy on the core and the plugins, then the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# The browser, the Prometheus server and Redis the dashboard, metrics and scale-out tests run
# for real (Debian's chromium, chromium-driver, prometheus with promtool, redis-server).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  [ -x /usr/bin/chromium ] || need="$need chromium"
  [ -x /usr/bin/chromedriver ] || need="$need chromium-driver"
  [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || need="$need prometheus"
  # the scale-out tests start private redis-server processes on loopback ports
  [ -x /usr/bin/redis-server ] || need="$need redis-server"
  if [ -n "$need" ]; then
    echo "[test] apt-get install$need" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
fi

# The rolling-restart test (tests/scaleout/test_zero_downtime.py) stops a replica that shares
# its port; Linux hands the connections queued on its socket to the other replica only with
# net.ipv4.tcp_migrate_req = 1 (Linux >= 5.14; docs/scale-out.md). The test fails, saying so,
# when it is not set.
migrate=/proc/sys/net/ipv4/tcp_migrate_req
if [ "$(id -u)" = 0 ] && [ "$(cat "$migrate" 2>/dev/null)" != 1 ]; then
  if ! { [ -e "$migrate" ] && echo 1 >"$migrate"; } 2>/dev/null; then
    echo "[test] cannot set net.ipv4.tcp_migrate_req=1 (kernel $(uname -r); Linux >= 5.14 and a writable /proc/sys needed): the rolling-restart test will fail" >&2
  fi
fi

# A real Docker engine for the Docker plugin's tests (see .ci/docker-engine.sh). In CI a
# missing engine fails the run; elsewhere the docker tests say why they cannot run.
export DOCKER_CI_ROOT=${DOCKER_CI_ROOT:-/tmp/ci-docker}
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  bash .ci/docker-engine.sh install
  started_engine=""
  if ! curl -sf --max-time 2 --unix-socket "$DOCKER_CI_ROOT/docker.sock" http://localhost/_ping >/dev/null 2>&1; then
    bash .ci/docker-engine.sh start
    started_engine=1
  fi
  [ -z "$started_engine" ] || trap 'bash .ci/docker-engine.sh stop' EXIT
  bash .ci/docker-engine.sh image
  export DOCKER_HOST="unix://$DOCKER_CI_ROOT/docker.sock"
fi

# The official ollama JavaScript client for tests/gateway/test_js_client.py, from npm into a
# project-local folder, exactly the versions of the committed lock file.
if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

echo "[test] ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] mypy" >&2
.venv/bin/mypy
# every top-level package of every plugin, contrib and example folder (its tests aside)
for init in plugins/*/*/__init__.py contrib/*/*/__init__.py examples/*/*/__init__.py; do
  package=$(dirname "$init")
  [ "$(basename "$package")" = tests ] && continue
  .venv/bin/mypy --strict --no-error-summary "$package"
done
echo "[test] import contracts" >&2
.venv/bin/lint-imports --no-cache
echo "[test] pytest" >&2
.venv/bin/pytest -q -p no:cacheprovider "$@"
