#!/usr/bin/env python3
"""An independent go-livepeer-style *offchain orchestrator* for the
broadcaster <-> orchestrator wire, written from shared/spec/bo-protocol.md
(and the VideoProfile / Capabilities tables of shared/spec/ot-protocol.md)
alone. It shares no code with lpgpu; it is the peer a broadcaster under test
(`lpgpu broadcast --orch-addr ...`) talks to.

One TLS port (self-signed ECDSA P-256 certificate made at every start, ALPN
h2 and http/1.1) carries, like go-livepeer's service port:
  * gRPC (HTTP/2 requests whose content-type starts with application/grpc),
    framed by hand with the `h2` library:
      /net.Orchestrator/GetOrchestrator, /net.Orchestrator/EndTranscodingSession,
      /net.Orchestrator/Ping
    every failure is grpc-status UNKNOWN (2) with the error text;
  * HTTP routes (HTTP/2 or HTTP/1.1): POST /segment and
    GET /stream/<session>/<profile>/<seq>.ts|.mp4 (+ ".phash").

Usage:
  bo_orchestrator.py --listen HOST:PORT [--max-sessions N] [--log FILE]
                     [--fail SEQ:TEXT]... [--secret-file F]
                     [--service-uri URI] [--orch-version V] [--cert-out FILE] [-v]
  bo_orchestrator.py selftest

It prints exactly one line `listening on https://HOST:PORT` on stdout once it
accepts connections; logs go to stderr. With --log it appends one JSON line
per event (flushed at once, so a SIGKILL loses nothing):
  {"event": "get_orchestrator", "session": id|null, "ok": bool, "error": text|null}
  {"event": "segment", "session": id|null, "manifest": text|hex|null, "seq": N|null,
   "status": http status, "result": "data"|"error", "error": text|null,
   "profiles": [names]}
  {"event": "end_session", "session": id|null, "ok": bool, "error": text|null}
  {"event": "stream_get", "path": path, "status": http status}
(each line also has "time", unix seconds as a float).

--fail SEQ:TEXT (repeatable): a segment with that seq (any session) is
answered 200 and then TranscodeResult{error: TEXT} instead of being
transcoded. --secret-file F: the 32-byte HMAC key for auth tokens, as hex,
instead of a fresh random one (a restart with the same file keeps tokens
valid; without it a restart voids every token, as with go-livepeer).
"""

import argparse
import asyncio
import base64
import collections
import concurrent.futures
import hashlib
import hmac
import importlib
import json
import logging
import os
import random
import re
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "bo_orchestrator_net.proto")
PYTHON = sys.executable

log = logging.getLogger("bo_orchestrator")

# Capabilities (ot-protocol.md numbers). go-livepeer's default set {0-12, 14, 26}.
DEFAULT_CAPS = list(range(0, 13)) + [14, 26]
MAX_SEGMENT_BYTES = 300_000_000
MAX_DURATION_MS = 300_000
TOKEN_LIFETIME_S = 30 * 60
SESSION_IDLE_S = 70
QUEUE_WAITING = 4            # a session's queue holds 4 waiting segments
RING = 12                    # renditions kept per session and profile
URI_CONTENT_TYPE = "application/vnd+livepeer.uri"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

GRPC_OK, GRPC_UNKNOWN, GRPC_INVALID_ARGUMENT, GRPC_INTERNAL, GRPC_UNIMPLEMENTED = 0, 2, 3, 13, 12


# --------------------------------------------------------------------------
# Protobuf messages, generated at run time

def load_messages():
    """Compile bo_orchestrator_net.proto with grpc_tools.protoc into a
    temporary cache directory keyed by the proto's hash, and import it."""
    from grpc_tools import protoc

    source = open(PROTO, "rb").read()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"bo_orchestrator_pb_{digest}")
    if not os.path.exists(os.path.join(cache, "bo_orchestrator_net_pb2.py")):
        work = tempfile.mkdtemp(prefix="bo_orchestrator_pb_build_")
        well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        code = protoc.main(["protoc", f"-I{HERE}", f"-I{well_known}", f"--python_out={work}", PROTO])
        if code != 0:
            raise SystemExit(f"protoc failed with {code}")
        try:
            os.rename(work, cache)
        except OSError:   # another process won the race
            shutil.rmtree(work, ignore_errors=True)
    if cache not in sys.path:
        sys.path.insert(0, cache)
    return importlib.import_module("bo_orchestrator_net_pb2")


pb = None


# --------------------------------------------------------------------------
# Small pieces of the protocol

def keccak256(data):
    from Crypto.Hash import keccak
    return keccak.new(digest_bits=256, data=bytes(data)).digest()


def big_bytes(n):
    """big.Int.Bytes(): absolute value, minimal big-endian, empty for 0."""
    n = abs(int(n))
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def auth_token_hmac(key, session_id, expiration):
    return hmac.new(key, session_id.encode("utf-8") + big_bytes(expiration), hashlib.sha256).digest()


class CorruptInputError(ValueError):
    def __init__(self, offset):
        super().__init__(f"illegal base64 data at input byte {offset}")


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_MAP = {c: i for i, c in enumerate(_B64_ALPHABET)}


def go_b64decode(src):
    """Go's base64.StdEncoding.DecodeString, including its error offsets
    (CR and LF are skipped; padding is required; non-strict)."""
    if isinstance(src, str):
        src = src.encode("latin-1", "replace")
    out = bytearray()
    si, n = 0, len(src)
    while si < n:
        dbuf = [0, 0, 0, 0]
        dlen, j, err, padded = 4, 0, None, False
        while j < 4:
            if si == n:
                if j == 0:
                    return bytes(out)
                raise CorruptInputError(si - j)
            ch = src[si]
            si += 1
            v = _B64_MAP.get(ch)
            if v is not None:
                dbuf[j] = v
                j += 1
                continue
            if ch in (10, 13):
                continue
            if ch != 61:    # '='
                raise CorruptInputError(si - 1)
            if j in (0, 1):
                raise CorruptInputError(si - 1)
            if j == 2:
                while si < n and src[si] in (10, 13):
                    si += 1
                if si == n:
                    raise CorruptInputError(n)
                if src[si] != 61:
                    raise CorruptInputError(si - 1)
                si += 1
            while si < n and src[si] in (10, 13):
                si += 1
            if si < n:
                err = CorruptInputError(si)
            dlen, padded = j, True
            break
        val = dbuf[0] << 18 | dbuf[1] << 12 | dbuf[2] << 6 | dbuf[3]
        out += bytes([(val >> 16) & 255, (val >> 8) & 255, val & 255][:dlen - 1])
        if err is not None:
            raise err
        if padded:
            break
    return bytes(out)


def decode_bits(words):
    return [64 * w + b for w, word in enumerate(words) for b in range(64) if word >> b & 1]


def encode_bits(numbers):
    words = [0] * (max(numbers) // 64 + 1) if numbers else []
    for k in numbers:
        words[k // 64] |= 1 << (k % 64)
    return words


_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def parse_version(text):
    m = _SEMVER.match(text.strip())
    if not m:
        return None
    nums = tuple(int(x or 0) for x in m.group(1, 2, 3))
    pre = m.group(4)
    # A pre-release sorts before its release.
    return nums + ((0, pre) if pre else (1, ""),)


def manifest_text(raw):
    try:
        text = raw.decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return raw.hex()


def grpc_percent_encode(message):
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}"
                   for b in message.encode("utf-8"))


def profile_name(p):
    return p.name or f"net_{p.width}x{p.height}_{p.bitrate}"


# --------------------------------------------------------------------------
# TLS

