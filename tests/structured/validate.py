#!/usr/bin/env python3
"""Independent validator for the structured-generation tests.

Reads JSON lines {"schema": ..., "text": ...} on stdin; for each prints "ok" when `text` parses as
JSON (strictly: no NaN/Infinity, no trailing data) and validates against `schema` (JSON Schema
draft 2020-12, formats checked), else one line with the reason.
Needs python3-jsonschema (Debian) with the RFC 3339 checker for date-time/time.
"""
import json
import sys

import jsonschema

checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
for fmt in ("date", "date-time", "time", "email", "uuid", "ipv4"):
    if fmt not in checker.checkers:
        print(f"validator: format '{fmt}' cannot be checked here", file=sys.stderr)
        sys.exit(2)


def reject_constant(name):
    raise ValueError(f"non-JSON constant {name}")


for line in sys.stdin:
    item = json.loads(line)
    try:
        value = json.loads(item["text"], parse_constant=reject_constant)
    except Exception as e:  # noqa: BLE001 - report any parse failure
        print(f"not JSON: {e}: {item['text']!r}")
        continue
    try:
        jsonschema.Draft202012Validator(item["schema"], format_checker=checker).validate(value)
    except jsonschema.ValidationError as e:
        print(f"invalid: {e.message} at {list(e.absolute_path)}: {item['text']!r}")
        continue
    print("ok")
