#!/usr/bin/env python3
"""A go-livepeer-style gateway (broadcaster, `livepeer -gateway -network
offchain`) that checks an orchestrator under test against the
broadcaster <-> orchestrator wire. Written from shared/spec/bo-protocol.md
alone (plus the VideoProfile / Capabilities tables of ot-protocol.md and the
vectors in shared/vectors/bo-vectors.json): it shares no code or assumptions
with the implementation it tests.

Offchain throughout: OrchestratorRequest.address = 20 zero bytes, empty
signatures, `Livepeer-Payment` the empty string. TLS verifies nothing (like
go-livepeer's broadcaster); HTTP goes over HTTP/2 (httpx, ALPN h2), gRPC over
a real grpcio TLS channel, a new channel per call (as go-livepeer does).

Usage:
  bo_gateway.py checks --orch HOST:PORT --segment FILE.ts --max-sessions N
                       [--report FILE.json] [--timeout S] [-v]
  bo_gateway.py selftest

`checks` prints one line per check, `PASS <name>` or `FAIL <name>: <why>`,
writes [{"name", "ok", "detail"}] to --report if given, and exits 0 only if
every check passed. FILE.ts is a real ~2 s MPEG-TS H.264 (+AAC) segment at
30 fps; N the orchestrator's configured session capacity (-maxSessions).

What it checks (check names in brackets; the list is the same on every run,
a check that cannot run fails with the reason):
  * GetOrchestrator, offchain, with an H.264 MPEG-TS job's capabilities
    (bits 0, 1, 12): https `transcoder`, 20 zero-byte `address`, no ticket
    params / price / storage, a 32-byte token, a lowercase-hex session id of
    >= 8 characters, expiration now + 30 min (+- 2 min), capabilities with a
    version; two calls give two session ids
    [get-orchestrator, get-orchestrator-new-session-ids]
  * Ping with a 32-byte value succeeds [ping]
  * a valid POST /segment over HTTP/2 (two renditions in fullProfiles): 200
    (when its headers came, relative to the whole answer, is reported);
    a TranscodeResult with the seq, the rendition URLs
    <transcoder>/stream/<session>/<profile>/<seq>.ts, empty sig, `info` with
    the session id; every rendition fetched over HTTP/2, H.264 of the right
    size by ffprobe, pixels == frames x w x h
    [segment-200, segment-result, segment-renditions]
  * every refusal of the spec's ordered table that applies offchain, with
    its exact status, body (text + newline) and content type; two faults in
    one request get the earlier check's answer; the session still works
    afterwards [refuse-payment-base64, refuse-payment-protobuf,
    refuse-segment-base64, refuse-segdata-protobuf, refuse-duration-negative,
    refuse-duration-too-long, refuse-profile-format, refuse-encoder-profile,
    refuse-video-codec, refuse-incompatible-capabilities,
    refuse-missing-auth-token, refuse-auth-token-tampered,
    refuse-auth-token-other-session, refuse-auth-token-other-expiration,
    refuse-hash-mismatch, order-payment-before-segment,
    order-duration-before-auth-token, order-profile-before-capabilities,
    order-capabilities-before-auth-token, order-auth-token-before-hash,
    refusals-leave-session-usable]
  * a > 2 MB body with a refused token gets its complete 403 (not a reset),
    over HTTP/2 and over HTTP/1.1
    [big-body-refusal-http2, big-body-refusal-http1.1]
  * an application/vnd+livepeer.uri body served by a local HTTP server on
    127.0.0.1, and one whose URL 404s (400 BadRequest) [uri-body, uri-body-404]
  * 5 segments back to back, then 3 at once, on one session
    [back-to-back-sequential, back-to-back-concurrent]
  * perceptual hashes: the orchestrator advertises capability 14
    (MPEG7VideoSignature); a segment with calc_perceptual_hash = true and
    job capabilities 0, 1, 12, 14 (the two renditions of the valid check)
    gets 200 with data whose every perceptual_hash_url is url + ".phash";
    every rendition and .phash is fetched over HTTP/2; each .phash is an
    MPEG-7 video signature in FFmpeg's `signature` filter binary format
    (parse_video_signature: its length exactly what its header's counts
    need, PixelX2+1 x PixelY2+1 = the rendition's size, NumOfFrames = its
    ffprobe frame count +- 1) and matches the ffmpeg CLI's own signature of
    the decoded rendition: frame counts within +- 1, frames aligned by
    index, mean per-frame L1 distance of the 380 ternary FrameSignature
    elements < 60 (of 760). A control keeps the metric honest: the same
    .phash against the CLI's signature of different synthetic content
    (lavfi mandelbrot, same size and length) must be > 2x the matched mean
    and > 60, else the check fails. The threshold is from measurements
    with FFmpeg 5.1: 60-frame 640x360 lavfi sources, scaled to 426x240 /
    256x144 with `signature` before x264 at 600 / 400 kb/s (as LPMS signs),
    that signature against the CLI's of the encoded rendition: testsrc
    1.4 / 3.2, testsrc2 9.8 / 12.0, smptebars 10.9 / 13.9, mandelbrot
    2.1 / 2.7 (worst single frame 36); unrelated content 286-363 (random
    ternary vectors: ~338). Noise-like content is the weak spot (cellauto
    ~50, lavfi `life` 93-141), which a real segment is not.
    selftest-signature-distance repeats the testsrc / testsrc2 / smptebars
    cases. -v logs every per-frame distance. [perceptual-hash]
  * capacity: N + 1 sessions obtained, N opened with a segment each; the
    further one's segment gets 403 OrchestratorCapped and GetOrchestrator
    UNKNOWN "Invalid orchestrator request: OrchestratorCapped";
    EndTranscodingSession ends one (its renditions then 404, the further
    session then works); a tampered token gets UNKNOWN "Invalid auth token",
    no token INVALID_ARGUMENT [capacity-setup, capacity-open-sessions,
    capacity-segment-capped, capacity-get-orchestrator-capped, end-session,
    end-session-renditions-gone, capacity-freed-after-end,
    end-session-wrong-token, end-session-no-token, end-session-all]
Every session obtained is ended with EndTranscodingSession after its group
of checks, so no group leaks capacity into the next; the capacity group
runs last.

Refusals are posted with a small HTTP/2 client of its own (the h2 library)
rather than httpx: a server may answer before reading the body and reset
the rest of the upload with RST_STREAM(NO_ERROR), as Go's server does, and
httpx then raises instead of returning the answer. Concurrent segments use
httpx's async client on one HTTP/2 connection.

`selftest` needs no orchestrator: it compiles the proto and checks this
file's encodings (AuthToken HMAC and protobuf, the SegData signature
preimage, SegData / Livepeer-Segment bytes, OrchestratorRequest, Payment and
TranscodeResult layouts) against shared/vectors/bo-vectors.json, and the
signature parser and distance with the ffmpeg CLI: a signature of a short
lavfi clip parses to its size and frame count, truncated / padded / absurd
ones are refused, and the signature of frames before x264 matches the CLI's
of the encoded output while the control does not (distances logged).
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import http.server
import importlib
import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httpx
from eth_utils import keccak

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "bo_gateway_net.proto")
# shared/ sits beside the checkout (/work/shared) or inside it.
VECTORS = next((v for v in (os.path.join(HERE, "..", "..", "..", "shared", "vectors", "bo-vectors.json"),
                            os.path.join(HERE, "..", "..", "shared", "vectors", "bo-vectors.json"))
                if os.path.exists(v)), os.path.join(HERE, "..", "..", "..", "shared", "vectors", "bo-vectors.json"))
VECTORS = os.path.normpath(VECTORS)

# --------------------------------------------------------------------------
# Constants from the spec

ZERO_ADDRESS = b"\x00" * 20            # offchain OrchestratorRequest / OrchestratorInfo address
TOKEN_LIFETIME = 30 * 60               # AuthToken.expiration = now + 30 min
EXPIRY_SLACK = 120                     # accepted clock / rounding difference
MAX_DURATION_MS = 300_000
ERROR_CONTENT_TYPE = "text/plain; charset=utf-8"
CAPPED_GRPC = "Invalid orchestrator request: OrchestratorCapped"
QUEUE_DEPTH = 4                        # a session's queue holds 4 waiting segments
BIG_BODY = 2 * 1024 * 1024 + 4096      # > 2 MB: past any default HTTP/2 window
GO_FIRST_BYTE_LIMIT = 2.0              # go-livepeer's B: the 200 within max(2 s, 0.5 x duration)

# Capability numbers (ot-protocol.md). A plain H.264-in, MPEG-TS-out job with
# an auth token: "broadcasters' jobs set at least 0, 1, 12".
CAP_H264, CAP_MPEGTS, CAP_AUTH_TOKEN = 0, 1, 12
JOB_CAPABILITIES = (CAP_H264, CAP_MPEGTS, CAP_AUTH_TOKEN)
# Candidates for a bit the orchestrator does not advertise, most exotic first
# (HEVC / VP8 / VP9 / 10-bit decode and encode, S3 / GCS storage, ...).
UNADVERTISED_CANDIDATES = (16, 15, 20, 19, 18, 17, 25, 24, 23, 22, 21, 6, 5, 14, 26, 13,
                           2, 3, 4, 7, 8, 9, 10, 11)

# The renditions asked for: all MPEG-TS, integer fps, default encoder profile
# and GOP -> SegData.fullProfiles (33). (name, width, height, bitrate bps, fps)
PROFILES = (("P240p30fps16x9", 426, 240, 600_000, 30),
            ("P144p30fps16x9", 256, 144, 400_000, 30))

pb = None        # bo_gateway_net_pb2, set by load_stubs()
pb_grpc = None   # bo_gateway_net_pb2_grpc


def log(msg: str):
    sys.stderr.write(f"bo_gateway: {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Protobuf / gRPC stubs, generated at run time (nothing generated is committed)

def load_stubs():
    """Generate bo_gateway_net_pb2{,_grpc} with grpc_tools.protoc into a temp
    directory keyed by the proto's hash, and import them."""
    global pb, pb_grpc
    from grpc_tools import protoc

    source = open(PROTO, "rb").read()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"bo_gateway_stubs_{digest}")
    if not os.path.exists(os.path.join(cache, "bo_gateway_net_pb2_grpc.py")):
        # Build in a private directory, then rename: concurrent processes race safely.
        work = tempfile.mkdtemp(prefix="bo_gateway_stubs_build_")
        well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        code = protoc.main(["protoc", f"-I{HERE}", f"-I{well_known}", f"--python_out={work}",
                            f"--grpc_python_out={work}", PROTO])
        if code != 0:
            raise SystemExit(f"protoc failed with {code}")
        try:
            os.rename(work, cache)
        except OSError:  # another process won the race
            shutil.rmtree(work, ignore_errors=True)
    if cache not in sys.path:
        sys.path.insert(0, cache)
    pb = importlib.import_module("bo_gateway_net_pb2")
    pb_grpc = importlib.import_module("bo_gateway_net_pb2_grpc")
    return pb, pb_grpc


