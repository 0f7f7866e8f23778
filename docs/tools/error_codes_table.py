#!/usr/bin/env python3
"""Generates the error-code table of docs/api.md from crates/payledger-http/src/errors.rs.

errors.rs is the one table of API error codes; docs/api.md shows the same rows between the
markers `<!-- error-codes:begin -->` and `<!-- error-codes:end -->`.

  python3 docs/tools/error_codes_table.py           print the table
  python3 docs/tools/error_codes_table.py --write   rewrite the table in docs/api.md
  python3 docs/tools/error_codes_table.py --check   exit 1 if docs/api.md is out of date
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
ERRORS_RS = ROOT / "crates" / "payledger-http" / "src" / "errors.rs"
API_MD = ROOT / "docs" / "api.md"
BEGIN = "<!-- error-codes:begin -->"
END = "<!-- error-codes:end -->"

# actix-web's StatusCode constant names used in errors.rs.
STATUS = {
    "BAD_REQUEST": 400,
    "UNAUTHORIZED": 401,
    "PAYMENT_REQUIRED": 402,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "UNPROCESSABLE_ENTITY": 422,
    "TOO_MANY_REQUESTS": 429,
    "INTERNAL_SERVER_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}

# One row of the `error_codes!` macro: `Variant => (STATUS, "E_CODE", "description"),`
ROW = re.compile(r'^\s*(\w+)\s*=>\s*\((\w+),\s*"(E_\w+)",\s*"((?:[^"\\]|\\.)*)"\s*\),\s*$', re.M)


def table():
    source = ERRORS_RS.read_text(encoding="utf-8")
    rows = ROW.findall(source)
    if not rows:
        sys.exit("no error_codes! rows found in %s" % ERRORS_RS)
    lines = ["| code | HTTP status | meaning |", "| --- | --- | --- |"]
    for _variant, status_name, code, description in rows:
        if status_name not in STATUS:
            sys.exit("unknown status %s for %s: add it to STATUS" % (status_name, code))
        description = description.replace('\\"', '"').replace("|", "\\|")
        lines.append("| `%s` | %d | %s |" % (code, STATUS[status_name], description))
    return "\n".join(lines) + "\n"


def replaced(document, new_table):
    start = document.index(BEGIN) + len(BEGIN)
    end = document.index(END)
    return document[:start] + "\n" + new_table + document[end:]


def main(argv):
    new_table = table()
    if "--write" in argv or "--check" in argv:
        document = API_MD.read_text(encoding="utf-8")
        updated = replaced(document, new_table)
        if "--check" in argv:
            if updated != document:
                print("docs/api.md's error table differs from errors.rs; run with --write")
                return 1
            return 0
        API_MD.write_text(updated, encoding="utf-8")
        return 0
    sys.stdout.write(new_table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
