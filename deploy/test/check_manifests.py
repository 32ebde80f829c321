#!/usr/bin/env python3
"""Static checks of the deployment files that cannot be run on this machine (Kubernetes,
systemd) or are cheap to check before running (Compose).

  check_manifests.py [--bin path/to/allocdb]

- every YAML file parses; the Kubernetes objects have the shape docs/operations.md promises
  (three replicas behind a headless Service, claims, PDB minAvailable 2, /health probes on the
  metrics port, resource limits, clients given all three stable names);
- TLS everywhere: every `format`, `start`, `status`, `client` and `benchmark` in Compose,
  Kubernetes and systemd passes `--certs <dir>` (never `--insecure`), clients with a valid
  `--role`; the directory is really there (Compose: a volume mounted at it, filled by the
  one-shot `certs` service that format depends on, for the same cluster id; Kubernetes: the
  replica Secret laid out per index and mounted with subPathExpr $(POD_INDEX), no ca.key, the
  status Job with the operator Secret; systemd: LoadCredential of ca.crt and replica-%i's pair,
  `--certs %d`); cluster.sh passes its TLS flags to every format, start and status and makes
  certificates at format;
- with --bin: every `--flag` the deployment files pass to `allocdb <subcommand>` is one that
  subcommand's --help lists, so the manifests cannot drift from the binary's CLI.
Exit status 1 with one line per problem.
"""

import argparse
import glob
import os
import re
import subprocess
import sys

import yaml

DEPLOY = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)
    return condition


def load_kubernetes():
    objects = {}
    for path in sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    key = (doc["kind"], doc.get("metadata", {}).get("name", ""))
                check(key not in objects, f"{key} is defined twice")
                objects[key] = doc
    return objects


def container_args(objects):
    """(subcommand, args) of every container that runs allocdb in the Kubernetes files."""
    found = []
    for obj in objects.values():
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            args = container.get("args", [])
            if args:
                found.append((f"kubernetes {obj['kind']}/{container['name']}", args))
    return found


def check_kubernetes(objects):
    sts = objects.get(("StatefulSet", "allocdb"))
    svc = objects.get(("Service", "allocdb"))
    pdb = objects.get(("PodDisruptionBudget", "allocdb"))
    if not (check(sts, "no StatefulSet allocdb") and check(svc, "no Service allocdb") and check(pdb, "no PDB allocdb")):
        return
    spec = sts["spec"]
    check(spec["replicas"] == 3, "StatefulSet: replicas != 3")
    check(spec["serviceName"] == svc["metadata"]["name"], "StatefulSet.serviceName is not the headless Service")
    check(svc["spec"].get("clusterIP") == "None", "Service allocdb is not headless (clusterIP: None)")
    check(svc["spec"].get("publishNotReadyAddresses") is True, "Service must publish not-ready addresses (peers of a catching-up replica)")
    labels = spec["template"]["metadata"]["labels"]
    for name, selector in (("StatefulSet", spec["selector"]["matchLabels"]), ("Service", svc["spec"]["selector"]), ("PDB", pdb["spec"]["selector"]["matchLabels"])):
        check(all(labels.get(k) == v for k, v in selector.items()), f"{name} selector does not match the pod labels")
    check(pdb["spec"].get("minAvailable") == 2, "PDB minAvailable != 2")
    check(any(t["metadata"]["name"] == "data" for t in spec.get("volumeClaimTemplates", [])), "no volumeClaimTemplate 'data'")
    pod = spec["template"]["spec"]
    main = next((c for c in pod["containers"] if c["name"] == "allocdb"), None)
    if not check(main, "no container 'allocdb'"):
        return
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    args = main["args"]
    metrics = args[args.index("--metrics") + 1] if "--metrics" in args else ""
    check(metrics.endswith(f":{ports.get('metrics')}"), f"--metrics {metrics} is not the 'metrics' containerPort {ports.get('metrics')}")
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health"), ("startupProbe", "/health/live")):
        http = main.get(probe, {}).get("httpGet", {})
        check(http.get("path") == path and http.get("port") == "metrics", f"{probe} is not GET {path} on the metrics port")
    for kind in ("requests", "limits"):
        check({"cpu", "memory"} <= set(main.get("resources", {}).get(kind, {})), f"container allocdb has no cpu+memory {kind}")
    addresses = args[args.index("--addresses") + 1] if "--addresses" in args else ""
    expected = ",".join(f"allocdb-{i}.{svc['metadata']['name']}:{ports.get('allocdb')}" for i in range(3))
    check(addresses == expected, f"--addresses {addresses!r} != the three stable names {expected!r}")
    client = objects.get(("ConfigMap", "allocdb-client"))
    if check(client, "no ConfigMap allocdb-client"):
        check(client["data"].get("ALLOCDB_ADDRESSES") == expected, "the client ConfigMap does not list the three stable names")
        check_format_init(pod)