# --------------------------------------------------------------------------
# Encodings (checked against the vectors by `selftest`)

def big_bytes(n: int) -> bytes:
    """big.Int.Bytes(): minimal big-endian, empty for 0."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""


def auth_token_hmac(key: bytes, session_id: str, expiration: int) -> bytes:
    """What the orchestrator computes: HMAC-SHA256(key, session_id || minimal BE(expiration))."""
    return hmac.new(key, session_id.encode() + big_bytes(expiration), hashlib.sha256).digest()


def capability_words(bits):
    words = [0] * (max(bits) // 64 + 1 if bits else 0)
    for bit in bits:
        words[bit // 64] |= 1 << (bit % 64)
    return words


def capability_bits(caps) -> set:
    return {64 * i + b for i, word in enumerate(caps.bitstring) for b in range(64) if word >> b & 1}


def job_capabilities(bits=JOB_CAPABILITIES):
    """The job's Capabilities as go-livepeer's B sends them: bitstring, empty
    capacities, constraints present with an empty minVersion."""
    return pb.Capabilities(bitstring=capability_words(sorted(bits)),
                           constraints=pb.Capabilities.Constraints())


def video_profile(name, width, height, bitrate, fps, **extra):
    return pb.VideoProfile(name=name, width=width, height=height, bitrate=bitrate, fps=fps, **extra)


def profile_hex(name: str) -> bytes:
    return keccak(name.encode())[:4].hex().encode()


def segment_preimage(manifest_id: bytes, seq: int, media_hash: bytes, names) -> bytes:
    """P = manifestId || LeftPad32(seq) || hash || hex(keccak256(name)[0:4]) per rendition."""
    return manifest_id + big_bytes(seq).rjust(32, b"\x00") + media_hash + b"".join(profile_hex(n) for n in names)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tampered(token):
    """A copy of an AuthToken with one bit of its token flipped."""
    raw = bytearray(token.token or b"\x00")
    raw[0] ^= 0x01
    return pb.AuthToken(token=bytes(raw), session_id=token.session_id, expiration=token.expiration)


def other_session_id(session_id: str) -> str:
    """A different lowercase-hex id of the same length."""
    while True:
        candidate = secrets.token_hex((len(session_id) + 1) // 2)[:len(session_id)] or "00000000"
        if candidate != session_id:
            return candidate


# --------------------------------------------------------------------------
# TLS without verification

def split_addr(addr: str):
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--orch must be HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def sni_for(host: str):
    """go-livepeer: SNI is the URI host when it is a name, none for an IP literal."""
    return None if is_ip(host) else host


def unverified_context(alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(alpn)
    return ctx


def certificate_names(pem: str):
    """(DNS names, IP addresses, CN) of a PEM certificate, via the openssl CLI."""
    try:
        text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem.encode(),
                              capture_output=True, check=True, timeout=10).stdout.decode(errors="replace")
    except (OSError, subprocess.SubprocessError):
        return [], [], None
    dns = re.findall(r"DNS:([^,\s]+)", text)
    ips = re.findall(r"IP Address:([^,\s]+)", text)
    cn = re.search(r"Subject:.*?\bCN\s*=\s*([^,/\n]+)", text)
    return dns, ips, cn.group(1).strip() if cn else None


def target_name(pem: str, host: str) -> str:
    """The name grpcio should check the certificate against. go-livepeer's B
    checks nothing; grpcio always checks, so hand it a name the certificate
    really carries: the host when it is among the certificate's names, else
    the first DNS name, else the CN, else the host."""
    dns, ips, cn = certificate_names(pem)
    if host in dns or host in ips:
        return host
    if dns:
        return dns[0]
    return cn or host


# --------------------------------------------------------------------------
# Raw TLS: a non-blocking pump for hand-made HTTP/1.1 and HTTP/2 requests

class TlsPump:
    def __init__(self, host, port, alpn, timeout):
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = unverified_context(alpn).wrap_socket(raw, server_hostname=sni_for(host))
        self.alpn = self.sock.selected_alpn_protocol()
        self.sock.setblocking(False)
        self.out = bytearray()
        self.eof = False
        self.write_error = None
        self.read_error = None

    def pump(self, wait: float) -> bytes:
        """Send what is queued and can be sent now; return what has arrived
        (waiting up to `wait` seconds for either)."""
        want_write = bool(self.out) and self.write_error is None
        if self.sock.pending():
            readable, writable = True, want_write
        else:
            r, w, _ = select.select([self.sock], [self.sock] if want_write else [], [], wait)
            readable, writable = bool(r), bool(w)
        if writable:
            try:
                n = self.sock.send(self.out[:16384])
                del self.out[:n]
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
            except (OSError, ssl.SSLError) as e:  # EPIPE / ECONNRESET: the server stopped reading
                self.write_error = e
        got = bytearray()
        if readable:
            try:
                while True:
                    data = self.sock.recv(65536)
                    if not data:
                        self.eof = True
                        break
                    got += data
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except (OSError, ssl.SSLError) as e:
                self.read_error = e
                self.eof = True
        return bytes(got)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_h2_request(host, port, authority, method, path, headers, body, timeout):
    """One HTTP/2 request over its own TLS connection, made with the h2
    library so that everything the server does is visible: the response,
    and any RST_STREAM or GOAWAY with its code. The body is sent as flow
    control allows, and sending stops once the response is complete."""
    out = {"status": None, "headers": {}, "body": b"", "ended": False, "reset": None,
           "reset_before_end": False, "goaway": None, "sent": 0, "alpn": None, "error": None}
    pump = TlsPump(host, port, ["h2"], timeout)
    try:
        out["alpn"] = pump.alpn
        if pump.alpn != "h2":
            out["error"] = f"ALPN chose {pump.alpn!r}, not h2"
            return out
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", method), (":scheme", "https"), (":authority", authority),
                                (":path", path)] + [(k.lower(), v) for k, v in headers], end_stream=not body)
        pump.out += conn.data_to_send()
        offset, sending = 0, bool(body)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sending and not out["ended"] and offset < len(body) and len(pump.out) < 262144:
                try:
                    n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size,
                            len(body) - offset)
                    if n > 0:
                        conn.send_data(sid, body[offset:offset + n], end_stream=offset + n == len(body))
                        offset += n
                        out["sent"] = offset
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    sending = False
                pump.out += conn.data_to_send()
            data = pump.pump(0.05)
            if data:
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    out["error"] = f"HTTP/2 protocol error: {e}"
                    return out
                for ev in events:
                    if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                        hdrs = dict(ev.headers)
                        out["status"] = int(hdrs.get(":status", "0"))
                        out["headers"] = {k: v for k, v in hdrs.items() if not k.startswith(":")}
                    elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                        out["body"] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                        out["ended"] = True
                    elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                        out["reset"] = int(ev.error_code)
                        out["reset_before_end"] = not out["ended"]
                        sending = False
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        out["goaway"] = int(ev.error_code)
                pump.out += conn.data_to_send()
            if out["ended"] or out["reset_before_end"] or pump.eof:
                break
        else:
            out["error"] = f"no complete response within {timeout:.0f} s"
        if pump.eof and not out["ended"] and not out["error"]:
            out["error"] = f"the connection closed before the response was complete ({pump.read_error})"
        return out
    finally:
        pump.close()


def parse_http1_response(buf: bytes, eof: bool):
    """(complete, status, headers, body) of the first final response in buf."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False, None, {}, b""
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        rest = buf[end + 4:]
        if 100 <= status < 200:  # interim response
            buf = rest
            continue
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, pos = bytearray(), 0
            while True:
                nl = rest.find(b"\r\n", pos)
                if nl < 0:
                    return False, status, headers, bytes(body)
                size = int(rest[pos:nl].split(b";")[0] or b"0", 16)
                if size == 0:
                    return True, status, headers, bytes(body)
                if len(rest) < nl + 2 + size + 2:
                    return False, status, headers, bytes(body)
                body += rest[nl + 2:nl + 2 + size]
                pos = nl + 2 + size + 2
        if "content-length" in headers:
            length = int(headers["content-length"])
            return len(rest) >= length, status, headers, rest[:length]
        return eof, status, headers, rest


def raw_http1_post(host, port, authority, path, headers, body, timeout):
    """POST over HTTP/1.1 on a raw TLS socket (ALPN http/1.1): the body is
    sent in chunks while the response is read, so an early answer is seen;
    a write error (the server stopped reading) does not end the read."""
    out = {"status": None, "headers": {}, "body": b"", "complete": False, "sent": 0,
           "write_error": None, "alpn": None, "error": None}
    pump = TlsPump(host, port, ["http/1.1"], timeout)
    try:
        out["alpn"] = pump.alpn
        head = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        pump.out += head.encode()
        offset, buf = 0, bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if offset < len(body) and len(pump.out) < 262144 and pump.write_error is None:
                pump.out += body[offset:offset + 65536]
                offset = min(len(body), offset + 65536)
            buf += pump.pump(0.05)
            out["sent"] = offset - len(pump.out) if pump.write_error is None else None
            complete, status, hdrs, rbody = parse_http1_response(bytes(buf), pump.eof)
            out.update(status=status, headers=hdrs, body=rbody, complete=complete)
            if complete or pump.eof:
                break
        else:
            out["error"] = f"no complete response within {timeout:.0f} s"
        out["write_error"] = repr(pump.write_error) if pump.write_error else None
        if pump.eof and not out["complete"]:
            out["error"] = f"the connection closed before the response was complete ({pump.read_error!r})"
        return out
    finally:
        pump.close()


# --------------------------------------------------------------------------
# Media

def probe(data: bytes):
    """(codec, width, height, frames) of the first video stream, frames as
    `ffprobe -count_frames` reports them (nb_read_frames)."""
    with tempfile.NamedTemporaryFile(suffix=".ts") as f:
        f.write(data)
        f.flush()
        run = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
                              "-show_entries", "stream=codec_name,width,height,nb_read_frames",
                              "-of", "json", f.name], capture_output=True, timeout=60)
    if run.returncode != 0:
        raise ValueError(f"ffprobe refused it: {run.stderr.decode(errors='replace').strip()[-200:]}")
    streams = json.loads(run.stdout or b"{}").get("streams", [])
    if not streams:
        raise ValueError("ffprobe found no video stream")
    s = streams[0]
    return s.get("codec_name"), int(s.get("width", 0)), int(s.get("height", 0)), int(s.get("nb_read_frames", 0))


