"""A stand-in for babymambad in the replay tests: it cuts each device's samples into windows of
128 with a hop of 64 and publishes one activity event per window, so the scoring of
`babymamba replay --labels` can be checked against known numbers.

The prediction of a window is the class named by the acc_x value of its last sample (the test
recording stores the label there), except that 5 (standing) is predicted as sitting. For the
device given by --skip-device it does not publish the window whose index is --skip-window, and
it repeats its last event once, as a heartbeat does.

Usage: test_replay_fake_daemon.py PORT READY_FILE SAMPLES_PER_DEVICE DEVICES [--skip-device ID
--skip-window N]
"""

import argparse
import json
import sys
import time

import paho.mqtt.client as mqtt

WINDOW = 128
HOP = 64
NAMES = {1: "walking", 4: "sitting", 5: "sitting"}


def make_client():
    """Creates a client with the version 1 callbacks on paho-mqtt 1.x and 2.x."""
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1)
    return mqtt.Client()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("ready_file")
    parser.add_argument("samples", type=int)
    parser.add_argument("devices", type=int)
    parser.add_argument("--skip-device")
    parser.add_argument("--skip-window", type=int, default=-1)
    args = parser.parse_args()

    streams = {}
    finished = set()
    client = make_client()

    def on_connect(client, userdata, flags, rc):
        client.subscribe("babymamba/+/imu", qos=1)

    def on_subscribe(client, userdata, mid, granted):
        with open(args.ready_file, "w") as ready:
            ready.write("ready\n")

    def publish(device, start_ns, end_ns, activity, seq):
        event = {"device": device, "activity": activity, "confidence": 0.9,
                 "window_start": start_ns / 1e9, "window_end": end_ns / 1e9,
                 "window_start_ns": start_ns, "window_end_ns": end_ns, "seq": seq}
        client.publish("babymamba/%s/activity" % device, json.dumps(event), qos=1, retain=True)

    def on_message(client, userdata, message):
        device = message.topic.split("/")[1]
        batch = json.loads(message.payload)
        period_ns = 1e9 / batch["rate_hz"]
        stream = streams.setdefault(device, {"t": [], "x": [], "windows": 0, "last": None})
        for i, acc in enumerate(batch["acc"]):
            stream["t"].append(batch["t0_ns"] + round(i * period_ns))
            stream["x"].append(acc[0])
            n = len(stream["t"])
            if n < WINDOW or (n - WINDOW) % HOP != 0:
                continue
            index = stream["windows"]
            stream["windows"] += 1
            activity = NAMES[round(stream["x"][-1])]
            last = (device, stream["t"][n - WINDOW], stream["t"][-1], activity, index)
            stream["last"] = last
            if device == args.skip_device and index == args.skip_window:
                continue
            publish(*last)
        if len(stream["t"]) == args.samples and device not in finished:
            finished.add(device)
            publish(*stream["last"])

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    deadline = time.monotonic() + 30
    while len(finished) < args.devices and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()
    return 0 if len(finished) == args.devices else 1


if __name__ == "__main__":
    sys.exit(main())
