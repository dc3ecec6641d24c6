"""The encrypted reference store's keys (app.services.references).

    python -m app.cli.references new-key        # prints a new key (base64, 32 bytes)
    python -m app.cli.references rotate         # re-encrypts every photo with the first key

Rotation: put the new key first in FACEGATE_REFERENCE_KEYS and keep the old one after it, restart (or roll)
the replicas, run `rotate`, then remove the old key.
"""

from __future__ import annotations

import argparse
import sys

from app.cli.common import gallery
from app.core.config import Settings
from app.services.references import load_cipher, new_key, rotate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("new-key", help="print a new random key, base64")
    commands.add_parser("rotate", help="re-encrypt every stored photo with the first configured key")
    args = parser.parse_args(argv)
    if args.command == "new-key":
        print(new_key())
        return 0
    settings = Settings()
    cipher = load_cipher(settings.references.keys, settings.references.keys_file)
    if cipher is None:
        print("no reference keys are configured (FACEGATE_REFERENCE_KEYS or _FILE)", file=sys.stderr)
        return 2
    with gallery(settings) as sessions, sessions() as session:
        count = rotate(session, cipher)
    print(f"{count} photos sealed again with key {cipher.primary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
