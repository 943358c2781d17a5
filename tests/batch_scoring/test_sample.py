"""A part's drift sample: the rows drawn from a Parquet part keep their Arrow dictionaries
until the part's sample is joined, then decoded once (the same texts as decoding each
chunk's rows); the sample file stores texts with dictionary pages and no statistics, and
reads back as the same frame as a file written with pyarrow's defaults. No registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from include.ml_pipeline.batch_scoring.part import _plain, _Positions, _write_sample

TEXTS = ["region", "plan"]


def _chunks(rows: int, size: int) -> list[pa.Table]:
    """`rows` rows in chunks of `size`, the texts as dictionaries whose entries differ
    from chunk to chunk (as a Parquet file's row groups may), a missing text here and
    there, a dictionary label column as the compiled path writes."""
    rng = np.random.default_rng(4)
    chunks = []
    for start in range(0, rows, size):
        n = min(size, rows - start)
        offset = start // size
        region = [f"r{(i + offset) % 7}" if i % 11 else None for i in range(n)]
        chunks.append(
            pa.table(
                {
                    "value": rng.normal(size=n),
                    "region": pa.array(region, pa.string()).dictionary_encode(),
                    "plan": pa.array(
                        [f"p{(i * offset) % 3}" for i in range(n)]
                    ).dictionary_encode(),
                    "prediction": pa.DictionaryArray.from_arrays(
                        pa.array(rng.integers(0, 2, n).astype(np.int32)),
                        pa.array(["no", "yes"]),
                    ),
                    "proba_yes": rng.random(n),
                }
            )
        )
    return chunks


def _sampled(chunks: list[pa.Table], rows: int) -> _Positions:
    sample = _Positions(40, seed=3, rows=rows, decode=TEXTS)
    first = 0
    for chunk in chunks:
        scored = np.flatnonzero(np.arange(chunk.num_rows) % 5 != 1)  # some rows refused
        sample.offer(chunk.take(scored), first, scored)
        first += chunk.num_rows
    return sample


def test_the_sample_keeps_dictionaries_until_joined_and_decodes_the_same_texts():
    chunks = _chunks(300, 64)
    sample = _sampled(chunks, 300)
    # the rows drawn are kept as taken: an index per row, the chunk's texts once
    assert len(sample.pieces) > 2
    for piece in sample.pieces:
        for name in TEXTS:
            assert pa.types.is_dictionary(piece.schema.field(name).type)
    table = sample.table
    assert table is not None
    # decoded once, as the input's texts; the labels stay a dictionary (as written)
    assert table.schema.field("region").type == pa.string()
    assert table.schema.field("plan").type == pa.string()
    assert pa.types.is_dictionary(table.schema.field("prediction").type)
    # the same rows and values as decoding each chunk's rows when taken
    per_chunk = pa.concat_tables([_plain(piece, TEXTS) for piece in sample.pieces])
    assert table.equals(per_chunk)
    assert table.column("region").null_count > 0


def test_the_sample_file_reads_back_as_pyarrows_default_file(tmp_path):
    chunks = _chunks(300, 64)
    table = _sampled(chunks, 300).table
    _write_sample(table, str(tmp_path / "sample.parquet"))
    pq.write_table(table, str(tmp_path / "default.parquet"))
    ours = pq.ParquetFile(tmp_path / "sample.parquet")
    assert ours.schema_arrow == pq.read_schema(tmp_path / "default.parquet")
    assert pq.read_table(tmp_path / "sample.parquet").equals(table)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "sample.parquet"), pd.read_parquet(tmp_path / "default.parquet")
    )
    # dictionary pages for texts only, no min/max statistics (the drift check never
    # filters on them)
    group = ours.metadata.row_group(0)
    for i in range(group.num_columns):
        column = group.column(i)
        dictionary = column.dictionary_page_offset is not None
        assert dictionary == (column.path_in_schema in {*TEXTS, "prediction"}), column
        assert not column.is_stats_set, column
