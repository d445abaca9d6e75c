#!/usr/bin/env python3
"""A minimal WebSocket client that only counts bytes: handshake with ws://HOST:PORT/,
then read (64 KiB at a time, SO_RCVLOWAT) until the frames of every line of DATA (one text message per line, as
websocketd sends them) have arrived. Prints seconds and lines/s: websocketd's own
push ceiling on this machine, to compare tinywatcher's WebSocket figure against.
usage: ws_client.py PORT DATA"""
import base64, os, socket, sys, time
port, data = int(sys.argv[1]), sys.argv[2]
lens = [len(l) for l in open(data, "rb")]
t0 = time.perf_counter()
s = socket.create_connection(("127.0.0.1", port), timeout=60)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(65536)
    if not chunk: sys.exit("ws_client: closed during handshake")
    buf += chunk
head, buf = buf.split(b"\r\n\r\n", 1)
if b" 101 " not in head.split(b"\r\n")[0]: sys.exit("ws_client: handshake refused: " + head.split(b"\r\n")[0].decode())
while len(buf) < 4:
    buf += s.recv(65536)
first = buf[1] & 127 if buf[1] & 127 < 126 else int.from_bytes(buf[2:4], "big")
strip = 1 if first == lens[0] - 1 else 0     # websocketd drops the trailing newline
hdr = lambda n: 2 if n < 126 else 4 if n < 65536 else 10
want = sum(hdr(n - strip) + n - strip for n in lens)
got = len(buf)
lowat = 1 << 16   # wake up per 64 KiB, not per 100-byte frame: the client stays cheap
while got < want:
    low = max(1, min(lowat, want - got)); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, low)
    chunk = s.recv(1 << 20)
    if not chunk: break
    got += len(chunk)
t = time.perf_counter() - t0
s.close()
print(f"websocketd_ceiling bytes={got}/{want} seconds={t:.3f} lines_per_s={len(lens)/t:,.0f}")
