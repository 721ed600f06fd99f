"""Black-box tests of babymambad against a real mosquitto broker.

Each test class starts its own mosquitto on a free loopback port and the real daemon built by
meson. The tests then talk to both as senders and operators do, with MQTT publishes and
subscriptions, HTTP requests to the REST API and /metrics. The oracle for classification is a golden model from
tests/golden/: its .io.safetensors file contains input windows and the logits PyTorch computed for
them, and streaming a window sample by sample through the daemon must give the same class and
probabilities.

Environment: BABYMAMBAD (the daemon binary), MOSQUITTO, BM_SOURCE_ROOT. Run with /usr/bin/python3.
"""

import hashlib
import json
import math
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import numpy as np
import paho.mqtt.client as mqtt

SOURCE_ROOT = os.environ.get("BM_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
DAEMON = os.environ.get("BABYMAMBAD", "babymambad")
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
GOLDEN = os.path.join(SOURCE_ROOT, "tests", "golden")
MODEL = os.path.join(GOLDEN, "cx_published.safetensors")
COMPATIBLE_MODEL = os.path.join(GOLDEN, "ci_published.safetensors")
CLI = os.path.join(os.environ.get("BM_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build")), "src", "cli", "babymamba")
RECORDING = os.path.join(SOURCE_ROOT, "data", "samples", "hapt_exp04_user02.csv")
T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 20_000_000  # 50 Hz, the golden models' rate


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_safetensors(path):
    """Return {name: numpy array} of a safetensors file."""
    dtypes = {"F32": np.float32, "F64": np.float64}
    with open(path, "rb") as f:
        data = f.read()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    body = data[8 + header_size :]
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtypes[spec["dtype"]]).reshape(spec["shape"])
    return tensors


def softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()


