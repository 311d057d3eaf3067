#!/usr/bin/env bash
# Installs what hybrid-search needs on a fresh Debian/Ubuntu machine, when missing:
#   system: redis-server, a JDK 17 (javac), Maven, docker-compose (only to validate docker-compose.yml);
#           with $TEST_TOOLS=1 also espeak-ng and sox (voice tests), chromium and chromium-driver (page tests)
#   python: this package, editable, with the extras in $EXTRAS (default: dev,workers,api,voice,elasticsearch)
# Sourced by .ci/run and scripts/demo.sh; safe to run again (installs nothing that is present).
set -euo pipefail
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev,workers,api,voice,elasticsearch}
export PIP_ROOT_USER_ACTION=ignore
export PIP_DISABLE_PIP_VERSION_CHECK=1

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v curl >/dev/null || missing+=(curl)
if [ "${TEST_TOOLS:-0}" = 1 ]; then
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  command -v sox >/dev/null || missing+=(sox)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
fi
if ((${#missing[@]})); then
  echo "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "java: $(java -version 2>&1 | head -1)"
echo "maven: $(mvn -v 2>/dev/null | head -1)"
echo "redis: $(redis-server --version)"

echo "installing hybrid-search[$EXTRAS] (first time: torch and the model packages, a few GB)"
$PY -m pip install -q -e ".[$EXTRAS]"
$PY -m pip check >/dev/null || { $PY -m pip check; exit 1; }
