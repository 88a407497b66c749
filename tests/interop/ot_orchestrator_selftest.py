#!/usr/bin/env python3
"""Self-test of ot_orchestrator.py with a minimal transcoder of its own,
written from shared/spec/ot-protocol.md (no lpgpu involved).

The "transcoder" here registers with grpcio over TLS (trusting the
certificate the orchestrator wrote with --cert-out), reads notifications in
a thread, downloads segments and posts results with httpx (HTTP/2, no
certificate check). It transcodes nothing: results are made-up bytes, which
is all the orchestrator's checks look at.

Checks: refusals (`invalid secret`, `zero capacity`), registration
(capacity, decoded capabilities, version), a task with two profiles (the
NotifySegment fields, the download over HTTP/2 and HTTP/1.1, a 404), a
two-part multipart result parsed with the right lengths and pixels, a
duplicate result, an error result, the 401/415/400/500 checks, unknown
tasks, a perceptual-hash result, protocol violations (Content-Length
mismatch, a part without Pixels), an 8 MB upload (also with a 64 KiB HTTP/2
window), concurrent uploads, back_to_back (2 sessions x 20 rounds with
deliberate 404s; busy and other errors classified; timeout and a late
result; on one shared HTTP/2 connection the next notification comes right
after the 200 answer, never before it), teardown (posts nothing),
end_stream, re-registration, a client that goes away, restart on the same
port, and exit 0 on quit and on EOF; with --enforce-capacity, placement by
load / capacity (ties to the latest registration), a refusal when every
registration is full, load released by teardown, an error result and a
disconnect, and a result still delivered after its registration left.

Run: .venv/bin/python3 tests/interop/ot_orchestrator_selftest.py [-v]
     (a few seconds; -v shows the orchestrator's log)
"""

import asyncio
import json
import os
import queue
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import h2.config
import h2.connection
import h2.events
import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ot_orchestrator  # noqa: E402  (only for the generated messages)

pb = ot_orchestrator.load_messages()
ORCH = os.path.join(HERE, "ot_orchestrator.py")
SEGMENT = "/work/shared/corpus/lpms/kryp-1.ts"
SECRET = "selftest-secret"
METHOD = "/net.Transcoder/RegisterTranscoder"
AUTH = "Livepeer-Transcoder-1.0"
DEFAULT_BITSTRING = 0x4005FFF   # {0-12, 14, 26}
VERBOSE = "-v" in sys.argv


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"FAILED {name}: {detail}")
    print(f"ok {name}")


# --------------------------------------------------------------------------
# The orchestrator under test, driven over stdin/stdout like the Rust test

