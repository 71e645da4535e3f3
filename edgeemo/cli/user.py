"""`edgeemo user add NAME --role admin|viewer` and `edgeemo user passwd NAME`: password on stdin."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edgeemo.config.schema import Config, ConfigError
from edgeemo.web.users import UserError, UserStore, users_path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    user = sub.add_parser("user", help="manage dashboard accounts (password read from stdin)")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "viewer"], required=True)
    passwd = actions.add_parser("passwd", help="set an account's password")
    passwd.add_argument("name")
    for p in (add, passwd):
        p.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")


def user_main(cfg: Config, args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        sys.stderr.write(f"password for {args.name} (at least 12 characters): ")
        sys.stderr.flush()
    password = sys.stdin.readline().rstrip("\r\n")
    store = UserStore(users_path(cfg))
    try:
        if args.action == "add":
            store.add(args.name, args.role, password)
        else:
            store.set_password(args.name, password)
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        store.close()
    log.info("user %s: %s in %s", args.name, "added" if args.action == "add" else "password changed", store.path)
    return 0
