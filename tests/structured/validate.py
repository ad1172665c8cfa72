#!/usr/bin/env python3
"""Independent validator for the structured-generation tests.

Reads JSON lines {"schema": ..., "text": ...} on stdin; for each prints "ok" when `text` parses as
JSON (strictly: no NaN/Infinity, no trailing data) and validates against `schema` (JSON Schema
draft 2020-12, formats checked), else one line with the reason.
Needs python3-jsonschema (Debian 12: 4.10). Its format checker lacks "date-time" and "time"
(they need the optional rfc3339-validator, not packaged in Debian 12), so this script checks
those two itself, against the RFC 3339 section 5.6 grammar plus the calendar and clock ranges,
whenever the installed jsonschema cannot; a newer jsonschema's own checkers are used as they are.
"""
import datetime
import json
import re
import sys

import jsonschema

_TIME = re.compile(
    r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))\Z", re.ASCII)


def rfc3339_time(value):
    """full-time: HH:MM:SS[.frac](Z|+HH:MM), offsets up to 23:59; second 60 (a leap second)
    only at 23:59 UTC."""
    if not isinstance(value, str):
        return True
    m = _TIME.match(value)
    if not m:
        return False
    hour, minute, second = int(m[1]), int(m[2]), int(m[3])
    offset = 0
    if m[5]:
        if int(m[6]) > 23 or int(m[7]) > 59:
            return False
        offset = (int(m[6]) * 60 + int(m[7])) * (1 if m[5] == "+" else -1)
    if hour > 23 or minute > 59 or second > 60:
        return False
    return second < 60 or (hour * 60 + minute - offset) % 1440 == 23 * 60 + 59


def rfc3339_date_time(value):
    """date-time: full-date "T" full-time (T and Z case-insensitive)."""
    if not isinstance(value, str):
        return True
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})[Tt](.*)\Z", value, re.ASCII | re.DOTALL)
    if not m:
        return False
    try:
        datetime.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return False
    return rfc3339_time(m[4])


checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
if "time" not in checker.checkers:
    checker.checks("time")(rfc3339_time)
if "date-time" not in checker.checkers:
    checker.checks("date-time")(rfc3339_date_time)
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
