#!/usr/bin/env python3
"""Self-test of ot_transcoder.py against a minimal orchestrator of its own,
written from shared/spec/ot-protocol.md (no lpgpu involved).

The orchestrator here is one asyncio TLS listener speaking HTTP/2 with the
`h2` library, like go-livepeer's service port: requests with content-type
application/grpc go to a hand-written gRPC server for
/net.Transcoder/RegisterTranscoder (length-prefixed protobuf messages in DATA
frames, status in trailers), the rest to HTTP routes (GET /stream/...,
POST /transcodeResults). Its certificate is self-signed, made fresh by
openssl, and names a host the transcoder does not dial, so the peer must
trust it unverified and override the target name.

Checks: registration (secret, capacity, capabilities, version, the
`registered` line), one task with two profiles (TS + MP4) posting two parts
with correct Pixels, a download over plain HTTP/1.1 with the legacy
fullProfiles field, an error result for a 404 url, an error for an
unsupported format, a teardown that posts nothing, a calc_perceptual_hash
task refused without --perceptual-hash, reconnection after the stream ends,
exit status 3 for a wrong secret and for zero capacity, and a second peer
started with --perceptual-hash: it advertises capability 14 and answers a
calc_perceptual_hash task with rendition, hash, rendition, hash parts (each
hash an MPEG-7 video signature in FFmpeg's binary format, taken on the
rendition's scaled frames).

Run: .venv/bin/python3 tests/interop/ot_transcoder_selftest.py [-v]   (a few seconds;
-v prints the peer's log)
"""

import asyncio
import http.server
import json
import os
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ot_transcoder import load_stubs  # noqa: E402  (proto → modules only)

pb, _ = load_stubs()
PEER = os.path.join(HERE, "ot_transcoder.py")
CORPUS = "/work/shared/corpus/lpms"
SEGMENT = os.path.join(CORPUS, "kryp-1.ts")
SEGMENT2 = os.path.join(CORPUS, "go-livepeer", "sample_2_30_1250.ts")
SECRET = "selftest-secret"
CERT_NAME = "fake-orchestrator.test"
EXPECTED_BITSTRING = 0x1F9F  # {0,1,2,3,4,7,8,9,10,11,12}
EXPECTED_BITSTRING_PHASH = EXPECTED_BITSTRING | 1 << 14  # + MPEG7VideoSignature
RENDITION_MIN_BYTES = 25


# --------------------------------------------------------------------------
# A minimal orchestrator on one HTTP/2 TLS port

class Registration:
    """One open RegisterTranscoder stream."""

    def __init__(self, request):
        self.request = request
        self.outbox = asyncio.Queue()  # NotifySegment, or None to end the stream
        self.closed = asyncio.Event()

    def notify(self, note):
        self.outbox.put_nowait(note)

    def end(self):
        self.outbox.put_nowait(None)


