"""One writer per catalog (issue 15): a second writing process fails fast or waits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionclip.index import Catalog
from fashionclip.index.lock import LOCK_NAME, CatalogLockedError, writer_lock

# Indexes a folder with a slowed tiny model; after its first committed batch it waits for
# the file "go" (so the test decides how long this writer holds the catalog).
_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import fashionclip
    from fashionclip.index import Catalog
    from fashionclip.data.tables import read_image_folder

    model = fashionclip.load(sys.argv[1], device="cpu", precision="fp32")
    real = model.try_encode_images
    go = Path(sys.argv[4])
    calls = [0]

    def slow(images, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            while not go.exists():
                time.sleep(0.05)
        return real(images, **kwargs)

    model.try_encode_images = slow
    catalog = Catalog.open_or_create(sys.argv[2], model)
    report = catalog.index(read_image_folder(sys.argv[3]), batch_size=4, commit_every=4)
    print(report.summary())
    """
)


def _images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i:02d}.png")


def test_second_writer_process_fails_fast_then_waits(tmp_path, tiny_clip_dir):
    _images(tmp_path / "img", 16)
    script = tmp_path / "writer.py"
    script.write_text(_SLOW_WRITER)
    cat, go = tmp_path / "cat", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, str(script), str(tiny_clip_dir), str(cat), str(tmp_path / "img"), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    cli = [sys.executable, "-m", "fashionclip.cli", "index", "--catalog", str(cat)]
    cli += [str(tmp_path / "img"), "--model", str(tiny_clip_dir), "--no-progress"]
    try:
        deadline = time.monotonic() + 120
        while not list((cat / "vectors").glob("seg-*.npy")):  # first batch committed
            if time.monotonic() > deadline or first.poll() is not None:
                pytest.fail(f"the first writer never committed: {first.communicate()}")
            time.sleep(0.05)
        second = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "another process is writing to catalog" in second.stderr
        assert f"pid {first.pid}" in second.stderr

        waiting = subprocess.Popen([*cli, "--wait"], stdout=subprocess.PIPE, text=True, env=env)
        time.sleep(1.0)
        go.touch()  # let the first writer finish; the waiting one runs after it
        out, _ = waiting.communicate(timeout=120)
        assert waiting.returncode == 0
        assert "0 added" in out and "16 unchanged" in out
    finally:
        go.touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "16 added" in out
    with Catalog.open(cat) as catalog:
        stats = catalog.stats()
        assert stats.products == 16 and stats.tombstones == 0


def test_lock_is_reentrant_in_a_thread_and_serialises_threads(tmp_path):
    order: list[str] = []
    with writer_lock(tmp_path, action="outer"):
        assert "outer" in (tmp_path / LOCK_NAME).read_text()
        with writer_lock(tmp_path):  # the same thread: re-entrant
            order.append("nested")

        def other() -> None:
            with writer_lock(tmp_path):
                order.append("thread")

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.2)
        order.append("outer done")
    thread.join(timeout=10)
    assert order == ["nested", "outer done", "thread"]
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: no stale holder


def test_writer_in_another_process_blocks_catalog_writes(tmp_path):
    identity = {"name": "s", "kind": "test", "embedding_dim": 4, "fingerprint": "s"}
    Catalog.create(tmp_path / "cat", identity).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from fashionclip.index.lock import writer_lock\n"
            "with writer_lock(sys.argv[1], action='holding'):\n"
            "    print('held', flush=True); time.sleep(60)",
            str(tmp_path / "cat"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with Catalog.open(tmp_path / "cat") as catalog:
            with pytest.raises(CatalogLockedError, match=f"pid {holder.pid}"):
                catalog.add_embeddings(["a"], np.ones((1, 4), np.float32))
            assert len(catalog) == 0 and catalog.search(vector=np.ones(4), k=1) == []  # reads
    finally:
        holder.kill()
        holder.wait(timeout=30)
