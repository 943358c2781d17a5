"""The model API benchmark's kept results: what `bench_model_api.py` stored last time
(`benchmarks/results/bench_model_api.json`) against this run, cell by cell.

Pure functions over the results' JSON (no servers): `best_peer` picks, per cell, the
fastest of the peers measured (`mlflow models serve`, MLServer in each of its settings),
`changes` lists each cell's change against the previous run.
"""

from __future__ import annotations

from typing import Any

#: Servers of one run that are peers (not ours), by label prefix.
PEERS = ("mlflow", "mlserver")


def is_peer(label: str) -> bool:
    return label.split("-", 1)[0] in PEERS


def best_peer(runs: dict[str, dict[str, Any]], cell: str) -> tuple[str, dict[str, Any]] | None:
    """The peer server with the most requests/s in `cell` (`"<rows>x<conns>"`), and its
    measurement; None when no peer measured that cell."""
    measured = [(label, run[cell]) for label, run in runs.items() if is_peer(label) and cell in run]
    if not measured:
        return None
    return max(measured, key=lambda item: item[1]["rps"])


def changes(
    previous: dict[str, Any], current: dict[str, Any], fields: tuple[str, ...] = ("rps", "p99_us")
) -> list[dict[str, Any]]:
    """Each (model, server, cell, field) measured in both runs, with the relative change
    (`current / previous - 1`). A run is `{model: {"runs": {server: {cell: {field: x}}}}}`;
    cells, servers or models only one of them has are left out (nothing to compare);
    `startup_s` and `rss_mib` of each server are compared as cell `"whole"`."""
    out = []
    for model, now in current.items():
        before = previous.get(model)
        if not isinstance(before, dict):
            continue
        for server, run in now.get("runs", {}).items():
            old = before.get("runs", {}).get(server)
            if not isinstance(old, dict):
                continue
            for cell, values in run.items():
                if isinstance(values, dict):
                    pairs = [(cell, f, values.get(f), old.get(cell, {}).get(f)) for f in fields]
                else:
                    pairs = [("whole", cell, values, old.get(cell))]
                for where, field, new, was in pairs:
                    if isinstance(new, int | float) and isinstance(was, int | float) and was:
                        out.append(
                            {
                                "model": model,
                                "server": server,
                                "cell": where,
                                "field": field,
                                "previous": was,
                                "current": new,
                                "change": new / was - 1.0,
                            }
                        )
    return out
