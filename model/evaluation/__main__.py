"""`python -m model.evaluation ...`: evaluate a model (see model.evaluation.evaluate)."""

from model.evaluation.evaluate import main

main()
