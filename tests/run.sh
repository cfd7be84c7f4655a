#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need — Debian peers (SIPp, baresip,
# espeak-ng, sox) and the Python package with its test extras — then runs pytest.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k transaction`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in sipp:sip-tester baresip:baresip espeak-ng:espeak-ng sox:sox; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
dpkg -s libsox-fmt-all >/dev/null 2>&1 || need+=(libsox-fmt-all)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing Debian packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
exec python3 -m pytest "$@"
