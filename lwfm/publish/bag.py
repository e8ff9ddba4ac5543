"""The BagIt bag (RFC 8493) around the crate, written from digests already computed.

``bagit.make_bag`` would hash every payload file again; here the manifests come
from the single pass that copied each file in (and from the hashing writers of the
generated documents), so a 1 GB dataset is read once. Only the small tag files are
hashed here. ``bagit.Bag(...).validate()`` checks the result in the tests.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from lwfm import __version__

from .hashing import ALGORITHMS, BLOCK, Digests, hash_bytes

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


def zip_bag(bag: Path, out: Path, top: str) -> None:
    """Zip the bag under one top-level folder (the serialization bagit tools expect).

    Payload files are stored, not deflated: they are usually compressed already and
    deflating 1 GB would cost more than hashing it. They are copied in 1 MiB pieces:
    ``ZipFile.write`` copies 8 KiB at a time, 131,072 Python-level writes per GB.
    """
    with zipfile.ZipFile(out, "x", allowZip64=True) as zf:
        for dirpath, dirnames, filenames in os.walk(bag):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                rel = p.relative_to(bag).as_posix()
                if not rel.startswith("data/files/"):
                    zf.write(p, f"{top}/{rel}", compress_type=zipfile.ZIP_DEFLATED)
                    continue
                zi = zipfile.ZipInfo.from_file(p, f"{top}/{rel}")
                zi.compress_type = zipfile.ZIP_STORED
                with open(p, "rb", buffering=0) as src, zf.open(zi, "w") as dst:
                    shutil.copyfileobj(src, dst, BLOCK)
