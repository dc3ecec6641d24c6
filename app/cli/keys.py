"""API keys: create, list and revoke them (the key store itself is app.services.keys).

    python -m app.cli.keys create --scope verify [--name "door camera 3"]   # prints the key, once
    python -m app.cli.keys create --scope verify --group lab-3 [--group lab-4]   # a door's key
    python -m app.cli.keys create --scope verify --liveness   # a door that must see a head turn
    python -m app.cli.keys list
    python -m app.cli.keys revoke KEY_ID

A key reads `fg_<key id>_<secret>`: the key id is public, only a hash of the secret is stored. Scopes: admin
(everything), verify (verify and identify), metrics (GET /metrics, for Prometheus). A verify key bound to
groups (--group, repeated; the groups must exist: POST /groups) reaches only their members.
"""

from __future__ import annotations

import argparse
import sys

from app.cli.common import gallery
from app.core.config import Settings
from app.services.keys import SCOPES, create_key, groups_of_keys, list_keys, revoke_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--scope", choices=SCOPES, required=True)
    create.add_argument("--name", help="what the key is for")
    create.add_argument("--group", action="append", default=[], dest="groups", metavar="GROUP_ID",
                        help="bind a verify key to this group (repeat for several): it reaches only their members")
    create.add_argument("--liveness", action="store_true",
                        help="the key must answer a head-turn challenge at /verify and /identify (a door's tablet)")
    commands.add_parser("list", help="list the keys (never their secrets)")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)

    with gallery(Settings()) as sessions, sessions() as session:
        if args.command == "create":
            try:
                key, row = create_key(session, args.scope, args.name, args.groups, liveness=args.liveness)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(key)
            bound = f", bound to {', '.join(args.groups)}" if args.groups else ""
            live = ", liveness required" if row.liveness else ""
            print(f"key id {row.key_id}, scope {row.scope}{bound}{live}: store it now, it is not shown again",
                  file=sys.stderr)
        elif args.command == "list":
            rows = list_keys(session)
            bound = groups_of_keys(session, rows)
            for row in rows:
                state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
                state += ", liveness" if row.liveness else ""
                groups = "*" if bound[row.key_id] is None else ",".join(bound[row.key_id]) or "(none left)"
                print(f"{row.key_id}\t{row.scope}\t{state}\t{row.created_at:%Y-%m-%d %H:%M}\t{groups}\t"
                      f"{row.name or ''}")
        elif not revoke_key(session, args.key_id):
            print(f"no active key {args.key_id}", file=sys.stderr)
            return 1
        else:
            print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
