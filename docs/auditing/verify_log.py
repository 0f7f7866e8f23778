#!/usr/bin/env python3
"""Independent verifier of a payledger event log (Python 3 standard library only).

It shares no code with payledger. It reads the global log the way any client can
(`GET /v1/events?after=N&limit=M`), recomputes every event's SHA-256 with the recipe of
docs/auditing.md, and checks:

  * global positions are 1, 2, 3, ... with no gap, up to the head position the server's
    sequencer reports (`GET /readyz` -> headPosition), so removed events are noticed;
  * each stream's versions are 1, 2, 3, ... with no gap;
  * each event's prevHash is the previous event's hash in its stream (64 zeros for version 1);
  * each event's hash is SHA-256 of its recipe bytes.

Exit status: 0 everything verifies; 1 the log is broken (the first broken event is named);
2 the log could not be read (network, HTTP error, unreadable file, bad arguments).

Usage:
  verify_log.py --url http://127.0.0.1:8080
  verify_log.py --from-file page1.json [page2.json ...] [--head-position N]
  verify_log.py --from-file stream.json --stream-only
  verify_log.py --url http://127.0.0.1:8080 --show-recipe 1

--from-file takes what the API or the CLI produced: an `{"events": [...]}` page of
GET /v1/events, a JSON array of events, or JSON lines (`payledger replay` output). Files are
read in the order given and together must start at global position 1, unless --stream-only
says they hold one stream (then versions must start at 1 and global positions only rise).
"""

import argparse
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

RECIPE_VERSION_LINE = "payledger-event-v1"
GENESIS_HASH_HEX = "0" * 64
# The API's own maximum page size (docs/api.md).
MAX_PAGE_SIZE = 1000
# One page is at most 1000 events of at most 64 KiB of payload and metadata each.
MAX_RESPONSE_BYTES = 128 * 1024 * 1024

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_UNREADABLE = 2


class Unreadable(Exception):
    """The log could not be read; nothing can be said about its integrity."""


class NonCanonical(Exception):
    """A value the recipe cannot encode (payledger's store refuses such values)."""


# ---------------------------------------------------------------------------------------------
# The recipe (docs/auditing.md, crates/payledger-store/src/chain.rs)
# ---------------------------------------------------------------------------------------------

_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _json_string(text):
    out = ['"']
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            # Other control characters: \u00xx with lowercase hex digits.
            out.append("\\u%04x" % ord(ch))
        else:
            # Everything else verbatim, '/' and non-ASCII included.
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical_json(value):
    """No whitespace, object keys sorted by their UTF-8 bytes, integers in decimal.

    Equal to json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    for the values payledger stores (Python orders str by code point, which is the UTF-8
    byte order); written out so that every rule of the recipe is visible here.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise NonCanonical("a non-integer number (%r): payledger stores integers only" % value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, dict):
        entries = sorted(value.items(), key=lambda kv: kv[0].encode("utf-8"))
        return "{" + ",".join(_json_string(k) + ":" + canonical_json(v) for k, v in entries) + "}"
    raise NonCanonical("a value of type %s" % type(value).__name__)


def recipe_bytes(event):
    """The exact bytes whose SHA-256 is the event's hash."""
    lines = [
        RECIPE_VERSION_LINE,
        bytes.fromhex(event["prevHash"]).hex(),
        event["streamId"],
        str(event["streamVersion"]),
        str(uuid.UUID(event["eventId"])),
        event["eventType"],
        str(event["schemaVersion"]),
        canonical_json(event["payload"]),
        canonical_json(event["metadata"]),
    ]
    return "\n".join(lines).encode("utf-8")


def event_hash_hex(event):
    return hashlib.sha256(recipe_bytes(event)).hexdigest()


# ---------------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------------

_FIELDS = {
    "globalPosition": int,
    "streamId": str,
    "streamVersion": int,
    "eventId": str,
    "eventType": str,
    "schemaVersion": int,
    "prevHash": str,
    "hash": str,
}


