#!/bin/sh
# Tests of `babymamba replay` against a real mosquitto on a free loopback port. They check the
# payloads it publishes (sample counts, t0_ns progression, seq, device ids) and its pacing. They
# check the printing and scoring of activity events from a stand-in daemon, HTTP ingest against
# a stand-in server, and the errors for bad recordings, bad options and unreachable brokers. Exits 77 (skipped) without
# mosquitto.
set -u

cli=${BM_CLI:?BM_CLI must name the babymamba binary}
here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
work=$(mktemp -d)
broker_pid=
server_pid=
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [ ! -x "$mosquitto" ] || ! command -v mosquitto_sub > /dev/null; then
  echo "skipped: mosquitto and mosquitto_sub are required"
  exit 77
fi

free_port() {
  $python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start the broker, trying another port when one was taken between the probe and the start.
for _ in 1 2 3 4 5; do
  port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
  "$mosquitto" -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 50); do
    grep -q "listen socket on port $port" "$work/mosquitto.log" && break
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "listen socket on port $port" "$work/mosquitto.log" && break
  kill "$broker_pid" 2>/dev/null
  broker_pid=
done
if [ -z "$broker_pid" ]; then
  echo "FAIL could not start mosquitto: $(cat "$work/mosquitto.log")"
  exit 1
fi
uri="tcp://127.0.0.1:$port"

# A recording of 448 samples at 50 Hz: walking (1) for 160 samples, sitting (4) for 160 and
# standing (5) for 128. acc_x contains the label so that the stand-in daemon can predict from it.
awk 'BEGIN {
  print "t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,label"
  for (i = 0; i < 448; i++) {
    label = i < 160 ? 1 : (i < 320 ? 4 : 5)
    printf "%.2f,%d,0.25,%.3f,0.5,-0.125,%.4f,%d\n", i / 50, label, 0.9 + i / 1000, i / 10000, label
  }
}' > "$work/rec.csv"

# Runs mosquitto_sub on the imu topics until count messages arrived, in the background.
subscribe_imu() {
  rm -f "$work/sub.ready"
  mosquitto_sub -h 127.0.0.1 -p "$port" -t 'babymamba/+/imu' -q 1 -v -C "$1" -W 30 > "$work/sub.out" 2> "$work/sub.err" &
  sub_pid=$!
  sleep 0.5
}

# replay over MQTT: 448 samples in batches of 25 are 18 messages per device, 36 for two.
subscribe_imu 36
"$cli" replay "$work/rec.csv" --mqtt "$uri" --speed 0 --devices 2 --device-prefix gw- --timeout 0 > "$work/out" 2> "$work/err"
status=$?
wait "$sub_pid"
if [ "$status" -eq 0 ]; then pass "replay mqtt exits 0"; else fail "replay mqtt exit $status: $(cat "$work/err")"; fi
if grep -q "sent 448 samples in 18 batches to each of 2 devices over MQTT" "$work/out"; then
  pass "replay mqtt summary"; else fail "replay mqtt summary: $(cat "$work/out")"; fi
if $python - "$work/sub.out" "$work/rec.csv" << 'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[2])))
batches = {}
for line in open(sys.argv[1]):
    topic, payload = line.split(" ", 1)
    batches.setdefault(topic, []).append(json.loads(payload))
assert sorted(batches) == ["babymamba/gw-1/imu", "babymamba/gw-2/imu"], sorted(batches)
for topic, messages in batches.items():
    assert len(messages) == 18, (topic, len(messages))
    assert [m["seq"] for m in messages] == list(range(18)), topic
    assert sum(len(m["acc"]) for m in messages) == 448, topic
    assert sum(len(m["gyro"]) for m in messages) == 448, topic
    assert [len(m["acc"]) for m in messages] == [25] * 17 + [23], topic
    t0 = [m["t0_ns"] for m in messages]
    assert all(isinstance(t, int) for t in t0), topic
    assert [t - t0[0] for t in t0] == [k * 500000000 for k in range(18)], topic
    for m in messages:
        assert m["rate_hz"] == 50, m["rate_hz"]
        assert m["units"] == {"acc": "g", "gyro": "rad/s"}, m["units"]
        assert "t" not in m
    assert "t_ns" not in m
    assert "t0" not in m
    samples = [s for m in messages for s in m["acc"]]
    gyro = [s for m in messages for s in m["gyro"]]
    for row, acc, g in zip(rows, samples, gyro):
        assert acc == [float(row["acc_x"]), float(row["acc_y"]), float(row["acc_z"])], (row, acc)
        assert g == [float(row["gyro_x"]), float(row["gyro_y"]), float(row["gyro_z"])], (row, g)