def flag_value(args, flag):
    return args[args.index(flag) + 1] if flag in args else None


def check_format_init(pod):
    """The initContainer formats the pod's own claim as replica $(POD_INDEX), only if empty,
    with the cluster id the clients are told about."""
    inits = [c for c in pod.get("initContainers", []) if c["name"] == "format"]
    if not check(len(inits) == 1, "no initContainer 'format'"):
        return
    args = inits[0]["args"]
    check(args[:1] == ["format"] and "--if-empty" in args, "the format initContainer must run `format --if-empty`")
    check(flag_value(args, "--replica") == "$(POD_INDEX)", "the format initContainer does not format replica $(POD_INDEX)")
    check(flag_value(args, "--replica-count") == "3", "the format initContainer: --replica-count is not 3")
    env = {e["name"]: e for e in inits[0].get("env", [])}
    cluster_ref = env.get("ALLOCDB_CLUSTER", {}).get("valueFrom", {}).get("configMapKeyRef", {})
    check(
        flag_value(args, "--cluster") == "$(ALLOCDB_CLUSTER)" and cluster_ref.get("name") == "allocdb-client",
        "the format initContainer's --cluster must come from the client ConfigMap",
    )
    mounts = sorted(m["name"] for m in inits[0].get("volumeMounts", []))
    check(mounts == ["certs", "data"], f"the format initContainer mounts {mounts}, not the data claim and the certificates")
    with open(os.path.join(DEPLOY, "kubernetes", "kustomization.yaml"), encoding="utf-8") as f:
        resources = yaml.safe_load(f)["resources"]
    for listed in resources:
        check(os.path.exists(os.path.join(DEPLOY, "kubernetes", listed)), f"kustomization.yaml lists a missing file {listed}")


# Subcommands that talk to a replica: each must be given --certs (TLS) in the deploy recipes.
TLS_SUBCOMMANDS = ("format", "start", "status", "client", "benchmark")
ROLES = ("operator", "application")


def check_tls(uses):
    """Every recipe command that talks to a replica runs with certificates, never plaintext."""
    for where, args in uses:
        if not args or args[0] not in TLS_SUBCOMMANDS:
            continue
        check("--insecure" not in args, f"{where}: `allocdb {args[0]}` runs --insecure")
        check(bool(flag_value(args, "--certs")), f"{where}: `allocdb {args[0]}` has no --certs <dir>")
        if args[0] in ("status", "client", "benchmark"):
            role = flag_value(args, "--role")
            check(role in ROLES or (role is None and args[0] != "client"), f"{where}: --role {role!r} is not one of {ROLES}")