def _shape_problem(event):
    if not isinstance(event, dict):
        return "not a JSON object"
    for name, kind in _FIELDS.items():
        value = event.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return "field %s is missing or not a %s" % (name, kind.__name__)
    for name in ("payload", "metadata"):
        if name not in event:
            return "field %s is missing" % name
    for name in ("prevHash", "hash"):
        text = event[name]
        if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
            return "field %s is not 64 hex digits" % name
    if "\n" in event["streamId"] or "\n" in event["eventType"]:
        return "streamId or eventType contains a line feed (the store refuses them)"
    try:
        uuid.UUID(event["eventId"])
    except ValueError:
        return "field eventId is not a UUID"
    return None


class Verifier:
    def __init__(self, stream_only=False):
        self.heads = {}  # stream id -> (version, hash hex) of its last verified event
        self.last_position = 0
        self.events_checked = 0
        # One stream's events (GET /v1/streams/ID, `payledger replay`): their global positions
        # rise but have gaps where other streams' events sit.
        self.stream_only = stream_only

    def check(self, event):
        """Returns None when the event verifies, else what is wrong with it."""
        shape = _shape_problem(event)
        if shape is not None:
            return "malformed event: " + shape
        position = event["globalPosition"]
        if self.stream_only:
            if position <= self.last_position:
                return "global position %d follows %d: events are out of order" % (
                    position,
                    self.last_position,
                )
            if self.heads and event["streamId"] not in self.heads:
                return "another stream (%s) in a --stream-only input" % event["streamId"]
        elif position != self.last_position + 1:
            hint = ""
            if self.last_position == 0:
                hint = " (the global log starts at 1; for one stream's events use --stream-only)"
            return "global position %d follows %d: an event is missing or reordered%s" % (
                position,
                self.last_position,
                hint,
            )
        stream = event["streamId"]
        previous_version, previous_hash = self.heads.get(stream, (0, GENESIS_HASH_HEX))
        if event["streamVersion"] != previous_version + 1:
            return "stream version %d follows %d: an event is missing or reordered" % (
                event["streamVersion"],
                previous_version,
            )
        if event["prevHash"].lower() != previous_hash:
            return "prevHash does not match the previous event's hash in the stream"
        try:
            recomputed = event_hash_hex(event)
        except NonCanonical as problem:
            return "payload or metadata holds %s" % problem
        except UnicodeEncodeError:
            return "a string is not valid Unicode (lone surrogate)"
        if recomputed != event["hash"].lower():
            return "hash does not match the event's content: it was altered (recomputed %s)" % recomputed
        self.heads[stream] = (event["streamVersion"], recomputed)
        self.last_position = position
        self.events_checked += 1
        return None


def describe(event):
    if isinstance(event, dict):
        return "global position %s (stream %s, version %s, event %s)" % (
            event.get("globalPosition"),
            event.get("streamId"),
            event.get("streamVersion"),
            event.get("eventId"),
        )
    return "an entry that is not an event"


# ---------------------------------------------------------------------------------------------
# Reading the log
# ---------------------------------------------------------------------------------------------


def _get_json(url, timeout_s):
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as error:
        detail = error.read(2000).decode("utf-8", "replace")
        raise Unreadable("GET %s answered %d: %s" % (url, error.code, detail)) from None
    except (urllib.error.URLError, OSError) as error:
        raise Unreadable("GET %s failed: %s" % (url, error)) from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise Unreadable("GET %s answered more than %d bytes" % (url, MAX_RESPONSE_BYTES))
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise Unreadable("GET %s did not answer JSON: %s" % (url, error)) from None


def head_position_from_server(base_url, timeout_s):
    ready = _get_json(base_url + "/readyz", timeout_s)
    head = ready.get("headPosition") if isinstance(ready, dict) else None
    if not isinstance(head, int) or isinstance(head, bool):
        raise Unreadable("GET /readyz has no integer headPosition: %r" % (ready,))
    return head


def events_from_server(base_url, page_size, timeout_s):
    """Yields the whole global log, oldest first, page by page."""
    after = 0
    while True:
        query = urllib.parse.urlencode({"after": after, "limit": page_size})
        page = _get_json("%s/v1/events?%s" % (base_url, query), timeout_s)
        events = page.get("events") if isinstance(page, dict) else None
        if not isinstance(events, list):
            raise Unreadable("GET /v1/events did not answer {\"events\": [...]}")
        for event in events:
            yield event
        if len(events) < page_size:
            return
        last = events[-1]
        position = last.get("globalPosition") if isinstance(last, dict) else None
        if not isinstance(position, int) or position <= after:
            # The event itself is reported as broken before we get here; never loop forever.
            return
        after = position


