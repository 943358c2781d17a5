"""`python -m devtools.cluster` (`make distributed`): start the cluster, run the proof
(`scenario.run_all`), print each step's verdict and where to look, stop the cluster.

The cluster's folder (logs of every service, each worker's task logs and own folders) is
kept for reading unless --remove is given; exit status 1 when a step had a problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=3000, help="generated raw rows")
    parser.add_argument("--root", default=None, help="cluster folder (default: a new temp dir)")
    parser.add_argument("--remove", action="store_true", help="delete the folder afterwards")
    parser.add_argument("--facts", action="store_true", help="print every step's facts (JSON)")
    parser.add_argument(
        "--shared-raw-file",
        action="store_true",
        help="diagnosis only: raw data from a read-only file every worker "
        "reads instead of the bucket (to get past a failing download)",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the proof, keep the cluster up until Ctrl-C",
    )
    args = parser.parse_args(argv)

    from devtools.cluster.cluster import Cluster
    from devtools.cluster.processes import ClusterError
    from devtools.cluster.scenario import run_all

    cluster = Cluster.create(args.root)
    print(f"cluster folder: {cluster.root}", flush=True)
    started = time.monotonic()
    steps = []
    try:
        cluster.start()
        print(f"started in {time.monotonic() - started:.0f} s: {cluster.timings}", flush=True)
        print(cluster.where_to_look(), flush=True)
        steps = run_all(cluster, args.rows, stop_on_failure=True, shared_file=args.shared_raw_file)
        for step in steps:
            print(step.summary())
            if args.facts:
                print(json.dumps(step.facts, indent=2, default=str))
        if args.keep_running:
            print("cluster running; Ctrl-C stops it", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    except ClusterError as exc:
        print(f"cluster error: {exc}", file=sys.stderr)
        steps = None
    finally:
        cluster.stop()
        print(f"total {time.monotonic() - started:.0f} s")
        print(cluster.where_to_look())
        if args.remove:
            cluster.remove()
    return 0 if steps and not any(step.problems for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
