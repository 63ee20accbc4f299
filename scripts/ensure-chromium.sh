#!/usr/bin/env bash
# The browser the page's test drives (tests/test_page.py): Debian's chromium, installed with
# apt-get where it is missing. Playwright (a dev dependency) drives it; it downloads no browser.
set -euo pipefail
browser=${AGG_TEST_CHROMIUM:-/usr/bin/chromium}
if [ -x "$browser" ]; then
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
if command -v apt-get >/dev/null; then
  echo "browser: installing chromium (apt-get) for the page's test"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
else
  echo "browser: no $browser and no apt-get: install Chromium, or set AGG_TEST_CHROMIUM" >&2
  exit 1
fi
