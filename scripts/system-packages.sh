#!/usr/bin/env bash
# The Debian packages raycell's service tests run for real: Prometheus (scrapes a Ray
# cluster for the dashboard test) and Chromium (renders the MLflow UI). As root (CI, a
# fresh machine) they are installed with apt-get; otherwise this says what is missing.
set -euo pipefail
declare -A needs=([prometheus]=prometheus [chromium]=chromium)
missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" > /dev/null || missing+=("${needs[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "the service tests need Debian packages: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
