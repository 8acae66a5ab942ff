#!/usr/bin/env bash
# Install Debian's Chromium and its ChromeDriver if they are missing (the
# console's browser test drives them headless); prints the two paths.
set -euo pipefail
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  command -v apt-get >/dev/null || { echo "browser.sh: chromium/chromedriver missing and no apt-get: install Chromium and ChromeDriver" >&2; exit 1; }
  echo "browser.sh: installing chromium and chromium-driver (apt)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null \
    || { echo "browser.sh: apt-get install chromium chromium-driver failed" >&2; exit 1; }
fi
command -v chromium
command -v chromedriver
