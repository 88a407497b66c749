#!/usr/bin/env python3
"""Opens many idle connections to a TLS server and holds them: an
independent client (the standard library only, nothing of lpgpu's) for the
connection-limit test.

Usage: idle_flood.py HOST PORT RAW TLS

RAW plain TCP connections that never start a TLS handshake, then TLS
connections (ALPN h2 and http/1.1, certificate not checked) that complete
their handshake and then send nothing. Raises its own open-files limit to
the hard limit first. Prints one line `holding RAW_OPEN TLS_OK TLS_FAILED`
once all are open, then holds them until stdin is closed, and exits 0.
"""

import resource
import socket
import ssl
import sys


def main():
    host, port, raw, tls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = raw + tls + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))
    held = []
    for _ in range(raw):
        held.append(socket.create_connection((host, port), timeout=10))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    ok = failed = 0
    for _ in range(tls):
        try:
            sock = socket.create_connection((host, port), timeout=10)
            held.append(context.wrap_socket(sock, server_hostname="localhost"))
            ok += 1
        except (OSError, ssl.SSLError):
            failed += 1
    print(f"holding {raw} {ok} {failed}", flush=True)
    sys.stdin.read()
    for sock in held:
        try:
            sock.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
