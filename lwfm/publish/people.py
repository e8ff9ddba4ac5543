"""Creators of a dataset: a name and an ORCID iD, whose check digit is verified.

An ORCID with a typo still looks like an ORCID; its ISO 7064 MOD 11-2 check digit is
what catches it before a DOI is minted that credits the wrong person (or no one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lwfm.errors import PublishError

_FORM = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<\s*(?P<orcid>[^<>]+?)\s*>\s*$")
_ORCID = re.compile(r"^(?:https?://orcid\.org/)?(\d{4})-(\d{4})-(\d{4})-(\d{3}[\dX])$")


@dataclass(frozen=True)
class Creator:
    name: str
    orcid: str  # the bare iD, 0000-0002-1825-0097

    @property
    def iri(self) -> str:
        return f"https://orcid.org/{self.orcid}"

    @property
    def family_given(self) -> tuple[str, str]:
        """(family, given) names: 'Family, Given' as written, else the last word is the family."""
        if "," in self.name:
            fam, giv = self.name.split(",", 1)
            return fam.strip(), giv.strip()
        parts = self.name.rsplit(" ", 1)
        return (parts[-1], parts[0]) if len(parts) == 2 else (self.name, "")


def orcid_check_digit(base_digits: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 15 digits."""
    total = 0
    for ch in base_digits:
        total = (total + int(ch)) * 2
    r = (12 - total % 11) % 11
    return "X" if r == 10 else str(r)


def check_orcid(text: str) -> str:
    """The bare ORCID iD of ``text`` (a URL or bare form), or PublishError."""
    m = _ORCID.match(text.strip())
    if m is None:
        raise PublishError(f"{text!r} is not an ORCID iD: write https://orcid.org/0000-0000-0000-000X")
    digits = "".join(m.groups())
    if orcid_check_digit(digits[:15]) != digits[15]:
        raise PublishError(f"ORCID {text!r} fails its checksum (ISO 7064 MOD 11-2): "
                           "a digit is mistyped; copy the iD from the person's ORCID record")
    return "-".join(m.groups())


def parse_creator(text: str) -> Creator:
    """``"Name <https://orcid.org/…>"`` as a Creator; both parts are required."""
    m = _FORM.match(text)
    if m is None:
        raise PublishError(f"--creator {text!r}: write it as \"Name <https://orcid.org/0000-…>\"")
    return Creator(m["name"], check_orcid(m["orcid"]))
