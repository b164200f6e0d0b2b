"""``dirsync relay``: run the relay, or show how it translates and routes an address.

Thin commands over the library (STYLE.md item 6): each parses its options
and makes one call; errors are :class:`~dirsync.errors.DirsyncError`
subclasses that the top-level command line prints with their exit status.
"""

from __future__ import annotations

import getpass
import json
import sys

import click

from dirsync.relay.config import load_relay_config


@click.group("relay")
def relay() -> None:
    """The SMTP/X.400 relay: translate addresses through the hub and route mail."""


@relay.command("serve")
@click.pass_obj
def serve(obj: object) -> int:
    """Run the relay until SIGTERM or Ctrl-C."""
    from dirsync.relay.server import Relay

    config = load_relay_config(obj.config_path)  # type: ignore[attr-defined]
    service = Relay(config)
    click.echo(f"dirsync relay: listening on {config.listen_host}:{config.listen_port}, "
               f"queue {config.queue}", err=True)
    service.run()
    return 0


@relay.command("route")
@click.argument("address")
@click.option("--sender", metavar="ADDRESS",
              help="Also show how this sender is translated for the chosen route.")
@click.pass_obj
def route(obj: object, address: str, sender: str | None) -> int:
    """Show how ADDRESS is translated and routed.

    ADDRESS is an SMTP address, a typed address (X400:c=US;a= ;..., MS:ORG/PO/USER),
    a one-off address (Display Name[TYPE:address]) or an O/R address (/G=.../C=US/).
    Exit status 1 when the address would get a non-delivery report.
    """
    from dirsync.relay.explain import explain
    from dirsync.relay.hub import LdapHub
    from dirsync.relay.server import build_hops, build_translator

    config = load_relay_config(obj.config_path)  # type: ignore[attr-defined]
    hub = LdapHub(config.hub)
    try:
        hub.connect()
        result = explain(build_translator(config, hub), build_hops(config), address, sender)
    finally:
        hub.close()
    if obj.json:  # type: ignore[attr-defined]
        json.dump(result.to_json(), sys.stdout, indent=2)
        click.echo()
    else:
        for line in result.lines():
            click.echo(line)
    return 0 if result.routed else 1


@relay.command("hash-password")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from stdin.")
def hash_password_command(from_stdin: bool) -> int:
    """Print a hash for a line of relay.auth.users_file (NAME:HASH)."""
    from dirsync.relay.auth import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
    click.echo(hash_password(password))
    return 0
