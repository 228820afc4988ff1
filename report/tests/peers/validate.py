#!/usr/bin/env python3
"""Checks Varde's exports with the peers' own tools and prints one JSON object:

  validate.py stix FILE   OASIS's stix2-validator (PyPI stix2-validator): errors and warnings
  validate.py misp FILE   MISP's own Python library (PyPI pymisp): MISPEvent.load_file, then
                          the tags, attribute types and categories as pymisp read them
"""
import json
import sys


def stix(path):
    from stix2validator import ValidationOptions, validate_file
    results = validate_file(path, ValidationOptions(version="2.1", strict=False))
    errors, warnings = [], []
    for obj in results.object_results:
        errors.extend("%s: %s" % (obj.object_id, e) for e in obj.errors)
        warnings.extend("%s: %s" % (obj.object_id, w) for w in obj.warnings)
    return {"valid": results.is_valid, "errors": errors, "warnings": warnings,
            "objects": len(results.object_results)}


def misp(path):
    from pymisp import MISPEvent
    event = MISPEvent()
    event.load_file(path)
    known = event.describe_types
    bad = [a.type for a in event.attributes if a.type not in known["types"]]
    wrong_category = [
        "%s/%s" % (a.type, a.category) for a in event.attributes
        if a.category not in known["category_type_mappings"]
        or a.type not in known["category_type_mappings"][a.category]
    ]
    return {"valid": not bad and not wrong_category, "info": event.info,
            "tags": sorted(t.name for t in event.tags),
            "attributes": sorted("%s:%s" % (a.type, a.value) for a in event.attributes),
            "unknown_types": bad, "wrong_categories": wrong_category}


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    print(json.dumps({"stix": stix, "misp": misp}[kind](path)))
