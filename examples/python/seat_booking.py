#!/usr/bin/env python3
"""A small seat-booking HTTP service over AllocDB (standard library only).

    POST /seats/<seat>                      create a seat (operator)
    POST /seats/<seat>/hold?user=<id>       hold it for 2 minutes  -> 200 {"lease", "epoch"} | 409 taken
    POST /seats/<seat>/confirm?user=&lease=&epoch=   turn the hold into a booking (no expiry)
    POST /seats/<seat>/cancel?user=&lease=&epoch=    give it back
    GET  /seats/<seat>                      {"state", "lease"}

Run against a cluster:   python seat_booking.py --addresses 127.0.0.1:3000,... --insecure
See it work end to end:  python seat_booking.py --demo   (starts a local 3-replica cluster)

AllocDB makes "one seat, one winner" a primitive: two users holding the same seat at once get
one 200 and one 409, however many web workers race; a hold that is never confirmed expires by
itself; a retried request (after a timeout) never books twice.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import allocdb

HOLD = datetime.timedelta(minutes=2)


def make_handler(client: allocdb.Client) -> type[BaseHTTPRequestHandler]:
    class SeatHandler(BaseHTTPRequestHandler):
        def reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def route(self) -> tuple[list[str], dict[str, int]]:
            url = urlsplit(self.path)
            parts = [part for part in url.path.split("/") if part]
            query = {key: int(values[0]) for key, values in parse_qs(url.query).items()}
            return parts, query

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts, _ = self.route()
            if len(parts) != 2 or parts[0] != "seats":
                return self.reply(404, {"error": "not found"})
            self.answer(lambda: self.seat(int(parts[1])))

        def do_POST(self) -> None:  # noqa: N802
            parts, query = self.route()
            if len(parts) not in (2, 3) or parts[0] != "seats":
                return self.reply(404, {"error": "not found"})
            seat = int(parts[1])
            action = parts[2] if len(parts) == 3 else "create"
            calls = {
                "create": lambda: client.create_resource(seat),
                "hold": lambda: client.reserve(seat, query["user"], HOLD),
                "confirm": lambda: client.activate(query["lease"], query["user"], query["epoch"]),
                "cancel": lambda: client.release(query["lease"], query["user"], query["epoch"]),
            }
            if action not in calls:
                return self.reply(404, {"error": f"no action {action}"})
            self.answer(lambda: self.committed(calls[action]()))

        def seat(self, seat: int) -> dict[str, Any]:
            resource = client.get_resource(seat)
            return {"seat": seat, "state": resource.state.name.lower(), "lease": resource.lease}

        @staticmethod
        def committed(result: allocdb.Committed) -> dict[str, Any]:
            return {"lease": result.lease, "epoch": result.epoch, "op": result.op}

        def answer(self, work: Any) -> None:
            try:
                self.reply(200, work())
            except (KeyError, ValueError) as error:
                self.reply(400, {"error": f"bad request: {error}"})
            except allocdb.Rejected as error:
                # A definite no: taken, wrong user, stale epoch, expired, unknown seat ...
                status = 404 if error.code.name.endswith("NOT_FOUND") else 409
                self.reply(status, {"error": error.code.name.lower()})
            except allocdb.Indefinite as error:
                # Unknown outcome: the client may retry; keep the id to learn what happened.
                self.reply(503, {"error": "indefinite", "operation_id": str(error.operation_id)})
            except (allocdb.Unavailable, allocdb.Timeout) as error:
                self.reply(503, {"error": str(error)})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet

    return SeatHandler


def serve(client: allocdb.Client, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(client))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def call(base: str, method: str, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(base + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def demo() -> int:
    from allocdb.testing import LocalCluster

    repository = Path(__file__).resolve().parents[2]
    binary = os.environ.get("ALLOCDB_BIN") or repository / "target" / "release" / "allocdb"
    with LocalCluster(3, binary=binary) as cluster:
        cluster.wait_for_primary()
        with allocdb.Client(cluster.addresses, **cluster.client_options()) as client:
            server = serve(client, 0)
            base = f"http://127.0.0.1:{server.server_address[1]}"
            print(call(base, "POST", "/seats/12"))
            status, hold = call(base, "POST", "/seats/12/hold?user=1")
            print("alice holds seat 12:", status, hold)
            print("bob tries seat 12:  ", call(base, "POST", "/seats/12/hold?user=2"))
            confirm = f"/seats/12/confirm?user=1&lease={hold['lease']}&epoch={hold['epoch']}"
            print("alice confirms:     ", call(base, "POST", confirm))
            print("seat 12:            ", call(base, "GET", "/seats/12"))
            server.shutdown()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="A seat-booking HTTP service over AllocDB.")
    parser.add_argument("--demo", action="store_true", help="start a local cluster and try it")
    parser.add_argument("--addresses", help="the replicas, comma-separated")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--certs", help="a certificate directory from `allocdb certs`")
    parser.add_argument("--role", default="operator")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.demo:
        return demo()
    if not args.addresses:
        parser.error("--addresses is required (or --demo)")
    with allocdb.Client(
        args.addresses, insecure=args.insecure, certs=args.certs, role=args.role
    ) as client:
        server = serve(client, args.port)
        print(f"listening on http://127.0.0.1:{server.server_address[1]}")
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
