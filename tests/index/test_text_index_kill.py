"""kill -9 while products are being committed: the text index and the vectors agree after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fashionclip.index import Catalog

_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fashionclip.index import Catalog

    identity = {"name": "k", "kind": "test", "embedding_dim": 8, "fingerprint": "k"}
    catalog = Catalog.create(sys.argv[1], identity)
    catalog.add_embeddings(["seed"], np.ones((1, 8)), [{"name": "seed walrus"}])
    catalog.build_text_index()
    rng = np.random.default_rng(0)
    batch = 0
    while True:  # killed from outside
        ids = [f"b{batch}-{i}" for i in range(200)]
        metas = [{"name": f"walrus item {batch} {i}", "colour": "Red"} for i in range(200)]
        catalog.add_embeddings(ids, rng.normal(size=(200, 8)), metas)
        catalog.remove([f"b{batch - 1}-{i}" for i in range(0, 200, 3)])
        batch += 1
    """
)


def test_kill_9_mid_commit_keeps_text_index_and_vectors_agreeing(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_SCRIPT)
    folder = tmp_path / "cat"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(folder)], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            vectors = folder / "vectors"
            if vectors.is_dir() and len(list(vectors.glob("seg-*.npy"))) >= 4:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the writer never committed")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    catalog = Catalog.open(folder)
    con = catalog.store.connection()
    slots = {r[0] for r in con.execute("SELECT slot FROM products")}
    text_slots = {r[0] for r in con.execute("SELECT rowid FROM product_text")}
    assert len(slots) > 1 and text_slots == slots
    hits = catalog.search("walrus", mode="keyword", k=len(catalog) + 10)
    assert len(hits) == len(catalog)
    catalog.close()