assert batches["babymamba/gw-1/imu"][0]["t0_ns"] == batches["babymamba/gw-2/imu"][0]["t0_ns"]
EOF
then pass "replay mqtt payloads"; else fail "replay mqtt payloads"; fi

# --speed 20 paces the 8.94 s recording to about 0.45 s; the last batch waits for its samples.
start=$($python -c 'import time; print(time.monotonic())')
"$cli" replay "$work/rec.csv" --mqtt "$uri" --speed 20 --batch 50 --timeout 0 > "$work/out" 2> "$work/err"
elapsed=$($python -c "import time; print(time.monotonic() - $start)")
if $python -c "import sys; sys.exit(0 if 0.4 <= $elapsed < 3 else 1)"; then
  pass "replay speed paces sending ($elapsed s)"; else fail "replay speed 20 took $elapsed s, expected about 0.45"; fi
if grep -q "in 9 batches" "$work/out"; then pass "replay batch option"; else fail "replay batch option: $(cat "$work/out")"; fi

# Events and scoring with the stand-in daemon. It leaves out window 2 of replay-2 and repeats
# each device's last event; a retained event from an earlier run is already on the broker.
if $python -c "import paho.mqtt.client" 2>/dev/null; then
  mosquitto_pub -h 127.0.0.1 -p "$port" -r -t babymamba/replay-1/activity \
    -m '{"device":"replay-1","activity":"laying","confidence":1,"window_start_ns":1000,"window_end_ns":2000}'
  $python "$here/test_replay_fake_daemon.py" "$port" "$work/fake.ready" 448 2 --skip-device replay-2 --skip-window 2 > "$work/fake.log" 2>&1 &
  fake_pid=$!
  for _ in $(seq 100); do [ -f "$work/fake.ready" ] && break; sleep 0.05; done
  "$cli" replay "$work/rec.csv" --mqtt "$uri" --speed 0 --devices 2 --labels --timeout 5 > "$work/out" 2> "$work/err"
  status=$?
  wait "$fake_pid"
  if [ "$status" -eq 0 ]; then pass "replay labels exits 0"; else fail "replay labels exit $status: $(cat "$work/err")"; fi
  if grep -q "^replay-1 0.000-2.540 walking 0.9000 (label 1)$" "$work/out"; then
    pass "replay prints scored event"; else fail "replay prints scored event: $(cat "$work/out")"; fi
  if grep -q "^replay-1 1.280-3.820 sitting 0.9000 (unscored)$" "$work/out"; then
    pass "replay prints unscored event"; else fail "replay prints unscored event: $(cat "$work/out")"; fi
  if [ "$(grep -c "(repeated window)" "$work/out")" -eq 2 ]; then
    pass "replay marks repeated windows"; else fail "replay marks repeated windows: $(cat "$work/out")"; fi
  if ! grep -q laying "$work/out"; then pass "replay ignores retained event"; else fail "replay printed the retained event"; fi
  if tail -3 "$work/out" | head -1 | grep -q "^windows: 12 expected, 6 scored, 5 unscored, 1 missing, 0 off the hop grid$"; then
    pass "replay window counts"; else fail "replay window counts: $(tail -3 "$work/out")"; fi
  if tail -2 "$work/out" | head -1 | grep -q "^accuracy: 0.6667 (4 of 6 scored windows)$"; then
    pass "replay accuracy"; else fail "replay accuracy: $(tail -3 "$work/out")"; fi
  if tail -1 "$work/out" | grep -q "^macro-F1: 0.5556 over 3 classes$"; then
    pass "replay macro-F1"; else fail "replay macro-F1: $(tail -3 "$work/out")"; fi
