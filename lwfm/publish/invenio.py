"""Deposit a published bag to an InvenioRDM repository (Zenodo runs InvenioRDM).

The subset of the documented REST API used (https://inveniordm.docs.cern.ch/reference/rest_api_drafts_records/):
``POST /api/records`` (or ``/api/records/{id}/versions``) makes a draft from the
DataCite-derived metadata, ``POST …/draft/pids/doi`` reserves its DOI,
``POST …/draft/files`` + ``PUT …/content`` + ``POST …/commit`` upload the zipped
bag, ``POST …/draft/actions/publish`` publishes it. The token comes from the
environment only (never lwfm.toml, the store or a log). Progress is kept in
``OUT.deposit.json`` beside the bag, so a deposit broken off at any step resumes
where it stopped: a committed file whose md5 matches is not sent again, and the
store records the publish only once the repository has published it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lwfm.config import CONFIG_FILE
from lwfm.errors import ConfigError, DepositError

TIMEOUT = 60.0


class _Reader:
    """A file streamed as a request body, md5'd on the way (requests reads ``read``)."""

    def __init__(self, path: Path):
        self._fh = open(path, "rb")
        self.md5 = hashlib.md5()
        self._len = path.stat().st_size

    def __len__(self) -> int:
        return self._len

    def read(self, n: int = -1) -> bytes:
        b = self._fh.read(1 << 20 if n is None or n < 0 else n)
        self.md5.update(b)
        return b

    def close(self) -> None:
        self._fh.close()


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def repository_config(home: Path | None, name: str) -> dict[str, Any]:
    """``[repositories.NAME]`` of lwfm.toml: ``url`` and ``token_env`` (never a token)."""
    from lwfm.config import default_home
    f = (Path(home) if home else default_home()) / CONFIG_FILE
    raw = tomllib.loads(f.read_text()) if f.exists() else {}
    sec = raw.get("repositories", {}).get(name)
    if not isinstance(sec, dict) or not isinstance(sec.get("url"), str):
        raise ConfigError(f'no repository {name!r}: add [repositories.{name}] with url = '
                          f'"https://…" and token_env = "ENV_NAME" to {f}')
    if "token" in sec:
        raise ConfigError(f"{f}: [repositories.{name}] holds a token; tokens come from the "
                          "environment only (token_env names the variable)")
    return {"url": sec["url"].rstrip("/"),
            "token_env": sec.get("token_env", f"LWFM_{name.upper()}_TOKEN")}


def open_repository(home: Path | None, name: str, out: Path, env: Mapping[str, str]) -> "InvenioDeposit":
    cfg = repository_config(home, name)
    token = env.get(cfg["token_env"])
    if not token:
        raise ConfigError(f"set {cfg['token_env']} to a personal access token of {cfg['url']} "
                          f"to deposit to {name!r}")
    return InvenioDeposit(name, cfg["url"], token, out)


def invenio_metadata(dc: dict[str, Any]) -> dict[str, Any]:
    """InvenioRDM draft metadata from a DataCite record."""
    people = []
    for c in dc["creators"]:
        orcid = c["nameIdentifiers"][0]["nameIdentifier"].rsplit("/", 1)[-1]
        people.append({"person_or_org": {"type": "personal", "family_name": c["familyName"],
                                         "given_name": c.get("givenName", ""),
                                         "identifiers": [{"scheme": "orcid", "identifier": orcid}]}})
    r = dc["rightsList"][0]
    md = {"resource_type": {"id": "dataset"}, "title": dc["titles"][0]["title"],
          "publication_date": dc["dates"][0]["date"], "creators": people,
          "description": dc["descriptions"][0]["description"], "version": dc["version"],
          "publisher": dc["publisher"]["name"],
          "rights": [{"title": {"en": r["rights"]}, "link": r["rightsUri"]}],
          "subjects": [{"subject": s["subject"]} for s in dc.get("subjects", [])]}
    return {"metadata": md, "files": {"enabled": True},
            "access": {"record": "public", "files": "public"}}


