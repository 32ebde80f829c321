#!/usr/bin/env python3
"""A micro-benchmark of the asyncio client: N coroutines (default 1,000) on one AsyncClient,
each reserving its own seat and releasing it in a loop (the `uncontended` workload of
`allocdb benchmark`), against a three-replica local cluster it starts (or --addresses).

    python examples/python/bench.py                      # 1,000 coroutines, 5 s after a 1 s warm-up
    python examples/python/bench.py --coroutines 256 --duration 10
    python examples/python/bench.py --uvloop           # the same on uvloop, if installed

Prints one line like `allocdb benchmark` does:

    python-bench uncontended replicas=3 coroutines=1000 ops_per_sec=N p50_us=N p99_us=N mean_batch=N

An op is one write answered definitely (a grant or a release), as in the Rust benchmark.
The local cluster is plaintext (--insecure) unless --tls; `allocdb benchmark --insecure` is the
same setting on the Rust side. The binary is $ALLOCDB_BIN, else target/release/allocdb.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import allocdb
from allocdb.testing import LocalCluster

REPOSITORY = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def cluster_for(args: argparse.Namespace) -> Iterator[tuple[list[str], dict[str, object]]]:
    if args.addresses:
        options: dict[str, object] = {"insecure": True} if not args.certs else {
            "certs": args.certs,
            "role": "operator",
        }
        yield args.addresses.split(","), options
        return
    binary = os.environ.get("ALLOCDB_BIN") or REPOSITORY / "target" / "release" / "allocdb"
    with LocalCluster(args.replicas, binary=binary, cluster_id=0xBE4C, tls=args.tls) as local:
        local.wait_for_primary()
        yield local.addresses, local.client_options("operator")


def quantile(sorted_values: list[float], q: float) -> int:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return int(sorted_values[index] * 1e6)


async def bench(addresses: list[str], options: dict[str, object], args: argparse.Namespace) -> str:
    coroutines = args.coroutines
    client = allocdb.AsyncClient(addresses, in_flight_max=max(coroutines, 1), **options)  # type: ignore[arg-type]
    async with client:
        # Create the seats (already there on a reused cluster is fine).
        async def create(seat: int) -> None:
            try:
                await client.create_resource(seat)
            except allocdb.Rejected as error:
                if error.code is not allocdb.ResultCode.ALREADY_EXISTS:
                    raise

        await asyncio.gather(*(create(seat) for seat in range(coroutines)))
        ttl = 60
        started = time.perf_counter()
        warm_until = started + 1.0
        stop_at = warm_until + args.duration
        latencies: list[float] = []
        record = latencies.append
        clock = time.perf_counter

        async def drive(seat: int) -> None:
            holder = seat + 1
            reserve, release = client.reserve, client.release
            while True:
                begun = clock()
                if begun >= stop_at:
                    return
                grant = await reserve(seat, holder, ttl)
                middle = clock()
                if warm_until <= middle < stop_at:
                    record(middle - begun)
                await release(grant.lease, holder, grant.epoch)
                ended = clock()
                if warm_until <= ended < stop_at:
                    record(ended - middle)

        before = client.stats()
        await asyncio.gather(*(drive(seat) for seat in range(coroutines)))
        after = client.stats()
    latencies.sort()
    frames = max(1, after.frames_sent - before.frames_sent)
    mean_batch = (after.requests_sent - before.requests_sent) // frames
    ops_per_sec = round(len(latencies) / args.duration)
    return (
        f"python-bench uncontended replicas={len(addresses)} coroutines={coroutines} "
        f"ops_per_sec={ops_per_sec} p50_us={quantile(latencies, 0.5)} "
        f"p99_us={quantile(latencies, 0.99)} mean_batch={mean_batch}"
    )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coroutines", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--replicas", type=int, default=3, choices=(1, 3, 5))
    parser.add_argument("--tls", action="store_true", help="run the local cluster with TLS")
    parser.add_argument("--addresses", help="an existing cluster (comma-separated)")
    parser.add_argument("--certs", help="with --addresses: a certificate directory")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (pip install uvloop)")
    args = parser.parse_args(argv)
    with cluster_for(args) as (addresses, options):
        if args.uvloop:
            import uvloop  # type: ignore[import-not-found,unused-ignore]

            uvloop.install()
        line = asyncio.run(bench(addresses, options, args))
        print(line + (" loop=uvloop" if args.uvloop else " loop=asyncio"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
