"""``sonic user``: the accounts Subsonic apps log in with (``/rest/``).

Until one exists, ``/rest/`` refuses every call. The password is read from a prompt
(or ``--password-stdin`` for scripts), never from the command line, where other
users could read it in the process list.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ui.options import DataDir, JsonFlag, emit, fail, open_catalog

app = typer.Typer(help="Subsonic users: add, list, remove, passwords and API keys.",
                  no_args_is_help=True)  # fmt: skip


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The user name to log in with.")],
    admin: Annotated[bool, typer.Option(help="May start scans and see other users.")] = False,
    token_auth: Annotated[
        bool,
        typer.Option(
            help="Keep the password encrypted with the data directory's key (subsonic.key), "
            "so Subsonic token logins (t+s, what most apps use) work. --no-token-auth keeps "
            "only a hash: logins then need p= or an API key."
        ),
    ] = True,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
    api_key: Annotated[bool, typer.Option(help="Also make an API key (shown once).")] = False,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a user who can log in from Subsonic apps."""
    from catalog import subsonic_users as users

    password = _password(password_stdin)
    with open_catalog(data_dir) as catalog:
        try:
            user = users.add_user(catalog, name, password, admin=admin, token_auth=token_auth)
            key = users.new_api_key(catalog, user.name) if api_key else None
        except users.UserError as exc:
            fail(str(exc))
    data = {"name": user.name, "admin": user.admin, "token_auth": user.token_auth}
    if key:
        data["api_key"] = key
    emit(data, as_json, lambda d: typer.echo(
        f"added {d['name']}" + (" (admin)" if d["admin"] else "")
        + ("" if d["token_auth"] else "; token logins off")
        + (f"\napi key (shown once): {d['api_key']}" if "api_key" in d else "")
    ))  # fmt: skip


@app.command("list")
def list_(data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """List the users."""
    from catalog import subsonic_users as users

    with open_catalog(data_dir) as catalog:
        rows = [u.__dict__ for u in users.list_users(catalog)]

    def render(items: list[dict]) -> None:
        if not items:
            typer.echo("no users: add one with `sonic user add NAME`")
        for u in items:
            flags = [f for f, on in (("admin", u["admin"]), ("token auth", u["token_auth"])) if on]
            typer.echo(f"{u['name']}  {', '.join(flags)}")

    emit(rows, as_json, render)


UserName = Annotated[str, typer.Argument(help="The user's name.")]


@app.command("remove")
def remove(name: UserName, data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Remove a user with their playlists, stars, plays and API keys."""
    from catalog import subsonic_users as users

    with open_catalog(data_dir) as catalog:
        try:
            users.remove_user(catalog, name)
        except users.UserError as exc:
            fail(str(exc))
    emit({"name": name, "removed": True}, as_json, lambda d: typer.echo(f"removed {d['name']}"))


@app.command("password")
def password(
    name: UserName,
    token_auth: Annotated[bool, typer.Option(help="As for `sonic user add`.")] = True,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a user's password."""
    from catalog import subsonic_users as users

    secret = _password(password_stdin)
    with open_catalog(data_dir) as catalog:
        try:
            users.set_password(catalog, name, secret, token_auth=token_auth)
        except users.UserError as exc:
            fail(str(exc))
    emit(
        {"name": name, "password_changed": True, "token_auth": token_auth},
        as_json,
        lambda d: typer.echo(f"password of {d['name']} changed"),
    )


@app.command("api-key")
def api_key(
    name: UserName,
    revoke: Annotated[bool, typer.Option(help="Revoke all the user's keys instead.")] = False,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Make an API key for the user (printed once), or revoke their keys."""
    from catalog import subsonic_users as users

    with open_catalog(data_dir) as catalog:
        try:
            if revoke:
                revoked = users.revoke_api_keys(catalog, name)
                emit({"name": name, "revoked": revoked}, as_json, lambda d: typer.echo(
                    f"revoked {d['revoked']} key(s) of {d['name']}"))  # fmt: skip
                return
            key = users.new_api_key(catalog, name)
        except users.UserError as exc:
            fail(str(exc))
    emit({"name": name, "api_key": key}, as_json, lambda d: typer.echo(d["api_key"]))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="user")
