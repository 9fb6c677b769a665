"""Turns the request frames a broker logged into seed inputs for the fuzz targets.

    RUST_LOG=nisshi_service::frame=debug sluice broker ... 2> broker.log
    python3 fuzz/seeds.py OUT_DIR < broker.log

The broker logs every request's bytes (`request=[0, 0, 0, 37, ...]`) before decoding it; each
is written to OUT_DIR without its 4-byte size prefix, which the fuzz targets add.
"""
import hashlib
import os
import re
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
pattern = re.compile(r"request=\[([0-9, ]+)\]")
written = 0
for line in sys.stdin:
    match = pattern.search(line)
    if not match:
        continue
    frame = bytes(int(b) for b in match.group(1).split(","))
    body = frame[4:]
    name = os.path.join(out, hashlib.sha1(body).hexdigest())
    if not os.path.exists(name):
        with open(name, "wb") as f:
            f.write(body)
        written += 1
print(f"{written} seeds written to {out}")