def make_certificate(directory, host):
    """Self-signed ECDSA P-256 certificate like go-livepeer's (128-bit random
    serial, ~8765 h, CA, CertSign + DigitalSignature, ServerAuth), naming the
    service host, localhost and 127.0.0.1."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    names = ["DNS:localhost", "IP:127.0.0.1"]
    if host and host not in ("localhost", "127.0.0.1"):
        if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", host):
            names.append(f"IP:{host}")
        else:
            names.append(f"DNS:{host}")
    cn = host if host and not re.fullmatch(r"[0-9a-fA-F:.]+", host) else "localhost"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "366", "-subj", f"/CN={cn}",
                    "-set_serial", "0x" + os.urandom(16).hex(),
                    "-addext", "subjectAltName=" + ",".join(names),
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
                    "-addext", "extendedKeyUsage=serverAuth"],
                   check=True, capture_output=True)
    return cert, key


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


# --------------------------------------------------------------------------
# HTTP plumbing: one request / response model for HTTP/2 and HTTP/1.1

class Request:
    def __init__(self, method, path, headers, body, body_len, http_version):
        self.method, self.path, self.headers = method, path, headers
        self.body, self.body_len, self.http_version = body, body_len, http_version

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v.strip()
        return None


class CappedBody:
    """Keeps at most MAX_SEGMENT_BYTES + 1 bytes, counts the rest."""

    def __init__(self):
        self.buf = bytearray()
        self.length = 0

    def add(self, data):
        self.length += len(data)
        room = MAX_SEGMENT_BYTES + 1 - len(self.buf)
        if room > 0:
            self.buf += data[:room]


def error_headers():
    return [("content-type", "text/plain; charset=utf-8"), ("x-content-type-options", "nosniff")]


class H2Stream:
    def __init__(self, stream_id, headers):
        self.id = stream_id
        self.pseudo = {}
        self.headers = []
        for k, v in headers:
            k = k.decode("latin-1") if isinstance(k, bytes) else k
            v = v.decode("latin-1") if isinstance(v, bytes) else v
            if k.startswith(":"):
                self.pseudo[k] = v
            else:
                self.headers.append((k.lower(), v))
        self.body = CappedBody()
        self.ended = asyncio.Event()
        self.reset = False

    def kill(self):
        self.reset = True
        self.ended.set()


class H2Conn:
    def __init__(self, app, reader, writer, peer):
        import h2.config
        import h2.connection
        self.app, self.reader, self.writer, self.peer = app, reader, writer, peer
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.streams = {}
        self.closed = False
        self.window_event = asyncio.Event()
        self.write_lock = asyncio.Lock()
        self.tasks = set()

    async def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.writer.write(data)
            async with self.write_lock:
                await self.writer.drain()

    def wake(self):
        self.window_event.set()
        self.window_event = asyncio.Event()

    async def run(self, initial=b""):
        import h2.events
        import h2.exceptions
        import h2.settings
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                                   h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20,
                                   h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 250})
        self.conn.increment_flow_control_window((1 << 20) - 65535)
        self.conn.decoder.max_header_list_size = 1 << 20
        data = initial
        try:
            await self.flush()
            while True:
                if data:
                    for event in self.conn.receive_data(data):
                        self.handle(event, h2.events)
                    await self.flush()
                data = await self.reader.read(1 << 16)
                if not data:
                    break
        except h2.exceptions.ProtocolError as error:
            log.info("HTTP/2 protocol error from %s: %r", self.peer, error)
            try:
                await self.flush()
            except Exception:
                pass
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as error:
            log.debug("connection %s: %r", self.peer, error)
        finally:
            self.closed = True
            for stream in list(self.streams.values()):
                stream.kill()
            self.wake()
            try:
                self.writer.close()
            except Exception:
                pass

    def handle(self, event, ev):
        if isinstance(event, ev.RequestReceived):
            stream = H2Stream(event.stream_id, event.headers)
            self.streams[event.stream_id] = stream
            if event.stream_ended is not None:
                stream.ended.set()
            task = asyncio.ensure_future(self.serve(stream))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif isinstance(event, ev.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body.add(event.data)
            try:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            except Exception:
                pass
        elif isinstance(event, ev.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.ended.set()
        elif isinstance(event, ev.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.kill()
            self.wake()
        elif isinstance(event, (ev.WindowUpdated, ev.RemoteSettingsChanged)):
            self.wake()
        elif isinstance(event, ev.ConnectionTerminated):
            for stream in list(self.streams.values()):
                stream.kill()
            self.wake()

    async def send_headers(self, stream, headers, end_stream=False):
        if self.closed or stream.reset:
            raise ConnectionError("stream closed")
        self.conn.send_headers(stream.id, headers, end_stream=end_stream)
        await self.flush()

    async def send_data(self, stream, data, end_stream=True):
        view = memoryview(bytes(data))
        while True:
            if self.closed or stream.reset:
                raise ConnectionError("stream closed")
            room = self.conn.local_flow_control_window(stream.id)
            n = min(room, self.conn.max_outbound_frame_size, len(view))
            if n == 0 and len(view):
                await self.window_event.wait()
                continue
            last = n == len(view)
            self.conn.send_data(stream.id, view[:n].tobytes(), end_stream=end_stream and last)
            await self.flush()
            view = view[n:]
            if last:
                return

    async def serve(self, stream):
        responder = H2Responder(self, stream)
        try:
            await stream.ended.wait()
            if stream.reset:
                return
            req = Request(stream.pseudo.get(":method", ""), stream.pseudo.get(":path", ""), stream.headers,
                          bytes(stream.body.buf), stream.body.length, "2")
            if (req.header("content-type") or "").startswith("application/grpc"):
                await self.app.serve_grpc(req, GrpcResponder(self, stream))
            else:
                await self.app.serve_http(req, responder)
        except Exception as error:
            if not isinstance(error, ConnectionError):
                log.exception("stream %d on %s", stream.id, self.peer)
            try:
                if not responder.started and not self.closed and not stream.reset:
                    await responder.respond(500, error_headers(), b"Internal Server Error\n")
                elif not self.closed and not stream.reset:
                    self.conn.reset_stream(stream.id, 2)
                    await self.flush()
            except Exception:
                pass
        finally:
            self.streams.pop(stream.id, None)


class H2Responder:
    def __init__(self, conn, stream):
        self.conn, self.stream = conn, stream
        self.started = False
        self.head_only = False

    async def respond(self, status, headers, body):
        self.started = True
        hdrs = [(":status", str(status))] + list(headers) + [("content-length", str(len(body)))]
        if not body or self.head_only:
            await self.conn.send_headers(self.stream, hdrs, end_stream=True)
        else:
            await self.conn.send_headers(self.stream, hdrs)
            await self.conn.send_data(self.stream, body, end_stream=True)

    async def start(self, status, headers):
        """Headers now (flushed), body later via end()."""
        self.started = True
        await self.conn.send_headers(self.stream, [(":status", str(status))] + list(headers))

    async def end(self, body):
        await self.conn.send_data(self.stream, body, end_stream=True)


class GrpcResponder:
    def __init__(self, conn, stream):
        self.conn, self.stream = conn, stream
        self.started = False

    async def ok(self, payload):
        self.started = True
        await self.conn.send_headers(self.stream, [(":status", "200"), ("content-type", "application/grpc")])
        await self.conn.send_data(self.stream, struct.pack(">BI", 0, len(payload)) + payload, end_stream=False)
        await self.conn.send_headers(self.stream, [("grpc-status", "0")], end_stream=True)

    async def fail(self, code, message):
        self.started = True
        await self.conn.send_headers(self.stream, [(":status", "200"), ("content-type", "application/grpc"),
                                                   ("grpc-status", str(code)),
                                                   ("grpc-message", grpc_percent_encode(message))],
                                     end_stream=True)


class H1Reader:
    def __init__(self, reader, initial):
        self.reader, self.buf = reader, bytearray(initial)

    async def more(self):
        chunk = await self.reader.read(1 << 16)
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(self.buf), None)
        self.buf += chunk

    async def until(self, delim, limit=1 << 20):
        while True:
            k = self.buf.find(delim)
            if k >= 0:
                out = bytes(self.buf[:k])
                del self.buf[:k + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ValueError("header too long")
            await self.more()

    async def into(self, body, n):
        while n > 0:
            if not self.buf:
                await self.more()
            take = min(n, len(self.buf))
            body.add(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take


REASONS = {200: "OK", 400: "Bad Request", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 500: "Internal Server Error", 505: "HTTP Version Not Supported"}


class H1Responder:
    def __init__(self, writer, close):
        self.writer, self.close = writer, close
        self.started = False
        self.head_only = False

    def _head(self, status, headers):
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines.append("Date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        if self.close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def respond(self, status, headers, body):
        self.started = True
        self.writer.write(self._head(status, list(headers) + [("Content-Length", str(len(body)))]))
        if not self.head_only:
            self.writer.write(body)
        await self.writer.drain()

    async def start(self, status, headers):
        self.started = True
        self.writer.write(self._head(status, list(headers) + [("Transfer-Encoding", "chunked")]))
        await self.writer.drain()

    async def end(self, body):
        if body:
            self.writer.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()


async def serve_http1(app, reader, writer, peer, initial):
    source = H1Reader(reader, initial)
    try:
        while True:
            try:
                head = await source.until(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            line, _, block = head.partition(b"\r\n")
            try:
                method, target, version = line.decode("latin-1").split(" ")
                if not version.startswith("HTTP/1."):
                    raise ValueError(version)
                headers = []
                for raw in block.split(b"\r\n"):
                    if not raw:
                        continue
                    name, sep, value = raw.partition(b":")
                    if not sep or not name.strip():
                        raise ValueError("bad header line")
                    headers.append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))
            except ValueError:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Connection: close\r\nContent-Length: 16\r\n\r\n400 Bad Request\n")
                await writer.drain()
                return
            req_headers = dict(headers)
            if req_headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            body = CappedBody()
            if req_headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await source.until(b"\r\n")).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while await source.until(b"\r\n"):
                            pass
                        break
                    await source.into(body, size)
                    await source.until(b"\r\n")
            else:
                await source.into(body, int(req_headers.get("content-length") or 0))
            close = version == "HTTP/1.0" or req_headers.get("connection", "").lower() == "close"
            req = Request(method, target, headers, bytes(body.buf), body.length, version.split("/")[1])
            responder = H1Responder(writer, close)
            try:
                await app.serve_http(req, responder)
            except (ConnectionError, ssl.SSLError, OSError):
                raise
            except Exception:
                log.exception("HTTP/1.1 request %s %s", method, target)
                if responder.started:
                    return
                responder.close = True
                await responder.respond(500, error_headers(), b"Internal Server Error\n")
                return
            if close:
                return
    except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError, ValueError) as error:
        log.debug("HTTP/1.1 connection %s: %r", peer, error)
    finally:
        try:
            writer.close()
        except Exception:
            pass


# --------------------------------------------------------------------------
# Transcoding with the ffmpeg CLI

class TranscodeError(Exception):
    pass


def ffmpeg_error_text(stderr):
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return "Transcode failed"
    for ln in lines:
        if "Invalid data found when processing input" in ln:
            return "Invalid data found when processing input"
    text = lines[-1]
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    text = re.sub(r"^/\S+:\s*", "", text)   # a file path prefix
    return text[:300]


def output_args(p, path, audio_codec):
    vf = []
    if p.fps > 0:
        vf.append(f"fps={p.fps}/{p.fpsDen or 1}")
    if p.width > 0 and p.height > 0:
        vf.append(f"scale={p.width}:{p.height}")
    elif p.width > 0:
        vf.append(f"scale={p.width}:-2")
    elif p.height > 0:
        vf.append(f"scale=-2:{p.height}")
    vf.append("format=yuv420p")
    encoder = {0: "libx264", 1: "libx265", 2: "libvpx", 3: "libvpx-vp9"}[p.encoder]
    args = ["-map", "0:v:0", "-map", "0:a?", "-vf", ",".join(vf), "-c:v", encoder]
    if encoder in ("libx264", "libx265"):
        args += ["-preset", "veryfast"]
    if p.quality > 0:
        args += ["-crf", str(min(p.quality, 51))]
        if p.bitrate > 0:
            args += ["-maxrate", str(p.bitrate), "-bufsize", str(2 * p.bitrate)]
    elif p.bitrate > 0:
        args += ["-b:v", str(p.bitrate)]
    if encoder == "libx264":
        profile = {1: "baseline", 2: "main", 3: "high", 4: "high"}.get(p.profile)
        if profile:
            args += ["-profile:v", profile]
        if p.profile == 4:          # constrained high: high without B-frames
            args += ["-bf", "0"]
    if p.gop == -1:
        args += ["-g", "1"]
    elif p.gop > 0:
        args += ["-force_key_frames", f"expr:gte(t,n_forced*{p.gop / 1000.0})"]
    args += ["-c:a", audio_codec]
    args += ["-f", "mp4" if p.format == 1 else "mpegts", path]
    return args


async def run_process(args, timeout):
    proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        await proc.wait()
        raise
    return proc.returncode, out, err


async def probe_pixels(path):
    code, out, err = await run_process(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                                        "-show_entries", "stream=nb_read_frames,width,height", "-of", "json",
                                        path], 120)
    if code != 0:
        raise TranscodeError(ffmpeg_error_text(err))
    streams = json.loads(out or b"{}").get("streams") or [{}]
    s = streams[0]
    try:
        return int(s.get("nb_read_frames") or 0) * int(s.get("width") or 0) * int(s.get("height") or 0)
    except ValueError:
        return 0


async def perceptual_hash(path, out_path):
    code, _, _ = await run_process(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0",
                                    "-vf", f"signature=format=binary:filename={out_path}", "-f", "null", "-"], 120)
    if code != 0 or not os.path.exists(out_path):
        return None
    return open(out_path, "rb").read()


async def transcode(media, profiles, seg):
    """[(bytes, pixels, phash bytes|None)] in profile order."""
    if not profiles:
        return []
    with tempfile.TemporaryDirectory(prefix="bo_orchestrator_tx_") as work:
        src = os.path.join(work, "in")
        with open(src, "wb") as f:
            f.write(media)
        head = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        sliced = seg.HasField("segment_parameters") and (seg.segment_parameters.to > 0 or
                                                         getattr(seg.segment_parameters, "from") > 0)
        if sliced:
            start = getattr(seg.segment_parameters, "from")
            if start > 0:
                head += ["-ss", f"{start / 1000.0}"]
            if seg.segment_parameters.to > 0:
                head += ["-to", f"{seg.segment_parameters.to / 1000.0}"]
        else:
            head += ["-copyts"]
        head += ["-i", src]
        outs = [os.path.join(work, f"out{i}" + (".mp4" if p.format == 1 else ".ts")) for i, p in enumerate(profiles)]
        err = b""
        for audio in ("copy", "aac"):
            args = list(head)
            for p, path in zip(profiles, outs):
                args += output_args(p, path, audio)
            try:
                code, _, err = await run_process(args, 120)
            except asyncio.TimeoutError:
                raise TranscodeError("Remote transcoder took too long")
            if code == 0:
                break
        else:
            raise TranscodeError(ffmpeg_error_text(err))
        pixels = await asyncio.gather(*(probe_pixels(path) for path in outs))
        hashes = [None] * len(outs)
        if seg.calc_perceptual_hash:
            hashes = await asyncio.gather(*(perceptual_hash(path, path + ".phash") for path in outs))
        return [(open(path, "rb").read(), px, h) for path, px, h in zip(outs, pixels, hashes)]


# --------------------------------------------------------------------------
# The orchestrator

class Session:
    def __init__(self, orch, sid):
        self.orch, self.sid = orch, sid
        self.queue = collections.deque()
        self.wakeup = asyncio.Event()
        self.busy = False
        self.current = None
        self.last = time.monotonic()
        self.ended = False
        self.files = {}                      # URL path -> (bytes, content type)
        self.rings = collections.defaultdict(collections.deque)   # profile -> [paths]
        self.worker = asyncio.ensure_future(self.run())

    async def run(self):
        try:
            while not self.ended:
                if not self.queue:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                job = self.queue.popleft()
                self.busy, self.current = True, job
                try:
                    result = await self.orch.work(self, job)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.exception("segment work")
                    result = ("error", f"{error}")
                if not job["future"].done():
                    job["future"].set_result(result)
                self.busy, self.current = False, None
                self.last = time.monotonic()
        except asyncio.CancelledError:
            pass
        finally:
            for job in ([self.current] if self.current else []) + list(self.queue):
                if not job["future"].done():
                    job["future"].set_result(("error", "Session ended"))
            self.queue.clear()

    def enqueue(self, job):
        self.last = time.monotonic()
        # Like a Go channel of 4 with a worker receiving on it: an idle worker
        # takes one segment at once, then 4 may wait.
        if len(self.queue) >= QUEUE_WAITING + (0 if self.busy else 1):
            job["future"].set_result(("error", "OrchestratorBusy"))
            return
        self.queue.append(job)
        self.wakeup.set()

    def end(self):
        self.ended = True
        self.files.clear()
        self.rings.clear()
        self.worker.cancel()

    def store(self, name, path, data, ctype, extra=()):
        self.files[path] = (data, ctype)
        for p, d, c in extra:
            self.files[p] = (d, c)
        ring = self.rings[name]
        ring.append([path] + [p for p, _, _ in extra])
        while len(ring) > RING:
            for p in ring.popleft():
                self.files.pop(p, None)


class Orchestrator:
    def __init__(self, key, uri, max_sessions, fails, log_path, version):
        self.key, self.uri, self.max_sessions = key, uri, max_sessions
        self.fails, self.version = fails, version
        self.caps = sorted(set(DEFAULT_CAPS))
        self.log_file = open(log_path, "a", buffering=1) if log_path else None
        self.sessions = {}
        self.rng = random.Random()

    # ---- events -------------------------------------------------------------

    def event(self, **fields):
        fields["time"] = round(time.time(), 3)
        line = json.dumps(fields)
        log.info("%s", line)
        if self.log_file is not None:
            try:
                self.log_file.write(line + "\n")
                self.log_file.flush()
            except OSError:
                log.exception("log write")

    # ---- sessions -----------------------------------------------------------

    def capabilities(self):
        return pb.Capabilities(bitstring=encode_bits(self.caps), capacities={k: 1 for k in self.caps},
                               version=self.version)

    def info(self, auth_token):
        info = pb.OrchestratorInfo(transcoder=self.uri, address=bytes(20), capabilities=self.capabilities())
        info.auth_token.CopyFrom(auth_token)
        return info

    def new_token(self):
        sid = f"{self.rng.getrandbits(32):08x}"
        expiration = int(time.time()) + TOKEN_LIFETIME_S
        return pb.AuthToken(token=auth_token_hmac(self.key, sid, expiration), session_id=sid, expiration=expiration)

    def token_valid(self, token):
        expected = auth_token_hmac(self.key, token.session_id, token.expiration)
        return hmac.compare_digest(expected, token.token)

    def end_session(self, sid):
        session = self.sessions.pop(sid, None)
        if session is not None:
            session.end()
            log.info("session %s ended", sid)

    async def reaper(self):
        while True:
            await asyncio.sleep(2)
            now = time.monotonic()
            for sid, s in list(self.sessions.items()):
                if not s.busy and not s.queue and now - s.last > SESSION_IDLE_S:
                    log.info("session %s idle for %d s", sid, SESSION_IDLE_S)
                    self.end_session(sid)

    def compatible(self, job):
        """Job capabilities (a net.Capabilities, or None = legacy) against ours."""
        if job is None:
            return True
        ours = encode_bits(self.caps)
        for i, word in enumerate(job.bitstring):
            have = ours[i] if i < len(ours) else 0
            if word & ~have:
                return False
        # Our mandatories (none) must all be in the job.
        min_version = job.constraints.minVersion if job.HasField("constraints") else ""
        if min_version:
            want, have = parse_version(min_version), parse_version(self.version)
            if want is None or have is None or have < want:
                return False
        return True

    # ---- gRPC ---------------------------------------------------------------

    async def serve_grpc(self, req, call):
        methods = {"/net.Orchestrator/GetOrchestrator": (pb.OrchestratorRequest, self.get_orchestrator),
                   "/net.Orchestrator/EndTranscodingSession": (pb.EndTranscodingSessionRequest, self.end_transcoding),
                   "/net.Orchestrator/Ping": (pb.PingPong, self.ping)}
        if req.path not in methods:
            service, _, method = req.path.lstrip("/").partition("/")
            if service != "net.Orchestrator":
                await call.fail(GRPC_UNIMPLEMENTED, f"unknown service {service}")
            else:
                await call.fail(GRPC_UNIMPLEMENTED, f"unknown method {method} for service {service}")
            return
        cls, handler = methods[req.path]
        body = req.body
        if len(body) < 5 or len(body) != 5 + struct.unpack(">I", body[1:5])[0]:
            await call.fail(GRPC_INTERNAL, "grpc: error while reading the request message")
            return
        if body[0] != 0:
            await call.fail(GRPC_INTERNAL, "grpc: compressed message without grpc-encoding")
            return
        try:
            message = cls.FromString(body[5:])
        except Exception as error:
            await call.fail(GRPC_INTERNAL, f"grpc: error unmarshalling request: {error}")
            return
        try:
            reply = handler(message)
        except GrpcFailure as failure:
            await call.fail(failure.code, str(failure))
            return
        await call.ok(reply.SerializeToString())

    def get_orchestrator(self, request):
        # Offchain: no signature check, no webhook, no price.
        if len(self.sessions) >= self.max_sessions:
            text = "Invalid orchestrator request: OrchestratorCapped"
            self.event(event="get_orchestrator", session=None, ok=False, error=text)
            raise GrpcFailure(text)
        token = self.new_token()
        self.event(event="get_orchestrator", session=token.session_id, ok=True, error=None)
        return self.info(token)

    def end_transcoding(self, request):
        if not request.HasField("auth_token"):
            # go-livepeer dereferences the missing token (a nil-pointer panic);
            # this peer answers as the spec's "Beyond" asks instead.
            self.event(event="end_session", session=None, ok=False, error="missing auth token")
            raise GrpcFailure("missing auth token", GRPC_INVALID_ARGUMENT)
        token = request.auth_token
        sid = token.session_id
        if not self.token_valid(token):
            self.event(event="end_session", session=sid, ok=False, error="Invalid auth token")
            raise GrpcFailure("Invalid auth token")
        self.end_session(sid)
        self.event(event="end_session", session=sid, ok=True, error=None)
        return pb.EndTranscodingSessionResponse()

    def ping(self, request):
        return pb.PingPong(value=b"")    # offchain Sign() returns empty bytes

    # ---- HTTP ---------------------------------------------------------------

    async def serve_http(self, req, responder):
        path = req.path.split("?", 1)[0]
        if path == "/segment":
            await self.serve_segment(req, responder)
        elif path.startswith("/stream/"):
            await self.serve_stream(req, path, responder)
        else:
            await responder.respond(404, error_headers(), b"404 page not found\n")

    async def serve_stream(self, req, path, responder):
        path = urllib.parse.unquote(path)
        status = 404
        if req.method not in ("GET", "HEAD"):
            status = 405
            await responder.respond(405, error_headers(), b"Method Not Allowed\n")
        else:
            parts = path.split("/")
            session = self.sessions.get(parts[2]) if len(parts) >= 5 else None
            found = session.files.get(path) if session is not None else None
            if found is None:
                await responder.respond(404, error_headers(), b"404 page not found\n")
            else:
                status = 200
                responder.head_only = req.method == "HEAD"
                await responder.respond(200, [("content-type", found[1])], found[0])
        self.event(event="stream_get", path=path, status=status)

    async def serve_segment(self, req, responder):
        record = {"session": None, "manifest": None, "seq": None, "profiles": []}

        async def refuse(status, text):
            self.event(event="segment", session=record["session"], manifest=record["manifest"], seq=record["seq"],
                       status=status, result="error", error=text, profiles=record["profiles"])
            await responder.respond(status, error_headers(), (text + "\n").encode())

        # 1. Livepeer-Payment
        try:
            raw = go_b64decode(req.header("livepeer-payment") or "")
        except CorruptInputError as error:
            return await refuse(402, f"base64 decode error: {error}")
        try:
            pb.Payment.FromString(raw)
        except Exception:
            return await refuse(402, "protobuf unmarshal error: proto: cannot parse invalid wire-format data")
        # 2. Livepeer-Segment base64
        try:
            raw = go_b64decode(req.header("livepeer-segment") or "")
        except CorruptInputError:
            return await refuse(403, "ErrorSegEncoding")
        # 3. SegData protobuf
        try:
            seg = pb.SegData.FromString(raw)
        except Exception:
            return await refuse(403, "proto: cannot parse invalid wire-format data")
        record["manifest"] = manifest_text(seg.manifestId)
        record["seq"] = seg.seq
        if seg.HasField("auth_token"):
            record["session"] = seg.auth_token.session_id
        profiles = list(seg.fullProfiles3) or list(seg.fullProfiles2) or list(seg.fullProfiles)
        record["profiles"] = [profile_name(p) for p in profiles]
        # 4. profiles, duration
        for p in profiles:
            if p.format not in (0, 1):
                return await refuse(403, "unrecognized profile output format")
            if p.profile not in (0, 1, 2, 3, 4):
                return await refuse(403, "unrecognized encoder profile")
            if p.encoder not in (0, 1, 2, 3):
                return await refuse(403, "unrecognized video codec")
        if seg.duration < 0 or seg.duration > MAX_DURATION_MS:
            return await refuse(403, "invalid duration")
        # 5. signature: skipped offchain.
        # 6. capabilities
        if not self.compatible(seg.capabilities if seg.HasField("capabilities") else None):
            return await refuse(403, "incompatible capabilities")
        # 7-9. auth token
        if not seg.HasField("auth_token"):
            return await refuse(403, "missing auth token")
        if not self.token_valid(seg.auth_token):
            return await refuse(403, "invalid auth token")
        if time.time() > seg.auth_token.expiration:
            return await refuse(403, "expired auth token")
        sid = seg.auth_token.session_id
        # 10. capacity
        if sid not in self.sessions and len(self.sessions) >= self.max_sessions:
            return await refuse(403, "OrchestratorCapped")
        # 11-13. refreshed info, payment, balance: nothing to do offchain.
        # 14. body size
        if req.body_len > MAX_SEGMENT_BYTES:
            return await refuse(500, "Internal Server Error")
        media = req.body
        # 15. URI body
        if (req.header("content-type") or "") == URI_CONTENT_TYPE:
            media = await self.download(media.decode("utf-8", "replace").strip())
            if media is None:
                return await refuse(400, "BadRequest")
        # 16. hash
        if keccak256(media) != seg.hash:
            return await refuse(403, "Forbidden")

        # 200 at once, then the work.
        await_result = asyncio.get_running_loop().create_future()
        job = {"seg": seg, "media": media, "profiles": profiles, "future": await_result}
        session = self.sessions.get(sid)
        if session is None:
            if len(self.sessions) >= self.max_sessions:   # lost a race since check 10
                await_result.set_result(("error", "OrchestratorCapped"))
            else:
                session = self.sessions[sid] = Session(self, sid)
                log.info("session %s opened", sid)
        if session is not None:
            session.enqueue(job)
        sent = True
        try:
            await responder.start(200, [])
        except Exception as error:
            log.info("segment %s/%d: client went away before the 200: %r", sid, seg.seq, error)
            sent = False
        kind, value = await await_result
        result = pb.TranscodeResult(seq=seg.seq)
        if kind == "error":
            result.error = value
        else:
            result.data.CopyFrom(value)
        result.info.CopyFrom(self.info(seg.auth_token))
        self.event(event="segment", session=sid, manifest=record["manifest"], seq=seg.seq, status=200,
                   result="error" if kind == "error" else "data", error=value if kind == "error" else None,
                   profiles=record["profiles"])
        if sent:
            try:
                await responder.end(result.SerializeToString())
            except Exception as error:
                log.info("segment %s/%d: client went away before the result: %r", sid, seg.seq, error)

    async def download(self, url):
        import httpx
        try:
            async def fetch():
                async with httpx.AsyncClient(verify=False, timeout=4.0, http2=True) as client:
                    async with client.stream("GET", url) as response:
                        if response.status_code != 200:
                            return None
                        data = bytearray()
                        async for chunk in response.aiter_bytes():
                            data += chunk
                            if len(data) > MAX_SEGMENT_BYTES:
                                return None
                        return bytes(data)
            return await asyncio.wait_for(fetch(), 8.0)
        except Exception as error:
            log.info("download %s failed: %r", url, error)
            return None

    async def work(self, session, job):
        seg, profiles = job["seg"], job["profiles"]
        if seg.seq in self.fails:
            return ("error", self.fails[seg.seq])
        try:
            outs = await transcode(job["media"], profiles, seg)
        except TranscodeError as error:
            return ("error", str(error))
        if len(outs) != len(profiles):
            return ("error", "MismatchedSegments")
        if any(len(data) < 25 for data, _, _ in outs):
            return ("error", "ZeroSegments")
        if session.ended:
            return ("error", "Session ended")
        data = pb.TranscodeData(sig=b"")
        for p, (rendition, pixels, phash) in zip(profiles, outs):
            name = profile_name(p)
            ext, ctype = (".mp4", "video/mp4") if p.format == 1 else (".ts", "video/mp2t")
            path = f"/stream/{session.sid}/{name}/{seg.seq}{ext}"
            extra = [(path + ".phash", phash, "application/octet-stream")] if phash is not None else []
            session.store(name, path, rendition, ctype, extra)
            item = data.segments.add(url=self.uri + path, pixels=pixels)
            if phash is not None:
                item.perceptual_hash_url = self.uri + path + ".phash"
        return ("data", data)

    # ---- connections --------------------------------------------------------

    async def on_connection(self, reader, writer):
        peer = writer.get_extra_info("peername")
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            alpn = ssl_object.selected_alpn_protocol() if ssl_object else None
            if alpn == "h2":
                await H2Conn(self, reader, writer, peer).run()
                return
            initial = b""
            while len(initial) < len(H2_PREFACE) and H2_PREFACE.startswith(initial):
                chunk = await reader.read(len(H2_PREFACE) - len(initial))
                if not chunk:
                    writer.close()
                    return
                initial += chunk
            if initial == H2_PREFACE:
                await H2Conn(self, reader, writer, peer).run(initial)
            else:
                await serve_http1(self, reader, writer, peer, initial)
        except asyncio.CancelledError:
            writer.close()
        except Exception as error:
            log.debug("connection %s: %r", peer, error)
            try:
                writer.close()
            except Exception:
                pass


class GrpcFailure(Exception):
    def __init__(self, text, code=GRPC_UNKNOWN):
        super().__init__(text)
        self.code = code


# --------------------------------------------------------------------------
# Main

def split_host_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def url_host(host):
    return f"[{host}]" if ":" in host else host


async def amain(args):
    global pb
    pb = load_messages()
    host, port = split_host_port(args.listen)
    if args.secret_file:
        text = open(args.secret_file).read().strip()
        key = bytes.fromhex(text[2:] if text.lower().startswith("0x") else text)
        if len(key) != 32:
            raise SystemExit(f"{args.secret_file}: want 32 bytes of hex, got {len(key)}")
    else:
        key = os.urandom(32)
    fails = {}
    for item in args.fail:
        seq, sep, text = item.partition(":")
        if not sep:
            raise SystemExit(f"--fail {item!r}: want SEQ:TEXT")
        fails[int(seq)] = text
    service_host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="bo_orchestrator_tls_") as tls_dir:
        cert, keyfile = make_certificate(tls_dir, service_host)
        pem = open(cert).read()
        context = tls_context(cert, keyfile)
    if args.cert_out:
        with open(args.cert_out, "w") as f:
            f.write(pem)
    orch = Orchestrator(key, None, args.max_sessions, fails, args.log, args.orch_version)
    orch.caps = sorted(set(DEFAULT_CAPS) | set(args.extra_capability))
    server = await asyncio.start_server(orch.on_connection, host or None, port, ssl=context, reuse_address=True,
                                        backlog=256)
    port = server.sockets[0].getsockname()[1]
    orch.uri = args.service_uri or f"https://{url_host(service_host)}:{port}"
    reaper = asyncio.ensure_future(orch.reaper())
    sys.stdout.write(f"listening on https://{url_host(host or '0.0.0.0')}:{port}\n")
    sys.stdout.flush()
    log.info("listening on %s:%d, service URI %s, max sessions %d", host, port, orch.uri, args.max_sessions)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    async with server:
        await stop.wait()
    reaper.cancel()


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "selftest":
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="selftest %(relativeCreated)6d %(message)s")
        sys.exit(selftest())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT (PORT 0 picks one)")
    parser.add_argument("--max-sessions", type=int, default=10)
    parser.add_argument("--log", help="append JSON event lines here")
    parser.add_argument("--fail", action="append", default=[], metavar="SEQ:TEXT",
                        help="answer segments with this seq with TranscodeResult.error TEXT")
    parser.add_argument("--secret-file", help="32-byte HMAC key (hex) for auth tokens")
    parser.add_argument("--service-uri", help="advertised URI (default https://HOST:PORT)")
    parser.add_argument("--orch-version", default="0.9.1", help="Capabilities.version (default 0.9.1)")
    parser.add_argument("--extra-capability", type=int, action="append", default=[], metavar="N",
                        help="also advertise (and accept jobs needing) capability N, e.g. 16 for HEVC "
                             "encoding, which the ffmpeg CLI does (repeatable)")
    parser.add_argument("--cert-out", help="write the certificate (PEM) here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="bo_orchestrator %(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        pass


# --------------------------------------------------------------------------
# Selftest: drives a subprocess of this file with grpcio and httpx

class Check:
    def __init__(self):
        self.failures = 0
        self.count = 0

    def __call__(self, cond, what, detail=""):
        self.count += 1
        if cond:
            log.info("ok   %s", what)
        else:
            self.failures += 1
            log.error("FAIL %s %s", what, detail)
        return cond


def selftest():
    global pb
    pb = load_messages()
    import grpc
    import httpx

    check = Check()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    vectors_path = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "vectors", "bo-vectors.json"))
    if not os.path.exists(vectors_path):
        vectors_path = "/work/shared/vectors/bo-vectors.json"
    vectors = json.load(open(vectors_path))

    # ---- vectors ----
    for case in vectors["auth_token"]["cases"]:
        secret = bytes.fromhex(case["secret"][2:])
        msg = case["session_id"].encode() + big_bytes(case["expiration"])
        check(msg.hex() == case["message_hex"][2:], f"auth_token message exp={case['expiration']}")
        token = auth_token_hmac(secret, case["session_id"], case["expiration"])
        check(token.hex() == case["token"][2:], f"auth_token token exp={case['expiration']}")
        if "AuthToken_protobuf_hex" in case:
            enc = pb.AuthToken(token=token, session_id=case["session_id"], expiration=case["expiration"])
            check(enc.SerializeToString().hex() == case["AuthToken_protobuf_hex"][2:], "AuthToken protobuf bytes")
    raw = bytes.fromhex(vectors["payment"]["Payment_protobuf_hex"][2:])
    check(go_b64decode(vectors["payment"]["Livepeer-Payment_header"]) == raw, "Livepeer-Payment header decodes")
    check(pb.Payment.FromString(raw).SerializeToString() == raw, "Payment vector round-trips")
    tr = vectors["transcode_result_sig"]
    raw = bytes.fromhex(next(v for k, v in tr.items() if k.startswith("TranscodeResult_protobuf_hex"))[2:])
    parsed = pb.TranscodeResult.FromString(raw)
    check(parsed.SerializeToString() == raw and parsed.seq == 7 and len(parsed.data.segments) == 2,
          "TranscodeResult vector round-trips")
    for sample in [b"", b"a", b"ab", b"abc", bytes(range(256))]:
        check(go_b64decode(base64.b64encode(sample).decode()) == sample, f"base64 {len(sample)} bytes")
    for bad, offset in [("!", 0), ("QQ", 0), ("QQ=", 3), ("Q===", 1), ("QUJD\n!", 5), ("QQ==QQ==", 4)]:
        try:
            go_b64decode(bad)
            check(False, f"base64 {bad!r} refused")
        except CorruptInputError as error:
            check(str(error) == f"illegal base64 data at input byte {offset}", f"base64 {bad!r} offset",
                  str(error))

    work = tempfile.mkdtemp(prefix="bo_orchestrator_selftest_")
    procs = []
    try:
        segment_path = os.path.join(work, "seg.ts")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine", "-t", "2", "-c:v", "libx264",
                        "-c:a", "aac", "-f", "mpegts", segment_path], check=True)
        media = open(segment_path, "rb").read()
        secret_file = os.path.join(work, "secret")
        key = os.urandom(32)
        open(secret_file, "w").write(key.hex())
        log_path = os.path.join(work, "events.jsonl")
        cert_path = os.path.join(work, "cert.pem")

        def start(port=0, secret=True):
            args = [PYTHON, os.path.abspath(__file__), "--listen", f"127.0.0.1:{port}", "--max-sessions", "1",
                    "--log", log_path, "--fail", "2:No keyframes in input", "--cert-out", cert_path]
            if secret:
                args += ["--secret-file", secret_file]
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(os.path.join(work, "orch.log"), "a"))
            procs.append(proc)
            line = proc.stdout.readline().decode().strip()
            m = re.fullmatch(r"listening on https://127\.0\.0\.1:(\d+)", line)
            if not m:
                raise SystemExit(f"orchestrator did not start: {line!r}")
            return proc, int(m.group(1))

        proc, port = start()
        uri = f"https://127.0.0.1:{port}"
        check(True, f"started, {uri}")

        def grpc_call(method, request, response_cls):
            creds = grpc.ssl_channel_credentials(root_certificates=open(cert_path, "rb").read())
            with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
                stub = channel.unary_unary(f"/net.Orchestrator/{method}",
                                           request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=response_cls.FromString)
                return stub(request, timeout=10)

        def get_orchestrator():
            caps = pb.Capabilities(bitstring=encode_bits([0, 1, 2, 12]))
            return grpc_call("GetOrchestrator", pb.OrchestratorRequest(address=bytes(20), capabilities=caps),
                             pb.OrchestratorInfo)

        def grpc_error(fn):
            try:
                fn()
                return None
            except grpc.RpcError as error:
                return error.code(), error.details()

        # ---- GetOrchestrator ----
        info_a = get_orchestrator()
        info_b = get_orchestrator()
        now = time.time()
        check(info_a.transcoder == uri, "info.transcoder is the service URI", info_a.transcoder)
        check(info_a.address == bytes(20), "info.address is 20 zero bytes")
        check(not info_a.HasField("ticket_params") and not info_a.HasField("price_info"), "offchain: no ticket params")
        check(decode_bits(info_a.capabilities.bitstring) == DEFAULT_CAPS and info_a.capabilities.version == "0.9.1",
              "capabilities: default set and version")
        tok = info_a.auth_token
        check(re.fullmatch(r"[0-9a-f]{8}", tok.session_id) is not None, "session id: 8 lowercase hex")
        check(abs(tok.expiration - (now + 1800)) < 5, "expiration now + 30 min")
        check(tok.token == auth_token_hmac(key, tok.session_id, tok.expiration), "token is the HMAC")
        check(info_a.auth_token.session_id != info_b.auth_token.session_id, "a new session id per call")
        pong = grpc_call("Ping", pb.PingPong(value=b"hello"), pb.PingPong)
        check(pong.value == b"", "Ping answers empty (offchain Sign)")

        job_caps = pb.Capabilities(bitstring=encode_bits([0, 1, 2, 3, 7, 8, 9, 10, 11, 12, 14, 26]))

        def seg_headers(token, seq, body=media, profiles=None, field="fullProfiles", **extra):
            seg = pb.SegData(manifestId=b"selftestStream", seq=seq, hash=keccak256(body), profiles=b"invalid",
                             duration=2000, capabilities=job_caps)
            if token is not None:
                seg.auth_token.CopyFrom(token)
            if profiles is None:
                profiles = [pb.VideoProfile(name="P360p30fps16x9", width=640, height=360, bitrate=600000, fps=30),
                            pb.VideoProfile(name="P240p30fps16x9", width=426, height=240, bitrate=250000, fps=30)]
            getattr(seg, field).extend(profiles)
            for k, v in extra.items():
                if k == "capabilities":
                    seg.capabilities.CopyFrom(v)
                else:
                    setattr(seg, k, v)
            return {"Livepeer-Segment": base64.b64encode(seg.SerializeToString()).decode(),
                    "Livepeer-Payment": "", "Content-Type": "video/MP2T"}

        def probe(data, suffix):
            path = os.path.join(work, "probe" + suffix)
            open(path, "wb").write(data)
            out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                                  "-show_entries", "stream=nb_read_frames,width,height:format=format_name",
                                  "-of", "json", path], capture_output=True, check=True).stdout
            j = json.loads(out)
            s = j["streams"][0]
            return int(s["nb_read_frames"]), int(s["width"]), int(s["height"]), j["format"]["format_name"]

        h2 = httpx.Client(http2=True, verify=False, timeout=60)

        def post(headers, body=media, client=h2):
            r = client.post(uri + "/segment", headers=headers, content=body)
            return r

        # ---- a full round trip (fullProfiles, MPEG-TS) ----
        r = post(seg_headers(info_a.auth_token, 0))
        check(r.status_code == 200 and r.http_version == "HTTP/2", "seg 0: 200 over HTTP/2",
              f"{r.status_code} {r.text!r}")
        result = pb.TranscodeResult.FromString(r.content)
        check(result.seq == 0 and result.WhichOneof("result") == "data", "seg 0: data", str(result)[:300])
        check(result.info.auth_token == info_a.auth_token, "seg 0: info carries the request's token")
        check(result.info.transcoder == uri and not result.data.sig, "seg 0: info.transcoder, empty sig")
        segs = result.data.segments
        check(len(segs) == 2, "seg 0: two renditions")
        sid = info_a.auth_token.session_id
        first_urls = []
        for s, (name, w, h) in zip(segs, [("P360p30fps16x9", 640, 360), ("P240p30fps16x9", 426, 240)]):
            check(s.url == f"{uri}/stream/{sid}/{name}/0.ts", f"seg 0: url {name}", s.url)
            g = h2.get(s.url)
            check(g.status_code == 200 and g.headers.get("content-type") == "video/mp2t", f"GET {name}")
            frames, fw, fh, fmt = probe(g.content, ".ts")
            check((fw, fh) == (w, h) and fmt == "mpegts", f"{name}: {fw}x{fh} {fmt}")
            check(s.pixels == frames * fw * fh and frames >= 55, f"{name}: pixels {s.pixels} = {frames}x{fw}x{fh}")
            first_urls.append(s.url)

        # ---- fullProfiles2 with an MP4 rendition, nameless profile ----
        profiles = [pb.VideoProfile(width=320, height=180, bitrate=200000, fps=15, format=1, profile=2, gop=1000)]
        r = post(seg_headers(info_a.auth_token, 1, profiles=profiles, field="fullProfiles2"))
        result = pb.TranscodeResult.FromString(r.content)
        check(r.status_code == 200 and result.WhichOneof("result") == "data", "seg 1 (MP4): data", r.text[:200])
        if result.WhichOneof("result") == "data":
            s = result.data.segments[0]
            check(s.url == f"{uri}/stream/{sid}/net_320x180_200000/1.mp4", "seg 1: nameless profile url", s.url)
            g = h2.get(s.url)
            frames, fw, fh, fmt = probe(g.content, ".mp4")
            check(g.status_code == 200 and "mp4" in fmt and (fw, fh) == (320, 180), f"seg 1: MP4 {fw}x{fh} {fmt}")
            check(s.pixels == frames * fw * fh and 25 <= frames <= 35, f"seg 1: pixels {s.pixels}, {frames} frames")

        # ---- --fail ----
        r = post(seg_headers(info_a.auth_token, 2))
        result = pb.TranscodeResult.FromString(r.content)
        check(r.status_code == 200 and result.error == "No keyframes in input" and result.seq == 2,
              "seg 2: --fail error result", str(result)[:200])

        # ---- HTTP/1.1, chunked after the flushed 200 ----
        with httpx.Client(http2=False, verify=False, timeout=60) as h1:
            r = post(seg_headers(info_a.auth_token, 3), client=h1)
            result = pb.TranscodeResult.FromString(r.content)
            check(r.status_code == 200 and r.http_version == "HTTP/1.1" and len(result.data.segments) == 2,
                  "seg 3 over HTTP/1.1", f"{r.status_code} {r.headers}")
            r = post(seg_headers(info_a.auth_token, 3, body=b"x"), client=h1)
            check(r.status_code == 403 and r.text == "Forbidden\n", "HTTP/1.1 keep-alive: second request")

        # ---- refusals ----
        def refused(headers, status, text, what, body=media):
            r = post(headers, body=body)
            check(r.status_code == status and r.text == text + "\n" and
                  r.headers.get("content-type") == "text/plain; charset=utf-8", what,
                  f"{r.status_code} {r.text!r}")

        refused(seg_headers(info_b.auth_token, 0), 403, "OrchestratorCapped", "capacity: second session refused")
        err = grpc_error(get_orchestrator)
        check(err == (grpc.StatusCode.UNKNOWN, "Invalid orchestrator request: OrchestratorCapped"),
              "capacity: GetOrchestrator refused", str(err))
        bad = pb.AuthToken()
        bad.CopyFrom(info_a.auth_token)
        bad.token = bytes(32)
        refused(seg_headers(bad, 4), 403, "invalid auth token", "tampered token")
        refused(seg_headers(None, 4), 403, "missing auth token", "no token")
        old = pb.AuthToken(session_id=sid, expiration=int(time.time()) - 10)
        old.token = auth_token_hmac(key, sid, old.expiration)
        refused(seg_headers(old, 4), 403, "expired auth token", "expired token")
        refused(seg_headers(info_a.auth_token, 4), 403, "Forbidden", "hash mismatch", body=media[:-188])
        h = seg_headers(info_a.auth_token, 4)
        h["Livepeer-Segment"] = "!!!"
        refused(h, 403, "ErrorSegEncoding", "segment base64")
        h["Livepeer-Segment"] = base64.b64encode(b"\xff\xff").decode()
        refused(h, 403, "proto: cannot parse invalid wire-format data", "segment protobuf")
        h = seg_headers(info_a.auth_token, 4)
        h["Livepeer-Payment"] = "QQ"
        refused(h, 402, "base64 decode error: illegal base64 data at input byte 0", "payment base64")
        h["Livepeer-Payment"] = base64.b64encode(b"\x0a\x05ab").decode()
        refused(h, 402, "protobuf unmarshal error: proto: cannot parse invalid wire-format data", "payment protobuf")
        refused(seg_headers(info_a.auth_token, 4, profiles=[pb.VideoProfile(name="x", width=2, height=2, format=5)]),
                403, "unrecognized profile output format", "bad format")
        refused(seg_headers(info_a.auth_token, 4, profiles=[pb.VideoProfile(name="x", width=2, height=2, profile=9)]),
                403, "unrecognized encoder profile", "bad encoder profile")
        refused(seg_headers(info_a.auth_token, 4, profiles=[pb.VideoProfile(name="x", width=2, height=2, encoder=7)]),
                403, "unrecognized video codec", "bad codec")
        refused(seg_headers(info_a.auth_token, 4, duration=300001), 403, "invalid duration", "bad duration")
        refused(seg_headers(info_a.auth_token, 4, capabilities=pb.Capabilities(bitstring=encode_bits([0, 1, 15]))),
                403, "incompatible capabilities", "HEVC decode not offered")
        refused(seg_headers(info_a.auth_token, 4, capabilities=pb.Capabilities(
            bitstring=encode_bits([0, 1]), constraints=pb.Capabilities.Constraints(minVersion="0.9.2"))),
            403, "incompatible capabilities", "min version above ours")
        h = seg_headers(info_a.auth_token, 4)
        h["Content-Type"] = URI_CONTENT_TYPE
        refused(h, 400, "BadRequest", "URI body that fails to download", body=f"{uri}/nothing/here".encode())
        r = h2.get(f"{uri}/stream/{sid}/P360p30fps16x9/99.ts")
        check(r.status_code == 404, "GET of an unknown rendition: 404")

        # ---- concurrent segments of one session on one connection: one at a time, all answered ----
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futs = [pool.submit(post, seg_headers(info_a.auth_token, 10 + i)) for i in range(3)]
            answers = [f.result() for f in futs]
        ok = all(a.status_code == 200 and pb.TranscodeResult.FromString(a.content).WhichOneof("result") == "data"
                 for a in answers)
        check(ok, "three concurrent segments answered with data")

        # ---- the 200 is flushed before the transcode is done ----
        t0 = time.monotonic()
        with h2.stream("POST", uri + "/segment", headers=seg_headers(info_a.auth_token, 20), content=media) as r:
            t_head = time.monotonic() - t0
            content_type = r.headers.get("content-type")
            body = r.read()
            t_body = time.monotonic() - t0
        result = pb.TranscodeResult.FromString(body)
        check(r.status_code == 200 and t_head < t_body - 0.05 and content_type is None and
              result.WhichOneof("result") == "data",
              f"200 headers after {t_head:.3f} s, result after {t_body:.3f} s, no content-type")

        # ---- a session holds 1 working + 4 waiting segments; more are OrchestratorBusy ----
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futs = [pool.submit(post, seg_headers(info_a.auth_token, 30 + i)) for i in range(8)]
            answers = [f.result() for f in futs]
        kinds = collections.Counter(
            (a.status_code, pb.TranscodeResult.FromString(a.content).error or "data") for a in answers)
        check(kinds[(200, "data")] >= 5 and kinds[(200, "OrchestratorBusy")] >= 1 and
              kinds[(200, "data")] + kinds[(200, "OrchestratorBusy")] == 8 and kinds[(200, "data")] <= 5 + 2,
              "8 at once on one session: 5 worked, the rest OrchestratorBusy", str(dict(kinds)))

        # ---- robustness: nothing crashes it, every request gets an answer ----
        import socket
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        for garbage in [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nbad header\r\n\r\n", b"\x00" * 64 + b"\r\n\r\n"]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw_sock:
                with ctx.wrap_socket(raw_sock) as tls:
                    tls.sendall(garbage)
                    try:
                        answer = tls.recv(4096)
                    except (OSError, ssl.SSLError):
                        answer = b""
            check(answer.startswith(b"HTTP/1.1 400") or answer == b"", f"garbage {garbage[:12]!r}: {answer[:20]!r}")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw_sock:
            raw_sock.sendall(b"not TLS at all\r\n\r\n")
        r = h2.get(uri + "/nothing")
        check(r.status_code == 404 and r.text == "404 page not found\n", "unknown route: 404")
        creds = grpc.ssl_channel_credentials(root_certificates=open(cert_path, "rb").read())
        with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
            raw_call = channel.unary_unary("/net.Orchestrator/GetOrchestrator", request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
            err = grpc_error(lambda: raw_call(b"\xff\xff\xff", timeout=10))
            check(err is not None and err[0] == grpc.StatusCode.INTERNAL, "gRPC: bad request message", str(err))
            raw_call = channel.unary_unary("/net.Orchestrator/Nope", request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
            err = grpc_error(lambda: raw_call(b"", timeout=10))
            check(err is not None and err[0] == grpc.StatusCode.UNIMPLEMENTED, "gRPC: unknown method", str(err))
        check(proc.poll() is None and h2.get(first_urls[0]).status_code == 200, "still serving after all that")

        # ---- EndTranscodingSession ----
        err = grpc_error(lambda: grpc_call("EndTranscodingSession", pb.EndTranscodingSessionRequest(auth_token=bad),
                                           pb.EndTranscodingSessionResponse))
        check(err == (grpc.StatusCode.UNKNOWN, "Invalid auth token"), "EndTranscodingSession bad token", str(err))
        err = grpc_error(lambda: grpc_call("EndTranscodingSession", pb.EndTranscodingSessionRequest(),
                                           pb.EndTranscodingSessionResponse))
        check(err == (grpc.StatusCode.INVALID_ARGUMENT, "missing auth token"), "EndTranscodingSession no token",
              str(err))
        check(h2.get(first_urls[0]).status_code == 200, "rendition still served before the end")
        grpc_call("EndTranscodingSession", pb.EndTranscodingSessionRequest(auth_token=info_a.auth_token),
                  pb.EndTranscodingSessionResponse)
        check(h2.get(first_urls[0]).status_code == 404, "renditions dropped after EndTranscodingSession")
        info_c = get_orchestrator()
        check(bool(info_c.auth_token.session_id), "capacity free again after the end")
        r = post(seg_headers(info_b.auth_token, 0))
        check(r.status_code == 200, "the other session now fits", r.text[:100])
        h2.close()

        # ---- restart: SIGKILL, same port ----
        proc.kill()
        proc.wait()
        proc, port2 = start(port, secret=False)
        check(port2 == port, "restarted on the same port")
        with httpx.Client(http2=True, verify=False, timeout=60) as client:
            r = post(seg_headers(info_c.auth_token, 0), client=client)
            check(r.status_code == 403 and r.text == "invalid auth token\n", "restart voids old tokens",
                  f"{r.status_code} {r.text!r}")
        proc.kill()
        proc.wait()
        proc, _ = start(port, secret=True)
        with httpx.Client(http2=True, verify=False, timeout=60) as client:
            r = post(seg_headers(info_c.auth_token, 5), client=client)
            check(r.status_code == 200, "restart with --secret-file keeps tokens valid", f"{r.status_code} {r.text!r}")
        proc.terminate()
        proc.wait(10)

        # ---- the log ----
        events = [json.loads(line) for line in open(log_path)]
        kinds = collections.Counter(e["event"] for e in events)
        check(all(kinds[k] for k in ("get_orchestrator", "segment", "end_session", "stream_get")),
              "log has every event kind", str(kinds))
        seg0 = next(e for e in events if e["event"] == "segment" and e["seq"] == 0)
        check(seg0["session"] == sid and seg0["manifest"] == "selftestStream" and seg0["status"] == 200 and
              seg0["result"] == "data" and seg0["error"] is None and
              seg0["profiles"] == ["P360p30fps16x9", "P240p30fps16x9"], "log: segment line", json.dumps(seg0))
        failed = next(e for e in events if e["event"] == "segment" and e["seq"] == 2)
        check(failed["result"] == "error" and failed["error"] == "No keyframes in input", "log: --fail line")
        capped = [e for e in events if e["event"] == "segment" and e["error"] == "OrchestratorCapped"]
        check(capped and capped[0]["status"] == 403, "log: refusal line")
        ends = [e for e in events if e["event"] == "end_session"]
        check([e["ok"] for e in ends] == [False, False, True], "log: end_session lines")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if check.failures:
            log.error("work dir kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    log.info("%d checks, %d failures", check.count, check.failures)
    return 1 if check.failures else 0


if __name__ == "__main__":
    main()
