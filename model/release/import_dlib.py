"""Import dlib's public-domain face ResNet as a facegate model: weights and model card.

    python -m model.release.import_dlib [--out runs/dlib-resnet.pt] [--data ../shared/data]

This is the starting point of the shipped default, which fine-tunes it (model/configs/resnet-finetune.toml),
and a model in its own right: its weights are CC0, where the fine-tuned ones inherit the research-only terms
of the data they were tuned on. FACEGATE_MODEL_PATH=runs/dlib-resnet.pt serves it.

Reads `dlib_face_recognition_resnet_model_v1.dat` from the installed `face-recognition-models` package
(nothing is downloaded), converts it to a PyTorch state dict (model.networks.dlib_resnet.read_dat) and
writes it with a card. With --data, the card is completed as `model.release.export` completes a trained model's:
thresholds calibrated on CelebA impostors, and the LFW View 2 figures.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from model.card.schema import write_model
from model.datasets.sources import DEFAULT_CACHE
from model.faces.pipeline import dlib_model_path
from model.faces.reference import DLIB_RESNET
from model.networks.dlib_resnet import read_dat
from model.release.export import DLIB_CARD_FIELDS, complete_card

log = logging.getLogger(__name__)


def import_dlib(out: Path) -> dict:
    """Write the converted weights and a card without thresholds or metrics yet; returns the card."""
    network = read_dat(Path(dlib_model_path(DLIB_RESNET)))
    return write_model(network.state_dict(), "DlibResNet", {}, out, **DLIB_CARD_FIELDS, thresholds={"default": 0.6})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/dlib-resnet.pt"))
    parser.add_argument("--data", type=Path, help="../shared/data: calibrate and evaluate the imported model")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the detection and chip cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    card = import_dlib(args.out)
    log.info("wrote %s (%s)", args.out, card["model_id"])
    if args.data:
        complete_card(args.out, args.data, args.cache)


if __name__ == "__main__":
    main()
