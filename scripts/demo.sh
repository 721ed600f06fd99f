#!/usr/bin/env bash
# The main job, end to end on one machine. It builds the project if needed, starts a private
# mosquitto on a free loopback port and starts babymambad with the shipped model. Then it
# replays the shipped real recording (HAPT experiment 4 of user 2) as a wearable would, prints
# the activity events as they arrive, and ends with the live stream's accuracy and macro-F1
# against the recording's labels.
#
# usage: scripts/demo.sh [--speed X] [--model FILE] [--devices N] [--http]
#   --speed X    replay speed, times real time (default 8; 1 is real time, 0 as fast as acked)
#   --model FILE model to serve (default models/ucihar-cx.safetensors)
#   --devices N  simulated wearables, each sending the whole recording (default 1)
#   --http       send samples over HTTP instead of MQTT (events still arrive over MQTT)
set -euo pipefail
cd "$(dirname "$0")/.."

speed=8
model=models/ucihar-cx.safetensors
devices=1
transport=mqtt
while [ $# -gt 0 ]; do
  case "$1" in
    --speed) speed=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --http) transport=http; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
recording=data/samples/hapt_exp04_user02.csv

# The build to run; BABYMAMBA_BUILD_DIR points elsewhere, as the tests do for each of their trees.
build=${BABYMAMBA_BUILD_DIR:-build}

for tool in mosquitto meson ninja; do
  command -v "$tool" >/dev/null || { echo "demo.sh: '$tool' is not installed; see README.md, Install" >&2; exit 1; }
done
[ -f "$model" ] || { echo "demo.sh: model '$model' not found" >&2; exit 1; }
if [ ! -x "$build/src/daemon/babymambad" ] || [ ! -x "$build/src/cli/babymamba" ]; then
  [ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
  ninja -C "$build" >/dev/null
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Free loopback ports, chosen by the kernel.
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mqtt_port=$(free_port)
http_port=$(free_port)

printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mqtt_port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)

"$build/src/daemon/babymambad" --model "$model" --mqtt "tcp://127.0.0.1:$mqtt_port" \
  --http "127.0.0.1:$http_port" --set events.every_window=true --log-level warn \
  2> "$work/babymambad.log" &
pids+=($!)

# Wait until the daemon is ready: model loaded and broker connected.
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null || {
  echo "demo.sh: babymambad did not become ready; its log:" >&2; cat "$work/babymambad.log" >&2; exit 1; }

echo "babymambad serving $(curl -fsS "http://127.0.0.1:$http_port/api/v1/models" | /usr/bin/python3 -c 'import json, sys; m = json.load(sys.stdin)["models"][0]; print(m["name"], m["version"], "sha256", m["sha256"][:12])')" \
  "on mqtt 127.0.0.1:$mqtt_port and http 127.0.0.1:$http_port"
echo "replaying $recording at ${speed}x as $devices device(s) over $transport"

send=(--mqtt "tcp://127.0.0.1:$mqtt_port")
if [ "$transport" = http ]; then
  send=(--http "http://127.0.0.1:$http_port" --mqtt "tcp://127.0.0.1:$mqtt_port")
fi
"$build/src/cli/babymamba" replay "$recording" "${send[@]}" --speed "$speed" \
  --devices "$devices" --labels
