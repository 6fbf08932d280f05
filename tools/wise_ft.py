"""WiSE-FT a saved fashionclip dual encoder: mix its image backbone with the ImageNet one.

    python tools/wise_ft.py runs/fashion-clip-mini-stage3/best runs/fashion-clip-mini-wise --alpha 0.75

``alpha`` is the share of the fine-tuned backbone (1 = unchanged). Projections, temperature and
the text side are copied as they are. See :mod:`fashionclip.train.wise`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fashionclip.train.wise import mix_folders, wise_ft_folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="fine-tuned model folder")
    parser.add_argument("target", help="folder to write the mixed model to")
    parser.add_argument(
        "--alpha", type=float, required=True, help="share of the fine-tuned weights"
    )
    parser.add_argument(
        "--start",
        default=None,
        help="mix with this checkpoint (the one SOURCE was fine-tuned from) instead of ImageNet",
    )
    args = parser.parse_args(argv)
    if args.start:
        print(mix_folders(args.source, args.start, args.target, args.alpha))
    else:
        print(wise_ft_folder(args.source, args.target, args.alpha))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
