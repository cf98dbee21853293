#!/usr/bin/env bash
# Install what the test suite needs and run all of it. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the suite's real servers and browser need (installed only when missing).
need=()
for pkg in $(grep -v '^#' tests/apt-packages.txt); do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

python3 -m pip install -q --disable-pip-version-check -c requirements.lock ".[test]"
python3 -m ruff check mailaudit tests bench
python3 -m pytest "$@"