class Orchestrator:
    def __init__(self, secret):
        self.secret = secret
        self.registrations = asyncio.Queue()
        self.results = asyncio.Queue()  # (headers dict with lower-case str keys, body bytes)
        self.segments = {}              # path -> bytes, served at GET path
        self.gets = []                  # (path, status) of every GET

    async def serve(self, reader, writer):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        window = asyncio.Event()
        requests = {}  # stream id -> [headers, body]

        def flush():
            data = conn.data_to_send()
            if data:
                writer.write(data)

        async def send_body(sid, data, end_stream):
            """DATA frames within the peer's flow-control window."""
            while data:
                room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if room <= 0:
                    window.clear()
                    await window.wait()
                    continue
                chunk, data = data[:room], data[room:]
                conn.send_data(sid, chunk, end_stream=end_stream and not data)
                flush()
                await writer.drain()

        async def respond(sid, status, body=b"", ctype="text/plain"):
            conn.send_headers(sid, [(":status", str(status)), ("content-type", ctype),
                                    ("content-length", str(len(body)))], end_stream=not body)
            flush()
            if body:
                await send_body(sid, body, True)

        async def grpc_register(sid, body):
            # One length-prefixed message: flag (0 = uncompressed), length, bytes.
            flag, length = struct.unpack(">BI", body[:5])
            assert flag == 0, "compressed gRPC request"
            req = pb.RegisterRequest.FromString(body[5:5 + length])

            def trailers_only(code, message):
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                        ("grpc-status", str(code)), ("grpc-message", message)], end_stream=True)
                flush()

            if req.secret != self.secret:
                return trailers_only(2, "invalid secret")
            if req.capacity <= 0:
                return trailers_only(2, "zero capacity")
            # Headers at once (the stream is open), then notifications as work comes.
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            flush()
            reg = Registration(req)
            await self.registrations.put(reg)
            try:
                while True:
                    note = await reg.outbox.get()
                    if note is None:
                        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
                        flush()
                        return
                    msg = note.SerializeToString()
                    await send_body(sid, struct.pack(">BI", 0, len(msg)) + msg, False)
            finally:
                reg.closed.set()

        async def dispatch(sid, headers, body):
            path, method = headers[":path"], headers[":method"]
            try:
                if headers.get("content-type", "").startswith("application/grpc"):
                    if path == "/net.Transcoder/RegisterTranscoder":
                        await grpc_register(sid, body)
                    else:
                        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                                ("grpc-status", "12")], end_stream=True)
                        flush()
                elif method == "GET" and path.startswith("/stream/"):
                    data = self.segments.get(path)
                    self.gets.append((path, 200 if data is not None else 404))
                    if data is None:
                        await respond(sid, 404, b"404 page not found\n")
                    else:
                        await respond(sid, 200, data, "video/mp2t")
                elif method == "POST" and path == "/transcodeResults":
                    # The orchestrator's first checks (the test asserts the rest).
                    if headers.get("authorization") != "Livepeer-Transcoder-1.0" or \
                            headers.get("credentials") != self.secret:
                        await respond(sid, 401, b"Unauthorized")
                    else:
                        await respond(sid, 200)
                    await self.results.put((headers, body))
                else:
                    await respond(sid, 404, b"not found")
                await writer.drain()
            except (h2.exceptions.ProtocolError, ConnectionError):
                pass

        flush()
        tasks = set()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        requests[event.stream_id] = [dict(event.headers), bytearray()]
                    elif isinstance(event, h2.events.DataReceived):
                        requests[event.stream_id][1] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = requests.pop(event.stream_id)
                        t = asyncio.create_task(dispatch(event.stream_id, headers, bytes(body)))
                        tasks.add(t)
                        t.add_done_callback(tasks.discard)
                    elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                        window.set()
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        break
                flush()
                await writer.drain()
        except (ConnectionError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            writer.close()


# --------------------------------------------------------------------------
# A plain HTTP/1.1 "object store" for one download

class ObjectStore(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    objects = {}
    seen = []

    def do_GET(self):
        data = self.objects.get(self.path)
        ObjectStore.seen.append((self.path, self.request_version))
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args):
        pass


# --------------------------------------------------------------------------
# Helpers

def probe_count_frames(data_or_path, suffix=".ts"):
    """(codec, width, height, frames) with ffprobe -count_frames: a different
    counting method from the peer's (-show_frames), as a cross-check."""
    if isinstance(data_or_path, bytes):
        with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
            f.write(data_or_path)
            path = f.name
    else:
        path = data_or_path
    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
                              "-show_entries", "stream=codec_name,width,height,nb_read_frames",
                              "-show_entries", "format=format_name", "-of", "json", path],
                             capture_output=True, check=True)
        info = json.loads(out.stdout)
        s = info["streams"][0]
        return s["codec_name"], s["width"], s["height"], int(s["nb_read_frames"]), info["format"]["format_name"]
    finally:
        if isinstance(data_or_path, bytes):
            os.unlink(path)


def parse_multipart(content_type, body):
    """Strict RFC 2046 framing, using each part's Content-Length."""
    assert content_type.startswith("multipart/mixed"), content_type
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    delim = b"--" + boundary
    assert body.startswith(delim + b"\r\n"), body[:80]
    pos, parts = 0, []
    while True:
        assert body[pos:pos + len(delim)] == delim, (pos, body[pos:pos + 80])
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return parts
        assert body[pos:pos + 2] == b"\r\n"
        head_end = body.index(b"\r\n\r\n", pos + 2)
        headers = {}
        for line in body[pos + 2:head_end].split(b"\r\n"):
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        start = head_end + 4
        length = int(headers["content-length"])
        parts.append((headers, body[start:start + length]))
        pos = start + length
        assert body[pos:pos + 2] == b"\r\n", "part not followed by CRLF"
        pos += 2