class InvenioDeposit:
    """One deposit of one bag; its progress lives in ``OUT.deposit.json``."""

    def __init__(self, name: str, url: str, token: str, out: Path):
        import requests
        self.name, self.api, self.out = name, url + "/api", out
        self.state_path = out.with_name(out.name + ".deposit.json")
        self._s = requests.Session()
        self._s.headers["Authorization"] = f"Bearer {token}"
        self.state: dict[str, Any] = (json.loads(self.state_path.read_text())
                                      if self.state_path.exists() else {})

    # -- state -------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        os.replace(tmp, self.state_path)

    def resumable(self) -> bool:
        """A bag was written and its deposit not finished: resume instead of rebuilding."""
        return "pending" in self.state and self.out.exists()

    def save_pending(self, pending: dict[str, Any], result: dict[str, Any]) -> None:
        self.state.update(pending=pending, result=result)
        self._save()

    # -- HTTP --------------------------------------------------------------------------
    def _call(self, step: str, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202),
              **kw: Any) -> Any:
        import requests
        try:
            r = self._s.request(method, self.api + path, timeout=TIMEOUT, **kw)
        except requests.RequestException as e:
            raise self._stopped(step, f"{type(e).__name__}: {e}") from None
        if r.status_code not in ok:
            try:
                msg = r.json().get("message", r.text[:200])
            except ValueError:
                msg = r.text[:200]
            if r.status_code in (401, 403):
                raise DepositError(f"{self.name} refused the token ({r.status_code} {msg}); "
                                   "check that it may create and publish records")
            raise self._stopped(step, f"HTTP {r.status_code}: {msg}")
        return r.json() if r.content else {}

    def _stopped(self, step: str, why: str) -> DepositError:
        draft = self.state.get("draft_id")
        where = f" (draft {draft}, not published)" if draft else ""
        return DepositError(f"deposit to {self.name} stopped while trying to {step}{where}: "
                            f"{why}. Rerun the same lwfm publish command to resume")

    # -- steps -------------------------------------------------------------------------
    def reserve(self, datacite: dict[str, Any], previous_record: str | None = None) -> str:
        """A draft with a reserved DOI (reusing the draft of an earlier attempt); the DOI URL."""
        body = invenio_metadata(datacite)
        if self.state.get("draft_id"):
            rid = self.state["draft_id"]
            self._call("update the draft", "PUT", f"/records/{rid}/draft", json=body)
        else:
            if previous_record:
                d = self._call("start a new version", "POST", f"/records/{previous_record}/versions")
                self.state["draft_id"] = d["id"]
                self._call("update the draft", "PUT", f"/records/{d['id']}/draft", json=body)
            else:
                d = self._call("create a draft", "POST", "/records", json=body)
                self.state["draft_id"] = d["id"]
            self.state["repository"] = self.name
            self._save()
        rid = self.state["draft_id"]
        if not self.state.get("doi"):
            d = self._call("reserve a DOI", "POST", f"/records/{rid}/draft/pids/doi")
            self.state["doi"] = d["pids"]["doi"]["identifier"]
            self._save()
        return "https://doi.org/" + self.state["doi"]

    def discard(self) -> None:
        """The bag was refused: delete the draft, so nothing is left deposited."""
        rid = self.state.get("draft_id")
        if rid:
            self._call("discard the draft", "DELETE", f"/records/{rid}/draft", ok=(200, 204, 404))
        self.state_path.unlink(missing_ok=True)

    def _upload(self, rid: str) -> None:
        key = self.out.name
        listing = self._call("list the draft's files", "GET", f"/records/{rid}/draft/files")
        entry = next((e for e in listing.get("entries", []) if e.get("key") == key), None)
        if entry and entry.get("status") == "completed":
            if entry.get("checksum") == "md5:" + _md5(self.out):
                return  # sent whole before: not again
            self._call("replace a damaged upload", "DELETE", f"/records/{rid}/draft/files/{key}",
                       ok=(200, 204))
            entry = None
        if entry is None:
            self._call("start the upload", "POST", f"/records/{rid}/draft/files",
                       json=[{"key": key}])
        body = _Reader(self.out)
        try:
            self._call("upload the bag", "PUT", f"/records/{rid}/draft/files/{key}/content",
                       data=body, headers={"Content-Type": "application/octet-stream"})
        finally:
            body.close()
        done = self._call("commit the upload", "POST", f"/records/{rid}/draft/files/{key}/commit")
        if done.get("checksum") != "md5:" + body.md5.hexdigest():
            raise self._stopped("commit the upload", f"the server holds {done.get('checksum')}, "
                                f"not md5:{body.md5.hexdigest()}")

    def resume(self, store: Any) -> Any:
        """Upload what is missing, publish, then record the publish in the store."""
        from .api import PublishResult, finish_record
        rid = self.state["draft_id"]
        rec = self._call("read the record", "GET", f"/records/{rid}", ok=(200, 404))
        if not rec.get("is_published"):
            self._upload(rid)
            rec = self._call("publish the record", "POST", f"/records/{rid}/draft/actions/publish")
        url = rec.get("links", {}).get("self_html") or f"{self.api}/records/{rid}"
        finish_record(store, self.state["pending"], extra={
            "repository": self.name, "invenio_record": rid, "doi": self.state["doi"],
            "record_url": url})
        res = PublishResult(**{**self.state["result"], "path": Path(self.state["result"]["path"]),
                               "record_url": url})
        self.state_path.unlink(missing_ok=True)
        return res
