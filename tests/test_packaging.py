"""A regular (non-editable) wheel carries every module and the ontology files.

Why: editable installs map ``lwfm.sites``/``lwfm.bundles``/``lwfm.ontology`` through
``package-dir``; a wheel only contains what the packaging metadata lists, so a missing
subpackage or data glob shows up only here. Built offline (``--no-build-isolation``)
from a copy of the source tree, so concurrent builds never share a ``build/`` dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# source dir -> its import path inside the wheel (pyproject's package-dir mapping)
MAPPED = {"lwfm": "lwfm", "sites": "lwfm/sites", "bundles": "lwfm/bundles",
          "ontology": "lwfm/ontology"}
SKIP = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                              ".pytest_cache", ".venv", "*.db")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    out = work / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"pip wheel failed:\n{r.stdout}\n{r.stderr}"
    wheels = list(out.glob("lwfm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


@pytest.mark.slow
def test_wheel_has_namespaced_packages(wheel_names: set[str]) -> None:
    for name in ("lwfm/__init__.py", "lwfm/store/__init__.py", "lwfm/cli/__init__.py",
                 "lwfm/sites/local.py", "lwfm/bundles/__init__.py", "lwfm/ontology/__init__.py"):
        assert name in wheel_names, f"{name} missing from the wheel"
    top = {n.split("/", 1)[0] for n in wheel_names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"lwfm"}, top   # no `sites`, `bundles`


@pytest.mark.slow
def test_wheel_has_every_source_module(wheel_names: set[str]) -> None:
    """Every .py under the mapped source dirs is in the wheel (no subpackage forgotten)."""
    expected = set()
    for src, dest in MAPPED.items():
        for f in (REPO / src).rglob("*.py"):
            if "__pycache__" not in f.parts:
                expected.add(f"{dest}/{f.relative_to(REPO / src).as_posix()}")
    missing = sorted(expected - wheel_names)
    assert not missing, f"not in the wheel (add the package to pyproject's packages): {missing}"


@pytest.mark.slow
def test_wheel_has_ontology_data(wheel_names: set[str]) -> None:
    for name in ("lwfm/ontology/lwfm.ttl", "lwfm/ontology/shapes.ttl"):
        assert name in wheel_names, f"{name} missing from the wheel"
    data = [p for p in (REPO / "ontology").iterdir() if p.suffix in (".ttl", ".jsonld", ".json")]
    missing = sorted(f"lwfm/ontology/{p.name}" for p in data)
    missing = [m for m in missing if m not in wheel_names]
    assert not missing, f"ontology files not shipped as package data: {missing}"


def test_entry_points_resolve() -> None:
    """The declared site drivers import (what a third-party install would see)."""
    from importlib.metadata import entry_points
    eps = {ep.name: ep for ep in entry_points(group="lwfm.sites")}
    assert {"local", "venv", "ssh"} <= set(eps)
    for ep in eps.values():
        assert ep.value.startswith("lwfm.sites."), ep.value
        assert callable(ep.load())


@pytest.mark.slow
def test_wheel_has_the_store_migrations(wheel_names: set[str]) -> None:
    """The Alembic scripts that upgrade older stores ship inside the wheel, every one."""
    mig = REPO / "lwfm" / "store" / "migrations"
    shipped = {f"lwfm/store/migrations/{p.relative_to(mig).as_posix()}" for p in mig.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert {"lwfm/store/migrations/env.py", "lwfm/store/migrations/script.py.mako",
            "lwfm/store/migrations/versions/0001_baseline.py"} <= shipped
    assert len([n for n in shipped if "/versions/0" in n]) >= 3
    missing = sorted(shipped - wheel_names)
    assert not missing, f"migrations not in the wheel (pyproject packages/package-data): {missing}"


UPGRADE = """
import json, sqlite3, sys
import lwfm
from lwfm.store import Store, schema
url = "sqlite:///" + sys.argv[1]
Store(url).close()
db = sqlite3.connect(sys.argv[1])   # make it a store from before the triggers.job_id index
db.execute("DROP INDEX ix_triggers_job_id")
db.execute("UPDATE lwfm_meta SET value = '2' WHERE key = 'schema_version'")
db.commit()
Store(url).close()
idx = [r[1] for r in db.execute("PRAGMA index_list(triggers)")]
ver = db.execute("SELECT value FROM lwfm_meta WHERE key = 'schema_version'").fetchone()[0]
print(json.dumps({"lwfm": lwfm.__file__, "indexes": idx, "version": ver,
                  "head": schema.SCHEMA_VERSION}))
"""


@pytest.mark.slow
def test_installed_wheel_upgrades_an_older_store(wheel: Path, tmp_path: Path) -> None:
    """The wheel's own migration scripts run: an older store opened by it is upgraded."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    r = subprocess.run([sys.executable, "-c", UPGRADE, str(tmp_path / "old.db")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["lwfm"].startswith(str(site)), got
    assert "ix_triggers_job_id" in got["indexes"] and got["version"] == got["head"], got


CHECK = """
import json, sys
import lwfm, lwfm.sites.local, lwfm.bundles
from lwfm.ontology import path
from rdflib import Graph
g = Graph().parse(path("lwfm.ttl"))
s = Graph().parse(path("shapes.ttl"))
json.loads(path("lwfm-context.jsonld").read_text())
print(json.dumps({"lwfm": lwfm.__file__, "triples": len(g), "shapes": len(s)}))
"""


@pytest.mark.slow
def test_installed_wheel_finds_its_data(wheel: Path, tmp_path: Path) -> None:
    """Unpacked (= installed) wheel, imported ahead of the editable checkout, reads its ontology."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["lwfm"].startswith(str(site)), got    # really the wheel, not the checkout
    assert got["triples"] > 0 and got["shapes"] > 0


@pytest.mark.slow
def test_wheel_ships_py_typed(wheel_names: set[str]) -> None:
    """PEP 561: type checkers use lwfm's own annotations only when the marker is installed."""
    assert "lwfm/py.typed" in wheel_names
