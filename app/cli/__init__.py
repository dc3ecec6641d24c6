"""The command-line tools: thin commands over the same services the API uses, each opening the gallery the one
way (app.cli.common.gallery) and stopping cleanly on SIGINT and SIGTERM (app.cli.common.graceful_stop).

    python -m app.cli.keys create --scope admin        # API keys
    python -m app.cli.bulk_enroll DIR                   # enroll a folder of photos
    python -m app.cli.reembed --model NEW.pt            # move the gallery to a new model
    python -m app.cli.references new-key | rotate       # the encrypted reference store's keys
"""
