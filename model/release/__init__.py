"""From a checkpoint (model.training) or dlib's own file to shipped weights with a calibrated model card.

    python -m model.release.export CHECKPOINT --data ../shared/data --out model/weights/facegate-mfn.pt
    python -m model.release.import_dlib --data ../shared/data
"""
