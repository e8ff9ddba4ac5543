"""lwfm publish --to: deposit to an InvenioRDM repository, with resume.

InvenioRDM needs OpenSearch, Redis and RabbitMQ, far too heavy to run here, so these
tests run a REAL HTTP server on loopback (tests/_invenio_server.py) that implements
the subset of InvenioRDM's documented records REST API lwfm uses (drafts, DOI
reservation, file upload/commit, publish), with faults injected on request. The
stores, the bag and the CLI are real.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from lwfm.cli import cli
from lwfm.errors import ConfigError, DepositError
from lwfm.publish import publish
from tests._bundle_threads import Home, build, snapshot
from tests._invenio_server import FakeInvenio

CARBERRY = "Josiah Carberry <https://orcid.org/0000-0002-1825-0097>"
TOKEN = "s3cr3t-deposit-token-123"


@pytest.fixture
def server():
    s = FakeInvenio(TOKEN).start()
    yield s
    s.close()


@pytest.fixture
def thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FakeInvenio):
    monkeypatch.delenv("LWFM_STORE_URL", raising=False)
    local, remote = Home.open(tmp_path / "local"), Home.open(tmp_path / "remote")
    th = build(local, remote, tmp_path)
    (remote.config.home / "lwfm.toml").write_text(
        f'[repositories.zen]\nurl = "{server.url}"\ntoken_env = "ZEN_TOKEN"\n')
    monkeypatch.setenv("ZEN_TOKEN", TOKEN)
    yield remote, th
    local.store.close()
    remote.store.close()


def _pub(remote: Home, th, out: Path, **kw):
    return publish(remote.store, out, title="Deposited results", license="CC-BY-4.0",
                   creators=[CARBERRY], workflow_id=th.workflow, to="zen",
                   home=remote.config.home, **kw)


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def _publishes(remote: Home) -> list:
    return remote.store.find_data({"kind": "lwfm.publish"})


def test_deposit_creates_reserves_uploads_and_publishes(thread, server, tmp_path):
    remote, th = thread
    out = tmp_path / "pub.zip"
    res = _pub(remote, th, out)
    [rec] = server.published()
    assert res.identifier == f"https://doi.org/{rec.doi}"
    assert res.record_url == f"{server.url}/records/{rec.id}"
    assert rec.metadata["title"] == "Deposited results"
    assert rec.metadata["creators"][0]["person_or_org"]["identifiers"] == [
        {"scheme": "orcid", "identifier": "0000-0002-1825-0097"}]
    assert list(rec.files) == ["pub.zip"]
    assert hashlib.md5(rec.files["pub.zip"]["data"]).hexdigest() == _md5(out)
    # The bag carries the reserved DOI; the store records it with the dataset.
    with zipfile.ZipFile(out) as z:
        crate = json.loads(z.read("pub/data/ro-crate-metadata.json"))
        dc = json.loads(z.read("pub/metadata/datacite.json"))
    root = next(e for e in crate["@graph"] if e["@id"] == "./")
    assert root["identifier"] == res.identifier and dc["doi"] == rec.doi
    [ds] = _publishes(remote)
    assert ds.metadata["doi"] == rec.doi and ds.metadata["invenio_record"] == rec.id
    assert not out.with_name("pub.zip.deposit.json").exists()
    # The token went only into the Authorization header.
    assert all(a == f"Bearer {TOKEN}" for _, _, a in server.requests)
    db = Path(remote.config.store_url.removeprefix("sqlite:///"))
    assert TOKEN.encode() not in db.read_bytes() and TOKEN.encode() not in out.read_bytes()


def test_interrupted_upload_leaves_nothing_published_and_a_retry_resumes(thread, server, tmp_path):
    remote, th = thread
    out = tmp_path / "pub.zip"
    server.cut_upload_after = 1000
    with pytest.raises(DepositError, match="upload the bag.*Rerun the same lwfm publish"):
        _pub(remote, th, out)
    assert server.published() == [] and _publishes(remote) == []
    [draft] = server.records.values()
    assert draft.files["pub.zip"]["status"] == "pending"
    assert out.exists()  # the bag is kept, so the retry sends the same bytes
    res = _pub(remote, th, out)
    [rec] = server.published()
    assert rec.id == draft.id and server.content_puts == 2
    assert hashlib.md5(rec.files["pub.zip"]["data"]).hexdigest() == _md5(out)
    assert res.identifier == f"https://doi.org/{rec.doi}" and len(_publishes(remote)) == 1


def test_server_error_mid_way_then_retry_does_not_upload_again(thread, server, tmp_path):
    remote, th = thread
    out = tmp_path / "pub.zip"
    server.fail_publish = 1
    before = snapshot(remote.store)
    with pytest.raises(DepositError, match="publish the record.*HTTP 500"):
        _pub(remote, th, out)
    assert server.published() == [] and snapshot(remote.store) == before
    r = CliRunner().invoke(cli, ["--home", str(remote.config.home), "publish", "--workflow",
                                 th.workflow, "--title", "Deposited results", "--license",
                                 "CC-BY-4.0", "--creator", CARBERRY, "-o", str(out), "--to", "zen"])
    assert r.exit_code == 0, r.output
    assert "deposited at" in r.output
    assert len(server.published()) == 1 and server.content_puts == 1  # resumed, not re-sent


def test_republish_deposits_a_new_version_of_the_record(thread, server, tmp_path):
    remote, th = thread
    _pub(remote, th, tmp_path / "v1.zip")
    second = _pub(remote, th, tmp_path / "v2.zip")
    a, b = server.published()
    assert a.parent == b.parent and a.doi != b.doi and second.version == 2
    assert second.previous == f"https://doi.org/{a.doi}"


def test_missing_token_is_refused_before_anything(thread, server, tmp_path, monkeypatch):
    remote, th = thread
    monkeypatch.delenv("ZEN_TOKEN")
    before = snapshot(remote.store)
    with pytest.raises(ConfigError, match="set ZEN_TOKEN"):
        _pub(remote, th, tmp_path / "pub.zip")
    assert server.requests == [] and not (tmp_path / "pub.zip").exists()
    assert snapshot(remote.store) == before
    (remote.config.home / "lwfm.toml").write_text(
        f'[repositories.zen]\nurl = "{server.url}"\ntoken = "{TOKEN}"\n')
    with pytest.raises(ConfigError, match="environment only"):
        _pub(remote, th, tmp_path / "pub.zip")


def test_a_refused_bag_deposits_nothing(thread, server, tmp_path):
    remote, th = thread
    before = snapshot(remote.store)
    r = CliRunner().invoke(cli, ["--home", str(remote.config.home), "publish", "--workflow",
                                 th.workflow, "--title", " ", "--license", "CC-BY-4.0",
                                 "--creator", CARBERRY, "-o", str(tmp_path / "pub.zip"),
                                 "--to", "zen"])
    assert r.exit_code != 0
    assert server.records == {} and server.published() == []  # no draft was left behind
    assert not (tmp_path / "pub.zip").exists() and snapshot(remote.store) == before
    assert not any(p.name.startswith(".pub.zip") or p.name.endswith(".deposit.json")
                   for p in tmp_path.iterdir())
    Path(remote.store.get_data(th.outputs[0]).url).write_text("changed\n")
    r = CliRunner().invoke(cli, ["--home", str(remote.config.home), "publish", "--workflow",
                                 th.workflow, "--title", "T", "--license", "CC-BY-4.0",
                                 "--creator", CARBERRY, "-o", str(tmp_path / "pub.zip"),
                                 "--to", "zen"])
    assert r.exit_code != 0 and "no longer matches" in str(r.exception)
    # The file is checked before any draft exists: only the first (discarded) draft was made.
    assert [p for m, p, _ in server.requests if m == "POST" and p == "/api/records"] == [
        "/api/records"]
    assert server.records == {}
