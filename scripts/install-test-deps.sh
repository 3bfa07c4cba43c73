#!/usr/bin/env bash
# System packages the tests need beyond requirements.txt: Debian's Chromium and its WebDriver for
# the browser test. Installed once; a machine that has them skips this.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
