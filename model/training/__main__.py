"""`python -m model.training RECIPE`: train a recipe (see model.training.train)."""

from model.training.train import main

main()
