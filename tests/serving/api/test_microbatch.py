"""Micro-batching (`serving/api/microbatch.py`): requests that arrive together are
predicted as one batch, each gets exactly its own rows' answers (and its own error), and
a lone request is predicted at once, without yielding to the loop."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import numpy as np
import pytest

from include.ml_pipeline.serving.api.microbatch import PROBE_EVERY, MicroBatcher
from include.ml_pipeline.serving.batch import Batch
from include.ml_pipeline.serving.compiled.predictor import Prediction
from include.ml_pipeline.serving.parsing import RequestError


def _batch(*values: float) -> Batch:
    return Batch(("x",), (), np.asarray(values, dtype=float).reshape(-1, 1), ())


class Recorder:
    """A model that answers each row's value as its label and refuses negative values."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, served, batch: Batch) -> Prediction:
        self.calls.append(batch.rows)
        values = batch.numeric[:, 0]
        if (values < 0).any():
            raise RequestError(422, "model_rejected_input", f"negative value in {values}")
        return Prediction([str(v) for v in values], np.c_[values, -values], np.zeros(len(values)))


def _gather(batcher: MicroBatcher, batches: list[Batch]):
    async def run():
        return await asyncio.gather(
            *(batcher.predict("model", b) for b in batches), return_exceptions=True
        )

    return asyncio.run(run())


def test_requests_of_one_turn_are_one_prediction_each_getting_its_rows():
    model = Recorder()
    batcher = MicroBatcher(model, max_rows=1000)
    batches = [_batch(1.0), _batch(2.0, 3.0), _batch(4.0)]
    answers = _gather(batcher, batches)
    assert model.calls == [4]  # one prediction of the 4 rows
    assert [a.labels for a in answers] == [["1.0"], ["2.0", "3.0"], ["4.0"]]
    assert answers[1].proba.tolist() == [[2.0, -2.0], [3.0, -3.0]]
    assert batcher.active  # batches form: later requests join without probing


def test_a_rejected_request_gets_its_error_and_the_others_their_answers():
    model = Recorder()
    answers = _gather(MicroBatcher(model, max_rows=1000), [_batch(1.0), _batch(-1.0), _batch(2.0)])
    assert model.calls == [3, 1, 1, 1]  # the batch raised: each predicted alone
    assert answers[0].labels == ["1.0"]
    assert isinstance(answers[1], RequestError)
    assert answers[2].labels == ["2.0"]


def test_batches_respect_the_row_bound_and_lone_requests_do_not_wait():
    model = Recorder()
    batcher = MicroBatcher(model, max_rows=3)
    _gather(batcher, [_batch(1.0, 2.0), _batch(3.0), _batch(4.0, 5.0)])
    assert model.calls == [3, 2]
    assert not batcher.wants("model", _batch(*range(4)))  # above the bound: predicted now
    lone = MicroBatcher(model, max_rows=1000)
    # off until batches form: a lone request joins a batch only as a probe
    wanted = [lone.wants("model", _batch(1.0)) for _ in range(2 * PROBE_EVERY)]
    assert wanted.count(True) == 2


@pytest.fixture(scope="module")
def served():
    from include.ml_pipeline.serving.loading.served import build_served_model
    from tests.support.models import fit_pipeline, training_frame

    frame, spec = training_frame(1500, 7)
    pipeline = fit_pipeline(frame, spec, "hgb", 7)
    return build_served_model(pipeline, spec, name="mb", version="1", alias="", max_rows=10_000)


def test_the_api_answers_concurrent_requests_as_it_answers_each_alone(served, tmp_path):
    from include.ml_pipeline.data_preparation.sample_data import generate_churn_frame
    from include.ml_pipeline.deployment.api_client import split_payload
    from include.ml_pipeline.serving.api.app import create_app
    from include.ml_pipeline.serving.api.settings import get_serving_settings

    settings = replace(get_serving_settings(), model_name="mb", log_uri=str(tmp_path / "log"))
    app = create_app(settings, loader=lambda: served)
    frame = generate_churn_frame(200, 3)[list(served.spec.columns)]
    bodies = [split_payload(frame.iloc[i : i + 1 + i % 5]) for i in range(0, 192, 3)]

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                while (await client.get("/ready")).status_code != 200:
                    await asyncio.sleep(0.02)
                alone = [(await client.post("/invocations", content=b)).json() for b in bodies]
                together = await asyncio.gather(
                    *(client.post("/invocations", content=b) for b in bodies)
                )
                return alone, [r.json() for r in together]

    alone, together = asyncio.run(run())
    batcher = app.state.routes.batcher
    assert together == alone
    assert batcher.batched_requests > batcher.batches  # some requests were batched