class Orchestrator:
    started = []   # every instance, to clean up

    def __init__(self, port=0, extra=()):
        Orchestrator.started.append(self)
        self.dir = tempfile.mkdtemp(prefix="ot_orch_selftest_")
        self.results = os.path.join(self.dir, "results")
        self.cert = os.path.join(self.dir, "cert.pem")
        self.log = open(os.path.join(self.dir, "orchestrator.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, ORCH, "--listen", f"127.0.0.1:{port}", "--secret", SECRET,
             "--results-dir", self.results, "--cert-out", self.cert, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None if VERBOSE else self.log, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening "), f"first line {line!r}"
        self.port = int(line.split()[1])
        self.base = f"https://127.0.0.1:{self.port}"

    def cmd(self, cmd, **fields):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"orchestrator exited during {cmd} (log: {self.log.name})"
        return json.loads(line)

    def violations(self):
        return self.cmd("violations")["violations"]

    def quit(self):
        answer = self.cmd("quit")
        assert answer == {"ok": True}, answer
        return self.proc.wait(10)


# --------------------------------------------------------------------------
# A minimal transcoder

class Transcoder:
    """One RegisterTranscoder call; notifications land in self.notes, and
    ("end", code, details) when the stream finishes."""

    def __init__(self, orch, secret=SECRET, capacity=3, capabilities=True, version="0.9.1"):
        creds = grpc.ssl_channel_credentials(root_certificates=open(orch.cert, "rb").read())
        self.channel = grpc.secure_channel(f"127.0.0.1:{orch.port}", creds,
                                           options=[("grpc.ssl_target_name_override", "localhost")])
        register = self.channel.unary_stream(METHOD, request_serializer=pb.RegisterRequest.SerializeToString,
                                             response_deserializer=pb.NotifySegment.FromString)
        request = pb.RegisterRequest(secret=secret, capacity=capacity)
        if capabilities:
            request.capabilities.bitstring.append(DEFAULT_BITSTRING)
            request.capabilities.version = version
            for k in ot_orchestrator.decode_bits([DEFAULT_BITSTRING]):
                request.capabilities.capacities[k] = 1
        self.call = register(request)
        self.notes = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for note in self.call:
                self.notes.put(note)
            self.notes.put(("end", grpc.StatusCode.OK, ""))
        except grpc.RpcError as error:
            self.notes.put(("end", error.code(), error.details()))

    def next(self, timeout=5):
        return self.notes.get(timeout=timeout)

    def close(self):
        self.call.cancel()
        self.channel.close()


class RawH2:
    """gRPC and plain HTTP on ONE HTTP/2 connection, by hand with h2 over a
    blocking TLS socket (certificate not checked), as a transcoder that
    shares its connection would do."""

    def __init__(self, port):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.authority = f"127.0.0.1:{port}"
        self.streams = {}
        self.events = []   # (event name, stream id, time) in the order received
        self.flush()

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def pump(self, timeout=5.0):
        """Read once and file the events under their streams."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("orchestrator closed the connection")
        now = time.monotonic()
        for event in self.conn.receive_data(data):
            self.events.append((type(event).__name__, getattr(event, "stream_id", None), now))
            stream = self.streams.get(getattr(event, "stream_id", None))
            if stream is None:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                stream["headers"] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                stream["data"] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                stream["trailers"] = dict(event.headers)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                stream["ended"] = True
        self.flush()

    def request(self, method, path, headers=(), body=b""):
        """Open a stream and send the whole request within the flow-control windows."""
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = {"headers": {}, "data": bytearray(), "trailers": {}, "ended": False}
        self.conn.send_headers(sid, [(":method", method), (":scheme", "https"), (":authority", self.authority),
                                     (":path", path), *headers], end_stream=not body)
        self.flush()
        while body:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.pump()
                continue
            chunk, body = body[:room], body[room:]
            self.conn.send_data(sid, chunk, end_stream=not body)
            self.flush()
        return sid

    def wait(self, sid, condition, timeout=10.0):
        deadline = time.time() + timeout
        while not condition(self.streams[sid]):
            if time.time() > deadline:
                raise TimeoutError(f"stream {sid}: {self.streams[sid]}")
            self.pump(deadline - time.time())
        return self.streams[sid]

    def close(self):
        self.sock.close()


def grpc_frame(message):
    payload = message.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload


def one_grpc_message(stream):
    data = stream["data"]
    return len(data) >= 5 and len(data) >= 5 + struct.unpack(">I", data[1:5])[0]


def multipart(parts, boundary="selftestBoundary42"):
    body = b""
    for headers, content in parts:
        body += b"--" + boundary.encode() + b"\r\n"
        body += "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"
        body += content + b"\r\n"
    body += b"--" + boundary.encode() + b"--\r\n"
    return f"multipart/mixed; boundary={boundary}", body


def result_headers(task_id, content_type, pixels="0", **extra):
    headers = {"Authorization": AUTH, "Credentials": SECRET, "TaskId": str(task_id), "Pixels": pixels,
               "Content-Type": content_type}
    headers.update(extra)
    return {k: v for k, v in headers.items() if v is not None}


def rendition(content_type, content, pixels, length=None):
    headers = {"Content-Type": content_type, "Content-Length": str(len(content) if length is None else length)}
    if pixels is not None:
        headers["Pixels"] = str(pixels)
    return headers, content


PROFILES = [
    {"name": "P240p30fps16x9", "width": 426, "height": 240, "bitrate": 250000, "fps": 30, "fpsDen": 1,
     "format": "MPEGTS", "profile": "H264_HIGH", "gop": 2000},
    {"name": "P360p30fps16x9", "width": 640, "height": 360, "bitrate": 600000, "fps": 30,
     "format": "MP4", "profile": "H264_CONSTRAINED_HIGH", "encoder": "H264", "quality": 23},
]


# --------------------------------------------------------------------------

def main():
    segment = open(SEGMENT, "rb").read()
    orch = Orchestrator()
    web = httpx.Client(http2=True, verify=False, timeout=20)
    try:
        run_checks(orch, web, segment)
    except BaseException:
        if not VERBOSE:
            sys.stderr.write(open(orch.log.name).read()[-8000:])
        raise
    finally:
        web.close()
        for o in Orchestrator.started:
            if o.proc.poll() is None:
                o.proc.kill()
    for o in Orchestrator.started:   # kept on failure, for the logs and parts
        shutil.rmtree(o.dir, ignore_errors=True)
    print("orchestrator self-test: all checks passed")


def run_checks(orch, web, segment):
    # ---- registration refusals --------------------------------------------
    bad = Transcoder(orch, secret="wrong")
    end = bad.next()
    check("wrong secret -> UNKNOWN 'invalid secret'", end == ("end", grpc.StatusCode.UNKNOWN, "invalid secret"), end)
    zero = Transcoder(orch, capacity=0)
    end = zero.next()
    check("capacity 0 -> UNKNOWN 'zero capacity'", end == ("end", grpc.StatusCode.UNKNOWN, "zero capacity"), end)
    regs = orch.cmd("registrations")
    check("registrations counts refusals", regs["accepted"] == 0 and regs["refused"] == 2 and regs["attempts"] == 2
          and not regs["connected"], regs)
    answer = orch.cmd("send_task", segment_file=SEGMENT, session="abcd1234", seq=0, profiles=PROFILES)
    check("send_task with no transcoder is refused", not answer["ok"], answer)
    answer = orch.cmd("back_to_back", sessions=["b2b00000"], rounds=2, segment_file=SEGMENT, profiles=PROFILES)
    check("back_to_back with no transcoder is refused", not answer["ok"] and answer["error"] ==
          "no transcoder connected" and answer["results"] == 0 and answer["incomplete"] == ["b2b00000"], answer)
    answer = orch.cmd("wait_registration", timeout=0.3)
    check("wait_registration times out", answer == {"ok": False, "error": "timeout", "registrations": 0}, answer)

    # ---- registration -----------------------------------------------------
    tc = Transcoder(orch)
    reg = orch.cmd("wait_registration", timeout=10)
    check("registration accepted", reg["ok"] and reg["registrations"] == 1 and reg["capacity"] == 3
          and reg["connected"], reg)
    check("capabilities decoded from the bitstring",
          reg["capabilities"] == list(range(13)) + [14, 26] and reg["mandatories"] == [] and reg["version"] == "0.9.1",
          reg)

    # ---- a task -----------------------------------------------------------
    answer = orch.cmd("send_task", segment_file=SEGMENT, session="abcd1234", seq=7, duration_ms=2000,
                      profiles=PROFILES, profiles_field="fullProfiles3", capabilities=[0, 1, 12],
                      segment_parameters={"from": 100, "to": 1500}, force_reinit=True)
    check("send_task", answer["ok"], answer)
    task = answer["task_id"]
    note = tc.next()
    seg = note.segData
    url = f"{orch.base}/stream/abcd1234/7.tempfile"
    check("NotifySegment url, taskId, profiles, orchId",
          note.url == url and note.taskId == task and note.profiles == b"invalid" and note.orchId == "offchain",
          note)
    check("SegData basics", seg.seq == 7 and seg.hash == bytes(32) and seg.profiles == b"invalid"
          and seg.duration == 2000 and seg.sig == b"" and seg.ForceSessionReinit and not seg.calc_perceptual_hash
          and seg.manifestId, seg)
    check("SegData auth_token", seg.auth_token.session_id == "abcd1234" and len(seg.auth_token.token) > 0
          and seg.auth_token.expiration > time.time(), seg.auth_token)
    check("SegData capabilities and clip", list(seg.capabilities.bitstring) == [0x1003]
          and getattr(seg.segment_parameters, "from") == 100 and seg.segment_parameters.to == 1500, seg)
    VP = pb.VideoProfile
    p = list(seg.fullProfiles3)
    check("profiles in fullProfiles3 only", len(p) == 2 and not seg.fullProfiles and not seg.fullProfiles2, seg)
    check("profile fields", p[0].name == "P240p30fps16x9" and p[0].width == 426 and p[0].height == 240
          and p[0].bitrate == 250000 and p[0].fps == 30 and p[0].fpsDen == 1 and p[0].format == VP.MPEGTS
          and p[0].profile == VP.H264_HIGH and p[0].gop == 2000 and p[1].format == VP.MP4
          and p[1].profile == VP.H264_CONSTRAINED_HIGH and p[1].quality == 23 and p[1].fpsDen == 0, p)

    # ---- downloads --------------------------------------------------------
    got = web.get(note.url)
    check("segment download over HTTP/2", got.status_code == 200 and got.content == segment
          and got.http_version == "HTTP/2", (got.status_code, got.http_version, len(got.content)))
    with httpx.Client(http2=False, verify=False, timeout=20) as h1:
        got1 = h1.get(note.url)
        missing = h1.get(f"{orch.base}/stream/abcd1234/99.tempfile")
    check("segment download over HTTP/1.1", got1.status_code == 200 and got1.content == segment
          and got1.http_version == "HTTP/1.1", (got1.status_code, got1.http_version))
    check("unknown segment -> 404", missing.status_code == 404, missing.status_code)
    downloads = orch.cmd("downloads")["downloads"]
    check("downloads recorded", [(d["http_version"], d["status"]) for d in downloads] ==
          [("2", 200), ("1.1", 200), ("1.1", 404)], downloads)

    # ---- a two-part result ------------------------------------------------
    ts, mp4 = os.urandom(5000), os.urandom(7000)
    ctype, body = multipart([rendition("video/mp2t", ts, 426 * 240 * 60), rendition("video/mp4", mp4, 640 * 360 * 60)])
    posted = web.post(f"{orch.base}/transcodeResults", headers=result_headers(task, ctype, "27648000"), content=body)
    check("result answered 200", posted.status_code == 200 and posted.http_version == "HTTP/2", posted.status_code)
    result = orch.cmd("wait_result", task_id=task, timeout=5)
    check("wait_result reports renditions", result["ok"] and result["kind"] == "renditions"
          and result["pixels"] == 27648000 and result["http_version"] == "2" and not result["late"]
          and 0 <= result["elapsed_ms"] < 8000, result)
    parts = result["parts"]
    check("parts: types, lengths, pixels", [(q["content_type"], q["content_length"], q["length"], q["pixels"])
                                            for q in parts] ==
          [("video/mp2t", 5000, 5000, 426 * 240 * 60), ("video/mp4", 7000, 7000, 640 * 360 * 60)], parts)
    check("parts saved", open(parts[0]["path"], "rb").read() == ts and open(parts[1]["path"], "rb").read() == mp4,
          parts)
    check("request headers recorded", result["headers"].get("authorization") == AUTH
          and result["headers"].get("taskid") == str(task) and result["authority"] == f"127.0.0.1:{orch.port}",
          result["headers"])
    check("no violations so far", orch.violations() == [], orch.violations())
    posted = web.post(f"{orch.base}/transcodeResults", headers=result_headers(task, ctype, "27648000"), content=body)
    check("a second result is answered 200 and flagged", posted.status_code == 200
          and any("second result" in v for v in orch.violations()), orch.violations())

    # ---- an error result, legacy fullProfiles -----------------------------
    answer = orch.cmd("send_task", segment_file=SEGMENT, session="abcd1234", seq=8, duration_ms=0,
                      profiles=[{"width": 320, "height": 180, "bitrate": 100000, "format": 7}],
                      profiles_field="fullProfiles")
    note = tc.next()
    check("legacy fullProfiles, open enum value, duration 0", answer["ok"] and len(note.segData.fullProfiles) == 1
          and note.segData.fullProfiles[0].format == 7 and not note.segData.fullProfiles3
          and note.segData.duration == 0 and not note.segData.HasField("capabilities"), note)
    posted = web.post(f"{orch.base}/transcodeResults",
                      headers=result_headers(answer["task_id"], "livepeer/transcoding-error"),
                      content=b"unrecognized profile output format")
    result = orch.cmd("wait_result", task_id=answer["task_id"], timeout=5)
    check("error result", posted.status_code == 200 and result["kind"] == "error"
          and result["error_text"] == "unrecognized profile output format" and result["pixels"] == 0, result)

    # ---- the orchestrator's checks, in order --------------------------------
    before = orch.cmd("results_count")["posted"]
    violations = len(orch.violations())
    cases = [
        ("no Authorization -> 401", result_headers(99, ctype, Authorization=None), 401, None),
        ("wrong Authorization -> 401", result_headers(99, ctype, Authorization="Livepeer-Transcoder-2.0"), 401, None),
        ("wrong Credentials -> 401", result_headers(99, ctype, Credentials="nope"), 401, None),
        ("no Content-Type -> 415", result_headers(99, None), 415, None),
        ("bad Content-Type -> 415", result_headers(99, "multipart/mixed; boundary"), 415, None),
        ("TaskId not a number -> 400", result_headers("x1", ctype), 400, "Invalid Task ID"),
        ("Pixels not a number -> 400", result_headers(99, ctype, "many"), 400, "Invalid Pixels"),
        ("no closing boundary -> 500", result_headers(99, ctype), 500, None),
    ]
    for name, headers, status, text in cases:
        content = body if status != 500 else body[:-30]
        posted = web.post(f"{orch.base}/transcodeResults", headers=headers, content=content)
        check(name, posted.status_code == status and (text is None or posted.text.strip() == text),
              (posted.status_code, posted.text))
    posted = web.post(f"{orch.base}/transcodeResults", headers=result_headers(12345, ctype), content=body)
    check("unknown task -> 200, dropped", posted.status_code == 200
          and any("unknown task 12345" in v for v in orch.violations()), orch.violations())
    posted = web.post(f"{orch.base}/transcodeResults", headers=result_headers(1, "text/plain"), content=b"hi")
    check("other content type -> 200", posted.status_code == 200)
    check("results_count counts every POST", orch.cmd("results_count")["posted"] == before + len(cases) + 2)
    check("rejections recorded as violations", len(orch.violations()) == violations + len(cases) + 2,
          orch.violations()[violations:])

    # ---- perceptual hash parts, and violations in parts ---------------------
    answer = orch.cmd("send_task", segment_file=SEGMENT, session="beef0001", seq=0, profiles=PROFILES,
                      profiles_field="fullProfiles2", calc_perceptual_hash=True)
    note = tc.next()
    check("calc_perceptual_hash and fullProfiles2", note.segData.calc_perceptual_hash
          and len(note.segData.fullProfiles2) == 2, note.segData)
    ctype2, body2 = multipart([rendition("video/mp2t", ts, 1), rendition("application/octet-stream", b"h" * 60, None),
                               rendition("video/mp4", mp4, 2), rendition("application/octet-stream", b"h" * 60, None)])
    violations = len(orch.violations())
    web.post(f"{orch.base}/transcodeResults", headers=result_headers(answer["task_id"], ctype2, "5"), content=body2)
    result = orch.cmd("wait_result", task_id=answer["task_id"], timeout=5)
    check("hash parts accepted", [q["pixels"] for q in result["parts"]] == [1, None, 2, None]
          and len(orch.violations()) == violations, (result["parts"], orch.violations()[violations:]))
    answer = orch.cmd("send_task", segment_file=SEGMENT, session="beef0002", seq=0, profiles=PROFILES)
    tc.next()
    ctype3, body3 = multipart([rendition("video/mp2t", ts, 1, length=4999), rendition("video/mp4", mp4, None)])
    web.post(f"{orch.base}/transcodeResults", headers=result_headers(answer["task_id"], ctype3, "5"), content=body3)
    result = orch.cmd("wait_result", task_id=answer["task_id"], timeout=5)
    new = orch.violations()[violations:]
    check("Content-Length mismatch and a part without Pixels flagged",
          any("Content-Length 4999 but 5000" in v for v in new) and any("no Pixels" in v for v in new)
          and any("1 renditions for 2 profiles" in v for v in new), new)

    # ---- big and concurrent uploads ---------------------------------------
    big_upload(orch, tc, web, "big 8 MB upload (1 MiB window)")

    # ---- back_to_back -----------------------------------------------------
    back_to_back(orch, tc)

    # ---- teardown, end_stream ---------------------------------------------
    before = orch.cmd("results_count")["posted"]
    check("teardown", orch.cmd("teardown", session="abcd1234") == {"ok": True})
    note = tc.next()
    check("teardown notification", note.url == "" and note.segData.auth_token.session_id == "abcd1234", note)
    time.sleep(0.3)
    check("teardown posts nothing", orch.cmd("results_count")["posted"] == before)
    check("end_stream", orch.cmd("end_stream")["ok"])
    end = tc.next()
    check("stream ended with status OK", end == ("end", grpc.StatusCode.OK, ""), end)
    regs = orch.cmd("registrations")
    check("not connected after end_stream", not regs["connected"] and regs["accepted"] == 1, regs)
    tc.close()

    # ---- re-registration (no capabilities), end before any message ----------
    tc2 = Transcoder(orch, capabilities=False, capacity=1)
    reg = orch.cmd("wait_registration", timeout=10, count=2)
    check("second registration", reg["ok"] and reg["registrations"] == 2 and reg["capacity"] == 1
          and reg["capabilities_present"] is False and reg["version"] == "", reg)
    check("end_stream before any message", orch.cmd("end_stream")["ok"]
          and tc2.next() == ("end", grpc.StatusCode.OK, ""))
    tc2.close()
    tc3 = Transcoder(orch)
    orch.cmd("wait_registration", timeout=10, count=3)
    tc3.close()   # the transcoder goes away
    deadline = time.time() + 5
    while orch.cmd("registrations")["connected"] and time.time() < deadline:
        time.sleep(0.05)
    check("a cancelled stream is noticed", not orch.cmd("registrations")["connected"])
    shared_connection(orch, segment)
    back_to_back_shared(orch)
    check("no protocol violations from grpcio", not any("RegisterTranscoder" in v or "HTTP/2" in v
                                                        for v in orch.violations()), orch.violations())

    # ---- restart on the same port, a small HTTP/2 window, EOF exits 0 --------
    port = orch.port
    check("quit exits 0", orch.quit() == 0)
    orch2 = Orchestrator(port=port, extra=["--h2-window", "65535", "--eager-headers", "--first-task-id", "5"])
    check("restart on the same port", orch2.port == port)
    tc4 = Transcoder(orch2)
    check("registration after restart", orch2.cmd("wait_registration", timeout=10)["ok"])
    with httpx.Client(http2=True, verify=False, timeout=20) as web2:
        big_upload(orch2, tc4, web2, "big 8 MB upload (64 KiB window)", first_id=5)
    placement = orch2.cmd("placement")
    check("placement without --enforce-capacity", placement["ok"] and placement["no_capacity"] == 0
          and [(r["registration"], r["capacity"], r["connected"], r["load"], r["sessions"])
               for r in placement["registrations"]] == [(1, 3, True, 1, ["cafe0001"])], placement)
    tc4.close()
    orch2.proc.stdin.close()
    check("EOF on stdin exits 0", orch2.proc.wait(10) == 0)
    enforce_capacity(web)


def enforce_capacity(web):
    """--enforce-capacity: sessions go to the least loaded registration by
    load / capacity, never past its capacity; load goes with teardown, an
    error result or a disconnect."""
    orch = Orchestrator(extra=["--enforce-capacity"])

    def send(session, seq=0):
        return orch.cmd("send_task", segment_file=SEGMENT, session=session, seq=seq, profiles=PROFILES[:1])

    def loads():
        return [(r["registration"], r["connected"], r["load"], r["sessions"])
                for r in orch.cmd("placement")["registrations"]]

    check("capacity: no transcoder -> refused and counted", send("cap00000") ==
          {"ok": False, "error": "no transcoder connected"} and orch.cmd("placement")["no_capacity"] == 1)
    a = Transcoder(orch, capacity=2)
    orch.cmd("wait_registration", timeout=10, count=1)
    b = Transcoder(orch, capacity=1)
    orch.cmd("wait_registration", timeout=10, count=2)
    placed = [send(s)["registration"] for s in ("cap00001", "cap00002", "cap00003")]
    check("capacity: 0/2 = 0/1 -> the latest; then the least load / capacity", placed == [2, 1, 1], placed)
    check("capacity: every registration full -> 'no transcoders available'",
          send("cap00004") == {"ok": False, "error": "no transcoders available"}
          and orch.cmd("placement")["no_capacity"] == 2)
    pinned = send("cap00001", 1)
    check("capacity: a session stays on its registration", pinned["registration"] == 2, pinned)
    notes = {t: [t.next().taskId for _ in range(n)] for t, n in ((a, 2), (b, 2))}
    check("capacity: placement", loads() == [(1, True, 2, ["cap00002", "cap00003"]), (2, True, 1, ["cap00001"])],
          loads())

    check("capacity: teardown", orch.cmd("teardown", session="cap00002") == {"ok": True}
          and a.next().url == "")
    task = send("cap00004")
    check("capacity: teardown frees a slot", task["ok"] and task["registration"] == 1, task)
    a.next()
    web.post(f"{orch.base}/transcodeResults", headers=result_headers(notes[a][1], "livepeer/transcoding-error"),
             content=b"boom")
    check("capacity: an error result frees its session", orch.cmd("wait_result", task_id=notes[a][1])["ok"]
          and loads()[0] == (1, True, 1, ["cap00004"]), loads())

    b.close()   # its session moves at its next segment; its task's result still counts
    deadline = time.time() + 5
    while loads()[1][1] and time.time() < deadline:
        time.sleep(0.05)
    check("capacity: a disconnect frees its sessions", loads()[1] == (2, False, 0, []), loads())
    moved = send("cap00001", 2)
    a.next()
    check("capacity: the session moves to a registration with room", moved["registration"] == 1
          and loads()[0] == (1, True, 2, ["cap00004", "cap00001"]), (moved, loads()))
    ctype, body = multipart([rendition("video/mp2t", os.urandom(500), 1)])
    web.post(f"{orch.base}/transcodeResults", headers=result_headers(pinned["task_id"], ctype, "1"), content=body)
    result = orch.cmd("wait_result", task_id=pinned["task_id"], timeout=5)
    check("capacity: a result after its registration left is delivered", result["ok"]
          and result["kind"] == "renditions", result)
    check("capacity: full again", send("cap00005")["error"] == "no transcoders available"
          and orch.cmd("placement")["no_capacity"] == 3)
    check("capacity: no violations", orch.violations() == [], orch.violations())
    a.close()
    check("capacity: quit exits 0", orch.quit() == 0)


def shared_connection(orch, segment):
    """Register, download and post a result on one HTTP/2 connection while
    the registration stream stays open; then end the stream."""
    count = orch.cmd("registrations")["accepted"] + 1
    raw = RawH2(orch.port)
    request = pb.RegisterRequest(secret=SECRET, capacity=2)
    request.capabilities.bitstring.append(DEFAULT_BITSTRING)
    grpc_sid = raw.request("POST", METHOD, [("content-type", "application/grpc"), ("te", "trailers")],
                           grpc_frame(request))
    check("raw h2 registration", orch.cmd("wait_registration", timeout=10, count=count)["ok"])
    try:
        raw.pump(0.3)
    except socket.timeout:
        pass
    check("no response headers before the first notification (grpc-go style)",
          raw.streams[grpc_sid]["headers"] == {}, raw.streams[grpc_sid])
    answer = orch.cmd("send_task", segment_file=SEGMENT, session="f00d0001", seq=3, profiles=PROFILES[:1])
    stream = raw.wait(grpc_sid, one_grpc_message)
    check("gRPC response headers come with the first message",
          stream["headers"].get(":status") == "200" and stream["headers"].get("content-type") == "application/grpc",
          stream["headers"])
    note = pb.NotifySegment.FromString(bytes(stream["data"][5:]))
    check("notification on the shared connection", note.taskId == answer["task_id"], note)
    get = raw.wait(raw.request("GET", "/stream/f00d0001/3.tempfile"), lambda st: st["ended"])
    check("download on the shared connection", get["headers"].get(":status") == "200"
          and bytes(get["data"]) == segment, get["headers"])
    content = os.urandom(2 << 20)
    ctype, body = multipart([rendition("video/mp2t", content, 42)])
    headers = [(k.lower(), v) for k, v in result_headers(answer["task_id"], ctype, "7").items()]
    post = raw.wait(raw.request("POST", "/transcodeResults", headers, body), lambda st: st["ended"])
    result = orch.cmd("wait_result", task_id=answer["task_id"], timeout=10)
    check("2 MB result on the shared connection", post["headers"].get(":status") == "200"
          and result["parts"][0]["length"] == len(content) and result["parts"][0]["pixels"] == 42, result)
    check("end_stream (raw)", orch.cmd("end_stream")["ok"])
    stream = raw.wait(grpc_sid, lambda st: st["ended"])
    check("trailers grpc-status 0", stream["trailers"].get("grpc-status") == "0", stream)
    raw.close()


def b2b_client(orch, tc, posts, error_for=lambda note: None):
    """A transcoder that answers every notification at once until it has
    posted `posts` results (in a thread, while the orchestrator's command
    runs): GET the segment; a non-200 becomes an error result with the status
    text, else one rendition per profile, unless error_for(note) gives an
    error text. Returns a dict filled as it goes: seqs per session, statuses
    of the downloads, failures."""
    state = {"seqs": {}, "downloads": {}, "failures": [], "posted": 0}

    def run():
        try:
            with httpx.Client(http2=True, verify=False, timeout=20) as client:
                while state["posted"] < posts:
                    note = tc.next(timeout=30)
                    if isinstance(note, tuple):
                        raise RuntimeError(f"stream ended: {note}")
                    session, seq = note.segData.auth_token.session_id, note.segData.seq
                    state["seqs"].setdefault(session, []).append(seq)
                    got = client.get(note.url)
                    state["downloads"][(session, seq)] = got.status_code
                    text = error_for(note)
                    if got.status_code != 200:
                        text = f"{got.status_code} {got.reason_phrase}"
                    if text is not None:
                        headers, body = result_headers(note.taskId, "livepeer/transcoding-error"), text.encode()
                    else:
                        ctype, body = multipart([rendition("video/mp2t", os.urandom(188 * 4), 426 * 240)
                                                 for _ in note.segData.fullProfiles3])
                        headers = result_headers(note.taskId, ctype, str(426 * 240))
                    posted = client.post(f"{orch.base}/transcodeResults", headers=headers, content=body)
                    if posted.status_code != 200:
                        state["failures"].append(f"task {note.taskId}: answered {posted.status_code}")
                    state["posted"] += 1
        except Exception as error:
            state["failures"].append(repr(error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    state["thread"] = thread
    return state


def back_to_back(orch, tc):
    """2 sessions x 20 rounds, every 5th task a 404; then busy and other
    errors; then a timeout and a result that comes after it."""
    violations = len(orch.violations())
    sessions = ["b2b00001", "b2b00002"]
    client = b2b_client(orch, tc, 40)
    answer = orch.cmd("back_to_back", sessions=sessions, rounds=20, segment_file=SEGMENT, profiles=PROFILES[:1],
                      duration_ms=2000, error_every=5, timeout=60)
    client["thread"].join(10)
    check("back_to_back 2 x 20, error_every 5: counts",
          answer["ok"] and answer["results"] == 40 and answer["renditions"] == 32 and answer["errors"] == 8
          and answer["expected_errors"] == 8 and answer["busy"] == 0 and answer["unexpected_errors"] == []
          and answer["incomplete"] == [] and answer["elapsed_ms"] >= 0, answer)
    check("back_to_back wrote every notification at once", answer["queued_sends"] == 0, answer)
    check("back_to_back: each session's seqs in order, one at a time",
          client["seqs"] == {s: list(range(20)) for s in sessions} and client["failures"] == [], client)
    check("back_to_back: every 5th segment URL answers 404",
          all(status == (404 if seq % 5 == 4 else 200) for (_, seq), status in client["downloads"].items())
          and len(client["downloads"]) == 40, client["downloads"])
    check("back_to_back: no violations", orch.violations()[violations:] == [], orch.violations()[violations:])

    # Busy and other errors are classified; the chain goes on after each.
    texts = {1: "Transcoder Busy: too many sessions", 2: "boom"}
    client = b2b_client(orch, tc, 4, lambda note: texts.get(note.segData.seq))
    answer = orch.cmd("back_to_back", sessions=["b2b00003"], rounds=4, segment_file=SEGMENT, profiles=PROFILES[:1],
                      timeout=30)
    client["thread"].join(10)
    check("back_to_back: busy and unexpected errors", answer["ok"] and answer["results"] == 4
          and answer["renditions"] == 2 and answer["errors"] == 2 and answer["busy"] == 1
          and answer["expected_errors"] == 0 and answer["unexpected_errors"] == ["boom"]
          and client["seqs"] == {"b2b00003": [0, 1, 2, 3]}, (answer, client))

    # Nobody answers: a timeout; a result after it starts nothing new.
    answer = orch.cmd("back_to_back", sessions=["b2b0000f"], rounds=3, segment_file=SEGMENT, profiles=PROFILES[:1],
                      timeout=0.5)
    check("back_to_back timeout", not answer["ok"] and answer["error"] == "timeout" and answer["results"] == 0
          and answer["incomplete"] == ["b2b0000f"], answer)
    note = tc.next()
    check("back_to_back sent seq 0 before the timeout", note.segData.seq == 0
          and note.segData.auth_token.session_id == "b2b0000f", note)
    ctype, body = multipart([rendition("video/mp2t", os.urandom(500), 1)])
    with httpx.Client(http2=True, verify=False, timeout=20) as client:
        posted = client.post(f"{orch.base}/transcodeResults", headers=result_headers(note.taskId, ctype, "1"),
                             content=body)
    try:
        extra = tc.next(timeout=0.5)
    except queue.Empty:
        extra = None
    check("a result after the timeout is answered and sends nothing more", posted.status_code == 200
          and extra is None, extra)


def back_to_back_shared(orch):
    """back_to_back on ONE HTTP/2 connection (gRPC, downloads and results):
    the frames of the next notification must come after the 200 answer to
    the previous result, and right after it."""
    count = orch.cmd("registrations")["accepted"] + 1
    raw = RawH2(orch.port)
    request = pb.RegisterRequest(secret=SECRET, capacity=1)
    request.capabilities.bitstring.append(DEFAULT_BITSTRING)
    grpc_sid = raw.request("POST", METHOD, [("content-type", "application/grpc"), ("te", "trailers")],
                           grpc_frame(request))
    check("raw h2 registration for back_to_back", orch.cmd("wait_registration", timeout=10, count=count)["ok"])
    state = {"order_ok": [], "gaps": [], "failures": [], "seqs": []}

    def notes_in(sid, start):
        """Whole gRPC messages on stream sid from byte `start`: ([notes], end)."""
        data, notes, i = bytes(raw.streams[sid]["data"]), [], start
        while len(data) >= i + 5 and len(data) >= i + 5 + struct.unpack(">I", data[i + 1:i + 5])[0]:
            n = struct.unpack(">I", data[i + 1:i + 5])[0]
            notes.append(pb.NotifySegment.FromString(data[i + 5:i + 5 + n]))
            i += 5 + n
        return notes, i

    def run():
        try:
            offset, pending = 0, []
            while len(state["seqs"]) < 6:
                while not pending:
                    raw.pump(10)
                    pending, offset = notes_in(grpc_sid, offset)
                note = pending.pop(0)
                state["seqs"].append(note.segData.seq)
                path = note.url.split(str(orch.port), 1)[1]
                get = raw.wait(raw.request("GET", path), lambda st: st["ended"])
                status = get["headers"].get(":status")
                if status == "200":
                    ctype, body = multipart([rendition("video/mp2t", os.urandom(400), 1)])
                    headers = result_headers(note.taskId, ctype, "1")
                else:
                    headers, body = result_headers(note.taskId, "livepeer/transcoding-error"), b"404 Not Found"
                mark = len(raw.events)
                post_sid = raw.request("POST", "/transcodeResults", [(k.lower(), v) for k, v in headers.items()],
                                       body)
                if note.segData.seq == 5:
                    raw.wait(post_sid, lambda st: st["ended"])
                    break
                raw.wait(grpc_sid, lambda st: notes_in(grpc_sid, offset)[0])
                pending, offset = notes_in(grpc_sid, offset)
                after = raw.events[mark:]
                answered = [k for k, e in enumerate(after) if e[1] == post_sid and e[0] == "StreamEnded"]
                notified = [k for k, e in enumerate(after) if e[1] == grpc_sid and e[0] == "DataReceived"]
                state["order_ok"].append(bool(answered and notified and answered[0] < notified[0]))
                if answered and notified:
                    state["gaps"].append(after[notified[0]][2] - after[answered[0]][2])
                if raw.streams[post_sid]["headers"].get(":status") != "200":
                    state["failures"].append(f"task {note.taskId}: {raw.streams[post_sid]['headers']}")
        except Exception as error:
            state["failures"].append(repr(error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    answer = orch.cmd("back_to_back", sessions=["b2b000aa"], rounds=6, segment_file=SEGMENT, profiles=PROFILES[:1],
                      error_every=3, timeout=30)
    thread.join(10)
    check("back_to_back on a shared connection: counts", answer["ok"] and answer["results"] == 6
          and answer["expected_errors"] == 2 and answer["queued_sends"] == 0 and state["seqs"] == list(range(6))
          and state["failures"] == [], (answer, state))
    check("next notification only after the 200 answer, at once",
          state["order_ok"] == [True] * 5 and max(state["gaps"]) < 0.5, state)
    check("end_stream (raw back_to_back)", orch.cmd("end_stream")["ok"])
    raw.close()


def big_upload(orch, tc, web, name, first_id=None):
    """An 8 MB rendition, then two results posted at once on two connections
    while the gRPC stream stays open."""
    answer = orch.cmd("send_task", segment_file=SEGMENT, session="cafe0001", seq=0, profiles=PROFILES[:1])
    note = tc.next()
    if first_id is not None:
        check("first task id", answer["task_id"] == first_id == note.taskId, answer)
    big = os.urandom(8 << 20)
    ctype, body = multipart([rendition("video/mp2t", big, 1)])
    posted = web.post(f"{orch.base}/transcodeResults", headers=result_headers(answer["task_id"], ctype, "9"),
                      content=body)
    result = orch.cmd("wait_result", task_id=answer["task_id"], timeout=20)
    check(name, posted.status_code == 200 and result["parts"][0]["length"] == len(big)
          and open(result["parts"][0]["path"], "rb").read() == big, result)

    ids = []
    for seq in (1, 2):
        ids.append(orch.cmd("send_task", segment_file=SEGMENT, session="cafe0001", seq=seq,
                            profiles=PROFILES[:1])["task_id"])
        tc.next()
    statuses = []

    def post(task_id):
        """One upload on a connection of its own (own thread)."""
        c, b = multipart([rendition("video/mp2t", os.urandom(3 << 20), 1)])
        with httpx.Client(http2=True, verify=False, timeout=20) as client:
            statuses.append(client.post(f"{orch.base}/transcodeResults", headers=result_headers(task_id, c, "1"),
                                        content=b).status_code)

    async def multiplexed(task_ids):
        """Uploads at once as streams of ONE connection (httpx's async client;
        its sync client is not safe to share between threads over HTTP/2)."""
        async with httpx.AsyncClient(http2=True, verify=False, timeout=20) as client:
            async def one(task_id):
                c, b = multipart([rendition("video/mp2t", os.urandom(3 << 20), 1)])
                response = await client.post(f"{orch.base}/transcodeResults", headers=result_headers(task_id, c, "1"),
                                             content=b)
                return response.status_code
            return await asyncio.gather(*[one(i) for i in task_ids])

    threads = [threading.Thread(target=post, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seq in (3, 4, 5):
        ids.append(orch.cmd("send_task", segment_file=SEGMENT, session="cafe0001", seq=seq,
                            profiles=PROFILES[:1])["task_id"])
        tc.next()
    statuses += asyncio.run(multiplexed(ids[2:]))
    results = [orch.cmd("wait_result", task_id=i, timeout=20) for i in ids]
    check("concurrent uploads", statuses == [200] * 5 and all(r["ok"] and r["parts"][0]["length"] == 3 << 20
                                                                for r in results), statuses)


if __name__ == "__main__":
    main()
