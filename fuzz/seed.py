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

# peer_link (commsd/src/fuzzing.rs): byte 0 configures the daemon, then steps. Connections at
# start: 0 = local service, 1 = incoming peer link (10.0.0.2), 2 = outgoing one (to 10.0.0.3,
# CONNECT already sent); step 4 opens more (3, 4, ...).
LOCAL, PEER_IN, PEER_OUT = 0, 1, 2


def lines(conn, *ls):
    data = b"".join(l.encode() + b"\n" for l in ls)
    return bytes([conn << 3]) + len(data).to_bytes(2, "little") + data


def step(kind, k=0):
    return bytes([(k << 3) | kind])


def open_peer(outgoing, address):
    return step(4, address * 2 + outgoing)


def timer(t):  # 0: +60 ms, 1: +2.1 s, 2: +31 s, 3: +101 s, 4: cache expiry, 5: daemon stops
    return step(6, t)


def close(conn):
    return step(5, conn)


def stall(conn):
    return step(7, conn)


COMMS_CONNECT = "CONNECT comms_link_state=1;my_address=10.0.0.2:4040;server_name=a;version=1"
STOCK_CONNECT = "CONNECT my_address=10.0.0.2:4040;server_name=s;services=ssvc;version=1"
ACCEPT_B = "<b:communicatord ACCEPT comms_link_state=1;my_address=10.0.0.3:4040;server_name=b"
REGISTERED = 0x70  # max_line 65536, any peer address, max_links 100, local service registered

peer_link = {
    # A comms peer: handshake, its own and a relayed NODE_STATE, GOSSIP, relayed lines.
    "comms-in": bytes([REGISTERED])
    + lines(PEER_IN, COMMS_CONNECT,
            "NODE_STATE address=10.0.0.2:4040;epoch=1;node=a;peers=c,vm;seq=1;services=asvc",
            "NODE_STATE address=10.0.0.8:4040;epoch=1;node=c;peers=a;seq=1;services=csvc")
    + timer(0)
    + lines(PEER_IN, "GOSSIP my_address=10.0.0.7:4040",
            "<a:asvc local/PING n=1", "<c:csvc local/PING n=2", "<a:asvc c:csvc/PING",
            "<a:asvc */PING broadcast_hops=1;broadcast_msgid=a-1;broadcast_timeout=9999999999",
            "<a:asvc nosvc/WORK cache=\"ttl=5\";transmission_report=failure",
            "<vm:local local/FORGED", "<a:communicatord */FORGED")
    + lines(LOCAL, "csvc/PING n=3", "c:csvc/PING n=4", "*/PING n=5", "CLUSTER_MAP")
    + timer(2) + timer(3)
    + lines(PEER_IN, "DISCONNECT"),
    # A stock peer: no link state; routed by its name, flooded service-only unicasts.
    "stock-in": bytes([REGISTERED])
    + lines(PEER_IN, STOCK_CONNECT, "HELP", "COMMANDS list=HELP,PING",
            "ALIVE serial=7;timestamp=1.5", "REGISTER_FOR_LOADAVG", "WHATEVER x=1",
            "<s:ssvc local/PING", "<s:ssvc */PING broadcast_msgid=s-9;broadcast_hops=0",
            "<s:ssvc nosvc/PING broadcast_msgid=s-10;broadcast_informed_neighbors=10.0.0.2",
            "<s:communicatord local/FORGED", "FORGET ip=10.0.0.3")
    + lines(LOCAL, "ssvc/PING n=1", "s:ssvc/PING n=2", "other/PING cache=no;reply=true")
    + lines(PEER_IN, "SHUTDOWN"),
    # Our outgoing link accepted by a comms peer, then its database and a second peer.
    "out-accept": bytes([REGISTERED])
    + lines(PEER_OUT, ACCEPT_B,
            "NODE_STATE address=10.0.0.3:4040;epoch=1;node=b;peers=d,vm;seq=2;services=bsvc",
            "NODE_STATE address=10.0.0.9:4040;epoch=1;node=d;peers=b;seq=1;services=dsvc",
            "<d:dsvc local/PING")
    + lines(PEER_IN, COMMS_CONNECT,
            "NODE_STATE address=10.0.0.2:4040;epoch=1;node=a;peers=vm;seq=1;services=asvc",
            "<a:asvc d:dsvc/PING", "<a:asvc dsvc/PING")
    + timer(0) + close(PEER_OUT) + timer(1),
    # Lines before the handshake, refused handshakes.
    "refusals": bytes([0x44 | 0x10])
    + lines(PEER_IN, "<a:asvc local/PING", "NODE_STATE node=a;seq=1;epoch=1", "ACCEPT server_name=a",
            "CONNECT server_name=a;version=2")
    + open_peer(0, 0) + lines(3, "CONNECT server_name=vm;version=1")
    + open_peer(0, 2) + lines(4, COMMS_CONNECT)
    + lines(PEER_OUT, "REFUSE shutdown=true"),
    # Held lines: an origin relayed before the announcement that links it in.
    "held": bytes([REGISTERED])
    + lines(PEER_IN, COMMS_CONNECT,
            "NODE_STATE address=10.0.0.2:4040;epoch=1;node=a;peers=vm;seq=1;services=",
            "<e:esvc local/PING n=1", "<a:asvc local/PING n=2",
            "NODE_STATE address=10.0.0.2:4040;epoch=1;node=a;peers=e,vm;seq=2;services=",
            "NODE_STATE address=10.0.0.6:4040;epoch=1;node=e;peers=a;seq=1;services=esvc")
    + timer(0) + timer(1),
    # A small max_line: learned neighbours trimmed from our ACCEPT.
    "small-line": bytes([REGISTERED | 3])
    + lines(PEER_IN, *[f"GOSSIP my_address=10.0.{i}.1:4040" for i in range(1, 12)])
    + open_peer(0, 0) + lines(3, COMMS_CONNECT.replace("server_name=a", "server_name=z"))
    + lines(3, "x" * 200, "HELP"),
    # A peer that does not read: its queue fills, it is disconnected as a slow consumer.
    "slow-peer": bytes([REGISTERED])
    + lines(PEER_IN, STOCK_CONNECT) + stall(PEER_IN)
    + b"".join(lines(PEER_IN, "HELP") for _ in range(20)),
    # The daemon stops while linked.
    "stop": bytes([REGISTERED])
    + lines(PEER_IN, COMMS_CONNECT) + timer(5)
    + open_peer(0, 0) + lines(3, STOCK_CONNECT) + lines(PEER_IN, "<a:asvc local/PING"),
}
for name, data in peer_link.items():
    write("peer_link", name, data)
