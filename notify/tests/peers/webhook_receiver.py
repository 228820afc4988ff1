#!/usr/bin/env python3
"""A webhook receiver for Varde's notification tests, written as a municipality would write
one from docs/notifications.md: it verifies Varde-Signature (HMAC-SHA-256 over
"{Varde-Timestamp}.{body}", compared in constant time) and refuses timestamps more than
--window seconds from its clock. Accepted deliveries are written to DIR/NNNN.json as
{"delivery", "headers", "body"}; refused ones are answered 401 and counted in DIR/refused.

  --fail N       answer the first N requests with 500
  --hang N       hold the first N requests longer than the sender's timeout (no answer)
Prints "ready" when it listens; runs until killed.
"""
import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify(secret, timestamp, body, signature, window, now=None):
    """The check a receiver makes: the docs' Python, word for word."""
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > window:
        return False
    expected = "v1=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--window", type=int, default=300)
    p.add_argument("--fail", type=int, default=0)
    p.add_argument("--hang", type=int, default=0)
    a = p.parse_args()
    state = {"fail": a.fail, "hang": a.hang, "n": 0, "refused": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                if state["hang"] > 0:
                    state["hang"] -= 1
                    hang = True
                else:
                    hang = False
                if not hang and state["fail"] > 0:
                    state["fail"] -= 1
                    fail = True
                else:
                    fail = False
            if hang:
                time.sleep(30)
                return
            if fail:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"receiver down")
                return
            ts = self.headers.get("Varde-Timestamp", "")
            sig = self.headers.get("Varde-Signature", "")
            try:
                ok = verify(a.secret.encode(), ts, body, sig, a.window)
            except ValueError:
                ok = False
            if not ok:
                with lock:
                    state["refused"] += 1
                    with open(os.path.join(a.dir, "refused"), "w") as f:
                        f.write(str(state["refused"]))
                self.send_response(401)
                self.end_headers()
                self.wfile.write(b"bad signature or stale timestamp")
                return
            with lock:
                state["n"] += 1
                n = state["n"]
            out = os.path.join(a.dir, "%04d.json" % n)
            with open(out + ".tmp", "w") as f:
                json.dump({"delivery": self.headers.get("Varde-Delivery"),
                           "headers": dict(self.headers.items()),
                           "body": body.decode()}, f)
            os.rename(out + ".tmp", out)
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
