#!/usr/bin/env python3
"""A stand-in kubelet for the cluster e2e exec probe: a TLS HTTP server on
loopback that records every request the apiserver forwards to it (method,
path, query with repeated keys kept in order, and the streaming headers) as
one JSON object per line, then answers 400 so the exec ends at once.

  fake-kubelet.py --port P --cert C --key K --log FILE [--ready FILE]

It never runs anything; it only tells what the apiserver asked for.
"""
import argparse
import http.server
import json
import ssl
import sys
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready")
    a = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self):
            u = urllib.parse.urlsplit(self.path)
            rec = {
                "method": self.command,
                "path": u.path,
                "raw_query": u.query,
                "query": urllib.parse.parse_qsl(u.query, keep_blank_values=True),
                # keep_blank_values: an empty argv element (command=) is an
                # argument like any other
                "command": [v for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True)
                            if k == "command"],
                "headers": {k: ", ".join(self.headers.get_all(k))
                            for k in ("Upgrade", "Connection", "X-Stream-Protocol-Version", "User-Agent")
                            if self.headers.get(k) is not None},
            }
            with open(a.log, "a") as f:
                f.write(json.dumps(rec) + "\n")
            body = b"fake kubelet: recorded, not executed\n"
            self.send_response(400)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _record

        def log_message(self, fmt, *args):
            sys.stderr.write("fake-kubelet: " + (fmt % args) + "\n")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if a.ready:
        open(a.ready, "w").write("ok\n")
    srv.serve_forever()


if __name__ == "__main__":
    main()
