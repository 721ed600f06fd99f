"""A stand-in for babymambad's HTTP ingest in the replay tests. It listens on 127.0.0.1 on a
free port, writes the port to PORT_FILE, appends each POST as one JSON line {"path", "type",
"body"} to LOG_FILE, and responds with 202, except 400 with a JSON error for device ids ending in
"-2" so that the test can check how replay reports a rejection. It stops after 60 s.

Usage: test_replay_http_server.py PORT_FILE LOG_FILE
"""

import http.server
import json
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        with open(self.server.log_file, "a") as log:
            log.write(json.dumps({"path": self.path, "type": self.headers.get("Content-Type"),
                                  "body": body}) + "\n")
        device = self.path.split("/")[4] if self.path.count("/") >= 5 else ""
        if device.endswith("-2"):
            status, reply = 400, {"error": "'units.acc': invalid value for this test"}
        else:
            status, reply = 202, {"accepted": 25}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.log_file = sys.argv[2]
    threading.Timer(60, server.shutdown).start()
    with open(sys.argv[1], "w") as port_file:
        port_file.write("%d\n" % server.server_address[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