# --------------------------------------------------------------------------
# MPEG-7 video signatures (perceptual hashes) in FFmpeg's `signature` filter
# binary format (libavfilter/vf_signature.c, binary_export): one big-endian
# bit stream, MSB first, padded to a byte at the end.
#
#   header   NumOfSpatialRegions 32 (= 1), SpatialLocationFlag 1,
#            PixelX1/PixelY1 32 (= 0), PixelX2 16 (= w - 1), PixelY2 16 (= h - 1),
#            StartFrameOfSpatialRegion 32, NumOfFrames 32, MediaTimeUnit 16,
#            MediaTimeFlagOfSpatialRegion 1, StartMediaTime 32, EndMediaTime 32,
#            NumOfSegments 32                                      = 274 bits
#   segment  StartFrame 32, EndFrame 32, MediaTimeFlag 1, StartMediaTime 32,
#            EndMediaTime 32, 5 bags of 243 bits (coarse signature) = 1344 bits
#   CompressionFlag 1 (= 0: only uncompressed frames exist)
#   frame    MediaTimeFlagOfFrame 1, MediaTimeOfFrame 32, FrameConfidence 8,
#            5 Words of 8, FrameSignature 76 x 8 (each byte 5 ternary
#            elements as a base-3 number, first element most significant)
#                                                                  = 689 bits

SIG_HEADER_BITS = 32 + 1 + 32 + 16 + 16 + 32 + 32 + 16 + 1 + 32 + 32 + 32
SIG_SEGMENT_BITS = 32 + 32 + 1 + 32 + 32 + 5 * 243
SIG_FRAME_BITS = 1 + 32 + 8 + 5 * 8 + 76 * 8
SIG_ELEMENTS = 380                     # ternary elements of a FrameSignature
SIG_MAX_L1 = 2 * SIG_ELEMENTS          # the largest per-frame L1 distance (760)
# Mean per-frame L1 distance under which two signatures are "the same video".
# Measured (selftest-signature-distance, FFmpeg 5.1): the signature of the
# scaled frames before x264 against the ffmpeg CLI's signature of the encoded
# rendition lies far below this; unrelated content (the control) lies far above.
SIG_MATCH_MEAN_L1 = 60.0
SIG_CONTROL_FACTOR = 2.0               # the control must be > 2x the matched mean (and > the threshold)
# The control video: synthetic content unlike a real segment and unlike
# ffmpeg's testsrc/testsrc2 test segments.
SIG_CONTROL_SOURCE = "mandelbrot=size={w}x{h}:rate=30"
# base-3 digits of a FrameSignature byte, first element first (b // 81, ...)
_TERNARY = [bytes((b // 81, b % 81 // 27, b % 27 // 9, b % 9 // 3, b % 3)) for b in range(243)]


class SignatureError(ValueError):
    """A perceptual hash that is not a well-formed FFmpeg binary signature."""


class VideoSignature:
    """A parsed FFmpeg binary MPEG-7 video signature. `frames` holds, per
    frame, (pts, confidence, words, elements): elements = the 380 ternary
    values (0, 1, 2) of the FrameSignature as bytes."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return (f"VideoSignature({self.width}x{self.height}, {self.num_frames} frames, "
                f"{self.num_segments} segments, {self.length} bytes)")


class _Bits:
    """Big-endian, MSB-first bit reader."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def get(self, n: int) -> int:
        first, end = self.pos >> 3, (self.pos + n + 7) >> 3
        value = int.from_bytes(self.data[first:end], "big") >> (end * 8 - self.pos - n)
        self.pos += n
        return value & ((1 << n) - 1)


def parse_video_signature(data: bytes) -> VideoSignature:
    """Parse an FFmpeg `signature` filter binary export. Raises
    SignatureError with the reason for anything that does not fit: too short
    for its header, a header whose counts the data cannot hold (truncated,
    absurd NumOfFrames), bytes left over, a compressed signature, or a
    FrameSignature byte that is no 5-digit base-3 number."""
    data = bytes(data)
    have = len(data) * 8
    if have < SIG_HEADER_BITS:
        raise SignatureError(f"{len(data)} bytes, shorter than the {(SIG_HEADER_BITS + 7) // 8}-byte header")
    r = _Bits(data)
    regions, location_flag, x1y1 = r.get(32), r.get(1), r.get(32)
    x2, y2, start_frame, num_frames = r.get(16), r.get(16), r.get(32), r.get(32)
    time_unit, time_flag, start_time, end_time, num_segments = r.get(16), r.get(1), r.get(32), r.get(32), r.get(32)
    if regions != 1:
        raise SignatureError(f"NumOfSpatialRegions {regions}, want 1 (the only value FFmpeg writes)")
    need_bits = SIG_HEADER_BITS + num_segments * SIG_SEGMENT_BITS + 1 + num_frames * SIG_FRAME_BITS
    need = (need_bits + 7) // 8
    if len(data) < need:
        raise SignatureError(f"{len(data)} bytes, but NumOfFrames {num_frames} and NumOfSegments {num_segments} "
                             f"need {need}: truncated, or absurd counts")
    if len(data) > need:
        raise SignatureError(f"{len(data)} bytes, {len(data) - need} more than NumOfFrames {num_frames} and "
                             f"NumOfSegments {num_segments} account for ({need})")
    segments = []
    for _ in range(num_segments):
        s_start, s_end, _flag, t_start, t_end = r.get(32), r.get(32), r.get(1), r.get(32), r.get(32)
        r.get(5 * 243)  # the coarse bags of words, not compared here
        segments.append((s_start, s_end, t_start, t_end))
    compression = r.get(1)
    if compression != 0:
        raise SignatureError("CompressionFlag 1: compressed frame signatures (FFmpeg writes only 0)")
    frames = []
    for i in range(num_frames):
        _flag, pts, confidence = r.get(1), r.get(32), r.get(8)
        words = bytes(r.get(8) for _ in range(5))
        packed = r.get(76 * 8).to_bytes(76, "big")
        bad = next((b for b in packed if b > 242), None)
        if bad is not None:
            raise SignatureError(f"frame {i}: FrameSignature byte {bad} is no 5-digit base-3 number (> 242)")
        frames.append((pts, confidence, words, b"".join(_TERNARY[b] for b in packed)))
    return VideoSignature(width=x2 + 1, height=y2 + 1, pixel_x1y1=x1y1, location_flag=location_flag,
                          start_frame=start_frame, num_frames=num_frames, time_unit=time_unit,
                          time_flag=time_flag, start_time=start_time, end_time=end_time,
                          num_segments=num_segments, segments=segments, frames=frames, length=len(data))


def signature_distances(a: VideoSignature, b: VideoSignature):
    """Per-frame L1 distances between the FrameSignatures of a and b, frames
    aligned by index (as many as both have)."""
    return [sum(abs(x - y) for x, y in zip(fa[3], fb[3])) for fa, fb in zip(a.frames, b.frames)]


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def cli_signature(input_args, timeout=120) -> bytes:
    """The ffmpeg CLI's own binary signature of the first video stream of
    `input_args` (e.g. ["-i", FILE], or a lavfi source with -frames:v)."""
    work = tempfile.mkdtemp(prefix="bo_gateway_sig_")
    try:
        out = os.path.join(work, "sig.bin")  # mkdtemp names need no filtergraph escaping
        run = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *input_args, "-map", "0:v:0",
                              "-vf", f"signature=format=binary:filename={out}", "-f", "null", "-"],
                             capture_output=True, timeout=timeout)
        if run.returncode != 0 or not os.path.exists(out):
            raise ValueError(f"ffmpeg signature failed ({run.returncode}): "
                             f"{run.stderr.decode(errors='replace').strip()[-300:]}")
        return open(out, "rb").read()
    finally:
        shutil.rmtree(work, ignore_errors=True)


class SegmentServer:
    """A small local HTTP server for application/vnd+livepeer.uri bodies:
    /seg.ts is the segment, anything else 404."""

    def __init__(self, data: bytes):
        payload = data

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] == "/seg.ts":
                    self.send_response(200)
                    self.send_header("Content-Type", "video/MP2T")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                else:
                    self.send_error(404)

            def log_message(self, fmt, *a):
                log("uri server: " + fmt % a)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Http1Response:
    """raw_http1_post's answer, shaped like an httpx.Response."""

    def __init__(self, r):
        self.raw = r
        self.status_code = r["status"]
        self.content = r["body"]
        self.headers = r["headers"]
        self.http_version = "HTTP/1.1"


class RawResponse:
    """raw_h2_request's answer with the attributes of an httpx.Response that
    the checks use."""

    def __init__(self, r):
        self.raw = r
        self.status_code = r["status"]
        self.content = r["body"]
        self.headers = r["headers"]
        self.http_version = "HTTP/2" if r["alpn"] == "h2" else f"ALPN {r['alpn']!r}"

    def problems(self):
        """Transport faults: no complete response, a reset before its end."""
        r, p = self.raw, []
        if r["error"]:
            p.append(r["error"])
        if r["reset_before_end"]:
            p.append(f"RST_STREAM code {r['reset']} before the response was complete "
                     f"(status {r['status']}, {len(r['body'])} body bytes)")
        elif r["goaway"] not in (None, 0) and not r["ended"]:
            p.append(f"GOAWAY code {r['goaway']} before the response was complete")
        return p

    def note(self):
        r = self.raw
        if r["reset"] is not None and not r["reset_before_end"]:
            return f" (then RST_STREAM code {r['reset']} after {r['sent']} body bytes sent)"
        return ""


# --------------------------------------------------------------------------
# Check bookkeeping

class CheckFailed(Exception):
    pass


class Check:
    def __init__(self, runner, name):
        self.runner, self.name, self.detail = runner, name, ""

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        if etype is None:
            self.runner.record(self.name, True, self.detail)
        elif issubclass(etype, CheckFailed):
            self.runner.record(self.name, False, str(exc))
        elif issubclass(etype, Exception):
            self.runner.record(self.name, False, f"{etype.__name__}: {exc}")
        else:
            return False
        return True


class Runner:
    def __init__(self):
        self.results = []

    def check(self, name):
        return Check(self, name)

    def fail_all(self, names, why):
        for name in names:
            self.record(name, False, why)

    def record(self, name, ok, detail):
        self.results.append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"PASS {name}" if ok else f"FAIL {name}: {detail}", flush=True)
        if ok and detail:
            log(f"{name}: {detail}")


def require(problems):
    if problems:
        raise CheckFailed("; ".join(problems))


def show(body: bytes, limit=200) -> str:
    text = repr(body[:limit])
    return text + ("..." if len(body) > limit else "")


# --------------------------------------------------------------------------
# The gateway

