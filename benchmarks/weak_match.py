"""Choose the page's "weak match" threshold from data (see docs/faults.md, "Weak matches").

For a model and a KAGL catalog built with it, the best (top-1) cosine score of

* in-domain queries: what a shopper types, built from the catalog's own products
  ("{gender} {baseColour} {articleType}" and product display names), and
* out-of-domain queries: non-fashion phrases and random letter strings,

are collected. The threshold is the score that best separates the two on the *choice*
catalog (the KAGL validation split; Youden's J: max of true-weak rate minus false-weak
rate), then reported unchanged on a held-out catalog (the test split) with a held-out half of
the out-of-domain phrases and new random strings. Usage::

    python benchmarks/weak_match.py --choose /tmp/kagl-val --report /tmp/kagl-test \
        --out weak_match.json [--plot weak_match.png]
"""

from __future__ import annotations

import argparse
import json
import random
import string
from pathlib import Path
from typing import Any

import numpy as np

from fashionclip.index import Catalog
from fashionclip.models import load

#: Non-fashion phrases; even positions choose the threshold, odd ones report it.
OUT_OF_DOMAIN = [
    "a golden retriever puppy",
    "mountain landscape at sunset",
    "a plate of spaghetti",
    "red sports car on a highway",
    "laptop computer keyboard",
    "a cup of coffee",
    "skyscrapers in new york",
    "a bowl of fruit salad",
    "electric guitar",
    "cat sleeping",
    "airplane taking off",
    "bicycle leaning on a wall",
    "office chair",
    "pizza with cheese",
    "a tropical beach with palm trees",
    "washing machine",
    "hammer and nails",
    "broccoli",
    "soccer ball on grass",
    "a snowy forest",
    "smartphone screen",
    "a horse in a field",
    "kitchen sink",
    "fireworks at night",
    "a stack of books",
    "lawn mower",
    "birthday cake",
    "wind turbine",
    "a microscope in a lab",
    "tomato soup",
    "car engine repair",
    "oil painting of a ship",
    "a glass of red wine",
    "vacuum cleaner",
    "elephant",
    "traffic light",
    "tax return form",
    "quantum physics lecture",
    "a bridge over a river",
    "bunch of bananas",
    "dentist appointment",
    "printer ink cartridge",
    "a rainy street",
    "chess board",
    "garden hose",
    "hospital bed",
    "a rocket launch",
    "fishing boat",
    "mortgage interest rates",
    "a dog playing fetch",
    "refrigerator",
    "volcano eruption",
    "basketball hoop",
    "ceiling fan",
    "a flock of birds",
    "sushi platter",
    "power drill",
    "railway station",
    "desk lamp",
    "pile of firewood",
]


def _random_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = lambda: "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))  # noqa: E731
    return [" ".join(words() for _ in range(rng.randint(1, 3))) for _ in range(n)]


def _in_domain(catalog: Catalog, n: int, seed: int) -> list[str]:
    """Queries built from random products: attribute combinations and display names."""
    rng = random.Random(seed)
    ids = rng.sample(catalog.ids(), n)
    queries = []
    for i, pid in enumerate(ids):
        product = catalog.get(pid)
        meta = product.metadata if product else {}
        if i % 2 == 0:
            parts = [meta.get(c) for c in ("gender", "baseColour", "articleType")]
            queries.append(" ".join(str(p) for p in parts if p))
        else:
            queries.append(str(meta.get("productDisplayName") or ""))
    return [q for q in queries if q.strip()]


def best_scores(catalog: Catalog, queries: list[str], mode: str) -> np.ndarray:
    """Top-1 score of each query in one search mode (scores of different modes differ in
    scale: a cosine for vector, a fused score for hybrid)."""
    found = [catalog.search(q, k=1, mode=mode)[0].score for q in queries]
    return np.array(found, dtype=np.float64)


def choose_threshold(good: np.ndarray, weak: np.ndarray) -> tuple[float, float]:
    """The cut maximising (weak flagged) - (good flagged); flagged means score < cut."""
    cuts = np.unique(np.concatenate([good, weak]))
    best, best_j = float(cuts[0]), -1.0
    for cut in cuts:
        j = float((weak < cut).mean() - (good < cut).mean())
        if j > best_j:
            best, best_j = float(cut), j
    return round(best, 3), best_j


def _scores(
    path: str, model: Any, half: int, seed: int, n: int, mode: str
) -> dict[str, list[float]]:
    catalog = Catalog.open(path, model)
    ood = OUT_OF_DOMAIN[half::2] + _random_strings(30, seed)
    found = {
        "in_domain": best_scores(catalog, _in_domain(catalog, n, seed), mode).tolist(),
        "out_of_domain": best_scores(catalog, ood, mode).tolist(),
    }
    catalog.close()
    return found


def _rates(scores: dict[str, list[float]], cut: float) -> dict[str, float]:
    good, weak = np.array(scores["in_domain"]), np.array(scores["out_of_domain"])
    return {
        "in_domain_flagged": round(float((good < cut).mean()), 4),
        "out_of_domain_flagged": round(float((weak < cut).mean()), 4),
        "in_domain_p05": round(float(np.percentile(good, 5)), 4),
        "out_of_domain_p95": round(float(np.percentile(weak, 95)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--choose", required=True, help="catalog to choose the threshold on")
    parser.add_argument("--report", default=None, help="held-out catalog to report it on")
    parser.add_argument("--model", default=None, help="default: the catalog's model")
    parser.add_argument("--queries", type=int, default=200, help="in-domain queries per catalog")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--plot", default=None, help="histogram PNG of the first mode")
    parser.add_argument("--modes", default="vector,hybrid", help="search modes to choose for")
    args = parser.parse_args()
    with Catalog.open(args.choose) as probe:
        name = args.model or probe.model_identity.name
    model = load(name, device="cpu")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    result: dict[str, Any] = {
        "model": name,
        "fingerprint": model.identity.fingerprint,
        "weak_match_below": {},
    }
    raw: dict[str, Any] = {}
    for mode in modes:  # one threshold per search mode: their scores differ in scale
        chosen = _scores(args.choose, model, 0, 1, args.queries, mode)
        good, weak = np.array(chosen["in_domain"]), np.array(chosen["out_of_domain"])
        cut, j = choose_threshold(good, weak)
        result["weak_match_below"][mode] = cut
        figures: dict[str, Any] = {
            "youden_j": round(j, 4),
            "choose": {"catalog": args.choose, **_rates(chosen, cut)},
        }
        held = None
        if args.report:
            held = _scores(args.report, model, 1, 2, args.queries, mode)
            figures["report"] = {"catalog": args.report, **_rates(held, cut)}
        result[mode] = figures
        raw[mode] = {"scores": chosen, "held": held}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "raw": raw}))
    cut = result["weak_match_below"][modes[0]]
    chosen, held = raw[modes[0]]["scores"], raw[modes[0]]["held"]
    if args.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3))
        for label, values in (held or chosen).items():
            ax.hist(values, bins=30, alpha=0.6, label=label.replace("_", "-"))
        ax.axvline(cut, color="k", linestyle="--", label=f"weak below {cut}")
        ax.set_xlabel(f"best {modes[0]} score")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
