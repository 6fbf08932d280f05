"""CLI: classify and info; user errors exit 2 without a traceback."""

from __future__ import annotations

import json

from fashionclip.cli import main


def test_classify_json(tiny_clip_dir, product_images, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    code = main(
        ["classify", "--model", str(tiny_clip_dir), "--labels", "shirt,dress,shoes", "--json"]
        + [str(p) for p in product_images]
        + [str(bad)]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["predictions"]) == len(product_images)
    assert out["failures"][0]["image"] == str(bad)
    for row in out["predictions"]:
        assert row["label"] in {"shirt", "dress", "shoes"}
        assert abs(sum(row["scores"].values()) - 1) < 1e-4


def test_info_json(tiny_clip_dir, capsys):
    assert main(["info", "--model", str(tiny_clip_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["kind"] == "clip" and out["model"]["embedding_dim"] == 32


def test_user_errors_exit_2(tiny_clip_dir, product_images, capsys):
    code = main(
        ["classify", "--model", str(tiny_clip_dir), "--labels", "one", str(product_images[0])]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "at least two labels" in err and "Traceback" not in err
    assert main(["info", "--model", "/no/such/folder"]) == 2
