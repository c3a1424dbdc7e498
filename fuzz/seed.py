#!/usr/bin/env python3
"""Regenerates the committed seed corpora under fuzz/corpus/*/seed-*.

cd_line and cd_datagram: every accepted line of the codec test vectors
(cd-wire/src/vectors.rs, docs/PROTOCOL.md §1.6), plus a few rejected ones.
envelope: sample broker envelopes (comms-core/src/envelope.rs docs and tests).
Run from anywhere: python3 fuzz/seed.py
"""
import ast
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent
vectors = (root.parent / "cd-wire/src/vectors.rs").read_text()
block = re.search(r"ACCEPTED: &\[&str\] = &\[(.*?)\n\];", vectors, re.S).group(1)
accepted = [ast.literal_eval(s) for s in re.findall(r'^\s*("(?:[^"\\]|\\.)*"),$', block, re.M)]
assert len(accepted) >= 20, accepted
rejected = ["<abc CMD", "<abc", ":CMD", "a:b:CMD", "svc/", "svc/CMD/x", "CMD p=\"abc",
            "CMD p=\"a\"x", "CMD p=v;;", "SET v=\"x;\\\\\"", "C\xffD", "CMD a\x00=1",
            "{\"command\":\"X\",\"parameters\":{\"a\":[1]}}", "[[[[[[[[{{{{"]


def write(target, name, data):
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def raw(s):
    # Strings hold bytes 0..255 as chars (the \xff above is one byte, not UTF-8).
    return s.encode("utf-8") if all(ord(c) < 128 or ord(c) > 255 for c in s) else s.encode("latin-1")


for i, line in enumerate(accepted):
    b = raw(line)
    # cd_line: byte 0 = max line length selector, byte 1 = chunk size; then a 3-line stream.
    write("cd_line", f"v{i:02}", bytes([i % 8, i % 5]) + b + b"\r\n" + b + b"\n\n" + b)
    write("cd_datagram", f"v{i:02}", bytes([i % 3]) + b)
for i, line in enumerate(rejected):
    b = raw(line)
    write("cd_line", f"r{i:02}", bytes([0, 3]) + b + b"\n" + b)
    write("cd_datagram", f"r{i:02}", bytes([0]) + b)
write("cd_datagram", "secret", b"\x00./PING a=1;secret_code=s3cret\n")

envelopes = [
    b'{"v":1,"id":"abc-1","command":"HELLO","to":"svc"}',
    b'{"v":1,"id":"01J0000000000000000000000A","command":"PING","to":"web01:agent",'
    b'"from":"srv:server","params":{"n":"1","x":"a;b\\n\\"c\\""},"correlation":null,"hops":0,'
    b'"trace":null,"mode":"at_least_once","ttl_ms":null,"report":false}',
    b'{"v":1,"id":"a","command":"X","to":"*","params":{},"correlation":"b","hops":3,'
    b'"trace":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","mode":"at_most_once",'
    b'"ttl_ms":1500,"report":true}',
    b'{"v":1,"id":"a","command":"X","to":"."}',
    b'{"v":2,"id":"a","command":"X","to":"s"}',
    b'{"v":1,"id":"a","command":"lower","to":"s"}',
    b'{"v":1,"id":"a","command":"X","to":"s","params":{"comms_x":"1"}}',
    b'{"v":1,"id":"a","command":"X","to":"s","extra":1}',
    b'[1,"a","X","s"]',
    b'\xff\xfe',
]
for i, e in enumerate(envelopes):
    write("envelope", f"e{i:02}", e)