class Gateway:
    def __init__(self, args):
        self.args = args
        self.host, self.port = split_addr(args.orch)
        self.timeout = args.timeout
        self.segment = open(args.segment, "rb").read()
        self.segment_hash = keccak(self.segment)
        self.manifest_id = f"bogw-{secrets.token_hex(6)}".encode()
        self.http = httpx.Client(http2=True, verify=False, timeout=self.timeout, follow_redirects=False)
        self.tokens = {}          # session_id -> AuthToken of every session obtained
        self.transcoder = None    # OrchestratorInfo.transcoder, once known
        self.o_caps = None        # the orchestrator's capability bits
        self.pem = None

    # ---- gRPC: a new channel per call, like go-livepeer ---------------------

    def _channel(self):
        pem = ssl.get_server_certificate((self.host, self.port), timeout=self.timeout)
        if pem != self.pem:
            self.pem, self.name = pem, target_name(pem, self.host)
        creds = grpc.ssl_channel_credentials(root_certificates=pem.encode())
        target = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return grpc.secure_channel(target, creds,
                                   options=[("grpc.ssl_target_name_override", self.name),
                                            ("grpc.use_local_subchannel_pool", 1)])

    def rpc(self, method, request, timeout=10.0):
        with self._channel() as channel:
            stub = pb_grpc.OrchestratorStub(channel)
            return getattr(stub, method)(request, timeout=timeout)

    def get_orchestrator(self, caps=None):
        req = pb.OrchestratorRequest(address=ZERO_ADDRESS, sig=b"",
                                     capabilities=caps if caps is not None else job_capabilities())
        info = self.rpc("GetOrchestrator", req)
        if info.HasField("auth_token") and info.auth_token.session_id:
            tok = pb.AuthToken()
            tok.CopyFrom(info.auth_token)
            self.tokens[tok.session_id] = tok
        if info.transcoder and self.transcoder is None:
            self.transcoder = info.transcoder
        return info

    def session(self):
        """A fresh session's (transcoder URL, AuthToken), or CheckFailed."""
        try:
            info = self.get_orchestrator()
        except grpc.RpcError as e:
            raise CheckFailed(f"GetOrchestrator failed: {e.code().name} {e.details()!r}")
        except (OSError, ssl.SSLError) as e:
            raise CheckFailed(f"cannot reach {self.host}:{self.port}: {type(e).__name__}: {e}")
        if not info.transcoder or not info.HasField("auth_token"):
            raise CheckFailed("GetOrchestrator gave no transcoder or no auth_token")
        return info.transcoder.rstrip("/"), info.auth_token

    def end_session(self, token):
        return self.rpc("EndTranscodingSession", pb.EndTranscodingSessionRequest(auth_token=token))

    def end_all(self, quiet=True):
        """EndTranscodingSession for every session obtained so far."""
        failures = []
        for sid, tok in list(self.tokens.items()):
            try:
                self.end_session(tok)
            except grpc.RpcError as e:
                failures.append(f"{sid}: {e.code().name} {e.details()!r}")
            except (OSError, ssl.SSLError) as e:
                failures.append(f"{sid}: {type(e).__name__}: {e}")
            del self.tokens[sid]
        if failures and not quiet:
            log("EndTranscodingSession failures: " + "; ".join(failures))
        return failures

    # ---- POST /segment --------------------------------------------------

    def segdata(self, token, seq, *, media_hash=None, duration=2000, caps=None, profiles=None,
                field="fullProfiles", with_token=True):
        sd = pb.SegData(manifestId=self.manifest_id, seq=seq,
                        hash=self.segment_hash if media_hash is None else media_hash,
                        profiles=b"invalid", sig=b"", duration=duration,
                        capabilities=caps if caps is not None else job_capabilities())
        if with_token and token is not None:
            sd.auth_token.CopyFrom(token)
        getattr(sd, field).extend(profiles if profiles is not None else [video_profile(*p) for p in PROFILES])
        return sd

    def seg_headers(self, segdata, payment="", content_type="video/MP2T"):
        seg = segdata if isinstance(segdata, str) else b64(segdata.SerializeToString())
        return {"Livepeer-Segment": seg, "Livepeer-Payment": payment, "Content-Type": content_type}

    def post(self, transcoder, headers, body=None, timeout=None):
        return self.http.post(transcoder + "/segment", content=self.segment if body is None else body,
                              headers=headers, timeout=timeout or self.timeout)

    def post_raw(self, transcoder, headers, body=None):
        """POST /segment with the h2-level client, for answers that may come
        before the body is read. A server may answer early and end the rest
        of the upload with RST_STREAM(NO_ERROR) (RFC 9113 section 8.1; Go's
        HTTP/2 server does exactly that when a handler refuses without
        reading the body), which httpx reports as a LocalProtocolError
        instead of returning the response."""
        body = self.segment if body is None else body
        url = urllib.parse.urlparse(transcoder)
        hdrs = list(headers.items()) + [("content-length", str(len(body)))]
        r = raw_h2_request(url.hostname, url.port or 443, url.netloc, "POST",
                           url.path.rstrip("/") + "/segment", hdrs, body, self.timeout)
        return RawResponse(r)

    async def post_concurrently(self, transcoder, requests):
        """POST several segments at once, multiplexed on one HTTP/2
        connection as go-livepeer's shared client does. (httpx's async
        client: its sync client loses responses when threads share one
        HTTP/2 connection.) Returns [(seq, response or None, error or None,
        seconds)] in request order."""
        async with httpx.AsyncClient(http2=True, verify=False, timeout=self.timeout) as client:
            async def one(seq, headers):
                t0 = time.monotonic()
                try:
                    r = await client.post(transcoder + "/segment", content=self.segment, headers=headers)
                    return seq, r, None, time.monotonic() - t0
                except httpx.HTTPError as e:
                    return seq, None, f"{type(e).__name__}: {e}", time.monotonic() - t0
            return await asyncio.gather(*(one(seq, h) for seq, h in requests))

    def post_timed(self, transcoder, headers, body=None):
        """POST, noting when the response headers and the whole body arrived
        (seconds from the start of the request)."""
        t0 = time.monotonic()
        with self.http.stream("POST", transcoder + "/segment", content=self.segment if body is None else body,
                              headers=headers) as r:
            t_headers = time.monotonic() - t0
            r.read()
            return r, t_headers, time.monotonic() - t0

    # ---- answers --------------------------------------------------------

    @staticmethod
    def error_problems(resp, status, body=None, prefix=None, http_version="HTTP/2"):
        """What is wrong with a refusal: status, body (text + "\\n", exact or
        by prefix) and content type."""
        p = resp.problems() if isinstance(resp, RawResponse) else []
        if resp.status_code != status:
            p.append(f"status {resp.status_code}, want {status}")
        content = resp.content
        if body is not None and content != (body + "\n").encode():
            p.append(f"body {show(content)}, want {(body + chr(10))!r}")
        if prefix is not None and not (content.startswith(prefix.encode()) and content.endswith(b"\n")
                                       and len(content) > len(prefix) + 1):
            p.append(f"body {show(content)}, want {prefix!r}... ending in a newline")
        if body is None and prefix is None and (not content.strip() or not content.endswith(b"\n")):
            p.append(f"body {show(content)}, want an error text ending in a newline")
        ct = resp.headers.get("content-type")
        if ct is None or ct.replace(" ", "").lower() != ERROR_CONTENT_TYPE.replace(" ", ""):
            p.append(f"content-type {ct!r}, want {ERROR_CONTENT_TYPE!r}")
        if resp.http_version != http_version:
            p.append(f"answered over {resp.http_version}, not {http_version}")
        return p

    def result_problems(self, resp, transcoder, token, seq, names=None):
        """Parse a 200's TranscodeResult and list what is wrong with it.
        Returns (result or None, problems)."""
        names = names or [p[0] for p in PROFILES]
        p = []
        if resp.status_code != 200:
            return None, [f"status {resp.status_code} {show(resp.content)}, want 200"]
        if resp.http_version != "HTTP/2":
            p.append(f"answered over {resp.http_version}, not HTTP/2")
        result = pb.TranscodeResult()
        try:
            result.ParseFromString(resp.content)
        except Exception as e:
            return None, p + [f"the body is not a TranscodeResult ({e}): {show(resp.content)}"]
        kind = result.WhichOneof("result")
        if kind != "data":
            what = f"error {result.error!r}" if kind == "error" else "no result (UnknownResponse)"
            return result, p + [f"seq {seq}: {what}, want data"]
        if result.seq != seq:
            p.append(f"seq {result.seq}, want {seq}")
        segs = result.data.segments
        if len(segs) != len(names):
            p.append(f"{len(segs)} segments, want {len(names)}")
        for seg, name in zip(segs, names):
            want = f"{transcoder}/stream/{token.session_id}/{name}/{seq}.ts"
            if seg.url != want:
                p.append(f"url {seg.url!r}, want {want!r}")
            if seg.pixels <= 0:
                p.append(f"{name}: pixels {seg.pixels}")
        if result.data.sig:
            p.append(f"data.sig is {len(result.data.sig)} bytes, want empty offchain")
        if not result.HasField("info"):
            p.append("no info")
        elif result.info.auth_token.session_id != token.session_id:
            p.append(f"info.auth_token.session_id {result.info.auth_token.session_id!r}, "
                     f"want {token.session_id!r}")
        return result, p

    def fetch_problems(self, result, names=None):
        """GET every rendition over HTTP/2 and probe it. Returns (problems, notes)."""
        sizes = {p[0]: (p[1], p[2]) for p in PROFILES}
        problems, notes = [], []
        for seg, name in zip(result.data.segments, names or [p[0] for p in PROFILES]):
            try:
                r = self.http.get(seg.url)
            except httpx.HTTPError as e:
                problems.append(f"GET {seg.url}: {type(e).__name__}: {e}")
                continue
            if r.status_code != 200:
                problems.append(f"GET {seg.url}: status {r.status_code} {show(r.content)}")
                continue
            if r.http_version != "HTTP/2":
                problems.append(f"GET {seg.url} answered over {r.http_version}")
            try:
                codec, w, h, frames = probe(r.content)
            except (ValueError, subprocess.SubprocessError) as e:
                problems.append(f"{name}: {e}")
                continue
            if codec != "h264":
                problems.append(f"{name}: codec {codec}, want h264")
            if (w, h) != sizes.get(name, (w, h)):
                problems.append(f"{name}: {w}x{h}, want {sizes[name][0]}x{sizes[name][1]}")
            if seg.pixels != frames * w * h:
                problems.append(f"{name}: pixels {seg.pixels}, want frames {frames} x {w} x {h} = {frames * w * h}")
            notes.append(f"{name} {w}x{h} {frames} frames {len(r.content)} bytes")
        return problems, notes

    def rendition_urls_status(self, result):
        out = []
        for seg in result.data.segments:
            try:
                out.append(self.http.get(seg.url).status_code)
            except httpx.HTTPError as e:
                out.append(f"{type(e).__name__}")
        return out


# --------------------------------------------------------------------------
# The checks

