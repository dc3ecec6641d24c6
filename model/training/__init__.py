"""The training module: data for training (pools), samplers, losses, augmentation, typed recipes and the trainer.

    python -m model.training model/configs/resnet-finetune.toml    # train a recipe (model.training.train)
    python -m model.training.pool RECIPE --out .pool/pool.npz        # pack a recipe's faces into one file

It produces checkpoints; `model.release.export` turns one into shipped weights with a calibrated card.
"""
