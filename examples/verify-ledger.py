#!/usr/bin/env python3
"""Re-verify a Palisade SQLite audit ledger with nothing but Python's standard library.

    python3 examples/verify-ledger.py target/quickstart/audit.db

Exit 0 and "N blocks intact" when every block links to the previous one and hashes to
its stored hash; exit 1 naming the first bad block otherwise. The encoding is in
docs/audit.md: hash = SHA-256("palisade-ledger/1" 0x00 || seq u64 BE || prev || record).
"""
import hashlib
import sqlite3
import sys

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
prev, expected = bytes(32), 1
for seq, record, prev_hex, hash_hex in db.execute(
        "SELECT seq, record, prev, hash FROM ledger ORDER BY seq"):
    digest = hashlib.sha256(b"palisade-ledger/1\0" + seq.to_bytes(8, "big") + prev
                            + record.encode()).hexdigest()
    if seq != expected or prev_hex != prev.hex() or hash_hex != digest:
        sys.exit(f"block {expected}: bad (gap, broken link or edited contents)")
    prev, expected = bytes.fromhex(hash_hex), seq + 1
if expected == 1:
    sys.exit("empty ledger")
print(f"{expected - 1} blocks intact")
