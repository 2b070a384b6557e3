#!/usr/bin/env bash
# Debian packages the Python wheels need at run time (CI and users start from a bare machine).
set -euo pipefail
PKGS=(libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libgles2 libusb-1.0-0 libgomp1 cmake g++ make)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