def profile(name, w, h, bitrate, fps=0, fmt=0, **kw):
    return pb.VideoProfile(name=name, width=w, height=h, bitrate=bitrate, fps=fps, fpsDen=1 if fps else 0,
                           format=fmt, **kw)


def notification(task_id, url, session, seq, field="fullProfiles3", profiles=(), phash=False):
    seg = pb.SegData(manifestId=b"selftest-manifest", seq=seq, hash=bytes(32), profiles=b"invalid", duration=2000,
                     auth_token=pb.AuthToken(token=b"opaque", session_id=session,
                                             expiration=int(time.time()) + 3600),
                     calc_perceptual_hash=phash)
    getattr(seg, field).extend(profiles)
    return pb.NotifySegment(url=url, segData=seg, taskId=task_id, profiles=b"invalid", orchId="offchain")


class Peer:
    """ot_transcoder.py as a subprocess, with its stdout lines queued."""

    def __init__(self, proc, log_path):
        self.proc, self.log_path = proc, log_path
        self.lines = asyncio.Queue()
        self.all_lines = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, tmp, tag, port, secret, capacity, *extra):
        log_path = os.path.join(tmp, f"{tag}.log")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, PEER, "--orch-addr", f"127.0.0.1:{port}", "--secret", secret,
            "--capacity", str(capacity), "--name", tag, *extra,
            stdout=asyncio.subprocess.PIPE, stderr=open(log_path, "wb"))
        return cls(proc, log_path)

    async def _read(self):
        while line := await self.proc.stdout.readline():
            text = line.decode().rstrip("\n")
            self.all_lines.append(text)
            await self.lines.put(text)

    async def expect(self, prefix, timeout=30):
        end = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(self.lines.get(), max(0.01, end - time.monotonic()))
            if line.startswith(prefix):
                return line

    def stderr(self):
        return open(self.log_path, errors="replace").read()

    async def stop(self):
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


def ok(msg):
    print(f"ok {msg}", flush=True)


# --------------------------------------------------------------------------
# The test

async def next_result(orch, timeout=60):
    return await asyncio.wait_for(orch.results.get(), timeout)


def check_renditions(headers, body, expected, parts=None, stride=1):
    """expected: [(content_type, width, height)] in profile order. Returns
    [frames] per rendition. `parts`: the rendition parts when the caller has
    split them out, every `stride`-th part of the body."""
    parts = parse_multipart(headers["content-type"], body) if parts is None else parts
    assert len(parts) == len(expected), (len(parts), len(expected))
    counts = []
    for i, ((ph, data), (ctype, w, h)) in enumerate(zip(parts, expected)):
        assert ph["content-type"] == ctype, (i, ph)
        assert int(ph["content-length"]) == len(data) >= RENDITION_MIN_BYTES, (i, ph, len(data))
        assert set(ph) == {"content-type", "content-length", "pixels"}, ph  # no name header
        codec, pw, phh, frames, fmt = probe_count_frames(data, ".mp4" if ctype == "video/mp4" else ".ts")
        assert codec == "h264" and (pw, phh) == (w, h), (i, codec, pw, phh)
        assert ("mp4" in fmt) == (ctype == "video/mp4") and (ctype == "video/mp4" or fmt == "mpegts"), (i, fmt)
        assert frames > 0
        assert int(ph["pixels"]) == frames * w * h, (i, ph["pixels"], frames, w, h)
        ok(f"  part {stride * i}: {ctype} {w}x{h} {frames} frames, Pixels {ph['pixels']}, {len(data)} bytes")
        counts.append(frames)
    return counts


def signature_header(data):
    """The header of an MPEG-7 video signature in FFmpeg's binary format
    (the `signature` filter, format=binary): NumOfSpatialRegions (32 bits),
    SpatialLocationFlag (1), the region's corners x0, y0, x1, y1 (16 each),
    StartFrameOfSpatialRegion (32), NumOfFrames (32)."""
    bits = "".join(f"{b:08b}" for b in data[:24])
    fields, pos = [], 0
    for n in (32, 1, 16, 16, 16, 16, 32, 32):
        fields.append(int(bits[pos:pos + n], 2))
        pos += n
    return fields


