"""`edgeemo user add | passwd | list | delete`: dashboard accounts. At a terminal the password is
asked twice without echo (getpass); from a pipe it is the first line of stdin, for scripts."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from edgeemo.config.schema import Config, ConfigError
from edgeemo.web.users import MIN_PASSWORD, UserError, UserStore, users_path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    user = sub.add_parser("user", help="manage dashboard accounts")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create an account (password asked, or the first line of stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "viewer"], required=True)
    passwd = actions.add_parser("passwd", help="set an account's password (asked, or the first line of stdin)")
    passwd.add_argument("name")
    listing = actions.add_parser("list", help="the accounts and their roles")
    delete = actions.add_parser("delete", help="remove an account (not the last admin)")
    delete.add_argument("name")
    for p in (add, passwd, listing, delete):
        p.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")


def read_password(name: str) -> str:
    """Asked twice without echo at a terminal; else the first line of stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass(f"password for {name} (at least {MIN_PASSWORD} characters): ")
        again = getpass.getpass("the same password again: ")
    except (EOFError, KeyboardInterrupt):
        raise ConfigError("no password given; nothing changed") from None
    if first != again:
        raise ConfigError("the two passwords differ; nothing changed")
    return first


def user_main(cfg: Config, args: argparse.Namespace) -> int:
    store = UserStore(users_path(cfg))
    try:
        if args.action == "list":
            for user in store.list():
                sys.stdout.write(f"{user['name']}\t{user['role']}\n")
            return 0
        if args.action == "delete":
            store.delete(args.name)
            done = "deleted"
        elif args.action == "add":
            store.add(args.name, args.role, read_password(args.name))
            done = "added"
        else:
            store.set_password(args.name, read_password(args.name))
            done = "password changed"
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        store.close()
    log.info("user %s: %s in %s", args.name, done, store.path)
    return 0
