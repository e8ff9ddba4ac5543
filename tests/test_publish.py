"""lwfm publish: the bag, the crate, DataCite, the landing page, versions and refusals.

Real components throughout: real SQLite stores, the real bagit, datacite, prov,
rocrate-validator (offline, cache seeded by tests/_rocrate_cache.py) and signposting
packages, a real loopback HTTP server serving the landing page, and a real job run
by a Manager for the end-to-end CLI test.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import random
import threading
import zipfile
from pathlib import Path

import bagit
import pytest
from click.testing import CliRunner

from lwfm.cli import cli
from lwfm.errors import PublishError
from lwfm.publish import check_license, check_orcid, publish
from lwfm.publish.hashing import ALIGN, BLOCK, DIRECT_MIN, copy_hashing
from lwfm.publish.people import orcid_check_digit
from tests._bundle_threads import Home, build, snapshot

CARBERRY = "Josiah Carberry <https://orcid.org/0000-0002-1825-0097>"
CREATORS = [CARBERRY, "Ada Lovelace <https://orcid.org/0000-0001-5109-3700>"]


@pytest.fixture
def thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LWFM_STORE_URL", raising=False)
    local, remote = Home.open(tmp_path / "local"), Home.open(tmp_path / "remote")
    th = build(local, remote, tmp_path)
    yield remote, th
    local.store.close()
    remote.store.close()


def _publish(remote: Home, out: Path, th, **kw):
    args = dict(title="Simulation results", license="CC-BY-4.0", creators=CREATORS,
                workflow_id=th.workflow, keywords=["simulation", "lwfm"])
    args.update(kw)
    return publish(remote.store, out, **args)


def _crate(bag: Path) -> dict[str, dict]:
    doc = json.loads((bag / "data" / "ro-crate-metadata.json").read_text())
    return {e["@id"]: e for e in doc["@graph"]}


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if "publishing" in p.name or p.name.startswith("out"))


def test_publish_writes_a_valid_bag_with_a_fair_crate(thread, tmp_path):
    remote, th = thread
    out = tmp_path / "out"
    res = _publish(remote, out, th)
    bag = bagit.Bag(str(out))
    bag.validate()  # re-hashes every file against both manifests
    assert set(bag.algorithms) == {"sha256", "sha512"}
    info = bag.info
    assert info["lwfm-Instance"] == remote.store.instance_id
    assert info["Payload-Oxum"] == f"{sum(p.stat().st_size for p in (out / 'data').rglob('*') if p.is_file())}.{len(list(p for p in (out / 'data').rglob('*') if p.is_file()))}"
    assert "lwfm-Publish-Time" in info and info["External-Identifier"] == res.identifier
    tags = (out / "tagmanifest-sha256.txt").read_text()
    assert "metadata/datacite.json" in tags and "metadata/datacite.xml" in tags
    g = _crate(out)
    root = g["./"]
    assert root["license"] == {"@id": "https://spdx.org/licenses/CC-BY-4.0"}
    assert {"@id": "https://orcid.org/0000-0002-1825-0097"} in root["creator"]
    assert g["https://orcid.org/0000-0001-5109-3700"]["@type"] == "Person"
    assert root["identifier"] == res.identifier and root["datePublished"]
    assert "https://w3id.org/ro/wfrun/provenance/0.5" in {c["@id"] for c in root["conformsTo"]}
    files = [e for i, e in g.items() if i.startswith("files/")]
    assert len(files) == res.files == 3
    for f in files:  # the crate's checksums are the bag's, and the store's
        body = (out / "data" / f["@id"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(body).hexdigest() == remote.store.get_data(
            f["lwfm:payloadOf"]["@id"][9:]).sha256
        assert f["lwfm:sha512"] == hashlib.sha512(body).hexdigest()
        assert f"{f['sha256']}  data/{f['@id']}" in (out / "manifest-sha256.txt").read_text()
    # Every job is a CreateAction with a HowToStep and a ControlAction; the workflow file
    # holds each job's definition.
    jobs = [e for e in g.values() if "lwfm:Job" in e.get("@type", []) and e["name"] != "publish"]
    assert len(jobs) == 4
    for j in jobs:
        assert g[f"#step-{j['@id'][9:]}"]["@type"] == "HowToStep"
        assert g[f"#control-{j['@id'][9:]}"]["object"] == {"@id": j["@id"]}
    steps = json.loads((out / "data" / "workflow.json").read_text())["steps"]
    assert {s["job"] for s in steps} == {j["@id"][9:] for j in jobs}
    assert any(s["definition"]["entry"] == ["sim", "--step=1"] for s in steps)
    # Intermediate inputs are referenced (urn ids) with their checksums, not included.
    gets = [e for e in g.values() if e.get("lwfm:direction") == "get"]
    assert gets and all(e["sha256"] and e["@id"].startswith("urn:uuid:") for e in gets)
    assert any("lwfm:Site" in e["@type"] for e in g.values())


def test_published_crate_passes_rocrate_validator_offline(thread, tmp_path):
    from tests._rocrate_cache import seed_cache, validate
    remote, th = thread
    out = tmp_path / "out"
    _publish(remote, out, th)
    cache = seed_cache(tmp_path / "validator-cache" / "http_cache")
    for profile in ("ro-crate-1.1", "provenance-run-crate-0.5"):
        report = validate(out / "data", profile, cache)
        assert report["passed"], (profile, report["issues"])
        assert report["statistics"]["total_failed_checks"] == 0
        assert report["statistics"]["total_checks"] > 30


def test_zip_round_trip_validates_with_bagit(thread, tmp_path):
    remote, th = thread
    out = tmp_path / "pub.zip"
    _publish(remote, out, th, zip=True)
    assert zipfile.is_zipfile(out)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert all(n.startswith("pub/") for n in names)
        z.extractall(tmp_path / "unzipped")
    bag = bagit.Bag(str(tmp_path / "unzipped" / "pub"))
    bag.validate()
    assert len(bag.payload_entries()) == 3 + 5  # the files + crate, workflow, prov, page, linkset


def test_datacite_metadata_is_valid_and_matches(thread, tmp_path):
    from datacite import schema45
    from lxml import etree
    remote, th = thread
    out = tmp_path / "out"
    res = _publish(remote, out, th)
    rec = json.loads((out / "metadata" / "datacite.json").read_text())
    assert schema45.validate(rec)
    assert rec["schemaVersion"] == "http://datacite.org/schema/kernel-4"
    assert rec["rightsList"][0]["rightsIdentifier"] == "CC-BY-4.0"
    assert rec["creators"][0]["nameIdentifiers"][0]["nameIdentifier"] == \
        "https://orcid.org/0000-0002-1825-0097"
    assert rec["alternateIdentifiers"][0]["alternateIdentifier"] == res.identifier
    xml = etree.fromstring((out / "metadata" / "datacite.xml").read_bytes())
    ns = {"d": "http://datacite.org/schema/kernel-4"}
    assert xml.find("d:titles/d:title", ns).text == "Simulation results"
    assert xml.find("d:creators/d:creator/d:nameIdentifier", ns).get("nameIdentifierScheme") == "ORCID"


def test_prov_library_loads_the_provenance(thread, tmp_path):
    import prov
    from prov.model import ProvActivity, ProvGeneration, ProvUsage
    remote, th = thread
    out = tmp_path / "out"
    res = _publish(remote, out, th)
    doc = prov.read(str(out / "data" / "provenance.json"), format="json")
    recs = list(doc.get_records())
    acts = {str(r.identifier) for r in recs if isinstance(r, ProvActivity)}
    assert f"uuid:{res.job_id}" in acts and f"uuid:{th.steps[0]}" in acts
    used = [r for r in recs if isinstance(r, ProvUsage)]
    gen = [r for r in recs if isinstance(r, ProvGeneration)]
    publish_used = {str(r.get_attribute("prov:entity").pop()) for r in used
                    if str(r.get_attribute("prov:activity").pop()) == f"uuid:{res.job_id}"}
    assert publish_used == {f"uuid:{o}" for o in th.outputs}
    assert any(str(r.get_attribute("prov:entity").pop()) == f"uuid:{th.outputs[1]}" for r in gen)


def test_landing_page_has_signposting_read_by_a_parser(thread, tmp_path):
    import signposting
    remote, th = thread
    out = tmp_path / "out"
    res = _publish(remote, out, th)
    page = (out / "data" / "ro-crate-preview.html").read_text()
    assert "<script" not in page.lower()
    assert "Simulation results" in page and "Josiah Carberry" in page and "<svg" in page
    assert "Creative Commons Attribution 4.0" in page
    for f in (out / "data" / "files").iterdir():
        assert hashlib.sha256(f.read_bytes()).hexdigest() in page
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}/data/"
        s = signposting.find_signposting_html(base + "ro-crate-preview.html")
        assert s.citeAs.target == res.identifier
        described = {str(d.target) for d in s.describedBy}
        assert base + "ro-crate-metadata.json" in described
        assert f"http://127.0.0.1:{srv.server_address[1]}/metadata/datacite.xml" in described
        assert {str(i.target) for i in s.items} == {base + f"files/{p.name}" for p in
                                                     (out / "data" / "files").iterdir()}
        assert str(s.license.target) == "https://spdx.org/licenses/CC-BY-4.0"
        assert "https://schema.org/Dataset" in {str(t.target) for t in s.types}
        ls = signposting.find_signposting_linkset(base + "linkset.json").for_context(
            base + "ro-crate-preview.html")
        assert {str(i.target) for i in ls.items} == {str(i.target) for i in s.items}
        assert str(ls.license.target) == str(s.license.target)
    finally:
        srv.shutdown()
        srv.server_close()


def test_republish_is_a_new_version_linked_to_the_previous(thread, tmp_path):
    remote, th = thread
    first = _publish(remote, tmp_path / "v1", th)
    second = _publish(remote, tmp_path / "v2", th)
    assert (first.version, second.version) == (1, 2)
    assert second.previous == first.identifier
    ds2 = remote.store.get_data(second.dataset_id)
    assert ds2.derived_from == first.dataset_id
    assert ds2.metadata["identifier"] == second.identifier and ds2.metadata["version"] == 2
    assert _crate(tmp_path / "v2")["./"]["isBasedOn"] == {"@id": first.identifier}
    rel = json.loads((tmp_path / "v2" / "metadata" / "datacite.json").read_text())["relatedIdentifiers"]
    assert rel == [{"relatedIdentifier": first.identifier, "relatedIdentifierType": "URN",
                    "relationType": "IsNewVersionOf"}]
    # The publish is in the thread: a job that got each file and put the dataset.
    job = remote.store.get_job(second.job_id)
    assert job.state.value == "COMPLETE" and job.defn.entry == "lwfm.publish:publish"
    made = remote.store.find_data(job_id=second.job_id)
    assert {d.direction.value for d in made} == {"get", "put"}
    assert {d.derived_from for d in made if d.direction.value == "get"} == set(th.outputs)
    # The first publication is not mistaken for a file of the workflow.
    assert len(_crate(tmp_path / "v2")) == len(_crate(tmp_path / "v1"))


def test_publish_selected_data_and_by_query(thread, tmp_path, monkeypatch):
    remote, th = thread
    q = tmp_path / "q.rq"
    q.write_text("SELECT ?d WHERE { ?d lwfm:direction 'put' } ORDER BY ?d")
    monkeypatch.delenv("LWFM_HOME", raising=False)
    r = CliRunner().invoke(cli, ["--home", str(remote.config.home), "publish", "--query", str(q),
                                 "--title", "Queried", "--license", "CC0-1.0", "--creator", CARBERRY,
                                 "-o", str(tmp_path / "queried"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["files"] == 3
    assert json.loads((tmp_path / "queried" / "data" / "ro-crate-metadata.json").read_text())
    res = _publish(remote, tmp_path / "one", th, workflow_id=None, data_ids=[th.outputs[2][:8]])
    g = _crate(tmp_path / "one")
    assert res.files == 1 and [i for i in g if i.startswith("files/")] == ["files/remote-out-2.dat"]
    assert f"urn:uuid:{th.steps[2]}" in g  # the job that made it, with its definition


def test_cli_end_to_end_with_a_real_job(tmp_path, monkeypatch):
    """A user's path: run a job with a cwd, put its output, publish the workflow by CLI
    (by the short id `lwfm workflows` shows)."""
    from lwfm import JobDefn, Manager
    home = tmp_path / "home"
    monkeypatch.setenv("LWFM_HOME", str(home))
    for var in ("LWFM_JOB_ID", "LWFM_WORKFLOW_ID", "LWFM_PARENT_ID", "LWFM_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    with Manager(home) as m:
        wf = m.create_workflow("campaign")
        job = m.submit(JobDefn(entry=["sh", "-c", "seq 1 1000 > result.txt"], cwd=str(work)),
                       workflow_id=wf.id)
        assert m.wait(job.id if hasattr(job, "id") else job, timeout=60).state.value == "COMPLETE"
        m.put(work / "result.txt", str(tmp_path / "archive" / "result.txt"),
              job_id=job.id if hasattr(job, "id") else job)
    r = CliRunner().invoke(cli, ["publish", "--workflow", wf.id[:8], "--title", "Campaign",
                                 "--license", "MIT", "--creator", CARBERRY,
                                 "-o", str(tmp_path / "campaign.zip"), "--zip"])
    assert r.exit_code == 0, r.output
    assert "published 1 files" in r.output
    with zipfile.ZipFile(tmp_path / "campaign.zip") as z:
        assert z.read("campaign/data/files/result.txt") == (work / "result.txt").read_bytes()


# -- refusals: a non-zero exit, and nothing written -------------------------------------

def _refused(remote: Home, tmp_path: Path, args: list[str], needle: str) -> None:
    before = snapshot(remote.store)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["--home", str(remote.config.home), "publish", *args,
                                 "-o", str(out)])
    assert r.exit_code != 0
    assert needle in str(r.exception) + r.output, (r.output, r.exception)
    assert not out.exists()
    assert _leftovers(tmp_path) == []
    assert snapshot(remote.store) == before


def _args(th, **over) -> list[str]:
    a = {"--workflow": th.workflow, "--title": "T", "--license": "CC-BY-4.0", "--creator": CARBERRY}
    a.update(over)
    return [x for k, v in a.items() for x in (k, v)]


def test_refuses_an_invalid_spdx_license(thread, tmp_path):
    remote, th = thread
    _refused(remote, tmp_path, _args(th, **{"--license": "CC-BY-4"}), "not an SPDX license id")
    assert check_license("cc-by-4.0").id == "CC-BY-4.0"
    with pytest.raises(PublishError, match="deprecated"):
        check_license("GPL-3.0")


def test_refuses_an_orcid_with_a_bad_checksum(thread, tmp_path):
    remote, th = thread
    _refused(remote, tmp_path, _args(th, **{"--creator": "J <https://orcid.org/0000-0002-1825-0098>"}),
             "fails its checksum")
    assert check_orcid("0000-0002-1694-233X") == "0000-0002-1694-233X"
    assert orcid_check_digit("000000021825009") == "7"
    with pytest.raises(PublishError, match="not an ORCID"):
        check_orcid("https://orcid.org/0000-0002-1825")


@pytest.mark.parametrize("zipped", [False, True], ids=["folder", "zip"])
def test_refuses_a_file_changed_since_it_was_recorded(thread, tmp_path, zipped):
    """Zipped, the files stream straight into a hidden zip: it must go too."""
    remote, th = thread
    changed = Path(remote.store.get_data(th.outputs[1]).url)
    changed.write_text("tampered\n")
    _refused(remote, tmp_path, _args(th) + (["--zip"] if zipped else []),
             "no longer matches the store")


def test_refuses_a_crate_that_fails_its_profile_checks(thread, tmp_path):
    remote, th = thread
    _refused(remote, tmp_path, _args(th, **{"--title": "   "}), "fails its profile checks")


@pytest.mark.parametrize("size", [0, 1, DIRECT_MIN - 1, DIRECT_MIN, DIRECT_MIN + 1,
                                  DIRECT_MIN + ALIGN, BLOCK - 1, BLOCK, 2 * BLOCK + ALIGN + 1])
def test_copy_hashing_copies_exactly_and_hashes_what_it_wrote(tmp_path, size):
    """Small files go through the page cache, large ones past it (O_DIRECT, where the
    filesystem has it) with their unaligned end through it: every size around those
    edges must copy byte for byte, with its mtime, and hash what was written."""
    data = random.Random(size).randbytes(size)  # no repeats: a misplaced block would show
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(data)
    d = copy_hashing(src, dst)
    assert dst.read_bytes() == data
    assert (d.sha256, d.sha512, d.size) == (hashlib.sha256(data).hexdigest(),
                                           hashlib.sha512(data).hexdigest(), size)
    assert dst.stat().st_mtime_ns == src.stat().st_mtime_ns
    with pytest.raises(FileExistsError):  # never overwrites a file in the bag
        copy_hashing(src, dst)


def test_crate_checker_names_what_is_wrong(tmp_path):
    from lwfm.publish.checks import CrateChecker
    chk = CrateChecker(tmp_path)
    chk.see({"@id": "ro-crate-metadata.json", "about": {"@id": "./"}})
    chk.see({"@id": "./", "@type": "Dataset", "name": "x", "hasPart": [{"@id": "files/a.dat"}]})
    chk.see({"@id": "files/a.dat", "@type": "File", "contentSize": "3"})
    chk.see({"@id": "#c", "@type": "ControlAction", "instrument": {"@id": "#nowhere"}})
    with pytest.raises(PublishError) as e:
        chk.finish()
    assert "fails its profile checks" in str(e.value) and "and 5 more" in str(e.value)
    msg = "; ".join(chk.problems)
    for part in ("no license", "no datePublished", "files/a.dat is not a file",
                 "ControlAction #c has no object", "#c instrument -> #nowhere"):
        assert part in msg


def test_refuses_to_overwrite_an_existing_output(thread, tmp_path):
    remote, th = thread
    (tmp_path / "out").mkdir()
    before = snapshot(remote.store)
    with pytest.raises(PublishError, match="exists"):
        _publish(remote, tmp_path / "out", th)
    assert snapshot(remote.store) == before and list((tmp_path / "out").iterdir()) == []


def test_publish_has_help_and_needs_one_selector(thread, tmp_path):
    remote, th = thread
    r = CliRunner().invoke(cli, ["publish", "--help"])
    assert r.exit_code == 0 and "--creator" in r.output and "--to" in r.output
    r = CliRunner().invoke(cli, ["--home", str(remote.config.home), "publish", "--workflow",
                                 th.workflow, "--data", th.outputs[0], "--title", "T", "--license",
                                 "MIT", "--creator", CARBERRY, "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "exactly one of" in r.output and not (tmp_path / "x").exists()


def test_cli_takes_short_ids_and_refuses_unknown_ones(thread, tmp_path):
    """`--data` and `--workflow` take the short ids `lwfm find` / `lwfm workflows` show;
    an id that names nothing is refused in one line and nothing is written."""
    remote, th = thread
    _refused(remote, tmp_path, _args(th, **{"--workflow": "0000dead"}), "no workflow")
    a = _args(th)
    i = a.index("--workflow")
    _refused(remote, tmp_path, a[:i] + ["--data", "0000dead"] + a[i + 2:], "no data item")
    out = tmp_path / "short"
    r = CliRunner().invoke(cli, ["--home", str(remote.config.home), "publish", *a[:i],
                                 "--data", th.outputs[0][:8], *a[i + 2:], "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "published 1 files" in r.output


# -- a publication killed mid-way ---------------------------------------------------------

def test_what_a_killed_publish_left_is_swept_by_the_next_one(tmp_path, monkeypatch):
    """A real `lwfm publish` killed -9 while it copies a 400 MB payload leaves its hidden
    work folder; the next publish into that folder removes it (its writer is gone), and
    leaves alone the work of a publish still running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from lwfm import JobDefn, Manager
    from lwfm.publish.api import sweep_abandoned
    from lwfm.starter import hold_claim, release_claim
    home = tmp_path / "home"
    monkeypatch.setenv("LWFM_HOME", str(home))
    for var in ("LWFM_JOB_ID", "LWFM_WORKFLOW_ID", "LWFM_PARENT_ID", "LWFM_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    big = tmp_path / "big.bin"
    with big.open("wb") as f:  # real bytes, not a sparse file: copying takes a while
        for _ in range(400):
            f.write(random.randbytes(1 << 20))
    with Manager(home) as m:
        wf = m.create_workflow("campaign")
        job = m.submit(JobDefn(entry=["true"]), workflow_id=wf.id)
        m.wait(job.id, timeout=60)
        m.put(big, str(tmp_path / "archive" / "big.bin"), job_id=job.id)
    pubs = tmp_path / "pubs"
    args = [sys.executable, "-m", "lwfm.cli", "publish", "--workflow", wf.id, "--title", "T",
            "--license", "MIT", "--creator", CARBERRY]
    proc = subprocess.Popen([*args, "-o", str(pubs / "first")], env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(pubs.glob(".first.publishing-*.owner")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    left = sorted(p.name for p in pubs.iterdir())
    assert not (pubs / "first").exists()
    assert len(left) == 2 and left[0].startswith(".first.publishing-"), left  # folder + owner
    # a publication another process is writing right now is not touched
    claim = hold_claim()
    try:
        live = pubs / ".other.publishing-x"
        live.mkdir()
        (pubs / ".other.publishing-x.owner").write_text(claim)
        r = subprocess.run([*args, "-o", str(pubs / "second")], capture_output=True, text=True,
                           env=os.environ.copy(), timeout=300)
        assert r.returncode == 0, r.stderr
    finally:
        release_claim(claim)
    assert sorted(p.name for p in pubs.iterdir()) == [".other.publishing-x",
                                                      ".other.publishing-x.owner", "second"]
    assert bagit.Bag(str(pubs / "second")).is_valid()
    # once its writer is gone (the claim released: as if its process ended), it goes too
    assert sweep_abandoned(pubs) == [live]
    assert sorted(p.name for p in pubs.iterdir()) == ["second"]