def check_renditions_with_hashes(headers, body, expected):
    """Each rendition part followed by its hash part: rendition, hash,
    rendition, hash, ... in profile order."""
    parts = parse_multipart(headers["content-type"], body)
    assert len(parts) == 2 * len(expected), ([p[0] for p in parts], len(expected))
    renditions, hashes = parts[0::2], parts[1::2]
    for i, (ph, data) in enumerate(renditions):
        assert ph["content-type"] != "application/octet-stream" and "pixels" in ph, (2 * i, ph)
    counts = check_renditions(headers, body, expected, renditions, stride=2)
    for i, ((hh, data), (ctype, w, h), frames) in enumerate(zip(hashes, expected, counts)):
        # a hash part: octet-stream, Content-Length, no Pixels (nor anything else)
        assert set(hh) == {"content-type", "content-length"}, (2 * i + 1, hh)
        assert hh["content-type"] == "application/octet-stream", (2 * i + 1, hh)
        assert int(hh["content-length"]) == len(data) > 0, (2 * i + 1, hh, len(data))
        # NumOfSpatialRegions = 1 (32-bit big endian), then SpatialLocationFlag set
        assert data[:4] == struct.pack(">I", 1) and data[4] & 0x80, (2 * i + 1, data[:8].hex())
        regions, flag, x0, y0, x1, y1, start, nframes = signature_header(data)
        # taken on the rendition's scaled frames: the region is the whole
        # encoded picture, and it covers every encoded frame
        assert (x0, y0, x1, y1) == (0, 0, w - 1, h - 1), (2 * i + 1, (x0, y0, x1, y1), w, h)
        assert start == 0 and nframes == frames, (2 * i + 1, start, nframes, frames)
        ok(f"  part {2 * i + 1}: application/octet-stream, {len(data)} bytes, "
           f"signature of {nframes} frames of {x1 + 1}x{y1 + 1}")


def check_common(headers, task_id):
    assert headers["authorization"] == "Livepeer-Transcoder-1.0", headers
    assert headers["credentials"] == SECRET, headers
    assert headers["taskid"] == str(task_id), headers


def line_fields(line, phash=None):
    # task <taskId> session=<id> seq=<n> result=ok|error <seconds>[ phash=<n>]
    # (phash= only on tasks that asked for calc_perceptual_hash)
    words = line.split()
    if phash is None:
        assert len(words) == 6 and words[0] == "task", line
    else:
        assert len(words) == 7 and words[0] == "task" and words[6] == f"phash={phash}", line
    float(words[5])
    return words[1], words[2], words[3], words[4]