else
  echo "skip events and scoring: python3-paho-mqtt is not installed"
fi

# --labels on a recording without labels is an error before anything is sent.
cut -d, -f1-7 "$work/rec.csv" > "$work/unlabelled.csv"
if ! "$cli" replay "$work/unlabelled.csv" --mqtt "$uri" --labels 2> "$work/err" > /dev/null && grep -q "has no labels" "$work/err"; then
  pass "replay labels needs labels"; else fail "replay labels needs labels: $(cat "$work/err")"; fi

# A HAPT pair with labels.txt replays at 50 Hz; its segments come from the rows of the
# experiment and user in the file name.
awk -F, 'NR > 1 { print $2, $3, $4 }' "$work/rec.csv" > "$work/acc_exp03_user02.txt"
awk -F, 'NR > 1 { print $5, $6, $7 }' "$work/rec.csv" > "$work/gyro_exp03_user02.txt"
printf '1 1 5 1 100\n3 2 1 1 160\n3 2 4 161 320\n3 2 5 321 448\n' > "$work/labels.txt"
subscribe_imu 18
"$cli" replay --hapt-acc "$work/acc_exp03_user02.txt" --hapt-gyro "$work/gyro_exp03_user02.txt" \
  --hapt-labels "$work/labels.txt" --mqtt "$uri" --speed 0 --timeout 0 > "$work/out" 2> "$work/err"
status=$?
wait "$sub_pid"
if [ "$status" -eq 0 ] && [ "$(wc -l < "$work/sub.out")" -eq 18 ]; then
  pass "replay hapt pair"; else fail "replay hapt pair: exit $status, $(wc -l < "$work/sub.out") messages, $(cat "$work/err")"; fi

# HTTP ingest against the stand-in server: every batch is one POST with a JSON body, and a 400
# stops the replay with the status and the server's message.
$python "$here/test_replay_http_server.py" "$work/http.port" "$work/http.log" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/http.port" ] && break; sleep 0.05; done
http_url="http://127.0.0.1:$(cat "$work/http.port")/"
if "$cli" replay "$work/rec.csv" --http "$http_url" --speed 0 > "$work/out" 2> "$work/err"; then
  pass "replay http exits 0"; else fail "replay http: $(cat "$work/err")"; fi
if $python - "$work/http.log" << 'EOF'
import json, sys
posts = [json.loads(line) for line in open(sys.argv[1])]
assert len(posts) == 18, len(posts)
assert {p["path"] for p in posts} == {"/api/v1/devices/replay-1/samples"}, {p["path"] for p in posts}
assert {p["type"] for p in posts} == {"application/json"}
bodies = [json.loads(p["body"]) for p in posts]
assert sum(len(b["acc"]) for b in bodies) == 448
assert [b["t0_ns"] - bodies[0]["t0_ns"] for b in bodies] == [k * 500000000 for k in range(18)]
EOF
then pass "replay http posts"; else fail "replay http posts"; fi
if ! "$cli" replay "$work/rec.csv" --http "$http_url" --devices 2 --speed 0 > /dev/null 2> "$work/err" &&
  grep -q "replay-2/samples failed with HTTP status 400: .*invalid value for this test" "$work/err"; then
  pass "replay http reports 400"; else fail "replay http reports 400: $(cat "$work/err")"; fi
kill "$server_pid" 2>/dev/null
server_pid=

# Unreachable destinations: a closed port refuses at once.
closed=$(free_port)
if ! "$cli" replay "$work/rec.csv" --mqtt "tcp://127.0.0.1:$closed" 2> "$work/err" && grep -q "cannot connect to MQTT broker" "$work/err"; then
  pass "replay reports refused broker"; else fail "replay reports refused broker: $(cat "$work/err")"; fi
