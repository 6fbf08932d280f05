"""Damaged catalogs: one-line errors, `fashionclip check` and `--repair` (issue 15)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fashionclip.cli import main
from fashionclip.data.tables import ProductRecord
from fashionclip.index import Catalog, CatalogDamagedError
from fashionclip.index.check import REPAIR_REPORT, check_catalog, repair_catalog

BATCHES = 3
PER_BATCH = 6


def _records(folder: Path, batch: int) -> list[ProductRecord]:
    """Six small "image" files (the fake model embeds their bytes) with metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(PER_BATCH):
        pid = f"b{batch}-{i}"
        path = folder / f"{pid}.img"
        path.write_bytes(f"{pid:<8}".encode() + bytes(range(i + 1)))
        records.append(ProductRecord(pid, path, {"batch": batch, "i": i}))
    return records


@pytest.fixture
def three_segments(tmp_path, fake_model) -> Path:
    """A catalog of 18 products in three segments (one per indexing run)."""
    root = tmp_path / "cat"
    with Catalog.create(root, fake_model()) as catalog:
        for batch in range(BATCHES):
            catalog.index(_records(tmp_path / "img", batch), write_report=False)
        assert len(catalog.snapshot().segments) == BATCHES
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:150])


# ------------------------------------------------------------------ one-line errors


def test_truncated_segment_is_a_one_line_error_naming_it(three_segments):
    _truncate(three_segments / "vectors" / "seg-000002.npy")
    with Catalog.open(three_segments) as catalog:
        with pytest.raises(CatalogDamagedError, match=r"seg-000002\.npy.*--repair"):
            catalog.search(like="b0-1")
        with pytest.raises(CatalogDamagedError, match="seg-000002"):
            len(catalog)


def test_deleted_vectors_folder_is_a_one_line_error(three_segments):
    shutil.rmtree(three_segments / "vectors")
    with (
        Catalog.open(three_segments) as catalog,
        pytest.raises(CatalogDamagedError, match=r"seg-00000\d\.npy is missing"),
    ):
        catalog.search(like="b0-1")


def test_indexing_into_a_damaged_catalog_is_refused(three_segments, tmp_path, fake_model):
    _truncate(three_segments / "vectors" / "seg-000001.npy")
    model = fake_model()
    with (
        Catalog.open(three_segments, model) as catalog,
        pytest.raises(CatalogDamagedError, match="seg-000001"),
    ):
        catalog.index(_records(tmp_path / "img", 7))
    assert model.calls == 0


@pytest.mark.parametrize("content", [b"", b"garbage" * 100], ids=["empty", "garbage"])
def test_broken_database_cannot_be_repaired_and_says_so(three_segments, content, fake_model):
    (three_segments / "catalog.sqlite").write_bytes(content)
    for name in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (three_segments / name).unlink(missing_ok=True)
    with pytest.raises(CatalogDamagedError, match="cannot be repaired.*no product ids"):
        Catalog.open(three_segments)
    report = check_catalog(three_segments)
    assert report.fatal and report.checks == ["database"]
    with pytest.raises(CatalogDamagedError, match="cannot be repaired"):
        repair_catalog(three_segments, lambda name: fake_model())


# ------------------------------------------------------------------ check and repair


def test_healthy_catalog_checks_ok(three_segments):
    report = check_catalog(three_segments)
    assert report.ok and report.products == BATCHES * PER_BATCH and report.segments == BATCHES
    assert report.checks == ["database", "segments", "products", "ann", "text"]


def test_repair_reembeds_only_the_lost_products(three_segments, fake_model):
    with Catalog.open(three_segments) as catalog:
        before = {pid: catalog.vector(pid) for pid in catalog.ids()}
    _truncate(three_segments / "vectors" / "seg-000002.npy")

    report = check_catalog(three_segments)
    assert not report.ok and report.damaged_segments == {2: "seg-000002.npy"}
    assert report.lost_products() == [f"b1-{i}" for i in range(PER_BATCH)]

    model = fake_model()
    repaired = repair_catalog(three_segments, lambda name: model)
    assert repaired.dropped_segments == ["seg-000002.npy"]
    assert repaired.reembedded == PER_BATCH and repaired.lost == []
    assert model.calls == 1  # one embedding call, for the six lost products only
    assert check_catalog(three_segments).ok
    with Catalog.open(three_segments) as catalog:
        assert len(catalog) == BATCHES * PER_BATCH
        for pid, vector in before.items():  # intact ones kept, lost ones re-embedded
            np.testing.assert_allclose(catalog.vector(pid), vector, atol=1e-6)
            assert catalog.get(pid).metadata["i"] == int(pid.split("-")[1])
    saved = json.loads((three_segments / REPAIR_REPORT).read_text())
    assert saved["state"] == "done" and saved["reembedded"] == PER_BATCH


def test_repair_lists_products_it_cannot_reembed(three_segments, tmp_path, fake_model):
    (tmp_path / "img" / "b2-3.img").unlink()  # the image of a lost product is gone too
    shutil.rmtree(three_segments / "vectors")
    repaired = repair_catalog(three_segments, lambda name: fake_model())
    assert repaired.reembedded == BATCHES * PER_BATCH - 1
    assert [lost["id"] for lost in repaired.lost] == ["b2-3"]
    assert repaired.lost[0]["metadata"] == {"batch": 2, "i": 3}
    assert check_catalog(three_segments).ok