def check_get_orchestrator(gw, R):
    with R.check("get-orchestrator") as c:
        try:
            info = gw.get_orchestrator()
        except grpc.RpcError as e:
            raise CheckFailed(f"GetOrchestrator failed: {e.code().name} {e.details()!r}")
        now = time.time()
        p = []
        url = urllib.parse.urlparse(info.transcoder)
        if url.scheme != "https" or not url.hostname:
            p.append(f"transcoder {info.transcoder!r} is not an https URL")
        if info.address != ZERO_ADDRESS:
            p.append(f"address {info.address.hex()!r}, want 20 zero bytes")
        if info.HasField("ticket_params"):
            p.append("ticket_params present offchain")
        if info.HasField("price_info"):
            p.append(f"price_info present offchain ({info.price_info.pricePerUnit}/{info.price_info.pixelsPerUnit})")
        if len(info.storage):
            p.append(f"{len(info.storage)} storage entries, want none")
        if not info.HasField("auth_token"):
            p.append("no auth_token")
        else:
            tok = info.auth_token
            if len(tok.token) != 32:
                p.append(f"auth_token.token is {len(tok.token)} bytes, want 32")
            if not re.fullmatch(r"[0-9a-f]{8,}", tok.session_id):
                p.append(f"session_id {tok.session_id!r} is not lowercase hex of >= 8 characters")
            if abs(tok.expiration - (now + TOKEN_LIFETIME)) > EXPIRY_SLACK:
                p.append(f"expiration {tok.expiration} is now{tok.expiration - now:+.0f} s, want now+{TOKEN_LIFETIME}")
        if not info.HasField("capabilities"):
            p.append("no capabilities")
        elif not info.capabilities.version:
            p.append("capabilities without a version")
        gw.o_caps = capability_bits(info.capabilities)
        missing = set(JOB_CAPABILITIES) - gw.o_caps
        if missing:
            p.append(f"the orchestrator does not advertise job capabilities {sorted(missing)}")
        require(p)
        c.detail = (f"transcoder {info.transcoder}, session {info.auth_token.session_id} "
                    f"({len(info.auth_token.session_id)} hex), version {info.capabilities.version}, "
                    f"capabilities {sorted(gw.o_caps)}, nodes {list(info.nodes)}")

    with R.check("get-orchestrator-new-session-ids") as c:
        try:
            a, b = gw.get_orchestrator(), gw.get_orchestrator()
        except grpc.RpcError as e:
            raise CheckFailed(f"GetOrchestrator failed: {e.code().name} {e.details()!r}")
        if a.auth_token.session_id == b.auth_token.session_id:
            raise CheckFailed(f"two calls gave the same session id {a.auth_token.session_id!r}")
        c.detail = f"{a.auth_token.session_id} != {b.auth_token.session_id}"
    gw.end_all()


def check_ping(gw, R):
    with R.check("ping") as c:
        value = secrets.token_bytes(32)
        try:
            reply = gw.rpc("Ping", pb.PingPong(value=value))
        except grpc.RpcError as e:
            raise CheckFailed(f"Ping failed: {e.code().name} {e.details()!r}")
        c.detail = f"reply value {len(reply.value)} bytes"


def check_valid_segment(gw, R):
    transcoder, tok = None, None
    resp = None
    with R.check("segment-200") as c:
        transcoder, tok = gw.session()
        headers = gw.seg_headers(gw.segdata(tok, 1))
        resp, t_headers, t_body = gw.post_timed(transcoder, headers)
        p = []
        if resp.status_code != 200:
            p.append(f"status {resp.status_code} {show(resp.content)}")
        if resp.http_version != "HTTP/2":
            p.append(f"answered over {resp.http_version}, not HTTP/2")
        require(p)
        early = "yes" if t_body - t_headers > 0.05 else "not measurably"
        c.detail = (f"200 headers after {t_headers:.3f} s, whole result after {t_body:.3f} s "
                    f"(headers before the transcode was done: {early})")
        if t_headers > GO_FIRST_BYTE_LIMIT:
            c.detail += f"; note: go-livepeer's B wants the 200 within {GO_FIRST_BYTE_LIMIT:.0f} s"
    result = None
    with R.check("segment-result") as c:
        if resp is None or resp.status_code != 200:
            raise CheckFailed("no 200 to look at")
        result, p = gw.result_problems(resp, transcoder, tok, 1)
        require(p)
        same = result.info.auth_token == tok
        c.detail = (f"{len(result.data.segments)} segments, pixels {[s.pixels for s in result.data.segments]}; "
                    f"info carries the request's whole auth_token: {same}")
    with R.check("segment-renditions") as c:
        if result is None or result.WhichOneof("result") != "data":
            raise CheckFailed("no renditions to fetch")
        p, notes = gw.fetch_problems(result)
        require(p)
        c.detail = "; ".join(notes)
    gw.end_all()


REFUSAL_CHECKS = [
    "refuse-payment-base64", "refuse-payment-protobuf", "refuse-segment-base64", "refuse-segdata-protobuf",
    "refuse-duration-negative", "refuse-duration-too-long", "refuse-profile-format", "refuse-encoder-profile",
    "refuse-video-codec", "refuse-incompatible-capabilities", "refuse-missing-auth-token",
    "refuse-auth-token-tampered", "refuse-auth-token-other-session", "refuse-auth-token-other-expiration",
    "refuse-hash-mismatch", "order-payment-before-segment", "order-duration-before-auth-token",
    "order-profile-before-capabilities", "order-capabilities-before-auth-token", "order-auth-token-before-hash",
]


def check_refusals(gw, R):
    """The spec's ordered checks that apply offchain, one fault each, then
    pairs of faults: the earlier check's answer must win."""
    try:
        transcoder, tok = gw.session()
    except CheckFailed as e:
        R.fail_all(REFUSAL_CHECKS + ["refusals-leave-session-usable"], f"no session to test with: {e}")
        return
    o_caps = gw.o_caps or set()
    extra = next((k for k in UNADVERTISED_CANDIDATES if k not in o_caps),
                 next(k for k in range(64, 128) if k not in o_caps))
    bad_caps = job_capabilities(set(JOB_CAPABILITIES) | {extra})
    not_protobuf = b"\x0a\x05ab"  # field 1, length 5, only 2 bytes: truncated
    other_hash = keccak(b"not the segment")
    seq = [100]

    def sd(**kw):
        seq[0] += 1
        return gw.segdata(kw.pop("token", tok), seq[0], **kw)

    def odd_profile(**kw):
        return [video_profile("P240p30fps16x9", 426, 240, 600_000, 30, **kw)]

    cases = [
        # name, headers, want status, exact body or None, body prefix or None
        ("refuse-payment-base64", gw.seg_headers(sd(), payment="%%%not base64%%%"), 402, None,
         "base64 decode error: "),
        ("refuse-payment-protobuf", gw.seg_headers(sd(), payment=b64(not_protobuf)), 402, None,
         "protobuf unmarshal error: "),
        ("refuse-segment-base64", gw.seg_headers("%%%not base64%%%"), 403, "ErrorSegEncoding", None),
        ("refuse-segdata-protobuf", gw.seg_headers(b64(not_protobuf)), 403, None, None),
        ("refuse-duration-negative", gw.seg_headers(sd(duration=-1)), 403, "invalid duration", None),
        ("refuse-duration-too-long", gw.seg_headers(sd(duration=MAX_DURATION_MS + 1)), 403,
         "invalid duration", None),
        ("refuse-profile-format", gw.seg_headers(sd(profiles=odd_profile(format=2), field="fullProfiles3")),
         403, "unrecognized profile output format", None),
        ("refuse-encoder-profile", gw.seg_headers(sd(profiles=odd_profile(profile=7), field="fullProfiles3")),
         403, "unrecognized encoder profile", None),
        ("refuse-video-codec", gw.seg_headers(sd(profiles=odd_profile(encoder=9), field="fullProfiles3")),
         403, "unrecognized video codec", None),
        ("refuse-incompatible-capabilities", gw.seg_headers(sd(caps=bad_caps)), 403,
         "incompatible capabilities", None),
        ("refuse-missing-auth-token", gw.seg_headers(sd(with_token=False)), 403, "missing auth token", None),
        ("refuse-auth-token-tampered", gw.seg_headers(sd(token=tampered(tok))), 403, "invalid auth token", None),
        ("refuse-auth-token-other-session", gw.seg_headers(sd(token=pb.AuthToken(
            token=tok.token, session_id=other_session_id(tok.session_id), expiration=tok.expiration))),
         403, "invalid auth token", None),
        ("refuse-auth-token-other-expiration", gw.seg_headers(sd(token=pb.AuthToken(
            token=tok.token, session_id=tok.session_id, expiration=tok.expiration + 3600))),
         403, "invalid auth token", None),
        ("refuse-hash-mismatch", gw.seg_headers(sd(media_hash=other_hash)), 403, "Forbidden", None),
        # two faults: the earlier check answers
        ("order-payment-before-segment", gw.seg_headers("%%%not base64%%%", payment="%%%not base64%%%"),
         402, None, "base64 decode error: "),
        ("order-duration-before-auth-token", gw.seg_headers(sd(duration=-1, token=tampered(tok))), 403,
         "invalid duration", None),
        ("order-profile-before-capabilities", gw.seg_headers(sd(profiles=odd_profile(format=2),
                                                                field="fullProfiles3", caps=bad_caps)),
         403, "unrecognized profile output format", None),
        ("order-capabilities-before-auth-token", gw.seg_headers(sd(caps=bad_caps, with_token=False)), 403,
         "incompatible capabilities", None),
        ("order-auth-token-before-hash", gw.seg_headers(sd(token=tampered(tok), media_hash=other_hash)), 403,
         "invalid auth token", None),
    ]
    assert [case[0] for case in cases] == REFUSAL_CHECKS
    for name, headers, status, body, prefix in cases:
        with R.check(name) as c:
            resp = gw.post_raw(transcoder, headers)
            require(gw.error_problems(resp, status, body, prefix))
            c.detail = f"{resp.status_code} {show(resp.content, 120)}{resp.note()}"
            if name == "refuse-incompatible-capabilities":
                c.detail += f" (job asked for unadvertised capability {extra})"
    # The same, with a correct request on the session, shows the session still
    # works after all those refusals (and the hash-mismatch one did not eat it).
    with R.check("refusals-leave-session-usable") as c:
        resp = gw.post(transcoder, gw.seg_headers(gw.segdata(tok, 200)))
        _, p = gw.result_problems(resp, transcoder, tok, 200)
        require(p)
        c.detail = "a valid segment on the same session afterwards: 200 with data"
    gw.end_all()


