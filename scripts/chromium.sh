#!/usr/bin/env bash
# Makes sure headless Chromium is available for the UI tests (tests/ui): installs Debian's `chromium`
# package with apt-get when `chromium` is not on PATH. Idempotent; prints the version.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "error: chromium is not installed and this user can neither install it (not root) nor use sudo." >&2
    echo "       Install it as root: apt-get update && apt-get install -y chromium" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: chromium is not installed and apt-get is not available; install Chromium and put 'chromium' on PATH." >&2
    exit 1
  fi
  echo "==> installing chromium with apt-get (headless browser for the UI tests)"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
chromium --version