def test_missing_or_stale_ann_is_reported_and_rebuilt(three_segments, fake_model):
    with Catalog.open(three_segments) as catalog:
        info = catalog.build_ann(backend="exact")
    (three_segments / "ann" / info.file).unlink()
    report = check_catalog(three_segments)
    assert [p.check for p in report.problems] == ["ann"] and "missing" in str(report.problems)
    assert report.lost_products() == []
    repaired = repair_catalog(three_segments, lambda name: pytest.fail("no model needed"))
    assert repaired.ann == "rebuilt" and check_catalog(three_segments).ok

    _truncate(three_segments / "vectors" / "seg-000003.npy")  # the ANN covers it: stale
    repaired = repair_catalog(three_segments, lambda name: fake_model())
    assert repaired.ann == "rebuilt" and repaired.reembedded == PER_BATCH
    with Catalog.open(three_segments) as catalog:
        assert catalog.ann_info is not None and len(catalog) == BATCHES * PER_BATCH


# ------------------------------------------------------------------ command line


def test_check_command_exit_codes_and_repair(tmp_path, tiny_clip, tiny_clip_dir, capsys):
    images = tmp_path / "img"
    images.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / f"{i}.png")
    root = tmp_path / "cat"
    model_args = ["--model", str(tiny_clip_dir), "--device", "cpu"]
    assert main(["index", "--catalog", str(root), str(images), "--no-progress", *model_args]) == 0
    capsys.readouterr()

    assert main(["check", "--catalog", str(root)]) == 0
    assert "ok (6 products in 1 segments" in capsys.readouterr().out
    _truncate(root / "vectors" / "seg-000001.npy")
    assert main(["check", "--catalog", str(root), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"] and data["lost_products"] == 6
    assert main(["search", "--catalog", str(root), "--like", "0"]) == 2
    err = capsys.readouterr().err
    assert "seg-000001.npy" in err and "--repair" in err and len(err.strip().splitlines()) == 1
    assert main(["check", "--catalog", str(root), "--repair", *model_args]) == 0
    out = capsys.readouterr().out
    assert "re-embedded 6 products" in out and "ok (6 products" in out
    (root / "vectors" / "seg-000002.npy").unlink()  # the repaired segment
    assert main(["check", "--catalog", str(root), "--repair", "--json", *model_args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and not data["before"]["ok"] and data["repair"]["reembedded"] == 6
    assert main(["check", "--catalog", str(tmp_path / "nothing")]) == 2

    (root / "catalog.sqlite").write_bytes(b"not a database" * 50)
    assert main(["check", "--catalog", str(root), "--repair"]) == 1
    assert "cannot be repaired" in capsys.readouterr().out


def test_serve_refuses_a_damaged_catalog_in_one_line(three_segments, capsys):
    (three_segments / "vectors" / "seg-000003.npy").unlink()
    assert main(["serve", "--catalog", str(three_segments), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seg-000003.npy is missing" in err[0] and "--repair" in err[0]


def test_repair_keeps_the_readable_rows_of_a_truncated_segment(three_segments, fake_model):
    """A segment cut after its third row: rows 0-2 are salvaged, only 3-5 are re-embedded."""
    with Catalog.open(three_segments) as catalog:
        before = {pid: catalog.vector(pid) for pid in catalog.ids()}
    segment = three_segments / "vectors" / "seg-000002.npy"
    data = segment.read_bytes()
    row_bytes = 16 * 4
    header = len(data) - PER_BATCH * row_bytes
    segment.write_bytes(data[: header + 3 * row_bytes + 10])  # three whole rows and a bit

    embedded: list[str] = []
    model = fake_model()
    real = model.try_encode_images

    def recording(images, **kwargs):
        embedded.extend(str(i) for i in images)
        return real(images, **kwargs)

    model.try_encode_images = recording
    repaired = repair_catalog(three_segments, lambda name: model)
    assert repaired.salvaged == 3 and repaired.reembedded == 3
    assert sorted(Path(p).stem for p in embedded) == ["b1-3", "b1-4", "b1-5"]
    assert check_catalog(three_segments).ok
    with Catalog.open(three_segments) as catalog:
        assert len(catalog) == BATCHES * PER_BATCH
        for pid, vector in before.items():
            np.testing.assert_allclose(catalog.vector(pid), vector, atol=1e-6)


def test_ann_left_behind_by_a_compaction_is_a_warning_not_damage(three_segments):
    """Compaction makes the ANN index out of date by design: check passes, serve starts."""
    with Catalog.open(three_segments) as catalog:
        catalog.build_ann(backend="exact")
        catalog.compact()
        assert catalog.ann_info is None
    report = check_catalog(three_segments)
    assert report.ok and len(report.warnings) == 1 and "compaction" in report.warnings[0]
    assert main(["check", "--catalog", str(three_segments)]) == 0


def test_keyword_index_out_of_step_is_reported_and_rebuilt(three_segments):
    """The check covers the keyword (FTS5) index too: rows edited behind the triggers' back."""
    with Catalog.open(three_segments) as catalog:
        catalog.build_text_index()
        assert check_catalog(three_segments).ok
        with catalog.store.write() as con:  # what a hand edit or a damaged page could leave
            con.execute(
                "DELETE FROM product_text WHERE rowid IN (SELECT slot FROM products LIMIT 2)"
            )
    report = check_catalog(three_segments)
    assert [p.check for p in report.problems] == ["text"]
    assert "2 products have no keyword row" in report.problems[0].message
    repaired = repair_catalog(three_segments, lambda name: pytest.fail("no model needed"))
    assert repaired.text == "rebuilt" and repaired.reembedded == 0
    assert check_catalog(three_segments).ok
    with Catalog.open(three_segments) as catalog:
        found = catalog.search("0", mode="keyword", k=50)  # batch 0, or i 0 in another batch
        assert len(found) == PER_BATCH + BATCHES - 1
