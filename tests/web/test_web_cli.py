"""`qmroct web` commands: users (add, list, disable) and the index, on a copy of the demo."""

from __future__ import annotations

import shutil

from click.testing import CliRunner
from qmroct.cli.main import cli
from qmroct.storage.db import connect


def test_users_and_index_from_the_command_line(demo_data, tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_data.home, home)
    monkeypatch.setenv("QMROCT_HOME", str(home))
    monkeypatch.delenv("QMROCT_LEDGER_URL", raising=False)
    run = CliRunner().invoke
    r = run(cli, ["web", "user", "add", "eve", "--role", "researcher", "--project", "DEMO",
                  "--password-stdin"], input="long enough password\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run(cli, ["web", "user", "add", "bad name", "--role", "admin", "--password-stdin"],
            input="long enough password\n")  # fmt: skip
    assert r.exit_code != 0 and "use letters, digits" in r.output
    r = run(cli, ["web", "user", "add", "mallory", "--role", "admin", "--password-stdin"],
            input="short\n")  # fmt: skip
    assert r.exit_code != 0 and "10 characters" in r.output

    def names() -> set[str]:
        return {line.split()[0] for line in run(cli, ["web", "user", "list"]).output.splitlines()}

    assert "eve" in names()
    assert run(cli, ["web", "user", "disable", "eve"]).exit_code == 0
    assert "eve" not in names()
    r = run(cli, ["web", "index", "--rebuild"])
    assert r.exit_code == 0, r.output
    db = connect(f"sqlite:///{home / 'ledger.sqlite3'}")
    try:
        n = db.query_one("SELECT COUNT(*) AS n FROM web_scans")["n"]
        scans = db.query_one("SELECT COUNT(*) AS n FROM scans")["n"]
        unread = db.query_one("SELECT COUNT(*) AS n FROM web_scans WHERE header_read <> 1")["n"]
    finally:
        db.close()
    assert n == scans == 4 and unread == 0
    for args in (["web", "--help"], ["bench", "web", "--help"], ["up", "--help"]):
        out = run(cli, args).output
        assert "Usage" in out
