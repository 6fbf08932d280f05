"""Align the words the search understands as an article type with the type's name, text side only.

    python tools/align_synonyms.py runs/fashion-clip-mini-v6 runs/fashion-clip-mini-v7

Reads KAGL's *train* split (names and article types; ``FASHIONCLIP_DATA_DIR`` or ``--data-dir``),
builds the synonym table the search vocabulary implies, trains the model's text side toward it
and saves the result (image vectors unchanged). See :mod:`fashionclip.train.synonyms`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from tqdm import tqdm

import fashionclip
from fashionclip.evaluate.loaders import load_kagl
from fashionclip.train.synonyms import AlignConfig, align_synonyms, synonym_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="model folder to start from")
    parser.add_argument("target", help="folder to write the aligned model to")
    parser.add_argument("--data-dir", default=None, help="folder holding kagl/")
    parser.add_argument("--beta", type=float, default=AlignConfig.beta)
    parser.add_argument("--steps", type=int, default=AlignConfig.steps)
    parser.add_argument("--seed", type=int, default=AlignConfig.seed)
    parser.add_argument("--anchor-weight", type=float, default=AlignConfig.anchor_weight)
    args = parser.parse_args(argv)
    kagl = load_kagl("train", args.data_dir)
    # as the search reads a catalog of these products (columns of free text left out)
    table = synonym_table({c: sorted(set(vs) - {""}) for c, vs in kagl.attributes.items()})
    model = fashionclip.load(args.source, device="cpu", precision="fp32")
    config = AlignConfig(
        beta=args.beta, steps=args.steps, seed=args.seed, anchor_weight=args.anchor_weight
    )
    with tqdm(total=config.steps, desc="aligning", unit="step") as bar:

        def progress(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

        figures = align_synonyms(model, table, kagl.names, config, progress)
    model.save_pretrained(args.target)
    print(json.dumps({"target": args.target, "config": vars(config), **figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
