#!/usr/bin/env python3
"""Checks one event's inclusion proof against a signed checkpoint (standard library only).

A payee (or anyone holding one event) proves that event is part of the log payledger signed,
without seeing any other event: `GET /v1/audit/proofs/{position}` answers the event's position,
stream, version and hash, its RFC 6962 audit path, and the version-2 checkpoint whose
`eventsRoot` the path must lead to. This script recomputes the leaf, walks the path
(RFC 9162 section 2.1.3.2), compares the root, and checks the checkpoint's digest and Ed25519
signature with the public key you hold (`payledger audit public-key`). Compare the checkpoint
with your own saved copy too: a proof against a checkpoint you never saw proves less.

With --event FILE (the event as the raw log serves it, e.g. one element of GET /v1/events) it
also recomputes the event's hash from its content (verify_log.py's recipe), so the proof covers
the content you hold and not just a hash.

Exit status: 0 the proof holds; 1 it does not (why is printed); 2 unreadable input.

Usage:
  verify_proof.py --proof proof.json --public-key HEX [--event event.json]

docs/auditing.md, "Inclusion proofs", gives the recipe and a worked example.
"""

import argparse
import hashlib
import json
import sys

import ed25519_verify
import verify_log

LEAF_VERSION_LINE = "payledger-leaf-v1"


def leaf_hash(position, stream_id, stream_version, hash_hex):
    data = "\n".join([LEAF_VERSION_LINE, str(position), stream_id, str(stream_version), hash_hex])
    return hashlib.sha256(b"\x00" + data.encode("utf-8")).digest()


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(index, size, leaf, path):
    """RFC 9162 2.1.3.2; None when the path does not fit the index and size."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def proof_problem(proof, public_key_hex, event=None):
    """None when the proof holds, else why not."""
    checkpoint = proof.get("checkpoint")
    if not isinstance(checkpoint, dict) or "eventsRoot" not in checkpoint:
        return "the proof names no version-2 checkpoint (with an eventsRoot)"
    problem = verify_log.checkpoint_problem(checkpoint, public_key_hex, None)
    if problem is not None:
        return "the checkpoint is refused: %s" % problem
    position = proof["globalPosition"]
    if event is not None:
        if (event.get("globalPosition"), event.get("streamId"), event.get("streamVersion")) != (
                position, proof["streamId"], proof["streamVersion"]):
            return "the event given is not the one the proof is about"
        recomputed = verify_log.event_hash_hex(event)
        if recomputed != proof["hash"]:
            return "the event's content hashes to %s, the proof says %s" % (recomputed,
                                                                              proof["hash"])
    if not 0 < position <= checkpoint["globalPosition"]:
        return "position %d is not covered by checkpoint %d" % (position, checkpoint["sequence"])
    leaf = leaf_hash(position, proof["streamId"], proof["streamVersion"], proof["hash"])
    path = [bytes.fromhex(p) for p in proof["path"]]
    root = root_from_path(proof["leafIndex"], proof["treeSize"], leaf, path)
    if root is None or root.hex() != checkpoint["eventsRoot"]:
        return "the audit path does not lead to the checkpoint's eventsRoot"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check a payledger inclusion proof.")
    parser.add_argument("--proof", required=True, metavar="FILE",
                        help="the answer of GET /v1/audit/proofs/{position}")
    parser.add_argument("--public-key", required=True, metavar="HEX",
                        help="the checkpoint signing key (payledger audit public-key)")
    parser.add_argument("--event", metavar="FILE",
                        help="the event itself, to check its content against the proof's hash")
    args = parser.parse_args(argv)
    try:
        with open(args.proof, "r", encoding="utf-8") as handle:
            proof = json.load(handle)
        event = None
        if args.event:
            with open(args.event, "r", encoding="utf-8") as handle:
                event = json.load(handle)
    except (OSError, ValueError) as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    try:
        problem = proof_problem(proof, args.public_key.strip().lower(), event)
    except (KeyError, TypeError, ValueError, verify_log.NonCanonical) as error:
        print("error: not a proof: %r" % (error,), file=sys.stderr)
        return 2
    if problem is not None:
        print("BROKEN: %s" % problem)
        return 1
    print("ok: event %d (%s v%d) is in checkpoint %d (positions up to %d), signed by %s" % (
        proof["globalPosition"], proof["streamId"], proof["streamVersion"],
        proof["checkpoint"]["sequence"], proof["checkpoint"]["globalPosition"],
        proof["checkpoint"]["publicKey"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
