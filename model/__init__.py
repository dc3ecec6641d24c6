"""Training, evaluation and export of facegate's siamese face embedder. Never imports FastAPI or app.api."""
