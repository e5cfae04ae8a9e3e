"""The independent fault probe of issue 24, reproducible: a peer MQTT client that is not
fleetcare's (MQTT.js from npm, ``bench/fault_probe_peer.mjs``) against a private Mosquitto 2
configured from ``fleetcare/mosquitto.conf`` plus ``fleetcare devices broker-config``, a private
PostgreSQL cluster (initdb, so that it can be taken down), and fleetcare run as an operator runs
it: ``fleetcare migrate``, ``fleetcare api``, ``fleetcare ingest`` as child processes, set up
through the CLI and the HTTP API. Counts are read from the database with SQL.

    .venv/bin/python -m bench.fault_probe [--scenarios restart,kill9-offline,...]
        [--protocols 5,4] [--device-protocol 4] [--node-modules DIR]

Scenarios: ``restart`` (default settings, a clean broker restart mid-burst, plain device),
``kill9-offline`` and ``kill9-dbdown`` (broker ``kill -9`` with readings queued for an offline
ingestor, or with the ingestor held back by a database outage; the peer follows the device
contract of docs/telemetry.md), ``kill9-plain`` (the same crash, no contract: the window),
``mode-switch`` (one client id shared -> plain -> shared), ``decoder`` (100,000 nested arrays,
a duplicate key), ``http`` (create, then read on another connection, in a loop).
The ``mqtt`` package is installed with npm into a temporary folder unless ``--node-modules``
names one that has it. The last line printed is JSON.

This file is the command; the processes (PostgreSQL, Mosquitto, the ingestor, the peer) are in
``fault_probe_processes.py``, fleetcare's set-up and the counts in ``fault_probe_harness.py``,
the scenarios in ``fault_probe_scenarios.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fault_probe_harness import Probe
from bench.fault_probe_processes import Broker
from bench.fault_probe_scenarios import (
    db_down,
    decoder,
    http_loop,
    ingestor_kill9,
    kill9,
    kill9_live,
    mode_switch,
    restart,
    restart_shared,
)


def node_modules(given: str | None, work: Path) -> Path:
    if given:
        return Path(given).resolve()
    folder = work / "node"
    folder.mkdir()
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder), "mqtt@5"],
        check=True,
        timeout=600,
    )
    return folder / "node_modules"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        default="restart,kill9-offline,kill9-dbdown,kill9-plain,kill9-live,ingestor-kill9,"
        "db-down,restart-shared,mode-switch,decoder,http",
    )
    parser.add_argument(
        "--protocols", default="5,4", help="MQTT versions of the restart and kill9-live tests"
    )
    parser.add_argument(
        "--device-protocol",
        type=int,
        choices=(5, 4),
        default=5,
        help="MQTT version (5, or 4: 3.1.1) of the peers in the other scenarios",
    )
    parser.add_argument("--dbdown-readings", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=150_000, help="kill9-live, ingestor-kill9")
    parser.add_argument("--http-loops", type=int, default=300)
    parser.add_argument("--node-modules", help="a node_modules folder that has mqtt")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--rapid", action="store_true", help="kill9-live: the second kill within about 1 s"
    )
    parser.add_argument(
        "--subscribe",
        choices=("every-connect", "when-session-lost"),
        default="every-connect",
        help="when the contract device subscribes to its confirmations (docs/telemetry.md: "
        "every connection; the other reproduces the stall the probe found)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fc-probe-"))
    work.chmod(0o755)
    modules = node_modules(args.node_modules, work)
    probe = Probe(work, modules, args.subscribe, args.device_protocol)
    results: list[dict[str, Any]] = []
    wanted = args.scenarios.split(",")
    started = time.time()
    try:
        if "restart" in wanted:
            results += [restart(probe, int(v)) for v in args.protocols.split(",")]
        if "kill9-offline" in wanted:
            results.append(kill9(probe, dbdown=False, contract=True, n=20_000, dev="dev-c"))
        if "kill9-dbdown" in wanted:
            results.append(
                kill9(probe, dbdown=True, contract=True, n=args.dbdown_readings, dev="dev-d")
            )
        if "kill9-plain" in wanted:
            results.append(kill9(probe, dbdown=False, contract=False, n=20_000, dev="dev-h"))
        for v in args.protocols.split(",") if "kill9-live" in wanted else ():
            results.append(kill9_live(probe, args.burst, int(v), args.rapid))
        if "ingestor-kill9" in wanted:
            results.append(ingestor_kill9(probe, args.burst))
        if "db-down" in wanted:
            results.append(db_down(probe, 50_000, 30.0))
        if "restart-shared" in wanted:
            results.append(restart_shared(probe))
        if "mode-switch" in wanted:
            results.append(mode_switch(probe))
        if "decoder" in wanted:
            results.append(decoder(probe))
        if "http" in wanted:
            results.append(http_loop(probe, args.http_loops))
    finally:
        probe.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}", file=sys.stderr)
    summary = {
        "broker": Broker.version(),
        "node": subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "device_protocol": args.device_protocol,
        "seconds": round(time.time() - started, 1),
        "load": os.getloadavg(),
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