def events_from_files(paths):
    for path in paths:
        try:
            with open(path, "r", encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise Unreadable("cannot read %s: %s" % (path, error)) from None
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("events"), list):
            events = document["events"]
        elif isinstance(document, list):
            events = document
        elif isinstance(document, dict):
            events = [document]
        else:
            events = []
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    events.append(json.loads(line))
                except ValueError as error:
                    raise Unreadable("%s line %d is not JSON: %s" % (path, number, error)) from None
        for event in events:
            yield event


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def show_recipe(events, position):
    for event in events:
        if isinstance(event, dict) and event.get("globalPosition") == position:
            data = recipe_bytes(event)
            print("recipe bytes of global position %d (%d bytes, lines joined by 0x0A, no final newline):"
                  % (position, len(data)))
            print(data.decode("utf-8"))
            print("sha256(recipe) = %s" % hashlib.sha256(data).hexdigest())
            print("stored hash    = %s" % event.get("hash"))
            return EXIT_OK
    print("no event at global position %d" % position, file=sys.stderr)
    return EXIT_UNREADABLE


def main(argv=None):
    parser = argparse.ArgumentParser(description="Verify a payledger event log independently.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="base URL of a running payledger, e.g. http://127.0.0.1:8080")
    source.add_argument("--from-file", nargs="+", metavar="FILE",
                        help="saved pages of GET /v1/events, JSON arrays or JSON lines, in order")
    parser.add_argument("--head-position", type=int,
                        help="with --from-file: the sequencer's head the log must reach")
    parser.add_argument("--stream-only", action="store_true",
                        help="with --from-file: the input is one stream (GET /v1/streams/ID or "
                             "payledger replay); check its versions and chain, not the global log")
    parser.add_argument("--page-size", type=int, default=MAX_PAGE_SIZE,
                        help="events per request, 1..%d (default %d)" % (MAX_PAGE_SIZE, MAX_PAGE_SIZE))
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per request (default 30)")
    parser.add_argument("--show-recipe", type=int, metavar="POSITION",
                        help="print the recipe bytes and hash of one event instead of verifying")
    args = parser.parse_args(argv)
    if not 1 <= args.page_size <= MAX_PAGE_SIZE:
        parser.error("--page-size must be between 1 and %d" % MAX_PAGE_SIZE)
    if args.url and (args.stream_only or args.head_position is not None):
        parser.error("--stream-only and --head-position go with --from-file")
    if args.stream_only and args.head_position is not None:
        parser.error("--head-position is a global-log check; leave it out with --stream-only")

    try:
        head = None
        if args.url:
            base_url = args.url.rstrip("/")
            head = head_position_from_server(base_url, args.timeout_s)
            events = events_from_server(base_url, args.page_size, args.timeout_s)
        else:
            head = args.head_position
            events = events_from_files(args.from_file)

        if args.show_recipe is not None:
            return show_recipe(events, args.show_recipe)

        verifier = Verifier(stream_only=args.stream_only)
        for event in events:
            problem = verifier.check(event)
            if problem is not None:
                print("BROKEN at %s: %s" % (describe(event), problem))
                print("verified %d events before it" % verifier.events_checked)
                return EXIT_BROKEN
    except Unreadable as error:
        print("error: %s" % error, file=sys.stderr)
        return EXIT_UNREADABLE

    if head is not None and verifier.last_position < head:
        print("BROKEN at global position %d: the log ends at %d but the sequencer handed out "
              "positions up to %d: events were removed" % (verifier.last_position + 1,
                                                            verifier.last_position, head))
        return EXIT_BROKEN
    print("ok: %d events in %d streams verify up to position %d%s" % (
        verifier.events_checked,
        len(verifier.heads),
        verifier.last_position,
        "" if head is None else " (sequencer head %d)" % head,
    ))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