async def run(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={CERT_NAME}",
                    "-addext", f"subjectAltName=DNS:{CERT_NAME}"], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])

    orch = Orchestrator(SECRET)
    server = await asyncio.start_server(orch.serve, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    base = f"https://127.0.0.1:{port}"

    store = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ObjectStore)
    threading.Thread(target=store.serve_forever, daemon=True).start()
    store_base = f"http://127.0.0.1:{store.server_address[1]}"

    peer = await Peer.start(tmp, "peer", port, SECRET, 2)
    hpeer = None  # the --perceptual-hash peer, started later
    try:
        # ---- registration
        reg = await asyncio.wait_for(orch.registrations.get(), 30)
        req = reg.request
        assert req.secret == SECRET and req.capacity == 2, req
        assert list(req.capabilities.bitstring) == [EXPECTED_BITSTRING], list(req.capabilities.bitstring)
        assert req.capabilities.version == "0.9.1", req.capabilities.version
        assert await peer.expect("registered", 10) == "registered capacity=2"
        ok(f"registered: capacity 2, bitstring {hex(req.capabilities.bitstring[0])}, version 0.9.1")

        # ---- one task, two profiles (TS then MP4), over the orchestrator's own /stream
        session = "abcd1234"
        orch.segments[f"/stream/{session}/1.tempfile"] = open(SEGMENT, "rb").read()
        _, sw, sh, sframes, _ = probe_count_frames(SEGMENT)
        reg.notify(notification(1, f"{base}/stream/{session}/1.tempfile", session, 1, profiles=[
            profile("P240p30fps16x9", 426, 240, 250_000, fps=30, fmt=pb.VideoProfile.MPEGTS,
                    profile=pb.VideoProfile.H264_CONSTRAINED_HIGH, gop=1000),
            profile("", 640, 360, 600_000, fmt=pb.VideoProfile.MP4, profile=pb.VideoProfile.H264_MAIN),
        ]))
        headers, body = await next_result(orch)
        check_common(headers, 1)
        assert int(headers["pixels"]) == sframes * sw * sh, (headers["pixels"], sframes, sw, sh)
        check_renditions(headers, body, [("video/mp2t", 426, 240), ("video/mp4", 640, 360)])
        assert line_fields(await peer.expect("task 1 ", 10)) == ("1", f"session={session}", "seq=1", "result=ok")
        ok(f"task 1: two parts, input Pixels {headers['pixels']} = {sframes}x{sw}x{sh}")

        # ---- a 404 url → error result
        reg.notify(notification(2, f"{base}/stream/{session}/2.tempfile", session, 2,
                                profiles=[profile("P240p30fps16x9", 426, 240, 250_000, fps=30)]))
        headers, body = await next_result(orch, 30)
        check_common(headers, 2)
        assert headers["content-type"] == "livepeer/transcoding-error", headers
        assert headers["pixels"] == "0" and b"404" in body, (headers, body)
        assert (f"/stream/{session}/2.tempfile", 404) in orch.gets
        assert line_fields(await peer.expect("task 2 ", 10))[3] == "result=error"
        ok(f"task 2: 404 → transcoding-error {body.decode()!r}")

        # ---- teardown posts nothing; the next task (HTTP/1.1 store, legacy fullProfiles) is next
        reg.notify(pb.NotifySegment(url="", taskId=3, segData=pb.SegData(
            auth_token=pb.AuthToken(session_id=session))))
        ObjectStore.objects["/bucket/seg.ts"] = open(SEGMENT2, "rb").read()
        _, sw2, sh2, sframes2, _ = probe_count_frames(SEGMENT2)
        reg.notify(notification(4, f"{store_base}/bucket/seg.ts", "beef0001", 7, field="fullProfiles",
                                profiles=[profile("P144p", 256, 144, 100_000)]))
        headers, body = await next_result(orch)
        check_common(headers, 4)  # not 3: the teardown posted nothing
        assert int(headers["pixels"]) == sframes2 * sw2 * sh2, headers["pixels"]
        check_renditions(headers, body, [("video/mp2t", 256, 144)])
        assert ObjectStore.seen == [("/bucket/seg.ts", "HTTP/1.1")], ObjectStore.seen
        assert line_fields(await peer.expect("task ", 10))[:4] == ("4", "session=beef0001", "seq=7", "result=ok")
        ok("task 3 (teardown) posted nothing; task 4 over HTTP/1.1 with fullProfiles ok")

        # ---- an unsupported profile format → error
        reg.notify(notification(5, f"{base}/stream/{session}/1.tempfile", "beef0002", 1,
                                profiles=[profile("bad", 426, 240, 250_000, fmt=7)]))
        headers, body = await next_result(orch, 30)
        check_common(headers, 5)
        assert headers["content-type"] == "livepeer/transcoding-error" and headers["pixels"] == "0", headers
        assert body == b"unrecognized profile output format", body
        assert line_fields(await peer.expect("task 5 ", 10))[3] == "result=error"
        await asyncio.sleep(1)
        assert orch.results.empty(), "unexpected extra result"
        ok("task 5: unsupported format → transcoding-error; no result ever for the teardown")

        # ---- calc_perceptual_hash without --perceptual-hash → refused, as before
        reg.notify(notification(6, f"{base}/stream/{session}/1.tempfile", "beef0003", 1, phash=True,
                                profiles=[profile("P240p30fps16x9", 426, 240, 250_000, fps=30)]))
        headers, body = await next_result(orch, 30)
        check_common(headers, 6)
        assert headers["content-type"] == "livepeer/transcoding-error" and headers["pixels"] == "0", headers
        assert body == b"perceptual hash not supported", body
        assert line_fields(await peer.expect("task 6 ", 10), phash=0)[3] == "result=error"
        ok("task 6: calc_perceptual_hash without --perceptual-hash → transcoding-error")

        # ---- the stream ends → the peer registers again
        reg.end()
        reg2 = await asyncio.wait_for(orch.registrations.get(), 15)
        assert reg2.request.secret == SECRET
        assert await peer.expect("registered", 10) == "registered capacity=2"
        ok("re-registered after the stream ended")

        # ---- refusals are fatal: exit status 3
        for secret, capacity, message in [("wrong-secret", 1, "invalid secret"), (SECRET, 0, "zero capacity")]:
            bad = await Peer.start(tmp, f"refused-{capacity}", port, secret, capacity)
            code = await asyncio.wait_for(bad.proc.wait(), 30)
            await bad.reader
            assert code == 3, (code, bad.stderr())
            assert message in bad.stderr(), bad.stderr()
            assert not any(l.startswith("registered") for l in bad.all_lines), bad.all_lines
            ok(f"{message}: exit status 3, nothing registered")
        assert orch.registrations.empty()

        # ---- --perceptual-hash: capability 14, and a hash part after each rendition
        hpeer = await Peer.start(tmp, "phash", port, SECRET, 1, "--perceptual-hash")
        reg3 = await asyncio.wait_for(orch.registrations.get(), 30)
        caps = reg3.request.capabilities
        assert list(caps.bitstring) == [EXPECTED_BITSTRING_PHASH], [hex(w) for w in caps.bitstring]
        assert 14 in caps.capacities, dict(caps.capacities)
        assert await hpeer.expect("registered", 10) == "registered capacity=1"
        ok(f"--perceptual-hash: registered with bitstring {hex(caps.bitstring[0])} (capability 14)")
        job_caps = pb.Capabilities(bitstring=[1 << 0 | 1 << 1 | 1 << 2 | 1 << 12 | 1 << 14])
        note = notification(7, f"{base}/stream/{session}/1.tempfile", "beef0004", 3, phash=True, profiles=[
            profile("P240p30fps16x9", 426, 240, 250_000, fps=30, fmt=pb.VideoProfile.MPEGTS),
            profile("", 640, 360, 600_000, fmt=pb.VideoProfile.MP4, profile=pb.VideoProfile.H264_MAIN),
        ])
        note.segData.capabilities.CopyFrom(job_caps)  # a job that needs capability 14
        reg3.notify(note)
        headers, body = await next_result(orch)
        check_common(headers, 7)
        assert int(headers["pixels"]) == sframes * sw * sh, headers["pixels"]
        check_renditions_with_hashes(headers, body, [("video/mp2t", 426, 240), ("video/mp4", 640, 360)])
        assert line_fields(await hpeer.expect("task 7 ", 10), phash=2) == \
            ("7", "session=beef0004", "seq=3", "result=ok")
        # a task without calc_perceptual_hash from the same peer: no hash parts, the line as before
        reg3.notify(notification(8, f"{base}/stream/{session}/1.tempfile", "beef0005", 1,
                                 profiles=[profile("P144p", 256, 144, 100_000)]))
        headers, body = await next_result(orch)
        check_common(headers, 8)
        check_renditions(headers, body, [("video/mp2t", 256, 144)])
        assert line_fields(await hpeer.expect("task 8 ", 10)) == ("8", "session=beef0005", "seq=1", "result=ok")
        await hpeer.stop()
        ok("task 7: rendition, hash, rendition, hash; task 8 without calc_perceptual_hash: renditions only")
        assert orch.registrations.empty()
    except BaseException:
        print("---- peer stderr ----\n" + peer.stderr(), file=sys.stderr)
        if hpeer is not None:
            print("---- phash peer stderr ----\n" + hpeer.stderr(), file=sys.stderr)
        raise
    finally:
        await peer.stop()
        if hpeer is not None:
            await hpeer.stop()
        if "-v" in sys.argv[1:]:
            print("---- peer stderr ----\n" + peer.stderr(), file=sys.stderr)
        server.close()
        store.shutdown()


def main():
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ot_transcoder_selftest_") as tmp:
        asyncio.run(run(tmp))
    print(f"PASS ot_transcoder selftest in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
