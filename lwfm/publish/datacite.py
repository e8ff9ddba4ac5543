"""DataCite metadata (schema 4.5) derived from the same facts as the crate.

DataCite is what a DOI registers and what repositories harvest; the ``datacite``
package validates the JSON form and writes the XML form, so neither is hand-built
against the schema here.
"""

from __future__ import annotations

from typing import Any

from lwfm.errors import PublishError

from .crate import Facts

SCHEMA_VERSION = "http://datacite.org/schema/kernel-4"
RESOURCE_TYPE = "RO-Crate in a BagIt bag"


def _id_type(identifier: str) -> tuple[str, str]:
    if identifier.startswith("https://doi.org/"):
        return identifier[len("https://doi.org/"):], "DOI"
    return identifier, "URN" if identifier.startswith("urn:") else "URL"


def datacite_record(f: Facts, publisher: str, payload_bytes: int) -> dict[str, Any]:
    """The DataCite 4.5 record (the ``datacite`` package's JSON form, with ``doi``)."""
    rec: dict[str, Any] = {
        "types": {"resourceTypeGeneral": "Dataset", "resourceType": RESOURCE_TYPE},
        "creators": [{
            "name": ", ".join(x for x in c.family_given if x), "nameType": "Personal",
            "familyName": c.family_given[0], **({"givenName": c.family_given[1]}
                                                 if c.family_given[1] else {}),
            "nameIdentifiers": [{"nameIdentifier": c.iri, "nameIdentifierScheme": "ORCID",
                                 "schemeUri": "https://orcid.org"}]} for c in f.creators],
        "titles": [{"title": f.title}],
        "publisher": {"name": publisher},
        "publicationYear": f.date_published[:4],
        "dates": [{"date": f.date_published[:10], "dateType": "Issued"}],
        "version": str(f.version),
        "rightsList": [{"rights": f.license.name, "rightsUri": f.license.url,
                        "rightsIdentifier": f.license.id, "rightsIdentifierScheme": "SPDX",
                        "schemeUri": "https://spdx.org/licenses/"}],
        "descriptions": [{"description": f.description, "descriptionType": "Abstract"}],
        "sizes": [f"{payload_bytes} bytes", f"{len(f.files)} files"],
        "formats": ["application/ld+json", "BagIt (RFC 8493)"],
        "schemaVersion": SCHEMA_VERSION,
    }
    value, kind = _id_type(f.identifier)
    if kind == "DOI":
        rec["doi"] = value
    else:
        rec["alternateIdentifiers"] = [{"alternateIdentifier": value,
                                        "alternateIdentifierType": kind}]
    if f.keywords:
        rec["subjects"] = [{"subject": k} for k in f.keywords]
    if f.previous:
        pv, pk = _id_type(f.previous)
        rec["relatedIdentifiers"] = [{"relatedIdentifier": pv, "relatedIdentifierType": pk,
                                      "relationType": "IsNewVersionOf"}]
    return rec


def render(rec: dict[str, Any]) -> tuple[bytes, bytes]:
    """(JSON, XML) of a record, refusing one the DataCite 4.5 schema rejects."""
    import json

    from datacite import schema45
    from jsonschema.exceptions import ValidationError
    try:
        schema45.validator.validate(rec)
    except ValidationError as e:
        raise PublishError(f"the DataCite metadata is not valid against schema 4.5: "
                           f"{e.message}") from None
    xml = schema45.tostring(rec)
    return (json.dumps(rec, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n",
            xml.encode() if isinstance(xml, str) else xml)