def check_big_bodies(gw, R):
    """A > 2 MB body whose headers are refused early (a tampered token): the
    complete 403 must arrive, however much of the body the server reads."""
    try:
        transcoder, tok = gw.session()
    except CheckFailed as e:
        R.fail_all(["big-body-refusal-http2", "big-body-refusal-http1.1"], f"no session to test with: {e}")
        return
    body = (gw.segment * (BIG_BODY // max(1, len(gw.segment)) + 1))[:BIG_BODY]
    headers = gw.seg_headers(gw.segdata(tampered(tok), 300, media_hash=keccak(body)))

    with R.check("big-body-refusal-http2") as c:
        resp = gw.post_raw(transcoder, headers, body)
        require(gw.error_problems(resp, 403, "invalid auth token"))
        c.detail = (f"403 {show(resp.content)} after {resp.raw['sent']} of {len(body)} body bytes sent"
                    + (f"; then RST_STREAM code {resp.raw['reset']}" if resp.raw["reset"] is not None else ""))

    with R.check("big-body-refusal-http1.1") as c:
        url = urllib.parse.urlparse(transcoder)
        r = raw_http1_post(url.hostname, url.port or 443, url.netloc, url.path.rstrip("/") + "/segment",
                           list(headers.items()), body, gw.timeout)
        p = [r["error"]] if r["error"] else []
        if r["alpn"] not in (None, "http/1.1"):
            p.append(f"ALPN chose {r['alpn']!r}, not http/1.1")
        if not r["complete"] and not r["error"]:
            p.append("no complete response")
        resp = Http1Response(r)
        p += gw.error_problems(resp, 403, "invalid auth token", http_version="HTTP/1.1")
        require(p)
        c.detail = (f"403 {show(resp.content)}; body bytes the server took before the answer was read: {r['sent']}"
                    + (f"; writing then failed with {r['write_error']}" if r["write_error"] else ""))
    gw.end_all()


def check_uri_body(gw, R):
    server = SegmentServer(gw.segment)
    try:
        try:
            transcoder, tok = gw.session()
        except CheckFailed as e:
            R.fail_all(["uri-body", "uri-body-404"], f"no session to test with: {e}")
            return
        with R.check("uri-body") as c:
            headers = gw.seg_headers(gw.segdata(tok, 1), content_type="application/vnd+livepeer.uri")
            resp = gw.post(transcoder, headers, body=server.url("/seg.ts").encode())
            result, p = gw.result_problems(resp, transcoder, tok, 1)
            require(p)
            p, notes = gw.fetch_problems(result)
            require(p)
            c.detail = f"the orchestrator fetched {server.url('/seg.ts')}; " + "; ".join(notes)
        with R.check("uri-body-404") as c:
            headers = gw.seg_headers(gw.segdata(tok, 2), content_type="application/vnd+livepeer.uri")
            resp = gw.post_raw(transcoder, headers, body=server.url("/missing.ts").encode())
            require(gw.error_problems(resp, 400, "BadRequest"))
            c.detail = f"{resp.status_code} {show(resp.content)}{resp.note()}"
    finally:
        server.close()
        gw.end_all()


def check_back_to_back(gw, R):
    try:
        transcoder, tok = gw.session()
    except CheckFailed as e:
        R.fail_all(["back-to-back-sequential", "back-to-back-concurrent"], f"no session to test with: {e}")
        return
    with R.check("back-to-back-sequential") as c:
        times, p = [], []
        for seq in range(5):
            t0 = time.monotonic()
            resp = gw.post(transcoder, gw.seg_headers(gw.segdata(tok, seq)))
            times.append(time.monotonic() - t0)
            _, q = gw.result_problems(resp, transcoder, tok, seq)
            p += q
        require(p)
        c.detail = "5 segments, each answered in " + ", ".join(f"{t:.2f}" for t in times) + " s"

    with R.check("back-to-back-concurrent") as c:
        seqs = [5, 6, 7]
        answers = asyncio.run(gw.post_concurrently(transcoder, [(seq, gw.seg_headers(gw.segdata(tok, seq)))
                                                               for seq in seqs]))
        p, notes = [], []
        for seq, resp, err, took in answers:
            if err:
                p.append(f"seq {seq}: {err}")
                continue
            result, q = gw.result_problems(resp, transcoder, tok, seq)
            if result is not None and result.WhichOneof("result") == "error" and result.error == "OrchestratorBusy":
                q = [f"seq {seq}: OrchestratorBusy with only {len(seqs)} segments waiting "
                     f"(the queue holds {QUEUE_DEPTH})"]
            p += q
            notes.append(f"seq {seq} {took:.2f} s")
        require(p)
        c.detail = "3 concurrent segments on one HTTP/2 connection, all answered with data: " + ", ".join(notes)
    gw.end_all()


CAP_MPEG7_SIGNATURE = 14               # MPEG7VideoSignature (ot-protocol.md)


def perceptual_hash_problems(name, rendition: bytes, phash: bytes, verbose=False):
    """Judge one rendition's perceptual hash: an FFmpeg binary MPEG-7
    signature of the rendition's own frames (size and frame count by
    ffprobe), close to the ffmpeg CLI's signature of the decoded rendition
    (mean per-frame L1 < SIG_MATCH_MEAN_L1) and far from the signature of
    different (synthetic) content of the same size and length.
    Returns (problems, note)."""
    try:
        sig = parse_video_signature(phash)
    except SignatureError as e:
        return [f"{name}: the .phash ({len(phash)} bytes) is no FFmpeg binary signature: {e}"], ""
    with tempfile.NamedTemporaryFile(suffix=".ts") as f:
        f.write(rendition)
        f.flush()
        try:
            _codec, w, h, frames = probe(rendition)
            ref = parse_video_signature(cli_signature(["-i", f.name]))
            control = parse_video_signature(cli_signature(
                ["-f", "lavfi", "-i", SIG_CONTROL_SOURCE.format(w=w, h=h), "-frames:v", str(max(1, frames))]))
        except (ValueError, subprocess.SubprocessError) as e:  # SignatureError is a ValueError
            return [f"{name}: cannot make the reference signatures: {e}"], ""
    p = []
    if (sig.width, sig.height) != (w, h):
        p.append(f"{name}: the signature is of {sig.width}x{sig.height} frames (PixelX2+1 x PixelY2+1), "
                 f"the rendition is {w}x{h}")
    if abs(sig.num_frames - frames) > 1:
        p.append(f"{name}: the signature has {sig.num_frames} frames, the rendition {frames} (ffprobe)")
    if abs(sig.num_frames - ref.num_frames) > 1:
        p.append(f"{name}: the signature has {sig.num_frames} frames, the CLI's of the rendition {ref.num_frames}")
    matched = signature_distances(sig, ref)
    unrelated = signature_distances(sig, control)
    m_mean, c_mean = mean(matched), mean(unrelated)
    if verbose:
        log(f"perceptual-hash {name}: per-frame L1 to the CLI signature of the rendition: {matched}")
        log(f"perceptual-hash {name}: per-frame L1 to the control ({SIG_CONTROL_SOURCE.format(w=w, h=h)}): "
            f"{unrelated}")
    if not matched:
        p.append(f"{name}: no frames to compare")
    elif not m_mean < SIG_MATCH_MEAN_L1:
        p.append(f"{name}: mean per-frame L1 distance to the CLI's signature of the rendition {m_mean:.1f}, "
                 f"want < {SIG_MATCH_MEAN_L1:.0f} (of {SIG_MAX_L1}; max {max(matched)} over {len(matched)} frames; "
                 f"control {c_mean:.1f})")
    elif not (c_mean > SIG_CONTROL_FACTOR * m_mean and c_mean > SIG_MATCH_MEAN_L1):
        p.append(f"{name}: the control does not separate: mean L1 to different content {c_mean:.1f}, "
                 f"to the rendition's own {m_mean:.1f} (want > {SIG_CONTROL_FACTOR:.0f}x and > "
                 f"{SIG_MATCH_MEAN_L1:.0f})")
    note = (f"{name} {w}x{h} {frames} frames: phash {sig.length} bytes, {sig.num_frames} frames, "
            f"mean L1 {m_mean:.1f} (max {max(matched, default=0)}) to the CLI's, {c_mean:.1f} to the control")
    return p, note


def check_perceptual_hash(gw, R):
    """A segment with calc_perceptual_hash and capability 14: every rendition
    comes with url + ".phash", an FFmpeg binary MPEG-7 signature of it."""
    with R.check("perceptual-hash") as c:
        try:
            info = gw.get_orchestrator()
        except grpc.RpcError as e:
            raise CheckFailed(f"GetOrchestrator failed: {e.code().name} {e.details()!r}")
        except (OSError, ssl.SSLError) as e:
            raise CheckFailed(f"cannot reach {gw.host}:{gw.port}: {type(e).__name__}: {e}")
        if not info.transcoder or not info.HasField("auth_token"):
            raise CheckFailed("GetOrchestrator gave no transcoder or no auth_token")
        o_caps = capability_bits(info.capabilities)
        if CAP_MPEG7_SIGNATURE not in o_caps:
            raise CheckFailed(f"the orchestrator does not advertise capability {CAP_MPEG7_SIGNATURE} "
                              f"(MPEG7VideoSignature): it advertises {sorted(o_caps)}")
        transcoder, tok = info.transcoder.rstrip("/"), info.auth_token
        sd = gw.segdata(tok, 1, caps=job_capabilities(set(JOB_CAPABILITIES) | {CAP_MPEG7_SIGNATURE}))
        sd.calc_perceptual_hash = True
        resp = gw.post(transcoder, gw.seg_headers(sd))
        result, p = gw.result_problems(resp, transcoder, tok, 1)
        require(p)
        names = [prof[0] for prof in PROFILES]
        for seg, name in zip(result.data.segments, names):
            if seg.perceptual_hash_url != seg.url + ".phash":
                p.append(f"{name}: perceptual_hash_url {seg.perceptual_hash_url!r}, want {seg.url + '.phash'!r}")
        require(p)
        notes = []
        for seg, name in zip(result.data.segments, names):
            bodies = []
            for url in (seg.url, seg.perceptual_hash_url):
                try:
                    r = gw.http.get(url)
                except httpx.HTTPError as e:
                    p.append(f"GET {url}: {type(e).__name__}: {e}")
                    break
                if r.status_code != 200:
                    p.append(f"GET {url}: status {r.status_code} {show(r.content)}")
                    break
                if r.http_version != "HTTP/2":
                    p.append(f"GET {url} answered over {r.http_version}")
                bodies.append(r.content)
            if len(bodies) == 2:
                q, note = perceptual_hash_problems(name, bodies[0], bodies[1], getattr(gw.args, "verbose", False))
                p += q
                if note:
                    notes.append(note)
        require(p)
        c.detail = (f"threshold: mean per-frame L1 < {SIG_MATCH_MEAN_L1:.0f} of {SIG_MAX_L1}; " + "; ".join(notes))
    gw.end_all()


CAPACITY_CHECKS = ["capacity-open-sessions", "capacity-segment-capped", "capacity-get-orchestrator-capped",
                   "end-session", "end-session-renditions-gone", "capacity-freed-after-end",
                   "end-session-wrong-token", "end-session-no-token", "end-session-all"]


def check_capacity(gw, R):
    """N = --max-sessions sessions open (one segment each): a further
    session's segment and GetOrchestrator are refused; ending one session
    frees its place and its renditions. Needs nothing else open."""
    n = gw.args.max_sessions
    gw.end_all()
    sessions = []  # (transcoder, token); the last one is the "further" session
    with R.check("capacity-setup") as c:
        # All N + 1 sessions are obtained first: GetOrchestrator is refused
        # once N are open. In go-livepeer a session counts once it has had a
        # segment; a token alone does not reserve a place.
        for i in range(n + 1):
            try:
                sessions.append(gw.session())
            except CheckFailed as e:
                raise CheckFailed(f"GetOrchestrator {i + 1} of {n + 1}, with no session open: {e}")
        c.detail = f"{n + 1} sessions obtained before any was opened (max sessions {n})"
    if len(sessions) < n + 1:
        R.fail_all(CAPACITY_CHECKS, "capacity-setup failed")
        gw.end_all()
        return
    opened = {}  # index -> TranscodeResult of its first segment
    with R.check("capacity-open-sessions") as c:
        p = []
        for i, (transcoder, tok) in enumerate(sessions[:n]):
            resp = gw.post(transcoder, gw.seg_headers(gw.segdata(tok, 0)))
            result, q = gw.result_problems(resp, transcoder, tok, 0)
            if q:
                p.append(f"session {i + 1} of {n}: " + "; ".join(q))
            else:
                opened[i] = result
        require(p)
        c.detail = f"{n} sessions opened, one segment each"
    extra_transcoder, extra_tok = sessions[n]
    with R.check("capacity-segment-capped") as c:
        resp = gw.post_raw(extra_transcoder, gw.seg_headers(gw.segdata(extra_tok, 0)))
        require(gw.error_problems(resp, 403, "OrchestratorCapped"))
        c.detail = f"{resp.status_code} {show(resp.content)}{resp.note()}"
    with R.check("capacity-get-orchestrator-capped") as c:
        try:
            info = gw.get_orchestrator()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNKNOWN or e.details() != CAPPED_GRPC:
                raise CheckFailed(f"{e.code().name} {e.details()!r}, want UNKNOWN {CAPPED_GRPC!r}")
            c.detail = f"UNKNOWN {e.details()!r}"
        else:
            raise CheckFailed(f"GetOrchestrator succeeded (session {info.auth_token.session_id!r}) "
                              f"with {n} sessions open")
    first_tok = sessions[0][1]
    ended = False
    with R.check("end-session") as c:
        try:
            gw.end_session(first_tok)
        except grpc.RpcError as e:
            raise CheckFailed(f"EndTranscodingSession failed: {e.code().name} {e.details()!r}")
        ended = True
        gw.tokens.pop(first_tok.session_id, None)
        c.detail = f"session {first_tok.session_id} ended"
    with R.check("end-session-renditions-gone") as c:
        if not ended or 0 not in opened:
            raise CheckFailed("no ended session with renditions to look at")
        t0 = time.monotonic()
        while True:
            statuses = gw.rendition_urls_status(opened[0])
            if all(s == 404 for s in statuses) or time.monotonic() - t0 > 2.0:
                break
            time.sleep(0.1)
        if not all(s == 404 for s in statuses):
            raise CheckFailed(f"rendition GETs answered {statuses} 2 s after EndTranscodingSession, want 404")
        c.detail = f"renditions 404 ({time.monotonic() - t0:.2f} s after the end)"
    with R.check("capacity-freed-after-end") as c:
        resp = gw.post(extra_transcoder, gw.seg_headers(gw.segdata(extra_tok, 0)))
        result, p = gw.result_problems(resp, extra_transcoder, extra_tok, 0)
        require(p)
        opened[n] = result
        c.detail = "the further session's segment, refused before: 200 with data"
    with R.check("end-session-wrong-token") as c:
        # An open session other than the ended one: the 2nd, or the further one.
        victim = 1 if n >= 2 else n
        try:
            gw.end_session(tampered(sessions[victim][1]))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNKNOWN or e.details() != "Invalid auth token":
                raise CheckFailed(f"{e.code().name} {e.details()!r}, want UNKNOWN 'Invalid auth token'")
        else:
            raise CheckFailed("EndTranscodingSession with a tampered token succeeded")
        c.detail = "UNKNOWN 'Invalid auth token'"
        if victim in opened:
            statuses = gw.rendition_urls_status(opened[victim])
            if not all(s == 200 for s in statuses):
                raise CheckFailed(f"after the refused end, the session's renditions answer {statuses}, want 200")
            c.detail += "; the session's renditions are still served"
    with R.check("end-session-no-token") as c:
        try:
            gw.rpc("EndTranscodingSession", pb.EndTranscodingSessionRequest())
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise CheckFailed(f"{e.code().name} {e.details()!r}, want INVALID_ARGUMENT")
            c.detail = f"INVALID_ARGUMENT {e.details()!r}"
        else:
            raise CheckFailed("EndTranscodingSession without auth_token succeeded")
    with R.check("end-session-all") as c:
        count = len(gw.tokens)
        require(gw.end_all())
        c.detail = f"EndTranscodingSession succeeded for the {count} other sessions of this check"


def run_checks(args):
    load_stubs()
    gw = Gateway(args)
    R = Runner()
    groups = [check_get_orchestrator, check_ping, check_valid_segment, check_refusals, check_big_bodies,
              check_uri_body, check_back_to_back, check_perceptual_hash,
              check_capacity]  # last: it fills the orchestrator
    try:
        for group in groups:
            try:
                group(gw, R)
            except Exception as e:  # noqa: BLE001 - a fault outside any single check
                R.record(f"{group.__name__.replace('_', '-')}-internal", False,
                         f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    finally:
        try:
            gw.end_all(quiet=False)
        except Exception as e:  # noqa: BLE001 - never hide the results
            log(f"ending sessions failed: {e}")
        gw.http.close()
    if args.report:
        with open(args.report, "w") as f:
            json.dump(R.results, f, indent=1)
    failed = [r["name"] for r in R.results if not r["ok"]]
    log(f"{len(R.results) - len(failed)} of {len(R.results)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 0 if not failed and R.results else 1


# --------------------------------------------------------------------------
# selftest: this file's encodings against shared/vectors/bo-vectors.json

def run_selftest(args):
    from eth_account import Account
    from eth_account.messages import encode_defunct

    load_stubs()
    V = json.load(open(args.vectors))
    R = Runner()
    hx = lambda s: bytes.fromhex(s[2:] if s.startswith("0x") else s)  # noqa: E731

    with R.check("selftest-auth-token") as c:
        p = []
        for case in V["auth_token"]["cases"]:
            key, sid, exp = hx(case["secret"]), case["session_id"], case["expiration"]
            msg = sid.encode() + big_bytes(exp)
            if msg != hx(case["message_hex"]):
                p.append(f"message {msg.hex()} != {case['message_hex']}")
            token = auth_token_hmac(key, sid, exp)
            if token != hx(case["token"]):
                p.append(f"token {token.hex()} != {case['token']}")
            if "AuthToken_protobuf_hex" in case:
                raw = pb.AuthToken(token=token, session_id=sid, expiration=exp).SerializeToString()
                if raw != hx(case["AuthToken_protobuf_hex"]):
                    p.append(f"AuthToken protobuf {raw.hex()} != {case['AuthToken_protobuf_hex']}")
        require(p)
        c.detail = f"{len(V['auth_token']['cases'])} cases"

    broadcaster = V["keys"]["broadcaster"]
    tok_case = V["auth_token"]["cases"][0]
    vec_token = pb.AuthToken(token=hx(tok_case["token"]), session_id=tok_case["session_id"],
                             expiration=tok_case["expiration"])
    with R.check("selftest-segdata-sig") as c:
        p = []
        for seg in V["segdata_sig"]["segments"]:
            label = seg["label"]
            body = hx(seg["segment_body_hex"])
            h = keccak(body)
            if h != hx(seg["hash_keccak256_body"]):
                p.append(f"{label}: hash")
            names = seg["profile_names"]
            if b"".join(profile_hex(n) for n in names).decode() != seg["profiles_hex_ascii"]:
                p.append(f"{label}: profile hex")
            pre = segment_preimage(seg["manifestId_ascii"].encode(), seg["seq"], h, names)
            if pre != hx(seg["preimage_hex"]):
                p.append(f"{label}: preimage {pre.hex()} != {seg['preimage_hex']}")
            if keccak(pre) != hx(seg["keccak256_msg"]):
                p.append(f"{label}: keccak256(preimage)")
            signed = Account.sign_message(encode_defunct(primitive=keccak(pre)), private_key=broadcaster["private_key"])
            if bytes(signed.signature) != hx(seg["sig"]):
                p.append(f"{label}: Sign(P) {bytes(signed.signature).hex()} != {seg['sig']}")
            if bytes(signed.message_hash) != hx(seg["eip191_digest"]):
                p.append(f"{label}: EIP-191 digest")
        require(p)
        c.detail = f"{len(V['segdata_sig']['segments'])} preimages and signatures"

    with R.check("selftest-segdata-protobuf") as c:
        p = []
        sizes = {"P720p30fps16x9": (1280, 720, 4_000_000), "P360p30fps16x9": (640, 360, 1_200_000),
                 "P240p30fps16x9": (426, 240, 600_000)}
        for seg in V["segdata_sig"]["segments"]:
            label = seg["label"]
            key = next(k for k in seg if k.startswith("SegData_protobuf_hex"))
            field = "fullProfiles3" if "fullProfiles3" in seg["label"] else "fullProfiles"
            extra = {"profile": pb.VideoProfile.H264_HIGH, "gop": 2000} if field == "fullProfiles3" else {}
            profiles = [video_profile(n, *sizes[n], 30, **extra) for n in seg["profile_names"]]
            sd = pb.SegData(manifestId=seg["manifestId_ascii"].encode(), seq=seg["seq"],
                            hash=hx(seg["hash_keccak256_body"]), profiles=b"invalid", sig=hx(seg["sig"]),
                            duration=2000, auth_token=vec_token)
            getattr(sd, field).extend(profiles)
            raw = sd.SerializeToString()
            if raw != hx(seg[key]):
                back = pb.SegData()
                back.ParseFromString(hx(seg[key]))
                p.append(f"{label}: SegData {raw.hex()} != {seg[key]} (vector parses as {back})")
            elif b64(raw) != seg["Livepeer-Segment_header"]:
                p.append(f"{label}: Livepeer-Segment header")
        require(p)
        c.detail = "SegData bytes and Livepeer-Segment headers reproduced"

    with R.check("selftest-orchestrator-request") as c:
        v = V["orchestrator_request_sig"]
        addr = hx(broadcaster["address"])
        signed = Account.sign_message(encode_defunct(primitive=keccak(v["signed_message_ascii"].encode())),
                                      private_key=broadcaster["private_key"])
        raw = pb.OrchestratorRequest(address=addr, sig=bytes(signed.signature)).SerializeToString()
        p = []
        if bytes(signed.signature) != hx(v["sig"]):
            p.append("signature")
        if raw != hx(v["OrchestratorRequest_protobuf_without_capabilities"]):
            p.append(f"OrchestratorRequest {raw.hex()}")
        offchain = pb.OrchestratorRequest(address=ZERO_ADDRESS, capabilities=job_capabilities()).SerializeToString()
        want = bytes.fromhex("0a14" + "00" * 20 + "1a06" + "0a02" + "8320" + "2a00")
        if offchain != want:
            p.append(f"offchain request {offchain.hex()} != {want.hex()}")
        require(p)
        c.detail = f"offchain request with job capabilities: {offchain.hex()}"

    with R.check("selftest-capabilities") as c:
        p = []
        if capability_words(JOB_CAPABILITIES) != [0x1003]:
            p.append(f"job words {capability_words(JOB_CAPABILITIES)}")
        if capability_words(list(range(13)) + [14, 26]) != [0x4005FFF]:
            p.append("go-livepeer default set is not [0x4005FFF]")
        if capability_bits(pb.Capabilities(bitstring=[0x1003, 1])) != {0, 1, 12, 64}:
            p.append("capability_bits")
        require(p)
        c.detail = "job bitstring [0x1003]"

    with R.check("selftest-payment") as c:
        v = V["payment"]
        raw = hx(v["Payment_protobuf_hex"])
        pay = pb.Payment()
        pay.ParseFromString(raw)
        p = []
        if pay.SerializeToString() != raw:
            p.append("Payment does not round-trip")
        if b64(raw) != v["Livepeer-Payment_header"]:
            p.append("Livepeer-Payment header")
        fields_ok = (pay.sender == hx(broadcaster["address"])
                     and pay.ticket_params.recipient == hx(V["keys"]["orchestrator"]["address"])
                     and (pay.expected_price.pricePerUnit, pay.expected_price.pixelsPerUnit) == (1200, 1000)
                     and pay.expiration_params.creation_round == 3500
                     and [t.sender_nonce for t in pay.ticket_sender_params] == [1, 2]
                     and not pay.ticket_params.HasField("expiration_params"))
        if not fields_ok:
            p.append(f"Payment fields decode wrongly: {pay}")
        try:
            pb.Payment().ParseFromString(b"\x0a\x05ab")
            p.append("the not-protobuf bytes parse")
        except Exception:
            pass
        require(p)
        c.detail = "Payment layout round-trips; the refusal check's bytes are not protobuf"

    with R.check("selftest-transcode-result") as c:
        v = V["transcode_result_sig"]
        key = next(k for k in v if k.startswith("TranscodeResult_protobuf_hex"))
        raw = hx(v[key])
        res = pb.TranscodeResult()
        res.ParseFromString(raw)
        p = []
        if res.SerializeToString() != raw:
            p.append("TranscodeResult does not round-trip")
        if res.seq != 7 or res.WhichOneof("result") != "data" or len(res.data.segments) != 2:
            p.append(f"decodes wrongly: {res}")
        if res.data.segments[0].url != "https://127.0.0.1:8935/stream/a1b2c3d4/P720p30fps16x9/7.ts":
            p.append(f"url {res.data.segments[0].url!r}")
        seg_hash = keccak(b"".join(keccak(hx(r)) for r in v["renditions_hex"]))
        signer = Account.recover_message(encode_defunct(primitive=seg_hash), signature=res.data.sig)
        if signer != v["signer"]:
            p.append(f"TranscodeData.sig recovers to {signer}")
        require(p)
        c.detail = f"pixels {[s.pixels for s in res.data.segments]}, sig by {signer}"

    with R.check("selftest-http1-parser") as c:
        p = []
        ok, st, h, b = parse_http1_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 19\r\n\r\ninvalid auth token\n", False)
        if not (ok and st == 403 and b == b"invalid auth token\n"):
            p.append("content-length")
        ok, st, h, b = parse_http1_response(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 X\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ninval\r\n0e\r\nid auth token\n\r\n0\r\n\r\n", False)
        if not (ok and st == 403 and b == b"invalid auth token\n"):
            p.append(f"chunked {ok} {st} {b!r}")
        require(p)

    selftest_signatures(R)
    failed = [r for r in R.results if not r["ok"]]
    return 1 if failed else 0


def _with_bits(data: bytes, pos: int, n: int, value: int) -> bytes:
    """data with the n bits at bit offset pos (MSB first) replaced by value."""
    total = len(data) * 8
    shift = total - pos - n
    whole = int.from_bytes(data, "big")
    whole = whole & ~(((1 << n) - 1) << shift) | (value << shift)
    return whole.to_bytes(len(data), "big")


def selftest_signatures(R):
    """The signature parser and distance against the ffmpeg CLI."""
    work = tempfile.mkdtemp(prefix="bo_gateway_sigtest_")

    def ffmpeg(*a):
        run = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *a], capture_output=True, timeout=120)
        if run.returncode != 0:
            raise CheckFailed(f"ffmpeg {' '.join(a)}: {run.stderr.decode(errors='replace').strip()[-300:]}")

    try:
        with R.check("selftest-signature-parser") as c:
            frames, w, h = 50, 320, 180
            raw = cli_signature(["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30", "-frames:v", str(frames)])
            sig = parse_video_signature(raw)
            p = []
            if (sig.width, sig.height, sig.num_frames, len(sig.frames)) != (w, h, frames, frames):
                p.append(f"parsed {sig.width}x{sig.height}, {sig.num_frames} / {len(sig.frames)} frames, "
                         f"want {w}x{h}, {frames}")
            if sig.num_segments != (frames + 44) // 45:
                p.append(f"{sig.num_segments} segments, want {(frames + 44) // 45}")
            want_len = (SIG_HEADER_BITS + sig.num_segments * SIG_SEGMENT_BITS + 1 + frames * SIG_FRAME_BITS + 7) // 8
            if len(raw) != want_len:
                p.append(f"{len(raw)} bytes, want {want_len}")
            if any(len(f[3]) != SIG_ELEMENTS or max(f[3]) > 2 for f in sig.frames):
                p.append("a frame without 380 ternary elements")
            if [f[0] for f in sig.frames] != sorted({f[0] for f in sig.frames}):
                p.append("frame pts not strictly increasing")
            if signature_distances(sig, sig) != [0] * frames:
                p.append("a signature is not at distance 0 from itself")
            # NumOfFrames sits at bit 129, NumOfSpatialRegions at 0; frame 0's
            # FrameSignature starts after the header, segments, compression
            # flag, and frame 0's flag, pts, confidence and words.
            sig0 = SIG_HEADER_BITS + sig.num_segments * SIG_SEGMENT_BITS + 1 + 1 + 32 + 8 + 40
            xml = os.path.join(work, "sig.xml")
            ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30", "-frames:v", "5",
                   "-vf", f"signature=format=xml:filename={xml}", "-f", "null", "-")
            bad = {"truncated by 1 byte": raw[:-1], "truncated to 20 bytes": raw[:20],
                   "truncated mid-frame": raw[:len(raw) // 2], "empty": b"",
                   "1 byte appended": raw + b"\x00", "NumOfFrames 0xFFFFFFFF": _with_bits(raw, 129, 32, 0xFFFFFFFF),
                   "NumOfFrames + 1": _with_bits(raw, 129, 32, frames + 1),
                   "NumOfSpatialRegions 2": _with_bits(raw, 0, 32, 2),
                   "FrameSignature byte 255": _with_bits(raw, sig0, 8, 255),
                   "the XML export": open(xml, "rb").read()}
            refusals = []
            for label, data in bad.items():
                try:
                    parse_video_signature(data)
                    p.append(f"{label}: parsed")
                except SignatureError as e:
                    refusals.append(f"{label}: {e}")
                except Exception as e:  # noqa: BLE001 - must be a clear refusal, not a trace
                    p.append(f"{label}: {type(e).__name__} {e} instead of SignatureError")
            require(p)
            for line in refusals:
                log(f"selftest-signature-parser refuses {line}")
            c.detail = (f"{w}x{h} {frames} frames, {sig.num_segments} segments, {len(raw)} bytes; "
                        f"{len(refusals)} malformed inputs refused")

        with R.check("selftest-signature-distance") as c:
            # A stand-in for an orchestrator: the source scaled, signed before
            # encoding (as LPMS does), encoded with x264; then judged as the
            # perceptual-hash check judges a rendition and its .phash.
            notes, p = [], []
            renditions = {}
            for source in ("testsrc", "smptebars", "testsrc2"):
                src = os.path.join(work, f"{source}.ts")
                ffmpeg("-f", "lavfi", "-i", f"{source}=size=640x360:rate=30", "-frames:v", "60",
                       "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts", src)
                for name, pw, ph, bitrate, fps in PROFILES:
                    pre, out = os.path.join(work, f"{source}_{name}.bin"), os.path.join(work, f"{source}_{name}.ts")
                    ffmpeg("-i", src, "-map", "0:v:0", "-vf", f"fps={fps},scale={pw}:{ph},signature=filename={pre}",
                           "-c:v", "libx264", "-b:v", str(bitrate), "-f", "mpegts", out)
                    renditions[source, name] = (open(out, "rb").read(), open(pre, "rb").read())
                    q, note = perceptual_hash_problems(f"{source}/{name}", *renditions[source, name])
                    p += q
                    notes.append(note)
            # Negative cases: another video's hash, and a hash of another size.
            (r_a, _), (_, h_b) = renditions["testsrc", PROFILES[0][0]], renditions["testsrc2", PROFILES[0][0]]
            q, note = perceptual_hash_problems("testsrc rendition, testsrc2 hash", r_a, h_b)
            if not any("mean per-frame L1" in x for x in q):
                p.append(f"a testsrc2 hash for a testsrc rendition is not refused by distance: {q} {note}")
            else:
                log(f"selftest-signature-distance: refused as it should be: {q[0]}")
            (_, h_small) = renditions["testsrc", PROFILES[1][0]]
            q, _ = perceptual_hash_problems("426x240 rendition, 256x144 hash", r_a, h_small)
            if not any("256x144 frames" in x for x in q):
                p.append(f"a 256x144 hash for a 426x240 rendition is not refused by size: {q}")
            require(p)
            c.detail = "; ".join(notes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("checks", help="check an orchestrator")
    c.add_argument("--orch", required=True, help="HOST:PORT of the orchestrator (gRPC + HTTP, TLS)")
    c.add_argument("--segment", required=True, help="a ~2 s MPEG-TS H.264 (+AAC) segment, 30 fps")
    c.add_argument("--max-sessions", type=int, required=True, help="the orchestrator's session capacity")
    c.add_argument("--report", help="write the JSON report here")
    c.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds (30)")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="also log per-frame signature distances (perceptual-hash) to stderr")
    s = sub.add_parser("selftest", help="check this file's encodings against the vectors")
    s.add_argument("--vectors", default=VECTORS)
    args = ap.parse_args(argv)
    if args.cmd == "checks":
        if args.max_sessions < 1:
            ap.error("--max-sessions must be >= 1")
        return run_checks(args)
    return run_selftest(args)


if __name__ == "__main__":
    sys.exit(main())
