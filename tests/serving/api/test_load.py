"""A bounded load test of the live API with reloads in the middle: three clients send 1-,
10- and 100-row requests to /invocations and /predict without pause while the champion
alias moves to the other version and back, the API reloading each time. No request
fails. (A reload compiles and verifies the new version in child processes: ~5 s on a
quiet 2-core machine, up to a minute when it is shared, hence the generous bound.)"""

from __future__ import annotations

import threading
import time

import httpx
import orjson

from include.ml_pipeline.deployment import api_client
from tests.serving.conftest import ADMIN_TOKEN, set_alias

CLIENTS = 3
MAX_SECONDS = 240  # a hard bound on the whole test, reloads included


def test_load_with_reloads_has_no_failed_requests(live_api, registry, churn_frame):
    from include.ml_pipeline.names import TRAFFIC_HEADER

    records = [
        {c: (None if isinstance(v, float) and v != v else v) for c, v in r.items()}
        for r in churn_frame.head(100).to_dict("records")
    ]
    bodies = []
    for rows in (1, 10, 100):
        bodies.append(("/invocations", api_client.split_payload(churn_frame.head(rows))))
        bodies.append(("/predict", orjson.dumps({"records": records[:rows]})))
    headers = {"Content-Type": "application/json", TRAFFIC_HEADER: "benchmark"}
    results: list[list[tuple[int, str | None]]] = [[] for _ in range(CLIENTS)]
    stop = threading.Event()
    deadline = time.monotonic() + MAX_SECONDS

    def hammer(index: int) -> None:
        out = results[index]
        with httpx.Client(base_url=live_api.url, timeout=30) as client:
            i = index
            while not stop.is_set() and time.monotonic() < deadline:
                path, body = bodies[i % len(bodies)]
                i += 1
                try:
                    answer = client.post(path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    out.append((0, repr(exc)))
                    continue
                version = (
                    answer.json().get("model_version")
                    if path == "/predict" and answer.status_code == 200
                    else None
                )
                out.append((answer.status_code, version))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    reloads = []
    try:
        time.sleep(1.0)
        for version in (registry.v2, registry.v1):
            set_alias(registry, "champion", version)
            answer = api_client.reload_model(live_api.url, token=ADMIN_TOKEN)
            assert answer["model_version"] == version
            reloads.append(answer["seconds"])
            time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        set_alias(registry, "champion", registry.v1)
    elapsed = time.monotonic() - started
    everything = [r for out in results for r in out]
    failed = [r for r in everything if r[0] != 200]
    served = {v for _, v in everything if v}
    print(
        f"load: {len(everything)} requests in {elapsed:.1f} s "
        f"({len(everything) / elapsed:.0f}/s, {CLIENTS} clients), {len(failed)} failed, "
        f"{len(reloads)} reloads ({', '.join(f'{s:.1f}' for s in reloads)} s)"
    )
    assert not failed, failed[:5]
    # Each client sends one request after another, so its own answers are in server
    # order: the old version, the new one from the first swap on, the old one again;
    # never a flap back within a phase.
    for out in results:
        versions = [v for _, v in out if v]
        phases = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
        assert phases == [registry.v1, registry.v2, registry.v1], phases
    assert len(reloads) == 2
    assert time.monotonic() < deadline, "the reloads took longer than the bound"
    assert served == {registry.v1, registry.v2}
    assert len(everything) > 200
    assert api_client.served_version(live_api.url) == registry.v1
