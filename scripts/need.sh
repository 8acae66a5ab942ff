#!/usr/bin/env bash
# Make sure commands exist, installing their Debian packages if they are missing;
# print the path of each command, one per line, in the order given.
#
#   scripts/need.sh chromium=chromium chromedriver=chromium-driver   # the console's browser test
#   scripts/need.sh prometheus=prometheus promtool=prometheus        # the monitoring tests
set -euo pipefail
missing=()
for pair in "$@"; do
  command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "need.sh: missing ${missing[*]} and there is no apt-get: install them" >&2; exit 1; }
  echo "need.sh: installing ${missing[*]} (apt)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null \
    || { echo "need.sh: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi
for pair in "$@"; do command -v "${pair%%=*}"; done