def check_kubernetes_tls(objects):
    sts = objects.get(("StatefulSet", "allocdb"))
    if not sts:
        return
    pod = sts["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    secret = volumes.get("certs", {}).get("secret")
    if not check(secret, "StatefulSet: no Secret volume 'certs'"):
        return
    items = {(i["key"], i["path"]) for i in secret.get("items", [])}
    expected = {(key, f"{i}/{key}") for i in range(3) for key in ("ca.crt", f"replica-{i}.crt", f"replica-{i}.key")}
    check(items == expected, f"StatefulSet: the certs Secret items {sorted(items)} are not <i>/ca.crt, <i>/replica-<i>.crt|key for i in 0..2")
    check(all("ca.key" not in key for key, _ in items), "StatefulSet: the replicas must not get ca.key")
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        certs = flag_value(container.get("args", []), "--certs")
        mounts = [m for m in container.get("volumeMounts", []) if m["name"] == "certs"]
        check(
            len(mounts) == 1 and mounts[0]["mountPath"] == certs and mounts[0].get("subPathExpr") == "$(POD_INDEX)"
            and mounts[0].get("readOnly") is True,
            f"StatefulSet/{container['name']}: --certs {certs} is not the certs volume mounted read-only with subPathExpr $(POD_INDEX)",
        )
        env = {e["name"] for e in container.get("env", [])}
        check("POD_INDEX" in env, f"StatefulSet/{container['name']}: subPathExpr needs the POD_INDEX env")
    job = objects.get(("Job", "allocdb-status"))
    if check(job, "no Job allocdb-status"):
        jpod = job["spec"]["template"]["spec"]
        container = jpod["containers"][0]
        args = container.get("args", [])
        volumes = {v["name"]: v for v in jpod.get("volumes", [])}
        mount = next((m for m in container.get("volumeMounts", []) if m["mountPath"] == flag_value(args, "--certs")), None)
        if check(mount, "Job allocdb-status: nothing is mounted at its --certs directory"):
            secret_name = volumes.get(mount["name"], {}).get("secret", {}).get("secretName")
            check(secret_name == "allocdb-operator-certs", f"Job allocdb-status: --certs comes from {secret_name!r}, not the operator Secret")
        check(flag_value(args, "--role") == "operator", "Job allocdb-status: status needs --role operator")


def compose_args():
    with open(os.path.join(DEPLOY, "docker", "compose.yaml"), encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    found = []
    services = compose["services"]
    certs_service = services.get("certs")
    certs_args = (certs_service or {}).get("command") or []
    if check(certs_service, "compose: no one-shot `certs` service"):
        check(certs_args[:1] == ["certs"] and flag_value(certs_args, "--replica-count") == "3", "compose certs: not `allocdb certs --replica-count 3`")
        check(certs_service.get("restart") == "no", "compose certs: must be one-shot (restart: \"no\")")
    certs_volume = None
    if certs_service:
        target = certs_args[-1] if certs_args else None
        sources = [v.split(":")[0] for v in certs_service.get("volumes", []) if v.split(":")[1:2] == [target]]
        certs_volume = sources[0] if check(sources, f"compose certs: writes {target}, which is no volume") else None
        check(certs_volume in (compose.get("volumes") or {}), f"compose certs: {certs_volume} is not a named volume")
    for name, service in services.items():
        entry = service.get("entrypoint") or []
        command = service.get("command") or []
        args = (entry[1:] if entry else []) + command
        found.append((f"compose {name}", args))
        certs_dir = flag_value(args, "--certs")
        if certs_dir:
            mounts = [v.split(":") for v in service.get("volumes", [])]
            check(
                [certs_volume, certs_dir, "ro"] in mounts,
                f"compose {name}: --certs {certs_dir} is not the certs volume mounted read-only",
            )
        if name.startswith("format-"):
            check(
                (service.get("depends_on") or {}).get("certs", {}).get("condition") == "service_completed_successfully",
                f"compose {name}: does not wait for the certs service",
            )
            check(flag_value(args, "--cluster") == flag_value(certs_args, "--cluster"), f"compose {name}: --cluster differs from the certs service's")
        if name.startswith("replica-"):
            index = name.split("-")[1]
            check(args[args.index("--replica") + 1] == index, f"compose {name}: --replica is not {index}")
            check(service.get("restart") == "unless-stopped", f"compose {name}: no restart policy")
            check(service.get("volumes"), f"compose {name}: no volume")
    return found


def systemd_args():
    with open(os.path.join(DEPLOY, "systemd", "allocdb@.service"), encoding="utf-8") as f:
        unit = f.read()
    found = []
    for line in unit.splitlines():
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            words = line.split("=", 1)[1].split()
            found.append(("systemd " + line.split("=")[0], words[1:]))
            check(flag_value(words, "--certs") == "%d", f"systemd {line.split('=')[0]}: --certs is not %d (the credentials directory)")
    credentials = {line.split("=", 1)[1].split(":")[0] for line in unit.splitlines() if line.startswith("LoadCredential=")}
    check(
        credentials == {"ca.crt", "replica-%i.crt", "replica-%i.key"},
        f"systemd: LoadCredential= loads {sorted(credentials)}, not ca.crt and replica-%i.crt/.key",
    )
    for hardening in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "ReadWritePaths="):
        check(hardening in unit, f"systemd unit lacks {hardening.strip()}")
    return found


def cluster_sh_args():
    with open(os.path.join(DEPLOY, "local", "cluster.sh"), encoding="utf-8") as f:
        text = f.read()
    found = []
    tls_flags = [m.group(1).split() for m in re.finditer(r"^\s*tls_args=\(([^)]*)\)", text, re.M)]
    check(sorted(f[0] for f in tls_flags) == ["--certs", "--insecure"], f"cluster.sh: tls_args is not (--certs <dir>) or (--insecure): {tls_flags}")
    for match in re.finditer(r'"\$bin" (\w+)((?:[^\n]|\\\n)*)', text):
        subcommand, args = match.group(1), match.group(2).split()
        found.append((f"cluster.sh {subcommand}", [subcommand] + args))
        if subcommand in TLS_SUBCOMMANDS:
            check('"${tls_args[@]}"' in args, f"cluster.sh {subcommand}: not given \"${{tls_args[@]}}\"")
            # The flags tls_args may hold, checked against this subcommand's --help too.
            for flags in tls_flags:
                found.append((f"cluster.sh {subcommand} (tls_args)", [subcommand] + flags))
    check(any(where == "cluster.sh certs" for where, _ in found), "cluster.sh: never runs `allocdb certs`")
    return found


def help_flags(binary, subcommand, cache={}):
    if subcommand not in cache:
        done = subprocess.run([binary, subcommand, "--help"], capture_output=True, text=True, timeout=30, check=False)
        check(done.returncode == 0, f"`allocdb {subcommand} --help` failed: {done.stderr.strip()}")
        cache[subcommand] = set(re.findall(r"--[a-z][a-z0-9-]*", done.stdout))
    return cache[subcommand]


def check_flags(binary, uses):
    for where, args in uses:
        if not args or args[0].startswith("-"):
            continue
        subcommand = args[0]
        known = help_flags(binary, subcommand)
        for arg in args[1:]:
            flag = arg.split("=")[0]
            if flag.startswith("--") and flag not in known and flag not in ("--help", "--version"):
                problems.append(f"{where}: `allocdb {subcommand}` has no flag {flag}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", help="the allocdb binary, to check flags against its --help")
    args = parser.parse_args()
    objects = load_kubernetes()
    check_kubernetes(objects)
    check_kubernetes_tls(objects)
    uses = container_args(objects) + compose_args() + systemd_args()
    check_tls(uses)
    uses += cluster_sh_args()
    if args.bin:
        check_flags(args.bin, uses)
    if problems:
        print("deployment files: " + str(len(problems)) + " problem(s):", file=sys.stderr)
        for problem in problems:
            print("  " + problem, file=sys.stderr)
        sys.exit(1)
    print(f"deployment files OK ({len(objects)} Kubernetes objects, {len(uses)} allocdb invocations checked)")


if __name__ == "__main__":
    main()
