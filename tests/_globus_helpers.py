"""What the offline globus-site tests share: a configured home, the CLI run in this
process (so the fakes of tests/_globus_fake.py answer it), and a logged-in site."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from click.testing import CliRunner

from lwfm.cli import main
from tests._globus_fake import FakeGlobus


def configure(home: Path, g: FakeGlobus, **extra: Any) -> None:
    lines = ["[sites.archive]", 'driver = "globus"', f'collection = "{g.archive}"',
             'base_path = "/store/"', f'local_collection = "{g.local}"',
             f'client_id = "{g.client_id}"', "poll_interval = 0.01", "max_backoff_s = 0.01"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    lines += ["", "[sites.other]", 'driver = "globus"', f'collection = "{g.other}"',
              f'client_id = "{g.client_id}"', "poll_interval = 0.01", "max_backoff_s = 0.01"]
    (home / "lwfm.toml").write_text("\n".join(lines) + "\n")


@dataclass
class Ran:
    exit_code: int
    output: str   # stdout and stderr


def lwfm_cli(home: Path, *args: str, input: str = "") -> Ran:
    """`lwfm ARGS` in this process (so the offline fakes answer it), as main() runs it."""
    runner = CliRunner()
    code = 0
    with runner.isolation(input=input) as (out, err, *_), \
            patch.object(sys, "argv", ["lwfm", "--home", str(home), *args]):
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        text = out.getvalue().decode() + err.getvalue().decode()
    return Ran(code, text)


def login(home: Path, site: str = "archive", code: str = "good-code", *more: str) -> Ran:
    return lwfm_cli(home, "login", site, "--force", *more, input=code + "\n")


def logged_in_with(home: Path, g: FakeGlobus, tmp_path: Path, **extra: Any) -> Path:
    """Configure the sites with ``extra`` settings, log in, and give a small file to put."""
    configure(home, g, **extra)
    assert login(home).exit_code == 0
    src = tmp_path / "a.dat"
    src.write_text("x\n")
    return src


@pytest.fixture
def archive(home: Path, fake_globus: FakeGlobus) -> FakeGlobus:
    """A configured, logged-in globus site 'archive' (offline fake)."""
    configure(home, fake_globus)
    r = login(home)
    assert r.exit_code == 0, r.output
    return fake_globus