if ! "$cli" replay "$work/rec.csv" --http "http://127.0.0.1:$closed" 2> "$work/err" && grep -q "Couldn't connect to server" "$work/err"; then
  pass "replay reports refused http"; else fail "replay reports refused http: $(cat "$work/err")"; fi

# Recording errors name the file and line.
check_error() {
  name=$1
  expected=$2
  shift 2
  "$cli" replay "$@" --mqtt "$uri" > /dev/null 2> "$work/err"
  status=$?
  if [ "$status" -ne 0 ] && grep -q -- "$expected" "$work/err"; then
    pass "replay rejects $name"; else fail "replay rejects $name: exit $status, $(cat "$work/err")"; fi
}
{ head -5 "$work/rec.csv"; echo "0.10,1,x,1,0,0,0,1"; } > "$work/bad_number.csv"
check_error "non-numeric value" "bad_number.csv:6:" "$work/bad_number.csv"
{ head -5 "$work/rec.csv"; echo "# a comment"; echo; echo "0.05,1,0,1,0,0,0,1"; } > "$work/bad_time.csv"
check_error "decreasing time" "bad_time.csv:8: time 't' does not increase" "$work/bad_time.csv"
{ head -5 "$work/rec.csv"; echo "0.10,1,0,1,0,0,0,13"; } > "$work/bad_label.csv"
check_error "label out of range" "bad_label.csv:6: invalid label" "$work/bad_label.csv"
{ head -3 "$work/rec.csv"; echo "0.04,1,0,1,0,0,0"; } > "$work/short_row.csv"
check_error "short row" "short_row.csv:4:" "$work/short_row.csv"
{ echo "t,acc_x,acc_y,acc_z,gyro_x,gyro_y"; echo "0,1,2,3,4,5"; echo "0.02,1,2,3,4,5"; } > "$work/no_gyro_z.csv"
check_error "missing column" "missing column 'gyro_z'" "$work/no_gyro_z.csv"
awk -F, 'NR > 1 { print $2, $3, $4 }' "$work/rec.csv" > "$work/no_header.csv"
check_error "headerless csv" "missing header line" "$work/no_header.csv"
check_error "missing file" "cannot open" "$work/none.csv"
head -100 "$work/gyro_exp03_user02.txt" > "$work/gyro_short.txt"
check_error "hapt row mismatch" "has 448 rows but" --hapt-acc "$work/acc_exp03_user02.txt" --hapt-gyro "$work/gyro_short.txt"
printf '3 2 1 1 160\n3 2 4 150 320\n' > "$work/overlap.txt"
check_error "overlapping segments" "overlap.txt:2: segment overlaps" --hapt-acc "$work/acc_exp03_user02.txt" --hapt-gyro "$work/gyro_exp03_user02.txt" --hapt-labels "$work/overlap.txt"
printf '3 2 1 1 460\n' > "$work/outside.txt"
check_error "segment outside recording" "outside.txt:1: segment 1-460 lies outside" --hapt-acc "$work/acc_exp03_user02.txt" --hapt-gyro "$work/gyro_exp03_user02.txt" --hapt-labels "$work/outside.txt"

# Usage errors exit 2.
usage_error() {
  name=$1
  expected=$2
  shift 2
  "$cli" replay "$@" > /dev/null 2> "$work/err"
  status=$?
  if [ "$status" -eq 2 ] && grep -q -- "$expected" "$work/err"; then
    pass "replay usage $name"; else fail "replay usage $name: exit $status, $(cat "$work/err")"; fi
}
usage_error "no destination" "missing destination" "$work/rec.csv"
usage_error "labels without mqtt" "--labels needs --mqtt" "$work/rec.csv" --http "$http_url" --labels
usage_error "bad prefix" "invalid value 'a/b' for --device-prefix" "$work/rec.csv" --mqtt "$uri" --device-prefix a/b
usage_error "bad speed" "invalid value '-1' for --speed" "$work/rec.csv" --mqtt "$uri" --speed -1
usage_error "two recordings" "either FILE or --hapt-acc" "$work/rec.csv" --hapt-acc x --hapt-gyro y --mqtt "$uri"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
