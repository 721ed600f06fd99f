"""End-to-end check of the main job: the shipped real recording, replayed to the real daemon
over MQTT and over HTTP, gives the same class for every window as `babymamba eval` gives
offline for the same recording.

The offline side turns data/samples/hapt_exp04_user02.csv back into a one-experiment HAPT
folder, cuts it with `babymamba prepare --align stream` (the windows the daemon cuts from a
stream that starts at the recording's first row) and classifies it with `babymamba eval`.
The online side starts a private mosquitto on a free loopback port and babymambad with
every-window events, and runs `babymamba replay`. Both run the library's preprocessing and
engine, so every labelled window must get the identical class.

The model is models/ucihar-cx.safetensors when it is present. Otherwise the test serves the
published-size CX golden model relabelled for hapt-causal-v1 with the six UCI-HAR classes:
its weights are random, but the comparison is exactly as strict.

Environment: BABYMAMBA (the CLI), BABYMAMBAD, MOSQUITTO, BM_SOURCE_ROOT. Run with /usr/bin/python3.
"""

import csv
import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.request

SOURCE_ROOT = os.environ.get("BM_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("BABYMAMBA", "babymamba")
DAEMON = os.environ.get("BABYMAMBAD", "babymambad")
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
RECORDING = os.path.join(SOURCE_ROOT, "data", "samples", "hapt_exp04_user02.csv")
SHIPPED_MODEL = os.path.join(SOURCE_ROOT, "models", "ucihar-cx.safetensors")
GOLDEN_MODEL = os.path.join(SOURCE_ROOT, "tests", "golden", "cx_published.safetensors")
CLASSES = ["walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying"]
HAPT_CHANNELS = [
    ("body_acc_x", "g"), ("body_acc_y", "g"), ("body_acc_z", "g"),
    ("body_gyro_x", "rad/s"), ("body_gyro_y", "rad/s"), ("body_gyro_z", "rad/s"),
    ("total_acc_x", "g"), ("total_acc_y", "g"), ("total_acc_z", "g"),
]
RATE_HZ = 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_header(path):
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    return data, size, json.loads(data[8:8 + size])


def relabel_golden_model(path):
    """Write the published-size golden CX model as a hapt-causal-v1 model with UCI-HAR classes."""
    data, size, header = read_header(GOLDEN_MODEL)
    metadata = json.loads(header["__metadata__"]["babymamba"])
    metadata["classes"] = CLASSES
    metadata["input"]["preprocessing"] = "hapt-causal-v1"
    metadata["input"]["channels"] = [{"name": n, "unit": u} for n, u in HAPT_CHANNELS]
    header["__metadata__"]["babymamba"] = json.dumps(metadata)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-(8 + len(encoded)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + data[8 + size:])


def write_hapt_folder(folder):
    """Write the recording as HAPT experiment 4 of user 2: RawData/acc, gyro and labels.txt."""
    raw = os.path.join(folder, "RawData")
    os.makedirs(raw)
    labels = []
    with open(RECORDING) as f, open(os.path.join(raw, "acc_exp04_user02.txt"), "w") as acc, \
            open(os.path.join(raw, "gyro_exp04_user02.txt"), "w") as gyro:
        for row in csv.DictReader(f):
            acc.write(f"{row['acc_x']} {row['acc_y']} {row['acc_z']}\n")
            gyro.write(f"{row['gyro_x']} {row['gyro_y']} {row['gyro_z']}\n")
            labels.append(int(row["label"]))

    # Runs of one non-zero label become segments with 1-based inclusive rows.
    segments = []
    start = None
    for i, label in enumerate(labels + [0]):
        if start is not None and label != labels[start]:
            segments.append((labels[start], start + 1, i))
            start = None
        if start is None and i < len(labels) and label != 0:
            start = i
    with open(os.path.join(raw, "labels.txt"), "w") as f:
        for activity, first, last in segments:
            f.write(f"4 2 {activity} {first} {last}\n")
    return len(labels)


def read_starts(data_file):
    """Return the 'starts' tensor (I64) of a data file as a list."""
    data, size, header = read_header(data_file)
    spec = header["starts"]
    begin, end = spec["data_offsets"]
    body = data[8 + size:]
    return list(struct.unpack(f"<{(end - begin) // 8}q", body[begin:end]))


class ReplayMatchesEval(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="bm-e2e-")
        if os.path.exists(SHIPPED_MODEL):
            cls.model = SHIPPED_MODEL
        else:
            cls.model = os.path.join(cls.work, "relabelled.safetensors")
            relabel_golden_model(cls.model)

        # Offline: prepare with the daemon's window grid, then eval with per-window predictions.
        hapt = os.path.join(cls.work, "hapt")
        cls.rows = write_hapt_folder(hapt)
        data_file = os.path.join(cls.work, "recording.safetensors")
        subprocess.run([CLI, "prepare", "--hapt", hapt, "--out", data_file, "--align", "stream"],
                       check=True, capture_output=True)
        predictions = os.path.join(cls.work, "predictions.csv")
        subprocess.run([CLI, "eval", cls.model, data_file, "--predictions", predictions],
                       check=True, capture_output=True)
        starts = read_starts(data_file)
        cls.offline = {}
        with open(predictions) as f:
            for line in f:
                fields = line.strip().split(",")
                if not fields[0].isdigit():
                    continue
                index, predicted = int(fields[0]), int(fields[3])
                cls.offline[starts[index]] = CLASSES[predicted]

        cls.mqtt_port = free_port()
        cls.http_port = free_port()
        conf = os.path.join(cls.work, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {cls.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        cls.broker = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        cls.daemon_log = open(os.path.join(cls.work, "babymambad.log"), "w")
        cls.daemon = subprocess.Popen(
            [DAEMON, "--model", cls.model, "--mqtt", f"tcp://127.0.0.1:{cls.mqtt_port}",
             "--http", f"127.0.0.1:{cls.http_port}", "--set", "events.every_window=true"],
            stderr=cls.daemon_log)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{cls.http_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("babymambad did not become ready")
            time.sleep(0.1)

    @classmethod
    def tearDownClass(cls):
        for process in (cls.daemon, cls.broker):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        cls.daemon_log.close()

    def replay(self, prefix, *transport):
        """Run babymamba replay and return {start row: class} of the events it printed."""
        result = subprocess.run(
            [CLI, "replay", RECORDING, *transport, "--speed", "0", "--device-prefix", prefix,
             "--timeout", "20"],
            check=True, capture_output=True, text=True, timeout=300)
        online = {}
        pattern = re.compile(rf"^{prefix}1 ([0-9.]+)-([0-9.]+) (\S+) ")
        for line in result.stdout.splitlines():
            match = pattern.match(line)
            if match:
                online[round(float(match.group(1)) * RATE_HZ)] = match.group(3)
        return online

    def check_same_classes(self, online):
        # Every window of the stream grid is classified once, labelled or not.
        expected_windows = (self.rows - 128) // 64 + 1
        self.assertEqual(len(online), expected_windows)
        self.assertGreater(len(self.offline), 100)
        mismatches = [(start, cls, online.get(start)) for start, cls in self.offline.items()
                      if online.get(start) != cls]
        self.assertEqual(mismatches, [], f"{len(mismatches)} of {len(self.offline)} windows differ")

    def test_mqtt_replay_matches_eval(self):
        self.check_same_classes(self.replay("mqtt-", "--mqtt", f"tcp://127.0.0.1:{self.mqtt_port}"))

    def test_http_replay_matches_eval(self):
        self.check_same_classes(self.replay(
            "http-", "--http", f"http://127.0.0.1:{self.http_port}",
            "--mqtt", f"tcp://127.0.0.1:{self.mqtt_port}"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
