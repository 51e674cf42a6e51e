#!/usr/bin/env python3
"""A webhook receiver for distrib's event sink, using only Python's standard library.

It checks each delivery's X-Distrib-Signature (HMAC-SHA256 of the body with the shared secret),
drops repeated deliveries by event id (delivery is at least once), and prints one line per new
event. A delivery with a wrong signature is refused with 401, so distribd keeps it and retries.

    webhook-receiver.py --port 9099 --secret-file /etc/distrib/hook.key [--out events.jsonl]
    distribd ... --event-sink 'hook=webhook:http://127.0.0.1:9099/distrib;secret-file=/etc/distrib/hook.key'
"""
import argparse
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9099)
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret")
    secret.add_argument("--secret-file")
    parser.add_argument("--out", help="also append each new event as a JSON line to this file")
    args = parser.parse_args()
    key = (args.secret if args.secret is not None else open(args.secret_file).read().strip()).encode()
    seen = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-Distrib-Signature", "")):
                self.send_response(401)
                self.end_headers()
                print("refused a delivery with a wrong signature", file=sys.stderr, flush=True)
                return
            event = json.loads(body)
            if event["id"] not in seen:  # at least once: a repeat is acknowledged, not shown again
                seen.add(event["id"])
                print(f'{event["id"]} {event["time"]} {event["severity"]} {event["type"]}: {event["message"]}',
                      flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(event) + "\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer((args.listen, args.port), Handler)
    print(f"listening on http://{args.listen}:{args.port}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
