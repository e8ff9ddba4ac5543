"""Secret redaction: one rule (lwfm.secrets) for the store, the graph, bundles and triggers,
widened past the old name list and extended from lwfm.toml; the job still gets the value."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select, update

from lwfm.config import load
from lwfm.errors import ConfigError, InvalidInput
from lwfm.secrets import REDACTED, SECRET_NAME, SecretNames, redacted_env

SECRETS = {"MYSQL_PWD": "pwd-value-1913", "GITHUB_PAT": "ghp_value-2718",
           "MY_KEY": "key-value-3141", "AUTH": "auth-value-1618",
           "ACME_SIG": "sig-value-5772"}   # the last only by the lwfm.toml pattern
TOML = '[secrets]\nextra_patterns = ["*_SIG"]\n'


def lwfm(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lwfm.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "LWFM_HOME": str(home)})


@pytest.mark.parametrize("name", [
    "MYSQL_PWD", "GITHUB_PAT", "MY_KEY", "AUTH", "API_TOKEN", "DB_PASSWORD", "PGPASSWORD",
    "TWINE_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "OPENAI_API_KEY",
    "apikey", "dbPassword", "githubPat", "myKey", "SSH_PRIVATE_KEY", "SIGNING_KEY_2",
    "GOOGLE_APPLICATION_CREDENTIALS", "SENTRY_DSN", "AZURE_STORAGE_CONNECTION_STRING",
    "DB_CONN_STR", "SESSION_COOKIE", "OAUTH_CLIENT", "AUTHORIZATION", "SLACK_WEBHOOK_URL",
    "JWT", "HF_TOKEN", "NPM_TOKEN", "DOCKER_AUTH_CONFIG", "MYSQL_PASSWD", "DB_PW"])
def test_secret_names(name: str) -> None:
    assert SecretNames().matches(name)
    assert SECRET_NAME.search(name)   # the re.Pattern-like call triggers.py makes


@pytest.mark.parametrize("name", [
    "PATH", "PWD", "OLDPWD", "KEYBOARD", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "HOME",
    "LANG", "PYTHONPATH", "LD_LIBRARY_PATH", "OMP_NUM_THREADS", "ORACLE_SID", "SSL_CERT_FILE",
    "MONKEY", "PLAIN", "AUTHOR", "TERM"])
def test_harmless_names(name: str) -> None:
    assert not SecretNames().matches(name)


def test_user_patterns_are_globs_added_never_removed() -> None:
    rule = SecretNames()
    assert not rule.matches("ACME_SIG")
    rule.add_patterns(["*_sig", "exact_name", "PWD"])
    assert rule.matches("ACME_SIG") and rule.matches("acme_sig") and rule.matches("EXACT_NAME")
    assert rule.matches("PWD")   # a user pattern wins over the shell exception
    assert not rule.matches("ACME_SIGNAL") and not rule.matches("XEXACT_NAME")
    rule.add_patterns([])
    assert rule.extra_patterns == ("*_sig", "exact_name", "PWD")
    assert redacted_env({"A_SIG": "x", "B": "y"}) in ({"A_SIG": "x", "B": "y"},
                                                       {"A_SIG": REDACTED, "B": "y"})


def test_lwfm_toml_secrets_section(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "lwfm.toml").write_text('[secrets]\nextra_patterns = ["*_ZQSIG", "ZQ_*"]\n')
    cfg = load(home)
    assert cfg.secret_patterns == ("*_ZQSIG", "ZQ_*")
    assert SECRET_NAME.search("A_ZQSIG") and SECRET_NAME.search("ZQ_THING")
    for bad in ('[secrets]\nextra_patterns = "*_SIG"\n', '[secrets]\nextra_patterns = [1]\n',
                '[secrets]\nextra_patterns = [""]\n', '[secrets]\nextra_pattern = ["*_SIG"]\n',
                'secrets = 3\n'):
        (home / "lwfm.toml").write_text(bad)
        with pytest.raises(ConfigError, match=r"\[secrets\] takes extra_patterns"):
            load(home)


def _digest_check() -> str:
    """A shell test that each secret arrived exactly (digests, so argv holds no value)."""
    parts = [f'test "$(printf %s "${k}" | sha256sum | cut -d" " -f1)" = '
             f'{hashlib.sha256(v.encode()).hexdigest()}' for k, v in SECRETS.items()]
    return " && ".join(parts)


def _no_secret_in(blob: bytes, where: str) -> None:
    for k, v in SECRETS.items():
        assert v.encode() not in blob, f"{k}'s value in {where}"


def test_secrets_reach_the_job_but_not_the_store_graph_or_bundle(home: Path,
                                                                 tmp_path: Path) -> None:
    (home / "lwfm.toml").write_text(TOML)
    envs = [a for k, v in SECRETS.items() for a in ("--env", f"{k}={v}")]
    r = lwfm(home, "run", "--wait", *envs, "--env", "PLAIN=ok", "--", "sh", "-c", _digest_check())
    assert r.returncode == 0, r.stdout + r.stderr   # the job saw every real value
    from lwfm.store import Store, t
    st = Store(load(home).store_url)
    with st.read() as c:
        rows = c.execute(select(t.jobs.c.id, t.jobs.c.defn)).all()
    assert len(rows) == 1
    job_id, defn = rows[0]
    assert defn["env"] == {**{k: REDACTED for k in SECRETS}, "PLAIN": "ok"}
    # the graph: every quad, through the CLI's own query path
    r = lwfm(home, "query", "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }", "--format", "turtle")
    assert r.returncode == 0 and job_id in r.stdout, r.stderr
    _no_secret_in(r.stdout.encode(), "the graph")
    # the bundle: the zip's bytes and every member's bytes
    out = tmp_path / "b.zip"
    r = lwfm(home, "export", "--job", job_id, "-o", str(out))
    assert r.returncode == 0, r.stderr
    _no_secret_in(out.read_bytes(), "the zip")
    with zipfile.ZipFile(out) as z:
        meta = z.read("ro-crate-metadata.json")
        for n in z.namelist():
            _no_secret_in(z.read(n), n)
    assert b"MYSQL_PWD" in meta and REDACTED.encode() in meta
    st.close()
    for f in home.rglob("*"):   # the db, its WAL, the graph, logs: nowhere
        if f.is_file():
            _no_secret_in(f.read_bytes(), str(f))


def test_a_trigger_refuses_the_widened_names(home: Path) -> None:
    from lwfm import JobDefn, Manager
    with Manager(home) as m:
        for name in ("MYSQL_PWD", "GITHUB_PAT", "MY_KEY", "AUTH"):
            with pytest.raises(InvalidInput, match="looks like a secret"):
                m.on_data({"k": "v"}, JobDefn(entry=["/bin/true"], env={name: "x"}))


def test_bundles_redact_old_rows_on_export_and_clear_secrets_on_import(tmp_path: Path) -> None:
    """A store written under the old rule still holds MYSQL_PWD in clear: export redacts it;
    a bundle written by such an lwfm carries it: import redacts it before storing."""
    from lwfm.bundles import export_bundle, import_bundle
    from lwfm.model import Trigger
    from lwfm.store import t
    from tests._bundle_threads import Home, build
    local, remote = Home.open(tmp_path / "local"), Home.open(tmp_path / "remote")
    th = build(local, remote, tmp_path)
    clear = {k: v for k, v in SECRETS.items() if k != "ACME_SIG"}
    with remote.store.write() as c:   # as an older lwfm recorded it
        row = c.execute(select(t.jobs.c.defn).where(t.jobs.c.id == th.steps[0])).scalar_one()
        c.execute(update(t.jobs).where(t.jobs.c.id == th.steps[0])
                  .values(defn={**row, "env": {**row["env"], **clear}}))
        body = c.execute(select(t.triggers.c.body)).scalar_one()
        body["defn"]["env"] = dict(clear)
        c.execute(update(t.triggers).values(body=body))
    b = tmp_path / "b.zip"
    export_bundle(remote.store, remote.config, b, workflow_id=th.workflow)
    _no_secret_in(zipfile.ZipFile(b).read("ro-crate-metadata.json"), "the export")

    # a bundle as an older lwfm wrote it: the secrets back in the job and trigger records
    with zipfile.ZipFile(b) as z:
        doc = json.loads(z.read("ro-crate-metadata.json"))
    for e in doc["@graph"]:
        if "lwfm:record" not in e:
            continue
        rec = json.loads(e["lwfm:record"])
        if "CreateAction" in e["@type"] and rec["job"]["id"] == th.steps[0]:
            rec["job"]["defn"]["env"].update(clear)
        elif e["@type"] == "lwfm:Trigger":
            rec["body"]["defn"]["env"] = dict(clear)
        else:
            continue
        e["lwfm:record"] = json.dumps(rec)
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as z:
        z.writestr("ro-crate-metadata.json", json.dumps(doc))
    assert SECRETS["MYSQL_PWD"].encode() in zipfile.ZipFile(old).read("ro-crate-metadata.json")
    import_bundle(local.store, local.config, old)
    got = local.store.get_job(th.steps[0])
    assert got.defn.env == {"OMP_NUM_THREADS": "4", **{k: REDACTED for k in clear}}
    with local.store.read() as c:
        tr = Trigger.from_dict(c.execute(select(t.triggers.c.body)).scalar_one())
    assert tr.defn.env == {k: REDACTED for k in clear}
    local.store.close()
    remote.store.close()
    for f in (tmp_path / "local").rglob("*"):
        if f.is_file():
            _no_secret_in(f.read_bytes(), str(f))


def test_parallel_export_workers_apply_the_lwfm_toml_patterns(tmp_path: Path, monkeypatch) -> None:
    """Export workers are fresh interpreters without the config: the parent hands them
    its rule, so a name secret only by lwfm.toml is redacted there too."""
    from lwfm.bundles import _crate, _parallel, export_bundle
    from lwfm.store import t
    from tests._bundle_threads import Home, build
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "lwfm.toml").write_text('[secrets]\nextra_patterns = ["*_PARSIG"]\n')
    local, remote = Home.open(tmp_path / "local"), Home.open(tmp_path / "remote")
    th = build(local, remote, tmp_path)
    with remote.store.write() as c:   # in clear, as written before the pattern was added
        for j in th.steps:
            row = c.execute(select(t.jobs.c.defn).where(t.jobs.c.id == j)).scalar_one()
            c.execute(update(t.jobs).where(t.jobs.c.id == j)
                      .values(defn={**row, "env": {"X_PARSIG": "parsig-value-1414"}}))
    monkeypatch.setattr(_crate, "PARALLEL_MIN", 0)
    monkeypatch.setattr(_crate, "workers", lambda: 2)
    monkeypatch.setattr(_parallel, "workers", lambda: 2)
    b = tmp_path / "p.zip"
    export_bundle(remote.store, remote.config, b, workflow_id=th.workflow)
    meta = zipfile.ZipFile(b).read("ro-crate-metadata.json")
    assert b"X_PARSIG" in meta and b"parsig-value-1414" not in meta
    local.store.close()
    remote.store.close()


def test_streamed_import_redacts_with_the_lwfm_toml_patterns(tmp_path: Path, monkeypatch) -> None:
    """A large bundle is read by a child interpreter: it gets the importer's rule."""
    from lwfm.bundles import _importer, export_bundle, import_bundle
    from lwfm.store import t
    from tests._bundle_threads import Home, build
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "lwfm.toml").write_text('[secrets]\nextra_patterns = ["*_STRSIG"]\n')
    remote = Home.open(tmp_path / "remote")   # loaded first: its process has no such pattern yet
    other = Home.open(tmp_path / "other")
    th = build(other, remote, tmp_path)
    with remote.store.write() as c:
        row = c.execute(select(t.jobs.c.defn).where(t.jobs.c.id == th.steps[0])).scalar_one()
        c.execute(update(t.jobs).where(t.jobs.c.id == th.steps[0])
                  .values(defn={**row, "env": {"X_STRSIG": "strsig-value-1732"}}))
    b = tmp_path / "b.zip"
    export_bundle(remote.store, remote.config, b, workflow_id=th.workflow)
    assert b"strsig-value-1732" in zipfile.ZipFile(b).read("ro-crate-metadata.json")
    local = Home.open(tmp_path / "local")
    monkeypatch.setattr(_importer, "STREAM_MIN_BYTES", 0)
    import_bundle(local.store, local.config, b)
    assert local.store.get_job(th.steps[0]).defn.env == {"X_STRSIG": REDACTED}
    for h in (local, remote, other):
        h.store.close()
