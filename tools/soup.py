"""A uniform model soup: the mean of saved fashionclip dual encoders fine-tuned from one start.

    python tools/soup.py runs/fashion-clip-mini-v6 runs/stage5-seed3/best runs/stage5-seed4/best ...

Every stored weight is averaged (Wortsman et al., 2022, "Model soups"); the checkpoints must be
one architecture. See :func:`fashionclip.train.wise.soup_folders`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fashionclip.train.wise import soup_folders


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", help="folder to write the soup to")
    parser.add_argument("folders", nargs="+", help="two or more model folders")
    args = parser.parse_args(argv)
    print(soup_folders(args.folders, args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
