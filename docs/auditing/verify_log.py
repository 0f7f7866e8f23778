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

With --checkpoints FILE --public-key HEX it also holds the log to a saved copy of payledger's
signed checkpoints (the export file's JSON lines, or a GET /v1/audit/checkpoints page): every
checkpoint's Ed25519 signature (verified by ed25519_verify.py, pure Python, beside this file),
its digest, the chain of checkpoints, and the running log digest at each checkpoint's position.
That catches what the per-stream chains cannot: events of different streams swapped in the
global order, a stream's newest event rewritten with its hash recomputed, a removed tail.

Exit status: 0 everything verifies; 1 the log is broken (the first broken event is named);
2 the log could not be read (network, HTTP error, unreadable file, bad arguments).

Usage:
  verify_log.py --url http://127.0.0.1:8080
  verify_log.py --from-file page1.json [page2.json ...] [--head-position N]
  verify_log.py --from-file stream.json --stream-only
  verify_log.py --url http://127.0.0.1:8080 --show-recipe 1
  verify_log.py --url http://127.0.0.1:8080 --checkpoints saved.jsonl --public-key HEX

--url sends the API key of PAYLEDGER_API_KEY (or --api-key) as a bearer token: the raw log is
for auditor and admin keys.

--from-file takes what the API or the CLI produced: an `{"events": [...]}` page of
GET /v1/events, a JSON array of events, or JSON lines (`payledger replay` output). Files are
read in the order given and together must start at global position 1, unless --stream-only
says they hold one stream (then versions must start at 1 and global positions only rise).
"""

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import ed25519_verify

RECIPE_VERSION_LINE = "payledger-event-v1"
LOG_DIGEST_VERSION_LINE = "payledger-log-v1"
CHECKPOINT_VERSION_LINE = "payledger-checkpoint-v1"
CHECKPOINT_V2_VERSION_LINE = "payledger-checkpoint-v2"
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
        # The running log digest d(p) of docs/auditing.md, "Signed checkpoints".
        self.log_digest = GENESIS_HASH_HEX

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
        self.log_digest = log_digest_step(
            self.log_digest, position, stream, event["streamVersion"], recomputed)
        self.events_checked += 1
        return None


def log_digest_step(previous_hex, position, stream_id, stream_version, hash_hex):
    """d(p) from d(p-1) and the event at p (docs/auditing.md, "The log digest")."""
    line = "\n".join([LOG_DIGEST_VERSION_LINE, previous_hex, str(position), stream_id,
                      str(stream_version), hash_hex])
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Signed checkpoints (docs/auditing.md, crates/payledger-store/src/checkpoint.rs)
# ---------------------------------------------------------------------------------------------

CHECKPOINT_FIELDS = ("sequence", "globalPosition", "logDigest", "previousDigest", "sealedAt",
                     "publicKey", "signature", "digest")


def checkpoint_signed_bytes(checkpoint):
    """Version 1, or version 2 when the checkpoint carries an eventsRoot (the Merkle root of
    its events, docs/auditing.md "Inclusion proofs")."""
    root = checkpoint.get("eventsRoot")
    lines = [
        CHECKPOINT_VERSION_LINE if root is None else CHECKPOINT_V2_VERSION_LINE,
        str(checkpoint["sequence"]),
        str(checkpoint["globalPosition"]),
        checkpoint["logDigest"],
    ]
    if root is not None:
        lines.append(root)
    lines += [checkpoint["previousDigest"], checkpoint["sealedAt"], checkpoint["publicKey"]]
    return "\n".join(lines).encode("utf-8")


def checkpoint_problem(checkpoint, public_key_hex, previous):
    """None when the saved checkpoint holds on its own and follows `previous`, else why not."""
    if not isinstance(checkpoint, dict) or set(checkpoint) - {"eventsRoot"} != set(CHECKPOINT_FIELDS):
        return "not a checkpoint (fields %s, and eventsRoot from version 2)" % ", ".join(
            CHECKPOINT_FIELDS)
    for field in ("sequence", "globalPosition"):
        if not isinstance(checkpoint[field], int) or isinstance(checkpoint[field], bool):
            return "field %s is not an integer" % field
    try:
        public_key = bytes.fromhex(checkpoint["publicKey"])
        signature = bytes.fromhex(checkpoint["signature"])
    except (TypeError, ValueError):
        return "publicKey or signature is not hex"
    if checkpoint["publicKey"] != public_key_hex:
        return "signed by key %s, not by the expected key %s" % (checkpoint["publicKey"],
                                                                 public_key_hex)
    data = checkpoint_signed_bytes(checkpoint)
    if hashlib.sha256(data).hexdigest() != checkpoint["digest"]:
        return "its digest does not match its content"
    if not ed25519_verify.verify(public_key, data, signature):
        return "its signature does not verify: it was forged or altered"
    if previous is None:
        if checkpoint["sequence"] == 1 and checkpoint["previousDigest"] != GENESIS_HASH_HEX:
            return "the first checkpoint must name 64 zeros as its previous digest"
    elif checkpoint["sequence"] != previous["sequence"] + 1:
        return "checkpoint %d follows %d: the saved copy is not contiguous" % (
            checkpoint["sequence"], previous["sequence"])
    elif checkpoint["previousDigest"] != previous["digest"]:
        return "it does not name the previous checkpoint's digest"
    elif checkpoint["globalPosition"] <= previous["globalPosition"]:
        return "its position does not advance"
    return None


def checkpoints_from_file(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise Unreadable("cannot read %s: %s" % (path, error)) from None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("checkpoints"), list):
        return document["checkpoints"]
    if isinstance(document, dict):
        return [document]
    checkpoints = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            checkpoints.append(json.loads(line))
        except ValueError as error:
            raise Unreadable("%s line %d is not JSON: %s" % (path, number, error)) from None
    return checkpoints


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


API_KEY = None


def _get_json(url, timeout_s):
    headers = {"Accept": "application/json"}
    if API_KEY:
        headers["Authorization"] = "Bearer " + API_KEY
    request = urllib.request.Request(url, headers=headers)
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
    parser.add_argument("--checkpoints", metavar="FILE",
                        help="a saved copy of the signed checkpoints to hold the log to")
    parser.add_argument("--public-key", metavar="HEX",
                        help="with --checkpoints: the key they must be signed with (64 hex digits, "
                             "as `payledger audit public-key` printed it)")
    parser.add_argument("--api-key", default=os.environ.get("PAYLEDGER_API_KEY"),
                        help="with --url: an auditor's API key (default: $PAYLEDGER_API_KEY)")
    args = parser.parse_args(argv)
    global API_KEY
    API_KEY = args.api_key
    if (args.checkpoints is None) != (args.public_key is None):
        parser.error("--checkpoints and --public-key go together")
    if args.checkpoints is not None and args.stream_only:
        parser.error("checkpoints cover the global log, not one stream")
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

        checkpoints = []
        if args.checkpoints is not None:
            public_key_hex = args.public_key.strip().lower()
            previous = None
            for checkpoint in checkpoints_from_file(args.checkpoints):
                problem = checkpoint_problem(checkpoint, public_key_hex, previous)
                if problem is not None:
                    print("BROKEN at checkpoint %s: the saved checkpoint is refused: %s" % (
                        checkpoint.get("sequence") if isinstance(checkpoint, dict) else "?",
                        problem))
                    return EXIT_BROKEN
                checkpoints.append(checkpoint)
                previous = checkpoint
        pending = list(checkpoints)
        checked_up_to = 0

        verifier = Verifier(stream_only=args.stream_only)
        for event in events:
            problem = verifier.check(event)
            if problem is not None:
                print("BROKEN at %s: %s" % (describe(event), problem))
                print("verified %d events before it" % verifier.events_checked)
                return EXIT_BROKEN
            while pending and pending[0]["globalPosition"] == verifier.last_position:
                checkpoint = pending.pop(0)
                if checkpoint["logDigest"] != verifier.log_digest:
                    print("BROKEN at checkpoint %d (positions %d to %d): the log's digest at %d is "
                          "%s, the checkpoint says %s: an event in this range was altered, "
                          "removed, inserted or reordered" % (
                              checkpoint["sequence"], checked_up_to + 1,
                              checkpoint["globalPosition"], checkpoint["globalPosition"],
                              verifier.log_digest, checkpoint["logDigest"]))
                    return EXIT_BROKEN
                checked_up_to = checkpoint["globalPosition"]
    except Unreadable as error:
        print("error: %s" % error, file=sys.stderr)
        return EXIT_UNREADABLE

    if pending:
        checkpoint = pending[0]
        print("BROKEN at checkpoint %d (positions %d to %d): the log ends at %d, before this "
              "checkpoint's position: events were removed" % (
                  checkpoint["sequence"], checked_up_to + 1, checkpoint["globalPosition"],
                  verifier.last_position))
        return EXIT_BROKEN
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
    if checkpoints:
        print("ok: the log agrees with %d saved checkpoints up to position %d" % (
            len(checkpoints), checked_up_to))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
