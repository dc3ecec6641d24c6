"""Fill the crop cache for the training pool and the LFW evaluation set.

    python -m model.datasets --data ../shared/data

Each archive becomes one cache file of detections, landmarks and dlib teacher descriptors (see model.datasets.sources).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from model.datasets.sources import DEFAULT_CACHE, detect_source

# (archive, labelled): LFW first, because evaluation needs it; UTKFace has no identities.
SOURCES = (
    ("lfw-deepfunneled.tar", True),
    ("celeba-aligned.tar", True),
    ("celeba-wild.tar", True),
    ("utkface.tar", False),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where detections are kept")
    parser.add_argument("--processes", type=int, default=None, help="detection processes (default: one per core)")
    parser.add_argument("--only", nargs="*", help="archive names to prepare (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for archive, labelled in SOURCES:
        if args.only and archive not in args.only:
            continue
        detect_source(args.data / archive, cache=args.cache, labelled=labelled, processes=args.processes)


if __name__ == "__main__":
    main()
