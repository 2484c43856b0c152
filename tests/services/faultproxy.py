#!/usr/bin/env python3
"""A tiny HTTP fault-injection proxy for the S3 backend's tests.

    faultproxy.py --upstream 127.0.0.1:PORT [--fail-first N] [--status 500]
                  [--delay SECONDS] [--stall] [--die-after N]
                  --port-file FILE

Listens on a free port of 127.0.0.1 (written to --port-file), answers the
first N requests with --status (an S3-style XML error), then forwards
requests to the upstream server.  --die-after N makes the proxy exit at
once (connections drop, the port refuses) on request N+1, like a server
killed in the middle of a backup.  --delay sleeps before each answer;
--stall sends the answer's headers and then nothing (a server that hangs
mid-body), so the client's low-speed timeout must fire.  Python's standard
library only.
"""
import argparse
import http.client
import http.server
import socketserver
import sys
import threading
import time

args = None
lock = threading.Lock()
count = {"n": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):  # quiet
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(min(1 << 20, n - len(data)))
            if not chunk:
                break
            data += chunk
        return data

    def _any(self):
        body = self._body()
        with lock:
            count["n"] += 1
            n = count["n"]
        if args.die_after and n > args.die_after:
            import os
            os._exit(0)
        if args.delay:
            time.sleep(args.delay)
        if n <= args.fail_first:
            msg = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                   b'InternalError</Code><Message>injected fault</Message>'
                   b'</Error>')
            self.send_response(args.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        if args.stall:
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(3600)
            return
        host, port = args.upstream.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {k: v for k, v in self.headers.items()}
        c.request(self.command, self.path, body=body if body else None,
                  headers=headers)
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in ("transfer-encoding", "connection",
                             "content-length"):
                continue
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        else:
            cl = r.getheader("Content-Length")
            if cl is not None:
                self.send_header("Content-Length", cl)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        c.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--status", type=int, default=500)
    p.add_argument("--delay", type=float, default=0)
    p.add_argument("--stall", action="store_true")
    p.add_argument("--die-after", type=int, default=0)
    p.add_argument("--port-file", required=True)
    args = p.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
