"""``sonic user``, and how Subsonic secrets are kept at rest (catalog/subsonic_users.py)."""

from __future__ import annotations

import hashlib
import json
import stat

from typer.testing import CliRunner

from catalog import subsonic_users as users
from catalog.store import Catalog
from ui.cli import app

runner = CliRunner()


def sonic(*args: str, stdin: str | None = None):
    return runner.invoke(app, list(args), input=stdin)


def test_user_add_list_remove(tmp_path):
    data = str(tmp_path / "data")
    added = sonic("user", "add", "ana", "--admin", "--api-key", "--password-stdin",
                  "--data-dir", data, "--json", stdin="pa ss\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    info = json.loads(added.stdout)
    assert info["name"] == "ana" and info["admin"] and info["token_auth"] and info["api_key"]
    plain = sonic("user", "add", "bob", "--no-token-auth", "--password-stdin",
                  "--data-dir", data, stdin="x\n")  # fmt: skip
    assert plain.exit_code == 0, plain.output
    twice = sonic("user", "add", "bob", "--password-stdin", "--data-dir", data, stdin="y\n")
    assert twice.exit_code == 1 and "already a user" in twice.output
    empty = sonic("user", "add", "cy", "--password-stdin", "--data-dir", data, stdin="\n")
    assert empty.exit_code == 1 and "must not be empty" in empty.output
    listed = json.loads(sonic("user", "list", "--data-dir", data, "--json").stdout)
    assert [(u["name"], u["admin"], u["token_auth"]) for u in listed] == [
        ("ana", True, True), ("bob", False, False)]  # fmt: skip
    with Catalog(tmp_path / "data") as catalog:
        assert users.user_for_api_key(catalog, info["api_key"]).name == "ana"
        assert users.check_password(catalog, "ana", "pa ss").admin
        assert users.check_password(catalog, "ana", "pa s") is None
    changed = sonic("user", "password", "ana", "--password-stdin", "--data-dir", data,
                    stdin="new\n")  # fmt: skip
    assert changed.exit_code == 0, changed.output
    revoked = sonic("user", "api-key", "ana", "--revoke", "--data-dir", data)
    assert "revoked 1" in revoked.stdout
    with Catalog(tmp_path / "data") as catalog:
        assert users.check_password(catalog, "ana", "new") is not None
        assert users.check_password(catalog, "ana", "pa ss") is None
        assert users.user_for_api_key(catalog, info["api_key"]) is None
    assert sonic("user", "remove", "bob", "--data-dir", data).exit_code == 0
    assert sonic("user", "remove", "bob", "--data-dir", data).exit_code == 1
    assert [u["name"] for u in json.loads(
        sonic("user", "list", "--data-dir", data, "--json").stdout)] == ["ana"]  # fmt: skip


def test_user_commands_answer_json_for_scripts(tmp_path):
    data = str(tmp_path / "data")
    assert sonic("user", "add", "ana", "--password-stdin", "--data-dir", data,
                 stdin="pw\n").exit_code == 0  # fmt: skip
    made = json.loads(sonic("user", "api-key", "ana", "--data-dir", data, "--json").stdout)
    with Catalog(tmp_path / "data") as catalog:
        assert users.user_for_api_key(catalog, made["api_key"]).name == "ana"
    revoked = sonic("user", "api-key", "ana", "--revoke", "--data-dir", data, "--json")
    assert json.loads(revoked.stdout) == {"name": "ana", "revoked": 1}
    changed = sonic("user", "password", "ana", "--password-stdin", "--no-token-auth",
                    "--data-dir", data, "--json", stdin="new\n")  # fmt: skip
    assert json.loads(changed.stdout)["token_auth"] is False
    removed = sonic("user", "remove", "ana", "--data-dir", data, "--json")
    assert json.loads(removed.stdout) == {"name": "ana", "removed": True}
    assert sonic("user", "remove", "ana", "--data-dir", data, "--json").exit_code == 1

def test_secrets_at_rest(tmp_path):
    with Catalog(tmp_path) as catalog:
        user = users.add_user(catalog, "ana", "correct horse battery")
        users.add_user(catalog, "bob", "hash only please", token_auth=False)
        key = users.new_api_key(catalog, "ana")
        assert users.plain_password(catalog, user.id) == "correct horse battery"
        assert users.plain_password(catalog, users.get_user(catalog, "bob").id) is None
    database = (tmp_path / "catalog.db").read_bytes()
    for secret in (b"correct horse battery", b"hash only please", key.encode()):
        assert secret not in database
    assert hashlib.sha256(key.encode()).hexdigest().encode() in database
    key_file = tmp_path / users.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # another data directory's key cannot read this one's secrets
    key_file.unlink()
    with Catalog(tmp_path) as catalog:
        assert users.plain_password(catalog, user.id) is None
        assert users.check_password(catalog, "ana", "correct horse battery") is not None
