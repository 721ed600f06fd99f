#!/usr/bin/env bash
# Installs every Debian 12 package that babymamba needs to build, run, train and test. Run as
# root (or with sudo). CI and the README's first command both use this list.
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config
  libuv1-dev libpaho-mqtt-dev libmicrohttpd-dev libjansson-dev libsystemd-dev libcurl4-openssl-dev
  check mosquitto mosquitto-clients curl
  python3 python3-torch python3-numpy python3-matplotlib python3-paho-mqtt
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root, for example: sudo scripts/install-deps.sh" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"
