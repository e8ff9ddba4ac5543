"""lwfm's ontology, JSON-LD context and SHACL shapes, shipped as package data."""

from pathlib import Path

DIR = Path(__file__).parent


def path(name: str) -> Path:
    """The installed path of one ontology file (e.g. ``lwfm.ttl``)."""
    return DIR / name
