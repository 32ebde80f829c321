#!/usr/bin/env python3
"""Shows that the end-to-end checker (e2e_workload.py verify) fails when it should: each case
feeds it a history and a fake cluster that a broken AllocDB could produce (a double
allocation, a lost acknowledged write, a lease with the wrong holder, a resource held by a
lease nobody was told about) and expects CheckFailed; the control cases must pass.
Needs no cluster; run by deploy/test/e2e-compose.sh before it starts one."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_workload as w  # noqa: E402


class FakeCli:
    """Answers get-lease / get-resource from dictionaries, like `allocdb client` would."""

    def __init__(self, leases, resources):
        self.leases = leases
        self.resources = resources

    def client(self, command, operation_id=None, timeout=None, role=None):
        kind, ident = command[0], int(command[1])
        if kind == "get-lease":
            reply = self.leases.get(ident, {"result": "lease_not_found", "op": 99})
        else:
            reply = self.resources.get(ident, {"result": "ok", "op": 99, "lease_id": None})
        return (0 if reply["result"] == "ok" else 1), reply, ""


def reserve(resources, lease, op, holder=1000, index=0):
    return {
        "kind": "reserve",
        "resources": resources,
        "holder": holder,
        "status": "ok",
        "reply": {"result": "ok", "op": op, "index": index, "lease_id": str(lease), "epoch": 1},
    }


def release(lease, op, index=0):
    return {"kind": "release", "lease_id": lease, "status": "ok", "reply": {"result": "ok", "op": op, "index": index}}


def lease_view(lease, resources, state, holder=1000):
    return {
        "result": "ok",
        "op": 99,
        "lease_id": str(lease),
        "holder": str(holder),
        "state": state,
        "resources": [str(r) for r in resources],
    }


def run(history, cli):
    grants, released, maybe = w.check_history(history)
    reserves = [r for r in history if r["kind"] == "reserve" and r["status"] == "ok"]
    w.verify_leases(cli, reserves, released, maybe, 99)
    w.verify_resources(cli, grants, released, maybe, set(), 99)


def expect(name, should_fail, history, cli):
    try:
        run(history, cli)
        failed = None
    except w.CheckFailed as failure:
        failed = str(failure).splitlines()[0]
    ok = (failed is not None) == should_fail
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {'caught: ' + failed if failed else 'passed'}")
    return ok


def main():
    w.HOT_RESOURCES[:] = [1, 2]
    good_history = [reserve([1], 10, 5), release(10, 6), reserve([1, 2], 20, 7)]
    good_cli = FakeCli(
        {10: lease_view(10, [1], "released"), 20: lease_view(20, [1, 2], "reserved")},
        {1: {"result": "ok", "op": 99, "lease_id": "20"}, 2: {"result": "ok", "op": 99, "lease_id": "20"}},
    )
    results = [
        expect("correct history", False, good_history, good_cli),
        expect(
            "double allocation (granted before the release)",
            True,
            [reserve([1], 10, 5), reserve([1, 2], 20, 6), release(10, 7)],
            good_cli,
        ),
        expect(
            "release and the next grant in one batch, release first",
            False,
            [reserve([1], 10, 5), release(10, 6, index=0), reserve([1, 2], 20, 6, index=1)],
            good_cli,
        ),
        expect(
            "double allocation inside one batch (grant before the release)",
            True,
            [reserve([1], 10, 5), reserve([1, 2], 20, 6, index=0), release(10, 6, index=1)],
            good_cli,
        ),
        expect(
            "acknowledged reservation lost",
            True,
            good_history,
            FakeCli({10: good_cli.leases[10]}, good_cli.resources),
        ),
        expect(
            "lease with another holder",
            True,
            good_history,
            FakeCli({10: good_cli.leases[10], 20: lease_view(20, [1, 2], "reserved", holder=7)}, good_cli.resources),
        ),
        expect(
            "acknowledged release not applied",
            True,
            good_history,
            FakeCli({10: lease_view(10, [1], "reserved"), 20: good_cli.leases[20]}, good_cli.resources),
        ),
        expect(
            "resource held by an unknown lease",
            True,
            good_history,
            FakeCli(good_cli.leases, {**good_cli.resources, 2: {"result": "ok", "op": 99, "lease_id": "30"}}),
        ),
    ]
    if not all(results):
        print("the checker missed a broken cluster (or rejected a correct one)", file=sys.stderr)
        sys.exit(1)
    print("checker self-test: every broken case caught, the correct one passed")


if __name__ == "__main__":
    main()