def http(method, url, body=None, content_type="application/json"):
    """Return (status, parsed JSON or text) of one request."""
    headers = {"Content-Type": content_type} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text, kind = response.status, response.read().decode(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, text, kind = error.code, error.read().decode(), error.headers.get("Content-Type", "")
    return status, json.loads(text) if kind.startswith("application/json") else text


def http_quick(method, url):
    """Return the status of one request, which times out after 1 s."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def parse_metrics(text):
    """Return ({sample line name with labels: value}, [(kind, family)] of HELP/TYPE lines)."""
    values = {}
    declarations = []
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            declarations.append((line[2:6], line.split()[2]))
        elif line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values, declarations


class Broker:
    """A mosquitto process on a free loopback port with anonymous access."""

    def __init__(self, workdir, port=None):
        self.port = port or free_port()
        config = os.path.join(workdir, "mosquitto.conf")
        with open(config, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = open(os.path.join(workdir, "mosquitto.log"), "w")
        self.process = subprocess.Popen([MOSQUITTO, "-c", config], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._listening, what=f"mosquitto on port {self.port}")

    def _listening(self):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def uri(self):
        return f"tcp://127.0.0.1:{self.port}"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


class Daemon:
    """babymambad with a temporary config file; its stderr goes to a log file."""

    def __init__(self, workdir, broker, settings=None, extra_args=()):
        self.workdir = workdir
        self.http_port = free_port()
        self.config_path = os.path.join(workdir, "babymambad.json")
        self.settings = {
            "model": MODEL,
            "mqtt": {"uri": broker.uri if broker else "none", "client_id": f"babymambad-{self.http_port}",
                     "reconnect_min_s": 1, "reconnect_max_s": 2},
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
            "stream": {"gap_limit_s": 1.0},
            "events": {"heartbeat_s": 0},
            "log": {"level": "info"},
        }
        for key, value in (settings or {}).items():
            self.settings.setdefault(key, {})
            if isinstance(value, dict):
                self.settings[key].update(value)
            else:
                self.settings[key] = value
        self.write_config()
        self.log_path = os.path.join(workdir, f"babymambad-{self.http_port}.log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([DAEMON, "--config", self.config_path, *extra_args],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self.ready, timeout=15, what="babymambad /readyz")

    def write_config(self):
        with open(self.config_path, "w") as f:
            json.dump(self.settings, f)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"babymambad exited with {self.process.returncode}:\n{self.log_text()}")
        try:
            return http("GET", self.url + "/readyz")[0] == 200
        except OSError:
            return False

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def metrics(self):
        status, text = http("GET", self.url + "/metrics")
        assert status == 200, status
        return parse_metrics(text)

    def stop(self, sig=signal.SIGTERM):
        """Stop the daemon; a clean stop must exit 0, which also catches sanitizer reports."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)
        self.log.close()
        if sig == signal.SIGTERM and self.process.returncode != 0:
            raise AssertionError(f"babymambad exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
        return self.process.returncode


class Subscriber:
    """An MQTT client that records every message, retained flag included."""

    def __init__(self, broker, topic, protocol=mqtt.MQTTv311):
        self.messages = queue.Queue()
        self.seen = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(client_id=f"test-sub-{free_port()}", protocol=protocol)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.seen.append((message.topic, message.payload, bool(message.retain)))

    def find(self, predicate, timeout=10.0, what="message"):
        def match():
            with self.lock:
                for item in self.seen:
                    if predicate(*item):
                        return item
            return None

        return wait_until(match, timeout, what)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def publisher(broker, protocol=mqtt.MQTTv311):
    client = mqtt.Client(client_id=f"test-pub-{free_port()}", protocol=protocol)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def channels_message(rows, start_index, seq=None):
    message = {"t0_ns": T0_NS + start_index * PERIOD_NS, "rate_hz": 50, "channels": rows}
    if seq is not None:
        message["seq"] = seq
    return json.dumps(message).encode()


class GoldenStreamTest(unittest.TestCase):
    """One broker and one daemon serving the golden model cx_published (9 channels, none)."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="babymambad-test-")
        cls.broker = Broker(cls.workdir)
        cls.daemon = Daemon(cls.workdir, cls.broker)
        golden = read_safetensors(os.path.join(GOLDEN, "cx_published.io.safetensors"))
        cls.inputs = golden["input"]
        cls.expected = [softmax(row.astype(np.float64)) for row in golden["logits_f32"]]
        cls.events = Subscriber(cls.broker, "babymamba/#")

    @classmethod
    def tearDownClass(cls):
        cls.events.close()
        cls.daemon.stop()
        cls.broker.stop()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def activity_event(self, device, timeout=10.0):
        topic, payload, retained = self.events.find(
            lambda t, p, r: t == f"babymamba/{device}/activity" and p, timeout, f"activity of {device}")
        return json.loads(payload)

    def check_matches_golden(self, probabilities, index):
        expected = self.expected[index]
        self.assertEqual(len(probabilities), len(expected))
        for k, p in enumerate(probabilities):
            self.assertAlmostEqual(p, expected[k], delta=2e-4, msg=f"window {index} class {k}")

    def test_status_topic_online_retained(self):
        late = Subscriber(self.broker, "babymamba/_status")
        try:
            topic, payload, retained = late.find(lambda t, p, r: True, what="status message")
            self.assertEqual(payload, b"online")
            self.assertTrue(retained)
        finally:
            late.close()

    def test_mqtt_windows_match_golden(self):
        client = publisher(self.broker)
        try:
            for b, window in enumerate(self.inputs):
                rows = window.tolist()
                for part, start in enumerate((0, 64)):
                    info = client.publish(f"babymamba/mq{b}/imu", channels_message(rows[start:start + 64], start, part), qos=1)
                    info.wait_for_publish(5)
        finally:
            client.loop_stop()
            client.disconnect()

        for b in range(len(self.inputs)):
            event = self.activity_event(f"mq{b}")
            self.assertEqual(event["device"], f"mq{b}")
            self.assertEqual(event["class_index"], int(np.argmax(self.expected[b])))
            self.assertEqual(event["activity"], f"class{event['class_index']}")
            self.assertEqual(event["model"], {"name": "golden-cx_published", "version": "1.0.0"})
            self.assertEqual(event["window_start_ns"], T0_NS)
            self.assertEqual(event["window_end_ns"], T0_NS + 127 * PERIOD_NS)
            self.assertEqual(event["seq"], 0)
            self.assertAlmostEqual(event["confidence"], max(self.expected[b]), delta=2e-4)
            self.check_matches_golden([event["probabilities"][f"class{k}"] for k in range(6)], b)

        # A subscriber that arrives later receives the current activity as a retained message.
        late = Subscriber(self.broker, "babymamba/mq0/activity")
        try:
            topic, payload, retained = late.find(lambda t, p, r: True, what="retained activity")
            self.assertTrue(retained)
            self.assertEqual(json.loads(payload)["device"], "mq0")
        finally:
            late.close()

    def test_http_windows_match_golden(self):
        for b, window in enumerate(self.inputs):
            # Per-sample times in float seconds carry sub-microsecond rounding; the daemon must
            # still place every sample on the grid and reproduce the golden window exactly.
            times = [(T0_NS + i * PERIOD_NS) / 1e9 for i in range(128)]
            body = json.dumps({"t": times, "channels": window.tolist()}).encode()
            status, reply = http("POST", f"{self.daemon.url}/api/v1/devices/http{b}/samples", body)
            self.assertEqual(status, 202, reply)
            self.assertEqual(reply["accepted"], 128)

        for b in range(len(self.inputs)):
            device = wait_until(lambda: self._classified(f"http{b}"), what=f"http{b} classified")
            self.assertEqual(device["activity"], f"class{int(np.argmax(self.expected[b]))}")
            self.check_matches_golden([device["probabilities"][f"class{k}"] for k in range(6)], b)
            self.assertEqual(device["counters"]["samples"], 128)
            self.assertEqual(device["counters"]["windows"], 1)
            self.assertAlmostEqual(device["input_rate_hz"], 50.0, delta=0.01)

    def _classified(self, device_id):
        status, device = http("GET", f"{self.daemon.url}/api/v1/devices/{device_id}")
        return device if status == 200 and device["activity"] is not None else None

    def test_binary_payload_is_classified(self):
        window = self.inputs[0]
        header = struct.pack("<4sBBBBHHfqQ", b"BMIM", 1, 2, 0x08, 9, 128, 0, 50.0, T0_NS, 7)
        body = header + window.astype("<f4").tobytes()
        status, reply = http("POST", f"{self.daemon.url}/api/v1/devices/bin0/samples", body,
                             "application/octet-stream")
        self.assertEqual(status, 202, reply)
        device = wait_until(lambda: self._classified("bin0"), what="bin0 classified")
        self.check_matches_golden([device["probabilities"][f"class{k}"] for k in range(6)], 0)

    def test_bad_input_is_rejected_and_isolated(self):
        before, _ = self.daemon.metrics()
        client = publisher(self.broker)
        try:
            client.publish("babymamba/bad1/imu", b"{not json", qos=1).wait_for_publish(5)
            client.publish("babymamba/bad1/imu", channels_message([[1, 2, 3]], 0), qos=1).wait_for_publish(5)
            # A healthy device keeps working next to the faulty one.
            for start in (0, 64):
                rows = self.inputs[1].tolist()[start:start + 64]
                client.publish("babymamba/good1/imu", channels_message(rows, start), qos=1).wait_for_publish(5)
        finally:
            client.loop_stop()
            client.disconnect()

        event = self.activity_event("good1")
        self.check_matches_golden([event["probabilities"][f"class{k}"] for k in range(6)], 1)

        after = wait_until(lambda: self._rejections_grew(before, 2), what="rejection counters")
        key_json = 'babymambad_messages_rejected_total{reason="invalid_json"}'
        key_channels = 'babymambad_messages_rejected_total{reason="wrong_channels"}'
        self.assertEqual(after[key_json] - before[key_json], 1)
        self.assertEqual(after[key_channels] - before[key_channels], 1)
        log = self.daemon.log_text()
        self.assertIn("device bad1: message rejected (invalid_json)", log)
        self.assertIn("'channels[0]': expected an array of 9 numbers", log)

        status, reply = http("POST", f"{self.daemon.url}/api/v1/devices/bad2/samples",
                             json.dumps({"t0": 1, "rate_hz": 50, "channels": [[0] * 9], "units": {"acc": "g"}}).encode())
        self.assertEqual(status, 400)
        self.assertEqual(reply["error"], "invalid_units")
        status, reply = http("POST", f"{self.daemon.url}/api/v1/devices/bad$id/samples", b"{}")
        self.assertEqual(status, 400)
        self.assertEqual(reply["error"], "invalid_device_id")
        self.assertIn("bad$id", reply["message"])
        status, reply = http("POST", f"{self.daemon.url}/api/v1/devices/bad3/samples", b"x", "text/csv")
        self.assertEqual(status, 415)
        big = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        status, reply = http("POST", f"{self.daemon.url}/api/v1/devices/bad4/samples", big)
        self.assertEqual(status, 413)
        self.assertEqual(reply["error"], "payload_too_large")
        self.assertEqual(http("GET", f"{self.daemon.url}/api/v1/devices/bad1")[0], 404)

    def _rejections_grew(self, before, amount):
        after, _ = self.daemon.metrics()
        grown = sum(v for k, v in after.items() if k.startswith("babymambad_messages_rejected_total")) - \
            sum(v for k, v in before.items() if k.startswith("babymambad_messages_rejected_total"))
        return after if grown >= amount else None

    def test_duplicates_out_of_order_and_gaps(self):
        url = f"{self.daemon.url}/api/v1/devices/dup1/samples"
        rows = self.inputs[0].tolist()
        status, reply = http("POST", url, channels_message(rows[:64], 0, seq=1))
        self.assertEqual((status, reply["accepted"]), (202, 64))

        # The same message again, as a QoS 1 redelivery would bring it: every sample is dropped.
        status, reply = http("POST", url, channels_message(rows[:64], 0, seq=1))
        self.assertEqual((reply["accepted"], reply["duplicate"]), (0, 64))

        # Samples older than the newest one, by less than the gap limit, are out of order.
        status, reply = http("POST", url, channels_message(rows[:10], 40, seq=2))
        self.assertEqual((reply["accepted"], reply["out_of_order"]), (0, 10))

        # A silence longer than stream.gap_limit_s (1 s) restarts the window; seq 9 after 2 means
        # six messages were lost.
        status, reply = http("POST", url, channels_message(rows[:64], 64 + 200, seq=9))
        self.assertEqual((reply["accepted"], reply["gaps"]), (64, 1))

        status, device = http("GET", f"{self.daemon.url}/api/v1/devices/dup1")
        counters = device["counters"]
        self.assertEqual(counters["samples_duplicate"], 64)
        self.assertEqual(counters["samples_out_of_order"], 10)
        self.assertEqual(counters["gaps"], 1)
        self.assertEqual(counters["sequence_gaps"], 6)
        self.assertEqual(counters["windows"], 0)
        values, _ = self.daemon.metrics()
        self.assertGreaterEqual(values['babymambad_samples_dropped_total{reason="duplicate"}'], 64)
        self.assertGreaterEqual(values["babymambad_stream_gaps_total"], 1)

    def test_clock_jump_back_restarts_the_window(self):
        # One sample dated a day ahead, then the sender's normal clock: the later samples are far
        # older than the bad one, which reads as a clock reset, so the device keeps classifying
        # instead of dropping everything as out of order.
        url = f"{self.daemon.url}/api/v1/devices/jump1/samples"
        rows = self.inputs[0].tolist()
        day = 86400 * 50  # in samples at 50 Hz
        status, reply = http("POST", url, channels_message(rows[:1], day))
        self.assertEqual((status, reply["accepted"]), (202, 1))
        status, reply = http("POST", url, channels_message(rows, 0))
        self.assertEqual((status, reply["accepted"], reply["clock_resets"], reply["out_of_order"]),
                         (202, 128, 1, 0))

        status, device = http("GET", f"{self.daemon.url}/api/v1/devices/jump1")
        self.assertEqual(device["counters"]["clock_resets"], 1)
        wait_until(lambda: http("GET", f"{self.daemon.url}/api/v1/devices/jump1")[1]["counters"]["windows"] == 1,
                   what="window after the clock reset")
        values, _ = self.daemon.metrics()
        self.assertGreaterEqual(values["babymambad_stream_clock_resets_total"], 1)

    def test_slow_stream_is_rejected(self):
        rows = self.inputs[0].tolist()[:20]
        body = json.dumps({"t0_ns": T0_NS, "rate_hz": 10, "channels": rows}).encode()
        status, reply = http("POST", f"{self.daemon.url}/api/v1/devices/slow1/samples", body)
        self.assertEqual(status, 400)
        self.assertEqual(reply["error"], "rate_too_low")
        self.assertIn("10 Hz", reply["message"])

    def test_metrics_follow_the_format(self):
        status, text = http("GET", self.daemon.url + "/metrics")
        self.assertEqual(status, 200)
        values, declarations = parse_metrics(text)
        families = [name for kind, name in declarations if kind == "TYPE"]
        helps = [name for kind, name in declarations if kind == "HELP"]
        self.assertEqual(len(families), len(set(families)), "a family is declared twice")
        self.assertEqual(sorted(families), sorted(helps))
        for name in values:
            base = name.split("{")[0]
            family = next((f for f in families if base == f or base.startswith(f + "_")), None)
            self.assertIsNotNone(family, f"sample {name} has no TYPE")
        self.assertEqual(values["babymambad_mqtt_connected"], 1)
        self.assertEqual(values['babymambad_build_info{version="0.1.0"}'], 1)
        self.assertIn("babymambad_inference_duration_seconds_bucket{le=\"+Inf\"}", values)
        self.assertGreater(values["process_resident_memory_bytes"], 1e6)

    def test_rest_endpoints_report_state(self):
        with open(MODEL, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        self.assertEqual(http("GET", self.daemon.url + "/healthz"), (200, {"status": "ok"}))
        status, ready = http("GET", self.daemon.url + "/readyz")
        self.assertEqual((status, ready["mqtt"], ready["model_loaded"]), (200, "connected", True))

        status, info = http("GET", self.daemon.url + "/api/v1/status")
        self.assertEqual(info["version"], "0.1.0")
        self.assertEqual(info["model"]["sha256"], sha)
        self.assertEqual(info["mqtt"]["state"], "connected")
        self.assertGreaterEqual(info["uptime_s"], 0)

        status, models = http("GET", self.daemon.url + "/api/v1/models")
        model = models["models"][0]
        self.assertEqual(model["classes"], [f"class{k}" for k in range(6)])
        self.assertEqual(model["input"]["window_length"], 128)
        self.assertEqual(model["input"]["preprocessing"], "none")

        http("POST", f"{self.daemon.url}/api/v1/devices/list1/samples", channels_message([[0] * 9], 0))
        status, devices = http("GET", self.daemon.url + "/api/v1/devices")
        self.assertIn("list1", [d["id"] for d in devices["devices"]])
        self.assertEqual(devices["count"], len(devices["devices"]))
        self.assertEqual(http("GET", self.daemon.url + "/api/v1/devices/nobody")[0], 404)
        self.assertEqual(http("DELETE", self.daemon.url + "/api/v1/status")[0], 405)
        self.assertEqual(http("GET", self.daemon.url + "/nowhere")[0], 404)


class BrokerPerTest(unittest.TestCase):
    """A fresh work directory and broker for every test; each test starts its own daemon."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="babymambad-test-")
        self.broker = Broker(self.workdir)

    def tearDown(self):
        self.broker.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class LifecycleTest(BrokerPerTest):
    """Reload, stop, last will and config checking, each with its own daemon."""

    def test_sigterm_sets_status_offline(self):
        daemon = Daemon(self.workdir, self.broker)
        status = Subscriber(self.broker, "babymamba/_status")
        try:
            status.find(lambda t, p, r: p == b"online", what="online")
            self.assertEqual(daemon.stop(signal.SIGTERM), 0)
            status.find(lambda t, p, r: p == b"offline", what="offline after SIGTERM")
            self.assertIn("stopped", daemon.log_text())
        finally:
            status.close()

        late = Subscriber(self.broker, "babymamba/_status")
        try:
            topic, payload, retained = late.find(lambda t, p, r: True, what="retained status")
            self.assertEqual((payload, retained), (b"offline", True))
        finally:
            late.close()

    def test_last_will_on_crash(self):
        daemon = Daemon(self.workdir, self.broker)
        status = Subscriber(self.broker, "babymamba/_status")
        try:
            status.find(lambda t, p, r: p == b"online", what="online")
            daemon.stop(signal.SIGKILL)
            status.find(lambda t, p, r: p == b"offline", timeout=15, what="last will")
        finally:
            status.close()

    def test_sighup_swaps_compatible_model(self):
        daemon = Daemon(self.workdir, self.broker)
        try:
            rows = np.sin(np.arange(128 * 9, dtype=np.float64).reshape(128, 9) * 0.01).tolist()
            url = f"{daemon.url}/api/v1/devices/keep1/samples"
            self.assertEqual(http("POST", url, channels_message(rows[:100], 0))[0], 202)

            daemon.settings["model"] = COMPATIBLE_MODEL
            daemon.settings["log"]["level"] = "debug"
            daemon.write_config()
            daemon.process.send_signal(signal.SIGHUP)
            with open(COMPATIBLE_MODEL, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            wait_until(lambda: http("GET", daemon.url + "/api/v1/models")[1]["models"][0]["sha256"] == sha,
                       what="new model after SIGHUP")
            self.assertIn("input specification unchanged; 1 devices keep their windows", daemon.log_text())

            # The device's first 100 samples survived the reload, so 28 more complete a window.
            self.assertEqual(http("POST", url, channels_message(rows[100:], 100))[0], 202)
            device = wait_until(lambda: http("GET", f"{daemon.url}/api/v1/devices/keep1")[1]["counters"]["windows"] == 1
                                and http("GET", f"{daemon.url}/api/v1/devices/keep1")[1],
                                what="window after reload")
            self.assertIsNotNone(device["activity"])
            values, _ = daemon.metrics()
            self.assertEqual(values['babymambad_reloads_total{result="success"}'], 1)
        finally:
            daemon.stop()

    def test_sighup_with_bad_config_keeps_running(self):
        daemon = Daemon(self.workdir, self.broker)
        try:
            with open(daemon.config_path, "w") as f:
                f.write('{"mqtt": {"qos": 9}}')
            daemon.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload rejected" in daemon.log_text(), what="rejected reload")
            self.assertIn("key 'mqtt.qos'", daemon.log_text())
            self.assertEqual(http("GET", daemon.url + "/readyz")[0], 200)
        finally:
            daemon.stop()

    def test_mqtt5_ingest_and_events(self):
        daemon = Daemon(self.workdir, self.broker, settings={"mqtt": {"protocol": "5"}})
        events = Subscriber(self.broker, "babymamba/+/activity", protocol=mqtt.MQTTv5)
        client = publisher(self.broker, protocol=mqtt.MQTTv5)
        try:
            rows = np.cos(np.arange(128 * 9).reshape(128, 9) * 0.02).tolist()
            client.publish("babymamba/v5dev/imu", channels_message(rows, 0), qos=1).wait_for_publish(5)
            topic, payload, retained = events.find(lambda t, p, r: t == "babymamba/v5dev/activity", what="v5 event")
            self.assertEqual(json.loads(payload)["device"], "v5dev")
        finally:
            client.loop_stop()
            client.disconnect()
            events.close()
            daemon.stop()

    def test_systemd_notifications(self):
        # A datagram socket replaces systemd's notify socket. WATCHDOG_USEC requests
        # keep-alives every 0.2 s, half the 0.4 s interval.
        path = os.path.join(self.workdir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(10)
        os.environ["NOTIFY_SOCKET"] = path
        os.environ["WATCHDOG_USEC"] = "400000"
        try:
            daemon = Daemon(self.workdir, self.broker)
        finally:
            del os.environ["NOTIFY_SOCKET"]
            del os.environ["WATCHDOG_USEC"]

        # Like systemd, the test reads the socket all the time: a full socket would block the
        # daemon's sd_notify calls.
        received = []
        reader_stop = threading.Event()

        def read():
            sock.settimeout(0.1)
            while not reader_stop.is_set():
                try:
                    received.append(sock.recv(4096).decode())
                except socket.timeout:
                    pass

        reader = threading.Thread(target=read)
        reader.start()

        def wait_for(word):
            wait_until(lambda: any(word in message for message in received), what=word)

        try:
            wait_for("READY=1")
            start = time.monotonic()
            count = sum("WATCHDOG=1" in message for message in received)
            wait_until(lambda: sum("WATCHDOG=1" in message for message in received) >= count + 3,
                       what="three keep-alives")
            self.assertLess(time.monotonic() - start, 1.5)
            daemon.process.send_signal(signal.SIGHUP)
            wait_for("RELOADING=1")
            wait_until(lambda: sum("READY=1" in message for message in received) >= 2,
                       what="READY=1 after the reload")
            self.assertEqual(daemon.stop(signal.SIGTERM), 0)
            wait_for("STOPPING=1")
        finally:
            daemon.stop()
            reader_stop.set()
            reader.join()
            sock.close()

    def test_broker_restart_reconnects(self):
        daemon = Daemon(self.workdir, self.broker)
        try:
            port = self.broker.port
            self.broker.stop()
            wait_until(lambda: http("GET", daemon.url + "/readyz")[0] == 503, what="not ready without broker")
            self.broker = Broker.__new__(Broker)
            self.broker.port = port
            Broker.__init__(self.broker, self.workdir, port=port)
            wait_until(lambda: http("GET", daemon.url + "/readyz")[0] == 200, timeout=20, what="reconnect")
            values, _ = daemon.metrics()
            self.assertEqual(values["babymambad_mqtt_reconnects_total"], 1)
            status = Subscriber(self.broker, "babymamba/_status")
            try:
                status.find(lambda t, p, r: p == b"online", what="online after reconnect")
            finally:
                status.close()
        finally:
            daemon.stop()

    def test_events_without_broker_not_published(self):
        daemon = Daemon(self.workdir, self.broker, settings={"events": {"every_window": True}})
        try:
            self.broker.stop()
            wait_until(lambda: http("GET", daemon.url + "/readyz")[0] == 503, what="not ready without broker")

            count = 128 + 4 * 64
            rows = np.sin(np.arange(count * 9, dtype=np.float64).reshape(count, 9) * 0.01).round(5).tolist()
            status, reply = http("POST", f"{daemon.url}/api/v1/devices/offline1/samples", channels_message(rows, 0))
            self.assertEqual(status, 202, reply)
            values = wait_until(lambda: (lambda v: v if v["babymambad_windows_classified_total"] == 5 else None)(
                daemon.metrics()[0]), what="5 windows classified")

            # Paho only buffers the events while the broker is down, so none is published yet.
            self.assertEqual(values["babymambad_events_published_total"], 0)
            self.assertEqual(values['babymambad_events_failed_total{reason="buffer_full"}'], 0)
            self.assertEqual(http("GET", daemon.url + "/api/v1/status")[1]["counters"]["events_published"], 0)
        finally:
            daemon.stop()

        log = daemon.log_text()
        self.assertIn("5 activity events were not delivered before the stop and are discarded", log)
        self.assertNotIn("set offline", log)
        self.assertIn("the broker publishes the last will", log)

    def test_imu_units_are_converted(self):
        # A copy of the golden model whose metadata names the HAPT preprocessing, so that the
        # daemon takes raw acc and gyro samples and runs bm_stream's gravity filter on them.
        model = os.path.join(self.workdir, "hapt.safetensors")
        with open(MODEL, "rb") as f:
            data = f.read()
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + size])
        metadata = json.loads(header["__metadata__"]["babymamba"])
        metadata["input"]["preprocessing"] = "hapt-causal-v1"
        header["__metadata__"]["babymamba"] = json.dumps(metadata)
        encoded = json.dumps(header).encode()
        encoded += b" " * (-len(encoded) % 8)
        with open(model, "wb") as f:
            f.write(struct.pack("<Q", len(encoded)) + encoded + data[8 + size:])

        daemon = Daemon(self.workdir, self.broker, settings={"model": model})
        try:
            i = np.arange(128)[:, None]
            acc_g = np.hstack([0.1 * np.sin(i * 0.2), 0.05 * np.cos(i * 0.3), 1.0 + 0.02 * np.sin(i * 0.1)])
            gyro_rad = np.hstack([0.3 * np.sin(i * 0.25), 0.1 * np.cos(i * 0.15), 0.2 * np.sin(i * 0.05)])
            plain = {"t0_ns": T0_NS, "rate_hz": 50, "acc": acc_g.tolist(), "gyro": gyro_rad.tolist()}
            converted = {"t0_ns": T0_NS, "rate_hz": 50, "units": {"acc": "m/s2", "gyro": "deg/s"},
                         "acc": (acc_g * 9.80665).tolist(), "gyro": np.degrees(gyro_rad).tolist()}
            for device, message in (("imu-g", plain), ("imu-si", converted)):
                status, reply = http("POST", f"{daemon.url}/api/v1/devices/{device}/samples", json.dumps(message).encode())
                self.assertEqual(status, 202, reply)

            def classified(device):
                status, body = http("GET", f"{daemon.url}/api/v1/devices/{device}")
                return body if body["activity"] is not None else None

            a = wait_until(lambda: classified("imu-g"), what="imu-g classified")
            b = wait_until(lambda: classified("imu-si"), what="imu-si classified")
            self.assertEqual(a["activity"], b["activity"])
            for k in range(6):
                self.assertAlmostEqual(a["probabilities"][f"class{k}"], b["probabilities"][f"class{k}"], delta=1e-4)

            status, reply = http("POST", f"{daemon.url}/api/v1/devices/imu-x/samples", channels_message([[0] * 9], 0))
            self.assertEqual((status, reply["error"]), (400, "wrong_channels"))
        finally:
            daemon.stop()

    def test_idle_device_expires(self):
        daemon = Daemon(self.workdir, self.broker, settings={"devices": {"idle_expiry_s": 1}})
        events = Subscriber(self.broker, "babymamba/+/activity")
        try:
            rows = np.sin(np.arange(128 * 9).reshape(128, 9) * 0.03).tolist()
            http("POST", f"{daemon.url}/api/v1/devices/idle1/samples", channels_message(rows, 0))
            events.find(lambda t, p, r: t == "babymamba/idle1/activity" and p, what="first event")
            wait_until(lambda: http("GET", f"{daemon.url}/api/v1/devices/idle1")[0] == 404, timeout=5,
                       what="device expiry")
            values, _ = daemon.metrics()
            self.assertEqual(values["babymambad_devices_expired_total"], 1)
            self.assertEqual(values["babymambad_devices_active"], 0)
            # The retained activity is cleared with an empty retained message.
            events.find(lambda t, p, r: t == "babymamba/idle1/activity" and p == b"", what="cleared activity")
        finally:
            events.close()
            daemon.stop()

    def test_check_config_names_bad_keys(self):
        path = os.path.join(self.workdir, "bad.json")
        with open(path, "w") as f:
            json.dump({"mqtt": {"qos": 3}, "http": {"listen": "localhost:80"}, "colour": "red"}, f)
        result = subprocess.run([DAEMON, "--config", path, "--check-config"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("key 'mqtt.qos': invalid value \"3\"; expected an integer from 0 to 2", result.stderr)
        self.assertIn("unknown key 'colour'", result.stderr)
        self.assertIn("key 'http.listen'", result.stderr)

        result = subprocess.run([DAEMON, "--check-config", "--mqtt", "none", "--http", "[::1]:9000",
                                 "--model", MODEL], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        effective = json.loads(result.stdout)
        self.assertEqual(effective["mqtt"]["uri"], "none")
        self.assertEqual(effective["http"]["listen"], "[::1]:9000")

        # Broker URIs the daemon could not use, and a model it could not load, fail the check.
        for uri, why in (("garbage", "no tcp://"), ("tcp://127.0.0.1:99999", "port outside"),
                         ("ssl://127.0.0.1:8883", "TLS"), ("tcp://:1883", "no host"),
                         ("tcp://127.0.0.1:1883/x", "path")):
            result = subprocess.run([DAEMON, "--check-config", "--mqtt", uri, "--model", MODEL],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2, uri)
            self.assertIn("key 'mqtt.uri'", result.stderr)
            self.assertIn(why, result.stderr)
        for model in ("/nonexistent/model.safetensors", path):
            result = subprocess.run([DAEMON, "--check-config", "--mqtt", "none", "--model", model],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2, model)
            self.assertIn("key 'model'", result.stderr)
        result = subprocess.run([DAEMON, "--check-config", "--config", self.workdir], capture_output=True,
                                text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("not a regular file", result.stderr)



class HttpConnectionLimitTest(unittest.TestCase):
    """HTTP under more connections than the daemon serves at once (256), with MQTT off."""

    # The daemon's constants in src/daemon/http.c.
    CONNECTION_LIMIT = 256
    HEADER_DEADLINE_S = 5

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="babymambad-test-")
        self.daemon = Daemon(self.workdir, None)

    def tearDown(self):
        self.daemon.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def open_partial_requests(self, count):
        """Open count connections that each send a request line and one header, and no more.

        They come from three loopback addresses, because one address may hold only half of the
        daemon's connections."""
        sockets = []
        for i in range(count):
            s = socket.socket()
            s.settimeout(2)
            s.bind((f"127.0.0.{2 + i % 3}", 0))
            s.connect(("127.0.0.1", self.daemon.http_port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: babymambad\r\n")
            sockets.append(s)
        return sockets

    def healthz_responds(self):
        try:
            return http_quick("GET", self.daemon.url + "/healthz") == 200
        except OSError:
            return False

    def test_http_recovers_after_connection_flood(self):
        sockets = self.open_partial_requests(self.CONNECTION_LIMIT + 64)
        try:
            # Shorter than the header deadline, so that the connections close by themselves.
            time.sleep(2)
        finally:
            for s in sockets:
                s.close()
        wait_until(self.healthz_responds, timeout=3, what="/healthz after the connections closed")
        self.assertEqual(http("GET", self.daemon.url + "/readyz")[0], 200)

    def test_slow_headers_are_cut_off(self):
        with socket.create_connection(("127.0.0.1", self.daemon.http_port), timeout=2) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            start = time.monotonic()
            closed_after = None
            # One header line per second keeps the inactivity timeout from ever expiring.
            for line in range(3 * self.HEADER_DEADLINE_S):
                try:
                    s.sendall(f"X-Slow-{line}: 1\r\n".encode())
                    s.settimeout(1)
                    if s.recv(4096) == b"":
                        closed_after = time.monotonic() - start
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed_after = time.monotonic() - start
                    break
        self.assertIsNotNone(closed_after, "the slow request was never closed")
        self.assertGreaterEqual(closed_after, self.HEADER_DEADLINE_S - 1)
        self.assertLess(closed_after, self.HEADER_DEADLINE_S + 2)
        self.assertIn("did not arrive within 5 s", self.daemon.log_text())
        self.assertTrue(self.healthz_responds())


class InferenceQueueTest(BrokerPerTest):
    """Windows that wait for inference: across a reload and in a burst larger than the slots."""

    def test_reload_completes_queued_windows(self):
        daemon = Daemon(self.workdir, self.broker, settings={"http": {"max_body_bytes": 8 << 20}})
        try:
            # One request completes 250 windows, so most of them still wait for the single
            # inference context when the reload starts.
            windows = 250
            count = 128 + (windows - 1) * 64
            rows = np.sin(np.arange(count * 9, dtype=np.float64).reshape(count, 9) * 0.01).round(5).tolist()
            url = f"{daemon.url}/api/v1/devices/queued1/samples"
            self.assertEqual(http("POST", url, channels_message(rows, 0))[0], 202)

            daemon.settings["model"] = COMPATIBLE_MODEL
            daemon.write_config()
            daemon.process.send_signal(signal.SIGHUP)

            def settled():
                values, _ = daemon.metrics()
                done = values["babymambad_windows_classified_total"] + sum(
                    v for k, v in values.items() if k.startswith("babymambad_windows_dropped_total"))
                return values if done >= windows and values['babymambad_reloads_total{result="success"}'] == 1 else None

            values = wait_until(settled, what="every queued window reported after the reload")
            self.assertEqual(values['babymambad_windows_dropped_total{reason="inference_error"}'], 0)
            self.assertEqual(values['babymambad_windows_dropped_total{reason="stale"}'], 0)
            self.assertEqual(values['babymambad_windows_dropped_total{reason="queue_full"}'], 0)
            self.assertEqual(values["babymambad_windows_classified_total"], windows)
        finally:
            daemon.stop()

    def shipped_model_daemon(self):
        """Start a daemon that serves the shipped CX model and publishes an event for every window."""
        return Daemon(self.workdir, self.broker,
                      settings={"model": os.path.join(SOURCE_ROOT, "models", "ucihar-cx.safetensors"),
                                "events": {"every_window": True}})

    def test_mqtt_burst_loses_no_window(self):
        # The shipped model has the recording's preprocessing; the default queue sizes apply.
        daemon = self.shipped_model_daemon()
        try:
            # The replay stops waiting as soon as every device has its last window, so the long
            # timeout only matters on slow builds such as the sanitizer one.
            replay = subprocess.run([CLI, "replay", RECORDING, "--mqtt", self.broker.uri, "--speed", "0",
                                     "--devices", "3", "--labels", "--timeout", "60"],
                                    capture_output=True, text=True, timeout=180)
            self.assertEqual(replay.returncode, 0, replay.stderr)
            summary = [line for line in replay.stdout.splitlines() if line.startswith("windows:")]
            self.assertEqual(len(summary), 1, replay.stdout)
            self.assertIn(" 0 missing", summary[0])

            values, _ = daemon.metrics()
            self.assertEqual(values['babymambad_windows_dropped_total{reason="queue_full"}'], 0)
            self.assertEqual(values['babymambad_messages_rejected_total{reason="queue_full"}'], 0)
            self.assertEqual(values["babymambad_windows_classified_total"], 3 * 257)
        finally:
            daemon.stop()

    def test_http_rejects_what_slots_cannot_take(self):
        daemon = Daemon(self.workdir, self.broker, settings={"http": {"max_body_bytes": 8 << 20}})
        try:
            def body(windows):
                count = 128 + (windows - 1) * 64
                rows = np.sin(np.arange(count * 9, dtype=np.float64).reshape(count, 9) * 0.01).round(5)
                return channels_message(rows.tolist(), 0)

            # 20000 samples complete 311 windows, more than the 256 slots could ever take.
            oversized = channels_message(np.zeros((20000, 9)).tolist(), 0)
            status, reply = http("POST", f"{daemon.url}/api/v1/devices/huge1/samples", oversized)
            self.assertEqual(status, 413, reply)
            self.assertEqual(reply["error"], "too_many_windows")
            self.assertIn("send at most 16320 samples", reply["message"])
            self.assertEqual(http("GET", f"{daemon.url}/api/v1/devices/huge1")[0], 404)

            # Two messages of 250 windows each: the second finds the slots taken by the first.
            first, second = body(250), body(250)
            status, reply = http("POST", f"{daemon.url}/api/v1/devices/busy1/samples", first)
            self.assertEqual(status, 202, reply)
            self.assertEqual(reply["windows_dropped"], 0)
            request = urllib.request.Request(f"{daemon.url}/api/v1/devices/busy2/samples", data=second,
                                             method="POST", headers={"Content-Type": "application/json"})
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=10)
            self.assertEqual(caught.exception.code, 503)
            self.assertEqual(caught.exception.headers.get("Retry-After"), "1")
            self.assertEqual(json.loads(caught.exception.read().decode())["error"], "inference_busy")
            self.assertEqual(http("GET", f"{daemon.url}/api/v1/devices/busy2")[0], 404)

            # Once the first message's windows are classified, the same message is taken whole.
            # Retrying every Retry-After second, as a sender should, keeps the test independent of
            # how fast the build classifies.
            deadline = time.monotonic() + 60
            while True:
                time.sleep(1)
                status, reply = http("POST", f"{daemon.url}/api/v1/devices/busy2/samples", second)
                if status != 503 or time.monotonic() > deadline:
                    break
            self.assertEqual(status, 202, reply)
            self.assertEqual(reply["windows_dropped"], 0)

            values = wait_until(lambda: (lambda v: v if v["babymambad_windows_classified_total"] >= 500 else None)(
                daemon.metrics()[0]), what="500 windows classified")
            self.assertEqual(values["babymambad_windows_classified_total"], 500)
            self.assertEqual(values['babymambad_windows_dropped_total{reason="queue_full"}'], 0)
            self.assertGreaterEqual(values['babymambad_messages_rejected_total{reason="inference_busy"}'], 1)
            self.assertEqual(values['babymambad_messages_rejected_total{reason="too_many_windows"}'], 1)
            self.assertIn("inference slots are free", daemon.log_text())
        finally:
            daemon.stop()

    def test_http_replay_retries_and_loses_nothing(self):
        daemon = self.shipped_model_daemon()
        try:
            replay = subprocess.run([CLI, "replay", RECORDING, "--http", daemon.url, "--mqtt", self.broker.uri,
                                     "--speed", "0", "--devices", "8", "--labels", "--timeout", "5"],
                                    capture_output=True, text=True, timeout=90)
            self.assertEqual(replay.returncode, 0, replay.stderr)
            summary = [line for line in replay.stdout.splitlines() if line.startswith("windows:")]
            self.assertEqual(len(summary), 1, replay.stdout)
            self.assertIn(" 0 missing", summary[0])

            values, _ = daemon.metrics()
            self.assertEqual(values['babymambad_windows_dropped_total{reason="queue_full"}'], 0)
            self.assertEqual(values["babymambad_windows_classified_total"], 8 * 257)
        finally:
            daemon.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
