#!/usr/bin/env python3
"""Self-test of ot_orchestrator_checks.py against a tiny mock orchestrator
written here from shared/spec/ot-protocol.md (h2 + ssl, one TLS port for
gRPC and HTTP, like go-livepeer): the checks must pass against the
well-behaved mock and FAIL against mocks with one deliberate deviation.

  ot_orchestrator_checks_selftest.py        # needs openssl on PATH; exit 0 = all good
"""

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.events

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ot_transcoder  # noqa: E402

pb, _ = ot_transcoder.load_stubs()
SECRET = "selftest-secret"
TS = b"\x47" + b"\x00" * 187  # one MPEG-TS packet's worth


def tls_context(tmp):
    key, crt = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


class Mock:
    """mode: "good", "no-pool", or one deviation: "broken-200" (broken
    result answered 200), "order" (TaskId checked before Content-Type),
    "secret-message" (`bad secret` instead of `invalid secret`)."""

    def __init__(self, ctx, mode, trigger):
        self.ctx, self.mode, self.trigger = ctx, mode, trigger
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.task_id = 7
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            if s.selected_alpn_protocol() == "h2":
                self.serve_h2(s)
            else:
                self.serve_h1(s)
        except (OSError, ssl.SSLError):
            pass
        finally:
            s.close()

    # ---- HTTP/1.1: only GET /stream/... ---------------------------------

    def serve_h1(self, s):
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
        path = buf.split(b" ")[1].decode()
        status, body = self.get(path)
        s.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

    def get(self, path):
        if path == f"/stream/abcd1234/{3}.tempfile":
            return 200, TS * 10
        return 404, b"not found"

    # ---- HTTP/2 ----------------------------------------------------------

    def serve_h2(self, s):
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        streams = {}  # id -> {"headers": dict, "body": bytearray}
        grpc_open = None  # stream id of an accepted registration
        sent_task = False
        s.settimeout(0.1)
        while True:
            try:
                data = s.recv(65536)
                if not data:
                    return
                events = c.receive_data(data)
            except socket.timeout:
                events = []
            for ev in events:
                if isinstance(ev, h2.events.RequestReceived):
                    streams[ev.stream_id] = {"headers": {k.decode(): v.decode() for k, v in ev.headers},
                                             "body": bytearray()}
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id]["body"] += ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    st = streams.pop(ev.stream_id)
                    if st["headers"].get("content-type", "").startswith("application/grpc"):
                        if self.grpc(c, ev.stream_id, st):
                            grpc_open = ev.stream_id
                    else:
                        self.http(c, ev.stream_id, st)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    s.sendall(c.data_to_send())
                    return
            if grpc_open and not sent_task and self.trigger.is_set():
                note = pb.NotifySegment(
                    url=f"https://localhost:{self.port}/stream/abcd1234/3.tempfile", taskId=self.task_id,
                    profiles=b"invalid", orchId="offchain",
                    segData=pb.SegData(seq=3, hash=bytes(32), profiles=b"invalid", duration=2000,
                                       auth_token=pb.AuthToken(session_id="abcd1234"),
                                       fullProfiles3=[pb.VideoProfile(name="P240p30fps16x9", width=426,
                                                                      height=240, bitrate=600000)]))
                msg = note.SerializeToString()
                c.send_data(grpc_open, b"\x00" + len(msg).to_bytes(4, "big") + msg)
                sent_task = True
            out = c.data_to_send()
            if out:
                s.sendall(out)

    def grpc(self, c, sid, st):
        """Returns True when the registration is accepted (stream kept open)."""
        def refuse(code, message):
            c.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                 ("grpc-status", str(code)), ("grpc-message", message)], end_stream=True)
        if self.mode == "no-pool":
            refuse(12, "this orchestrator takes no remote transcoders; start it with --orch-secret")
            return False
        req = pb.RegisterRequest.FromString(bytes(st["body"][5:]))
        if req.secret != SECRET:
            refuse(2, "bad secret" if self.mode == "secret-message" else "invalid secret")
            return False
        if req.capacity <= 0:
            refuse(2, "zero capacity")
            return False
        c.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        return True

    def http(self, c, sid, st):
        h, body = st["headers"], bytes(st["body"])
        if h.get(":method") == "GET":
            status, out = self.get(h.get(":path"))
            return self.reply(c, sid, status, out)
        if h.get(":path") != "/transcodeResults":
            return self.reply(c, sid, 404, b"not found")
        if h.get("authorization") != "Livepeer-Transcoder-1.0":
            return self.reply(c, sid, 401, b"Unauthorized")
        if h.get("credentials") != SECRET:
            return self.reply(c, sid, 401, b"invalid secret")
        ctype = h.get("content-type", "")
        if self.mode == "order" and not h.get("taskid", "").isdigit():
            return self.reply(c, sid, 400, b"Invalid Task ID")
        media = ctype.split(";")[0].strip()
        if not media or "/" not in media:
            return self.reply(c, sid, 415, b"mime: no media type")
        if not h.get("taskid", "").isdigit():
            return self.reply(c, sid, 400, b"Invalid Task ID")
        if media == "livepeer/transcoding-error":
            return self.reply(c, sid, 200, b"OK")
        if not h.get("pixels", "").isdigit():
            return self.reply(c, sid, 400, b"Invalid Pixels")
        if media == "multipart/mixed":
            boundary = ctype.split("boundary=", 1)[1].strip()
            if f"--{boundary}--".encode() not in body and self.mode != "broken-200":
                return self.reply(c, sid, 500, b"multipart: NextPart: EOF")
        return self.reply(c, sid, 200, b"OK")

    @staticmethod
    def reply(c, sid, status, body):
        c.send_headers(sid, [(":status", str(status)), ("content-length", str(len(body)))])
        c.send_data(sid, body, end_stream=True)


def run_checks(ctx, mode, want_rc, want_in_output):
    trigger = threading.Event()
    orch = Mock(ctx, mode, trigger)
    nopool = Mock(ctx, "no-pool", trigger)
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "ot_orchestrator_checks.py"),
                          "--orch-addr", f"localhost:{orch.port}", "--secret", SECRET,
                          "--no-pool-addr", f"localhost:{nopool.port}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    lines = []
    for line in p.stdout:
        lines.append(line.rstrip("\n"))
        if line.strip() == "waiting for a task":
            time.sleep(0.2)
            trigger.set()
    p.wait(timeout=120)
    err = p.stderr.read()
    good = p.returncode == want_rc and any(want_in_output in l for l in lines)
    print(f"--- mode {mode}: rc={p.returncode} ({'as expected' if good else 'UNEXPECTED'})")
    for l in lines:
        print("   ", l)
    if not good:
        print(err)
    return good


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ctx = tls_context(tmp)
        results = [
            run_checks(ctx, "good", 0, "orchestrator checks passed"),
            run_checks(ctx, "broken-200", 1, "FAIL broken result body → 500"),
            run_checks(ctx, "order", 1, "FAIL results: unparsable Content-Type → 415"),
            run_checks(ctx, "secret-message", 1, "FAIL wrong secret → UNKNOWN invalid secret"),
        ]
    print("selftest passed" if all(results) else "selftest FAILED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
