"""The BagIt bag (RFC 8493) around the crate, written from digests already computed.

``bagit.make_bag`` would hash every payload file again; here the manifests come
from the single pass that copied each file in (and from the hashing writers of the
generated documents), so a 1 GB dataset is read once. Only the small tag files are
hashed here. ``bagit.Bag(...).validate()`` checks the result in the tests.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lwfm import __version__

from .hashing import ALGORITHMS, Digests, hash_bytes

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


def _encode_path(p: str) -> str:
    """RFC 8493 section 2.1.3: CR, LF and % are percent-encoded in manifest paths."""
    return p.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _manifest(entries: dict[str, Digests], alg: str) -> bytes:
    return "".join(f"{getattr(d, alg)}  {_encode_path(p)}\n"
                   for p, d in sorted(entries.items())).encode()


def write_bag(bag: Path, payload: dict[str, Digests], info: dict[str, str],
              tag_files: dict[str, Digests]) -> None:
    """Write bagit.txt, bag-info.txt, the payload manifests and the tag manifests.

    ``payload`` maps ``data/...`` paths to their digests; ``tag_files`` maps tag files
    already in ``bag`` (``metadata/...``) to theirs.
    """
    oxum = f"{sum(d.size for d in payload.values())}.{len(payload)}"
    lines = {"Bag-Software-Agent": f"lwfm {__version__}", "Payload-Oxum": oxum, **info}
    bag_info = "".join(f"{k}: {v}\n" for k, v in lines.items()).encode()
    tags = dict(tag_files)
    for name, body in (("bagit.txt", BAGIT_TXT), ("bag-info.txt", bag_info)):
        (bag / name).write_bytes(body)
        tags[name] = hash_bytes(body)
    for alg in ALGORITHMS:
        body = _manifest(payload, alg)
        (bag / f"manifest-{alg}.txt").write_bytes(body)
        tags[f"manifest-{alg}.txt"] = hash_bytes(body)
    for alg in ALGORITHMS:
        (bag / f"tagmanifest-{alg}.txt").write_bytes(_manifest(tags, alg))


class ZipPayload:
    """The zipped bag, open while it is written: payload files stream into it as they
    are hashed (so ``--zip`` writes each payload byte once, not into a folder and then
    again into the zip), the small files follow in :func:`zip_bag`.

    Payload files are stored, not deflated: they are usually compressed already and
    deflating 1 GB would cost more than hashing it.
    """

    def __init__(self, path: Path, top: str):
        self.path, self.top = path, top
        self.zf = zipfile.ZipFile(path, "x", allowZip64=True)

    def entry(self, rel: str) -> Callable[[Path], IO[bytes]]:
        """Opens the entry ``rel`` (a path in the bag) for the bytes of a source file."""
        def open_entry(src: Path) -> IO[bytes]:
            zi = zipfile.ZipInfo.from_file(src, f"{self.top}/{rel}")  # its size and mtime
            zi.compress_type = zipfile.ZIP_STORED
            zi.external_attr = 0o100644 << 16
            return self.zf.open(zi, "w")
        return open_entry

    def close(self) -> None:
        self.zf.close()


def zip_bag(bag: Path, z: ZipPayload) -> None:
    """Add the bag's files on disk (all but the payload, already in ``z``) under one
    top-level folder (the serialization bagit tools expect), and close the zip."""
    for dirpath, dirnames, filenames in os.walk(bag):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            z.zf.write(p, f"{z.top}/{p.relative_to(bag).as_posix()}",
                       compress_type=zipfile.ZIP_DEFLATED)
    z.close()
