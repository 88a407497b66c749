#!/usr/bin/env python3
"""A fake go-livepeer orchestrator for the transcoder side of the
orchestrator <-> transcoder protocol, written from
shared/spec/ot-protocol.md alone: it shares no code or assumptions with
lpgpu, so `lpgpu transcoder` can be tested against it.

One TLS port (self-signed certificate, new at every start, ALPN h2 and
http/1.1) carries, like go-livepeer's service port:
  * gRPC over HTTP/2, framed by hand with the `h2` library: the
    server-streaming /net.Transcoder/RegisterTranscoder;
  * plain HTTP routes: POST /transcodeResults and
    GET /stream/<session>/<seq>.tempfile (over HTTP/2 or HTTP/1.1).

Usage:
  ot_orchestrator.py --listen HOST:PORT --secret SECRET --results-dir DIR
                     [--cert-out FILE] [--cert-name NAME] [--eager-headers]
                     [--first-task-id N] [--h2-window BYTES] [--enforce-capacity]
                     [-v]

It prints exactly one line `listening PORT` on stdout once ready, then reads
JSON commands on stdin, one per line, and answers each with exactly one JSON
line on stdout. Logs go to stderr. EOF on stdin (or {"cmd":"quit"}) exits 0.

Commands ({"cmd": NAME, ...} -> {"ok": true, ...} or {"ok": false, "error": ...}):
  wait_registration {timeout, count=1}  -> the latest accepted registration:
      registrations, capacity, capabilities (decoded numbers), mandatories,
      version, connected, ...; {"ok":false,"error":"timeout","registrations":N}
  registrations                         -> accepted, refused, attempts, connected
  send_task {segment_file, session, seq, duration_ms, profiles: [VideoProfile
      as JSON], profiles_field, url?, capabilities?, force_reinit,
      calc_perceptual_hash, segment_parameters? {from,to}, manifest_id?}
                                        -> task_id, registration (ok false: no
      transcoder connected; with --enforce-capacity also "no transcoders
      available" when every connected registration is full)
  wait_result {task_id, timeout}        -> kind renditions|error, error_text,
      pixels, headers, parts [{content_type, content_length, length, pixels,
      path}], elapsed_ms, late, http_version; {"ok":false,"error":"timeout"}
  back_to_back {sessions: [ids], rounds, segment_file, profiles: [VideoProfile
      as JSON], duration_ms, error_every=0, timeout=120}
                                        -> go-livepeer under load: every session
      gets its seq 0 task at once, then its next task (seq + 1) written to the
      gRPC stream in the same event-loop turn as the 200 answer to its previous
      result, until it has had `rounds` tasks; with error_every K > 0 every
      task with seq % K == K-1 gets a URL that answers 404. Answers when every
      session has all its results: results, renditions, errors, busy (error
      text starts with "transcoder busy", any case), expected_errors (errors
      for the 404 tasks), unexpected_errors (the other error texts, <= 20),
      queued_sends (notifications that could not be written at once and went
      through the stream's queue; normally 0), elapsed_ms, incomplete
      (sessions not finished); {"ok":false,"error":"timeout",...the same} (or
      the send failure as error)
  teardown {session}                    -> sends NotifySegment{url "", session_id}
  placement                             -> no_capacity (send_task / back_to_back
      tasks refused for want of a registration with room, "no transcoder
      connected" included), registrations [{registration, capacity,
      connected, load, sessions: [ids, in placement order]}] for every
      accepted registration (a disconnected one has load 0)
  end_stream {all?}                     -> ends the latest (or every) open
                                           registration stream, grpc-status 0
  violations                            -> every protocol violation seen
  results_count                         -> posted: POST /transcodeResults seen
  downloads                             -> every GET /stream/... (path, status)
  cert                                  -> the certificate: pem, sha256 (of DER)
  quit                                  -> then exit 0

Where the spec leaves go-livepeer's behaviour open, this peer does as
grpc-go would: gRPC response headers go out with the first notification (or
as a trailers-only response), not when the registration is accepted
(--eager-headers changes that).

Placement. By default a task goes to the registration its session was last
sent to while that one is connected, else to the latest connected
registration, whatever its load. With --enforce-capacity it goes where the
spec's "Time limits and capacity" says a go-livepeer orchestrator puts it:
  * capacity counts sessions: a session holds one unit of load on one
    registration (it is pinned there) while that registration is connected,
    and a registration never holds more sessions than the capacity it
    registered;
  * a session that holds no registration (new, released, or its registration
    disconnected) goes to the connected registration with the least load /
    capacity that has room; ties go to the most recent registration (the
    highest number, as the default placement's "latest connected");
  * when every connected registration is full the task is refused with
    "no transcoders available" (nothing is sent, the segment is not stored);
    with none connected it is refused as by default ("no transcoder
    connected"); both count in `no_capacity`;
  * a session's load is released when its teardown is sent, when one of its
    tasks gets an error result (from the registration it is pinned to), and
    when its registration disconnects (end_stream, stream lost); it is placed
    again at its next task.
Capabilities are not compared, and a late task evicts nothing. Results are
delivered by task id in both modes, whatever became of the registration that
carried the task. Load is counted (and `placement` answers) in both modes;
only the choice differs.
"""

import argparse
import asyncio
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "ot_net.proto")

GRPC_METHOD = "/net.Transcoder/RegisterTranscoder"
TRANSCODER_AUTH = "Livepeer-Transcoder-1.0"   # the Authorization header of a result
MAX_PART_BYTES = 300_000_000                 # per rendition part (and per segment)
MIN_RENDITION_BYTES = 25                     # the orchestrator's check after delivery
DEFAULT_CAPABILITIES = list(range(0, 13)) + [14, 26]   # go-livepeer's default set
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# gRPC status codes used here
GRPC_OK, GRPC_UNKNOWN, GRPC_UNIMPLEMENTED, GRPC_INTERNAL = 0, 2, 12, 13

log = logging.getLogger("ot_orchestrator")


# --------------------------------------------------------------------------
# Protobuf messages, generated at run time (nothing generated is committed)

def load_messages():
    """Generate ot_net_pb2 with grpc_tools.protoc into a cache directory keyed
    by the proto's hash, and import it. Only message classes are used: gRPC
    is framed by hand over h2."""
    from grpc_tools import protoc

    source = open(PROTO, "rb").read()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"ot_orchestrator_pb_{digest}")
    if not os.path.exists(os.path.join(cache, "ot_net_pb2.py")):
        # Build privately, then rename: concurrent processes race safely.
        work = tempfile.mkdtemp(prefix="ot_orchestrator_pb_build_")
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
    return importlib.import_module("ot_net_pb2")


pb = None  # set by main() (or by an importer calling load_messages())


# --------------------------------------------------------------------------
# TLS: a self-signed certificate, new at every start

def make_certificate(directory, name=None):
    """Write cert.pem / key.pem (ECDSA P-256, self-signed) into `directory`.
    By default the certificate names localhost and 127.0.0.1; with `name` it
    names only that host (so a transcoder that verified names would fail).
    Uses `cryptography` when importable, else the openssl CLI."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    cn = name or "localhost"
    try:
        import datetime
        import ipaddress
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        pkey = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        alt = [x509.DNSName(cn)] if name else [x509.DNSName("localhost"),
                                                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                       .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(minutes=5))
                       .not_valid_after(now + datetime.timedelta(days=2))
                       .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                       .sign(pkey, hashes.SHA256()))
        open(cert, "wb").write(certificate.public_bytes(serialization.Encoding.PEM))
        open(key, "wb").write(pkey.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    except ImportError:
        san = f"DNS:{cn}" if name else "DNS:localhost,IP:127.0.0.1"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={cn}",
                        "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True)
    return cert, key


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    # Like a Go TLS server: h2 preferred, HTTP/1.1 for clients that ask for it.
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


# --------------------------------------------------------------------------
# Parsing helpers, modelled on what a Go orchestrator accepts

_INT64 = re.compile(r"[+-]?[0-9]+")


def go_parse_int(text):
    """strconv.ParseInt(text, 10, 64): optional sign, decimal digits, int64."""
    if text is None or not _INT64.fullmatch(text):
        raise ValueError(f"invalid syntax: {text!r}")
    value = int(text)
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f"value out of range: {text!r}")
    return value


_TSPECIALS = set('()<>@,;:\\"/[]?=')


def _token(s, i):
    """The RFC 2045 token at s[i:], and the index after it."""
    j = i
    while j < len(s) and 32 < ord(s[j]) < 127 and s[j] not in _TSPECIALS:
        j += 1
    return s[i:j], j


def _skip_space(s, i):
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i


def parse_media_type(value):
    """(mediatype, params) like Go's mime.ParseMediaType; ValueError when Go
    would return an error (which the orchestrator answers 415)."""
    base = value.split(";", 1)[0]
    mediatype = base.strip().lower()
    typ, rest = _token(mediatype, 0)
    if not typ:
        raise ValueError("mime: no media type")
    if rest < len(mediatype):
        if mediatype[rest] != "/":
            raise ValueError("mime: expected slash after first token")
        sub, end = _token(mediatype, rest + 1)
        if not sub:
            raise ValueError("mime: expected token after slash")
        if end != len(mediatype):
            raise ValueError("mime: unexpected content after media subtype")
    params = {}
    s, i = value, len(base)
    while True:
        i = _skip_space(s, i)
        if i >= len(s):
            break
        if s[i:].strip() == ";":   # a trailing semicolon is ignored
            break
        if s[i] != ";":
            raise ValueError("mime: invalid media parameter")
        i = _skip_space(s, i + 1)
        key, i = _token(s, i)
        if not key:
            raise ValueError("mime: invalid media parameter")
        i = _skip_space(s, i)
        if i >= len(s) or s[i] != "=":
            raise ValueError("mime: invalid media parameter")
        i = _skip_space(s, i + 1)
        if i < len(s) and s[i] == '"':
            out, i = [], i + 1
            while i < len(s) and s[i] != '"':
                if s[i] == "\\" and i + 1 < len(s):
                    i += 1
                out.append(s[i])
                i += 1
            if i >= len(s):
                raise ValueError("mime: invalid media parameter")
            val, i = "".join(out), i + 1
        else:
            val, i = _token(s, i)
            if not val:
                raise ValueError("mime: invalid media parameter")
        key = key.lower()
        if key in params:
            raise ValueError("mime: duplicate parameter name")
        params[key] = val
    return mediatype, params


def parse_headers_block(block):
    """'Name: value' lines (bytes, CRLF separated) -> [(lower name, value)]."""
    headers = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:   # obsolete line folding
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip().decode("latin-1"))
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip() or name != name.strip():
            raise ValueError(f"malformed header line {line[:80]!r}")
        headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
    return headers


def parse_multipart(body, boundary):
    """Parts of a multipart body as [(headers, content)]. ValueError for
    anything a multipart reader fails on (the orchestrator answers 500)."""
    if not boundary:
        raise ValueError("no multipart boundary param in Content-Type")
    delim = b"--" + boundary.encode("latin-1")

    def delimiter_at(i):
        """Is there a whole delimiter line at body[i:] (i at '--boundary')?
        Returns (is_close, index after the line) or None."""
        j = i + len(delim)
        if body[i:j] != delim:
            return None
        if body[j:j + 2] == b"--":
            return True, j + 2
        while j < len(body) and body[j] in b" \t":   # transport padding
            j += 1
        if body[j:j + 2] == b"\r\n":
            return False, j + 2
        return None

    # The first delimiter: at the start or after a preamble line.
    pos, found = 0, delimiter_at(0)
    while found is None:
        k = body.find(b"\r\n" + delim, pos)
        if k < 0:
            raise ValueError("multipart: NextPart: EOF (no boundary found)")
        pos = k + 2
        found = delimiter_at(pos)
        if found is None:
            pos += 1
    parts = []
    is_close, pos = found
    while not is_close:
        # Part headers up to an empty line.
        if body[pos:pos + 2] == b"\r\n":
            block, start = b"", pos + 2
        else:
            end = body.find(b"\r\n\r\n", pos)
            if end < 0:
                raise ValueError("multipart: unexpected EOF in part headers")
            block, start = body[pos:end], end + 4
        headers = parse_headers_block(block)
        # Content up to the next CRLF + delimiter line.
        search = start
        while True:
            k = body.find(b"\r\n" + delim, search)
            if k < 0:
                raise ValueError("multipart: unexpected EOF (no closing boundary)")
            found = delimiter_at(k + 2)
            if found is not None:
                break
            search = k + 1
        content = body[start:k]
        if len(content) > MAX_PART_BYTES:
            raise ValueError(f"part {len(parts)} over {MAX_PART_BYTES} bytes")
        parts.append((headers, content))
        is_close, pos = found
    return parts


def decode_bits(words):
    """Capability numbers from a Capabilities bitstring: k is bit k % 64 of word k / 64."""
    return [64 * w + b for w, word in enumerate(words) for b in range(64) if word >> b & 1]


def encode_bits(numbers):
    words = [0] * (max(numbers) // 64 + 1) if numbers else []
    for k in numbers:
        words[k // 64] |= 1 << (k % 64)
    return words


def grpc_percent_encode(message):
    """grpc-message is percent-encoded outside printable ASCII (and '%')."""
    out = []
    for byte in message.encode("utf-8"):
        out.append(chr(byte) if 0x20 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}")
    return "".join(out)


def header_get(headers, name):
    """First value of `name` (lower case) in [(name, value)], like Go's Header.Get."""
    for key, value in headers:
        if key == name:
            return value
    return None


# --------------------------------------------------------------------------
# Transport: HTTP/2 (h2) and a small HTTP/1.1 server on the same TLS port

class Request:
    """A fully received plain HTTP request."""

    def __init__(self, method, path, headers, body, http_version, scheme, authority):
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.http_version, self.scheme, self.authority = http_version, scheme, authority
        self.received_at = time.monotonic()

    def header(self, name):
        return header_get(self.headers, name)


class Response:
    def __init__(self, status, body=b"", content_type="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.status, self.body, self.content_type, self.headers = status, body, content_type, list(headers)
        # Run synchronously right after the answer's last bytes are handed to
        # the transport, before anything else can run (see fire_sent).
        self.on_sent = []

    def fire_sent(self):
        """Run the on_sent hooks, once. Called right after the answer is
        written, or when sending it failed (the request was handled anyway)."""
        hooks, self.on_sent = self.on_sent, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("after-answer hook")


class H2Stream:
    """One HTTP/2 stream as the server sees it."""

    def __init__(self, stream_id, headers):
        self.id = stream_id
        self.headers = [(k, v) for k, v in headers if not k.startswith(":")]
        self.pseudo = {k: v for k, v in headers if k.startswith(":")}
        self.body = bytearray()
        self.data_arrived = asyncio.Event()   # set on every DATA frame and at the end
        self.ended = asyncio.Event()          # the client half-closed (or the stream died)
        self.reset = False                    # RST_STREAM or connection lost
        self.on_close = []                    # callbacks when the stream dies

    def header(self, name):
        return header_get(self.headers, name)

    def kill(self):
        if not self.reset:
            self.reset = True
            self.ended.set()
            self.data_arrived.set()
            for callback in self.on_close:
                callback()


class H2Server:
    """The server side of one HTTP/2 connection. Every stream runs as its own
    task; DATA is acknowledged as it is read (so uploads of any size keep
    flowing) and sent within the peer's flow-control windows."""

    def __init__(self, orch, reader, writer, peer):
        self.orch, self.reader, self.writer, self.peer = orch, reader, writer, peer
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.streams = {}
        self.window_changed = asyncio.Event()
        self.closed = False
        self.tasks = set()

    async def flush(self, on_written=None):
        """Write what h2 has queued. `on_written` runs right after the write
        (which hands the bytes to the transport: TLS and the socket send run
        inside it), before draining can yield to the event loop."""
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.writer.write(data)
            if on_written is not None:
                on_written()
            await self.writer.drain()

    def _wake_senders(self):
        self.window_changed.set()
        self.window_changed = asyncio.Event()

    async def run(self, initial=b""):
        self.conn.initiate_connection()
        window = self.orch.h2_window
        if window and window != 65535:
            # Like Go's server: a bigger receive window than HTTP/2's default.
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            if window > 65535:
                self.conn.increment_flow_control_window(window - 65535)
        data = initial
        try:
            await self.flush()
            while True:
                if data:
                    for event in self.conn.receive_data(data):
                        self.handle(event)
                    await self.flush()
                data = await self.reader.read(1 << 16)
                if not data:
                    break
        except h2.exceptions.ProtocolError as error:
            self.orch.violation(f"HTTP/2 protocol error from {self.peer}: {error!r}")
            try:
                await self.flush()   # h2 queued a GOAWAY
            except Exception:
                pass
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError) as error:
            log.debug("connection %s: %r", self.peer, error)
        finally:
            self.closed = True
            for stream in list(self.streams.values()):
                stream.kill()
            self._wake_senders()
            self.writer.close()
            log.debug("connection %s closed", self.peer)

    def handle(self, event):
        if isinstance(event, h2.events.RequestReceived):
            stream = H2Stream(event.stream_id, event.headers)
            self.streams[event.stream_id] = stream
            if event.stream_ended is not None:
                stream.ended.set()
            task = asyncio.create_task(self.serve_stream(stream))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
                stream.data_arrived.set()
            # Give the window back at once: h2 sends WINDOW_UPDATE when due.
            try:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            except h2.exceptions.StreamClosedError:
                pass
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.ended.set()
                stream.data_arrived.set()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.kill()
            self._wake_senders()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._wake_senders()
        elif isinstance(event, h2.events.ConnectionTerminated):
            for stream in list(self.streams.values()):
                stream.kill()
            self._wake_senders()

    async def send_headers(self, stream, headers, end_stream=False, on_written=None):
        if self.closed or stream.reset:
            raise ConnectionError("stream closed")
        self.conn.send_headers(stream.id, headers, end_stream=end_stream)
        await self.flush(on_written)
        if end_stream:
            self._forget(stream)

    async def send_data(self, stream, data, end_stream=False, on_written=None):
        """DATA frames no bigger than the peer's windows and frame size;
        `on_written` runs once the last frame is written (see flush)."""
        view = memoryview(data)
        while True:
            if self.closed or stream.reset:
                raise ConnectionError("stream closed")
            try:
                room = self.conn.local_flow_control_window(stream.id)
            except h2.exceptions.StreamClosedError:
                raise ConnectionError("stream closed")
            n = min(room, self.conn.max_outbound_frame_size, len(view))
            if n == 0 and len(view):
                await self.window_changed.wait()
                continue
            last = n == len(view)
            self.conn.send_data(stream.id, view[:n].tobytes(), end_stream=end_stream and last)
            await self.flush(on_written if last else None)
            view = view[n:]
            if last:
                break
        if end_stream:
            self._forget(stream)

    def _forget(self, stream):
        # Our side is done; keep the stream only while the client may still send.
        if stream.ended.is_set():
            self.streams.pop(stream.id, None)

    async def serve_stream(self, stream):
        response = None
        try:
            content_type = stream.header("content-type") or ""
            if content_type.startswith("application/grpc"):
                await self.orch.serve_grpc(GrpcCall(self, stream))
                return
            await stream.ended.wait()
            if stream.reset:
                return
            request = Request(stream.pseudo.get(":method", ""), stream.pseudo.get(":path", ""), stream.headers,
                              bytes(stream.body), "2", stream.pseudo.get(":scheme"), stream.pseudo.get(":authority"))
            response = self.orch.route(request)
            headers = [(":status", str(response.status)), ("content-type", response.content_type),
                       ("content-length", str(len(response.body)))] + response.headers
            head_only = request.method == "HEAD" or not response.body
            await self.send_headers(stream, headers, end_stream=head_only,
                                    on_written=response.fire_sent if head_only else None)
            if not head_only:
                await self.send_data(stream, response.body, end_stream=True, on_written=response.fire_sent)
        except (ConnectionError, h2.exceptions.StreamClosedError):
            log.debug("stream %d on %s went away", stream.id, self.peer)
        except Exception:
            log.exception("stream %d on %s", stream.id, self.peer)
            try:
                self.conn.reset_stream(stream.id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                await self.flush()
            except Exception:
                pass
        finally:
            if response is not None:
                response.fire_sent()   # no-op once run; else the answer could not be sent
            if stream.ended.is_set():
                self.streams.pop(stream.id, None)


class GrpcCall:
    """One gRPC call on an H2 stream: length-prefixed messages in DATA frames,
    status in trailers (or a trailers-only response before any message)."""

    def __init__(self, server, stream):
        self.server, self.stream = server, stream
        self.headers_sent = False
        self.finished = False

    @property
    def authority(self):
        return self.stream.pseudo.get(":authority")

    async def read_request(self):
        """The request messages once the client half-closes (or, for a client
        that does not, once one whole message is in): [(flag, bytes)]."""
        while True:
            body = self.stream.body
            if self.stream.ended.is_set():
                break
            if len(body) >= 5 and len(body) >= 5 + struct.unpack(">I", body[1:5])[0]:
                break
            self.stream.data_arrived.clear()
            await self.stream.data_arrived.wait()
        messages, body, i = [], bytes(self.stream.body), 0
        while i + 5 <= len(body):
            flag, length = struct.unpack(">BI", body[i:i + 5])
            if i + 5 + length > len(body):
                break
            messages.append((flag, body[i + 5:i + 5 + length]))
            i += 5 + length
        return messages, len(body) - i   # leftover bytes = a truncated message

    async def send_response_headers(self):
        if not self.headers_sent:
            self.headers_sent = True
            await self.server.send_headers(self.stream, [(":status", "200"), ("content-type", "application/grpc")])

    async def send_message(self, payload):
        await self.send_response_headers()
        await self.server.send_data(self.stream, struct.pack(">BI", 0, len(payload)) + payload)

    async def finish(self, code, message=""):
        """End the call with grpc-status `code`."""
        if self.finished:
            return
        self.finished = True
        trailers = [("grpc-status", str(code))]
        if message:
            trailers.append(("grpc-message", grpc_percent_encode(message)))
        if not self.headers_sent:   # trailers-only response
            self.headers_sent = True
            trailers = [(":status", "200"), ("content-type", "application/grpc")] + trailers
        await self.server.send_headers(self.stream, trailers, end_stream=True)


class BufferedReader:
    """Byte source for the HTTP/1.1 parser: an asyncio reader with a buffer."""

    def __init__(self, reader, initial):
        self.reader, self.buf = reader, bytearray(initial)

    async def _more(self):
        chunk = await self.reader.read(1 << 16)
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(self.buf), None)
        self.buf += chunk

    async def until(self, delim, limit=1 << 16):
        while True:
            k = self.buf.find(delim)
            if k >= 0:
                out = bytes(self.buf[:k])
                del self.buf[:k + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            await self._more()

    async def exactly(self, n):
        while len(self.buf) < n:
            await self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


async def serve_http1(orch, reader, writer, peer, initial):
    """HTTP/1.1 with keep-alive: enough for a plain segment GET (which the
    spec allows over HTTP/1.1) and to record a result posted the wrong way."""
    source = BufferedReader(reader, initial)
    try:
        while True:
            try:
                head = await source.until(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            request_line, _, block = head.partition(b"\r\n")
            try:
                method, target, version = request_line.decode("latin-1").split(" ")
                headers = parse_headers_block(block)
            except ValueError:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if (header_get(headers, "transfer-encoding") or "").lower() == "chunked":
                body = bytearray()
                while True:
                    size = int((await source.until(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        while await source.until(b"\r\n"):   # trailers, up to an empty line
                            pass
                        break
                    body += await source.exactly(size)
                    await source.exactly(2)
                body = bytes(body)
            else:
                body = await source.exactly(int(header_get(headers, "content-length") or 0))
            http_version = version.split("/")[-1]
            request = Request(method, target, headers, body, http_version, "https", header_get(headers, "host"))
            if (header_get(headers, "content-type") or "").startswith("application/grpc"):
                response = Response(505, "gRPC needs HTTP/2")
            else:
                response = orch.route(request)
            close = http_version == "1.0" or (header_get(headers, "connection") or "").lower() == "close"
            reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                      415: "Unsupported Media Type", 500: "Internal Server Error"}.get(response.status, "Status")
            lines = [f"HTTP/1.1 {response.status} {reason}", f"Content-Type: {response.content_type}",
                     f"Content-Length: {len(response.body)}"] + [f"{k}: {v}" for k, v in response.headers]
            if close:
                lines.append("Connection: close")
            try:
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                if method != "HEAD":
                    writer.write(response.body)
            finally:
                response.fire_sent()
            await writer.drain()
            if close:
                return
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError, ValueError) as error:
        log.debug("HTTP/1.1 connection %s: %r", peer, error)
    finally:
        writer.close()


# --------------------------------------------------------------------------
# The orchestrator

class Registration:
    """One accepted RegisterTranscoder call (one transcoder connection)."""

    def __init__(self, number, call, request):
        self.number, self.call = number, call
        self.capacity = request.capacity
        self.capabilities_present = request.HasField("capabilities")
        caps = request.capabilities
        self.capabilities = decode_bits(caps.bitstring) if self.capabilities_present else list(DEFAULT_CAPABILITIES)
        self.mandatories = decode_bits(caps.mandatories)
        self.capacities = {str(k): v for k, v in caps.capacities.items()}
        self.version = caps.version
        self.min_version = caps.constraints.minVersion
        self.authority = call.authority
        self.connected = True
        self.sessions = []              # sessions holding load here, in placement order
        self.outbox = asyncio.Queue()   # (kind, payload, task or None, future) | CLOSED
        self.sending = False            # the stream's writer is busy with an outbox item

    def describe(self):
        return {"capacity": self.capacity, "capabilities": self.capabilities, "mandatories": self.mandatories,
                "capacities": self.capacities, "version": self.version, "min_version": self.min_version,
                "capabilities_present": self.capabilities_present, "authority": self.authority,
                "connected": self.connected, "registration": self.number}


CLOSED = object()


class Task:
    def __init__(self, task_id, session, seq, duration_ms, profiles, calc_phash, registration):
        self.id, self.session, self.seq = task_id, session, seq
        self.duration_ms, self.profiles, self.calc_phash = duration_ms, profiles, calc_phash
        self.registration = registration
        # go-livepeer waits max(8 s, 4 x duration); duration 0 means 2 s.
        seconds = (duration_ms if duration_ms > 0 else 2000) / 1000.0
        self.deadline_s = max(8.0, 4.0 * seconds)
        self.notified_at = None
        self.result = None
        self.done = asyncio.Event()
        # back_to_back: called (synchronously) once the 200 answer to this
        # task's result is written
        self.on_answered = None


class Orchestrator:
    def __init__(self, secret, results_dir, host, port, eager_headers, first_task_id, h2_window,
                 enforce_capacity=False):
        self.secret, self.results_dir = secret, results_dir
        self.host, self.port = host, port
        self.eager_headers, self.h2_window = eager_headers, h2_window
        self.enforce_capacity = enforce_capacity
        self.next_task_id = first_task_id
        self.registrations = []        # accepted, in order
        self.attempts = self.refused = 0
        self.registered = asyncio.Condition()
        self.tasks = {}
        self.pins = {}                 # session -> Registration it was sent to
        self.holders = {}              # session -> Registration holding its load
        self.no_capacity = 0           # tasks refused for want of a registration with room
        self.segments = {}             # URL path -> bytes
        self.downloads = []
        self.posted = 0
        self.violations_list = []
        self.cert_pem = ""

    def violation(self, text):
        log.warning("violation: %s", text)
        self.violations_list.append(text)

    # ---- connections ------------------------------------------------------

    async def on_connection(self, reader, writer):
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            # Shutting down. Swallowed: Python 3.11's asyncio logs a cancelled
            # connection callback as an unhandled error.
            writer.close()

    async def _serve_connection(self, reader, writer):
        peer = writer.get_extra_info("peername")
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object else None
        log.debug("connection from %s, ALPN %s", peer, alpn)
        if alpn == "h2":
            await H2Server(self, reader, writer, peer).run()
            return
        # No ALPN (or http/1.1): HTTP/2 with prior knowledge, or HTTP/1.1.
        initial = b""
        try:
            while len(initial) < len(H2_PREFACE) and H2_PREFACE.startswith(initial):
                chunk = await reader.read(len(H2_PREFACE) - len(initial))
                if not chunk:
                    writer.close()
                    return
                initial += chunk
        except (ConnectionError, ssl.SSLError, OSError):
            writer.close()
            return
        if initial == H2_PREFACE:
            await H2Server(self, reader, writer, peer).run(initial)
        else:
            await serve_http1(self, reader, writer, peer, initial)

    # ---- gRPC: RegisterTranscoder -----------------------------------------

    async def serve_grpc(self, call):
        path = call.stream.pseudo.get(":path")
        if path != GRPC_METHOD:
            await call.finish(GRPC_UNIMPLEMENTED, f"unknown method {path}")
            return
        self.attempts += 1
        if call.stream.pseudo.get(":method") != "POST":
            self.violation(f"RegisterTranscoder with :method {call.stream.pseudo.get(':method')}")
        if call.stream.header("te") != "trailers":
            self.violation(f"RegisterTranscoder without 'te: trailers' (te={call.stream.header('te')!r})")
        messages, leftover = await call.read_request()
        if call.stream.reset:
            return
        if len(messages) != 1 or leftover:
            self.violation(f"RegisterTranscoder request carried {len(messages)} messages (+{leftover} stray bytes)")
        if not messages:
            self.refused += 1
            await call.finish(GRPC_INTERNAL, "no request message")
            return
        flag, raw = messages[0]
        if flag != 0:
            self.violation("RegisterTranscoder request is compressed")
            self.refused += 1
            await call.finish(GRPC_INTERNAL, "compressed message without grpc-encoding")
            return
        try:
            request = pb.RegisterRequest.FromString(raw)
        except Exception as error:
            self.violation(f"RegisterRequest does not parse: {error}")
            self.refused += 1
            await call.finish(GRPC_INTERNAL, "grpc: error unmarshalling request")
            return
        if request.secret != self.secret:
            log.info("registration refused: invalid secret")
            self.refused += 1
            await call.finish(GRPC_UNKNOWN, "invalid secret")
            return
        if request.capacity <= 0:
            log.info("registration refused: zero capacity (%d)", request.capacity)
            self.refused += 1
            await call.finish(GRPC_UNKNOWN, "zero capacity")
            return

        reg = Registration(len(self.registrations) + 1, call, request)

        def lost():
            if reg.connected:
                reg.connected = False
                log.info("registration %d: stream lost", reg.number)
            self.release_registration(reg)
            reg.outbox.put_nowait(CLOSED)

        call.stream.on_close.append(lost)
        async with self.registered:
            self.registrations.append(reg)
            self.registered.notify_all()
        log.info("registration %d accepted: %s", reg.number, json.dumps(reg.describe()))
        try:
            # go-livepeer (grpc-go) sends response headers with the first
            # message; --eager-headers sends them at once instead.
            if self.eager_headers:
                await call.send_response_headers()
            while True:
                item = await reg.outbox.get()
                if item is CLOSED:
                    break
                kind, payload, task, future = item
                reg.sending = True
                try:
                    if kind == "end":
                        reg.connected = False
                        self.release_registration(reg)
                        await call.finish(GRPC_OK)
                        future.set_result(True)
                        log.info("registration %d: stream ended by the orchestrator", reg.number)
                        break
                    await call.send_message(payload)
                    if task is not None:
                        task.notified_at = time.monotonic()
                    future.set_result(True)
                finally:
                    reg.sending = False
        except (ConnectionError, h2.exceptions.ProtocolError) as error:
            log.info("registration %d: send failed: %r", reg.number, error)
        finally:
            reg.connected = False
            self.release_registration(reg)
            while not reg.outbox.empty():
                item = reg.outbox.get_nowait()
                if item is not CLOSED and not item[3].done():
                    item[3].set_exception(ConnectionError("registration stream closed"))

    def latest_connected(self):
        for reg in reversed(self.registrations):
            if reg.connected:
                return reg
        return None

    # ---- placement and load -----------------------------------------------

    def place(self, session):
        """The registration for a task of `session`, or an error answer (a
        dict), counted in no_capacity. The caller takes the load there (see
        take) once the task is built."""
        if self.enforce_capacity:
            reg = self.holders.get(session)
            if reg is None or not reg.connected:
                connected = [r for r in self.registrations if r.connected]
                if not connected:
                    self.no_capacity += 1
                    return {"ok": False, "error": "no transcoder connected"}
                free = [r for r in connected if len(r.sessions) < r.capacity]
                if not free:
                    self.no_capacity += 1
                    log.info("session %s: no registration with room (%s)", session,
                             ", ".join(f"{r.number}: {len(r.sessions)}/{r.capacity}" for r in connected))
                    return {"ok": False, "error": "no transcoders available"}
                # least load / capacity (exact), ties to the most recent registration
                reg = min(free, key=lambda r: (Fraction(len(r.sessions), r.capacity), -r.number))
        else:
            reg = self.pins.get(session)
            if reg is None or not reg.connected:   # a session stays on its transcoder while it is there
                reg = self.latest_connected()
            if reg is None:
                self.no_capacity += 1
                return {"ok": False, "error": "no transcoder connected"}
        return reg

    def take(self, session, reg):
        """`session` holds its load on `reg` (moved from wherever it was)."""
        old = self.holders.get(session)
        if old is reg:
            return
        if old is not None:
            old.sessions.remove(session)
        reg.sessions.append(session)
        self.holders[session] = reg
        log.debug("session %s placed on registration %d (%d/%d)", session, reg.number, len(reg.sessions),
                  reg.capacity)

    def release(self, session, reg=None):
        """`session` no longer holds load (only if it holds it on `reg`, when given)."""
        old = self.holders.get(session)
        if old is None or (reg is not None and old is not reg):
            return
        old.sessions.remove(session)
        del self.holders[session]
        log.debug("session %s released from registration %d", session, old.number)

    def release_registration(self, reg):
        """A registration disconnected: its sessions lose their load there."""
        for session in reg.sessions:
            self.holders.pop(session, None)
        reg.sessions.clear()

    async def push(self, reg, kind, payload=None, task=None, timeout=10.0):
        """Queue a message (or the end) on a registration stream and wait until written."""
        future = asyncio.get_running_loop().create_future()
        reg.outbox.put_nowait((kind, payload, task, future))
        await asyncio.wait_for(future, timeout)

    def write_now(self, reg, payload, task):
        """Write one notification on a registration stream synchronously:
        framed, handed to h2 and written to the transport (TLS record and
        socket send happen inside writer.write) before this returns, with no
        await. Only when the stream's own writer is idle with nothing queued
        (else the message could interleave with a half-sent one) and the
        flow-control windows take the whole message at once; False otherwise
        (the caller queues it instead)."""
        call, server = reg.call, reg.call.server
        stream = call.stream
        if (not reg.connected or reg.sending or not reg.outbox.empty() or call.finished or server.closed
                or stream.reset or server.writer.is_closing()):
            return False
        frame = struct.pack(">BI", 0, len(payload)) + payload
        try:
            room = server.conn.local_flow_control_window(stream.id)
        except h2.exceptions.StreamClosedError:
            return False
        if room < len(frame) or len(frame) > server.conn.max_outbound_frame_size:
            return False
        try:
            if not call.headers_sent:   # grpc-go: response headers go with the first message
                server.conn.send_headers(stream.id, [(":status", "200"), ("content-type", "application/grpc")])
                call.headers_sent = True
            server.conn.send_data(stream.id, frame)
            server.writer.write(server.conn.data_to_send())
        except (h2.exceptions.ProtocolError, ConnectionError, OSError) as error:
            log.info("registration %d: direct send failed: %r", reg.number, error)
            return False
        if task is not None:
            task.notified_at = time.monotonic()
        return True

    # ---- HTTP routes ------------------------------------------------------

    def route(self, request):
        path = request.path.split("?", 1)[0]
        if path == "/transcodeResults":
            if request.method != "POST":
                return Response(405, "method not allowed")
            return self.transcode_results(request)
        if path.startswith("/stream/"):
            return self.serve_segment(request, path)
        return Response(404, "404 page not found\n")

    def serve_segment(self, request, path):
        data = self.segments.get(path) if request.method in ("GET", "HEAD") else None
        status = 200 if data is not None else 404
        self.downloads.append({"path": path, "status": status, "http_version": request.http_version,
                               "bytes": len(data) if data is not None else 0})
        log.info("GET %s over HTTP/%s -> %d", path, request.http_version, status)
        if data is None:
            return Response(404, "404 page not found\n")
        return Response(200, data, "video/mp2t")

    def transcode_results(self, request):
        """POST /transcodeResults with the orchestrator's checks, in the spec's order."""
        self.posted += 1
        header = request.header
        log.info("POST /transcodeResults over HTTP/%s TaskId=%s Content-Type=%s (%d bytes)",
                 request.http_version, header("taskid"), header("content-type"), len(request.body))

        def reject(status, text, why):
            self.violation(f"POST /transcodeResults (TaskId={header('taskid')}) answered {status}: {why}")
            return Response(status, text + "\n")

        if header("authorization") != TRANSCODER_AUTH:
            return reject(401, "Unauthorized", f"Authorization is {header('authorization')!r}")
        if header("credentials") != self.secret:
            return reject(401, "Unauthorized", "Credentials do not match the secret")
        try:
            mediatype, params = parse_media_type(header("content-type") or "")
        except ValueError as error:
            return reject(415, str(error), f"Content-Type {header('content-type')!r}: {error}")
        try:
            task_id = go_parse_int(header("taskid"))
        except ValueError:
            return reject(400, "Invalid Task ID", f"TaskId {header('taskid')!r}")

        record = {"task_id": task_id, "http_version": request.http_version, "scheme": request.scheme,
                  "authority": request.authority, "headers": {k: v for k, v in request.headers},
                  "content_type": header("content-type"), "error_text": "", "pixels": None, "parts": []}
        if request.http_version != "2":
            self.violation(f"task {task_id}: result posted over HTTP/{request.http_version}, not HTTP/2")
        if request.scheme != "https":
            self.violation(f"task {task_id}: result posted with :scheme {request.scheme!r}")

        if mediatype == "livepeer/transcoding-error":
            record["kind"] = "error"
            record["error_text"] = request.body.decode("utf-8", "replace")
            pixels = header("pixels")
            if pixels is None:
                self.violation(f"task {task_id}: error result without a Pixels header")
            else:
                try:
                    record["pixels"] = go_parse_int(pixels)
                    if record["pixels"] != 0:
                        self.violation(f"task {task_id}: error result with Pixels {pixels} (spec: 0)")
                except ValueError:
                    self.violation(f"task {task_id}: error result with Pixels {pixels!r}")
            self.deliver(record, [], request.received_at)
            return self.delivered_answer(record)

        try:
            record["pixels"] = go_parse_int(header("pixels"))
        except ValueError:
            return reject(400, "Invalid Pixels", f"Pixels {header('pixels')!r}")
        if mediatype != "multipart/mixed":
            # go-livepeer answers 200 and delivers nothing: the task times out.
            self.violation(f"task {task_id}: result with content type {mediatype!r} answered 200, not delivered")
            return Response(200, "")
        try:
            raw_parts = parse_multipart(request.body, params.get("boundary"))
            for i, (part_headers, _) in enumerate(raw_parts):
                pixels = header_get(part_headers, "pixels")
                if pixels is not None:
                    try:
                        go_parse_int(pixels)
                    except ValueError:
                        raise ValueError(f"part {i}: Pixels {pixels!r} is not an integer")
        except ValueError as error:
            return reject(500, f"error reading result: {error}", f"multipart body: {error}")
        record["kind"] = "renditions"
        self.deliver(record, raw_parts, request.received_at)
        return self.delivered_answer(record)

    def delivered_answer(self, record):
        """The 200 answer to a result; when the result was delivered to a
        back_to_back task, the next task goes out the moment it is written."""
        response = Response(200, "")
        task = self.tasks.get(record["task_id"])
        if task is not None and task.result is record and task.on_answered is not None:
            hook, task.on_answered = task.on_answered, None
            response.on_sent.append(lambda: hook(task))
        return response

    def deliver(self, record, raw_parts, received_at):
        """Hand a parsed result to its task (or drop it, as go-livepeer does)."""
        task_id = record["task_id"]
        task = self.tasks.get(task_id)
        if task is None:
            self.violation(f"result for unknown task {task_id} (answered 200, dropped)")
            return
        if task.result is not None:
            self.violation(f"task {task_id}: a second result (answered 200, dropped)")
            return
        if record["kind"] == "error":
            # go-livepeer drops a session whose segment failed: its load goes
            # (unless it already moved to another registration).
            self.release(task.session, task.registration)
        notified = task.notified_at or received_at
        record["elapsed_ms"] = int(round((received_at - notified) * 1000))
        record["late"] = received_at - notified > task.deadline_s
        record["deadline_ms"] = int(task.deadline_s * 1000)
        if record["late"]:
            log.warning("task %d: result after %d ms, past the %d ms deadline", task_id, record["elapsed_ms"],
                        record["deadline_ms"])
        # The spec says results go to the host:port dialled for gRPC. Both
        # :authority values are reported, not compared: a gRPC client that
        # overrides the TLS name (as grpcio does) sends that name instead.
        record["grpc_authority"] = task.registration.authority
        for i, (headers, content) in enumerate(raw_parts):
            record["parts"].append(self.save_part(task_id, i, headers, content))
        if record["kind"] == "renditions":
            self.check_parts(task, record["parts"])
        task.result = record
        task.done.set()

    def save_part(self, task_id, index, headers, content):
        content_type = header_get(headers, "content-type")
        declared = header_get(headers, "content-length")
        pixels = header_get(headers, "pixels")
        media = (content_type or "").split(";")[0].strip().lower()
        ext = {"video/mp2t": "ts", "video/mp4": "mp4"}.get(media, "bin")
        path = os.path.join(self.results_dir, f"task{task_id}_part{index}.{ext}")
        with open(path, "wb") as f:
            f.write(content)
        try:
            content_length = int(declared) if declared is not None else None
        except ValueError:
            content_length = None
        where = f"task {task_id} part {index}"
        if content_type is None:
            self.violation(f"{where}: no Content-Type")
        if declared is None:
            self.violation(f"{where}: no Content-Length")
        elif content_length is None:
            self.violation(f"{where}: Content-Length {declared!r} is not a number")
        elif content_length != len(content):
            self.violation(f"{where}: Content-Length {content_length} but {len(content)} bytes")
        return {"content_type": content_type, "content_length": content_length, "length": len(content),
                "pixels": int(pixels) if pixels is not None else None, "path": path,
                "headers": {k: v for k, v in headers}}

    def check_parts(self, task, parts):
        """One rendition per profile in profile order (each >= 25 bytes, the
        right type), each followed by a hash part when asked."""
        expected = ["video/mp4" if p.format == pb.VideoProfile.MP4 else "video/mp2t" for p in task.profiles]
        rendition, previous_was_rendition = 0, False
        for i, part in enumerate(parts):
            where = f"task {task.id} part {i}"
            media = (part["content_type"] or "").split(";")[0].strip().lower()
            if part["pixels"] is not None:
                if task.calc_phash and previous_was_rendition:
                    self.violation(f"{where}: rendition without the perceptual hash part before it")
                if rendition < len(expected):
                    if media != expected[rendition]:
                        self.violation(f"{where}: Content-Type {part['content_type']!r} for a "
                                       f"{expected[rendition]} rendition")
                else:
                    self.violation(f"{where}: more renditions than the {len(expected)} profiles")
                if part["length"] < MIN_RENDITION_BYTES:
                    self.violation(f"{where}: rendition of {part['length']} bytes (< {MIN_RENDITION_BYTES})")
                rendition += 1
                previous_was_rendition = True
            elif media == "application/octet-stream":
                if not task.calc_phash:
                    self.violation(f"{where}: a perceptual hash part, but none was asked for")
                elif not previous_was_rendition:
                    self.violation(f"{where}: a perceptual hash part not right after a rendition")
                previous_was_rendition = False
            else:
                self.violation(f"{where}: no Pixels header (a rendition part needs one)")
                previous_was_rendition = False
        if task.calc_phash and previous_was_rendition:
            self.violation(f"task {task.id}: the last rendition has no perceptual hash part")
        if rendition != len(expected):
            self.violation(f"task {task.id}: {rendition} renditions for {len(expected)} profiles")

    # ---- commands ---------------------------------------------------------

    async def command(self, line):
        try:
            cmd = json.loads(line)
            name = cmd.get("cmd")
            handler = getattr(self, f"command_{name}", None) if isinstance(name, str) else None
            if handler is None:
                return {"ok": False, "error": f"unknown command {name!r}"}
            return await handler(cmd)
        except Exception as error:
            log.exception("command %s", line.strip())
            return {"ok": False, "error": f"{type(error).__name__}: {error}"}

    async def command_wait_registration(self, cmd):
        count, timeout = int(cmd.get("count", 1)), float(cmd.get("timeout", 10))
        try:
            async with self.registered:
                await asyncio.wait_for(self.registered.wait_for(lambda: len(self.registrations) >= count), timeout)
        except asyncio.TimeoutError:
            return {"ok": False, "error": "timeout", "registrations": len(self.registrations)}
        return {"ok": True, "registrations": len(self.registrations), **self.registrations[-1].describe()}

    async def command_registrations(self, cmd):
        return {"ok": True, "accepted": len(self.registrations), "refused": self.refused,
                "connected": self.latest_connected() is not None, "attempts": self.attempts,
                "open": sum(1 for r in self.registrations if r.connected)}

    def prepare_task(self, cmd, segment=None, missing=False, profiles=None):
        """Build a task as send_task describes it (store the segment, fill the
        NotifySegment, register the Task), without sending it. `segment`:
        the bytes, else read from cmd["segment_file"]; `missing`: the default
        URL answers 404 (the segment is not stored); `profiles`: VideoProfile
        messages, else built from cmd["profiles"]. Returns (reg, task, note,
        url, field) or an error answer (a dict)."""
        session, seq = str(cmd["session"]), int(cmd.get("seq", 0))
        reg = self.place(session)
        if isinstance(reg, dict):
            return reg
        if segment is None:
            segment = open(cmd["segment_file"], "rb").read()
        path = f"/stream/{session}/{seq}.tempfile"
        if missing:
            self.segments.pop(path, None)
        else:
            self.segments[path] = segment
        url = cmd.get("url")
        if url is None:
            url = f"https://{self.host}:{self.port}{path}"
        duration_ms = int(cmd.get("duration_ms", 2000))
        if profiles is None:
            profiles = [video_profile(p) for p in cmd.get("profiles", [])]
        field = cmd.get("profiles_field", "fullProfiles3")
        if field not in ("fullProfiles", "fullProfiles2", "fullProfiles3"):
            return {"ok": False, "error": f"bad profiles_field {field!r}"}

        seg = pb.SegData(manifestId=str(cmd.get("manifest_id", f"manifest-{session}")).encode(), seq=seq,
                         hash=bytes(32), profiles=b"invalid", duration=duration_ms,
                         calc_perceptual_hash=bool(cmd.get("calc_perceptual_hash", False)),
                         ForceSessionReinit=bool(cmd.get("force_reinit", False)))
        seg.auth_token.token = os.urandom(32)
        seg.auth_token.session_id = session
        seg.auth_token.expiration = int(time.time()) + 1800
        getattr(seg, field).extend(profiles)
        if cmd.get("capabilities") is not None:
            caps = [int(c) for c in cmd["capabilities"]]
            seg.capabilities.bitstring.extend(encode_bits(caps))
            seg.capabilities.mandatories.extend(encode_bits([int(c) for c in cmd.get("mandatories", [])]))
            for c in caps:
                seg.capabilities.capacities[c] = 1
            if cmd.get("min_version"):
                seg.capabilities.constraints.minVersion = str(cmd["min_version"])
        if cmd.get("segment_parameters") is not None:
            params = cmd["segment_parameters"]
            setattr(seg.segment_parameters, "from", int(params.get("from", 0)))
            seg.segment_parameters.to = int(params.get("to", 0))

        task_id = self.next_task_id
        self.next_task_id += 1
        note = pb.NotifySegment(url=url, segData=seg, taskId=task_id, profiles=b"invalid", orchId="offchain")
        task = Task(task_id, session, seq, duration_ms, profiles, seg.calc_perceptual_hash, reg)
        self.tasks[task_id] = task
        self.take(session, reg)
        return reg, task, note, url, field

    async def command_send_task(self, cmd):
        prepared = self.prepare_task(cmd)
        if isinstance(prepared, dict):
            return prepared
        reg, task, note, url, field = prepared
        try:
            await self.push(reg, "msg", note.SerializeToString(), task)
        except (ConnectionError, asyncio.TimeoutError) as error:
            del self.tasks[task.id]
            self.release(task.session, reg)
            return {"ok": False, "error": f"notification not sent: {error or type(error).__name__}"}
        self.pins[task.session] = reg
        log.info("task %d sent: session %s seq %d, %d profiles in %s, url %s", task.id, task.session, task.seq,
                 len(task.profiles), field, url)
        return {"ok": True, "task_id": task.id, "url": url, "registration": reg.number}

    async def command_back_to_back(self, cmd):
        run = BackToBack(self, cmd)
        return await run.run()

    async def command_wait_result(self, cmd):
        task = self.tasks.get(int(cmd["task_id"]))
        if task is None:
            return {"ok": False, "error": "unknown task"}
        try:
            await asyncio.wait_for(task.done.wait(), float(cmd.get("timeout", 30)))
        except asyncio.TimeoutError:
            return {"ok": False, "error": "timeout"}
        return {"ok": True, **task.result}

    async def command_teardown(self, cmd):
        session = str(cmd["session"])
        self.release(session)   # its load goes once the orchestrator ends it
        reg = self.pins.pop(session, None)
        if reg is None or not reg.connected:
            reg = self.latest_connected()
        if reg is None:
            return {"ok": False, "error": "no transcoder connected"}
        note = pb.NotifySegment(segData=pb.SegData(auth_token=pb.AuthToken(session_id=session)))
        try:
            await self.push(reg, "msg", note.SerializeToString())
        except (ConnectionError, asyncio.TimeoutError) as error:
            return {"ok": False, "error": f"teardown not sent: {error or type(error).__name__}"}
        log.info("teardown sent for session %s", session)
        return {"ok": True}

    async def command_end_stream(self, cmd):
        targets = [r for r in self.registrations if r.connected]
        if not cmd.get("all"):
            targets = targets[-1:]
        if not targets:
            return {"ok": False, "error": "no transcoder connected"}
        for reg in targets:
            try:
                await self.push(reg, "end")
            except (ConnectionError, asyncio.TimeoutError) as error:
                return {"ok": False, "error": f"could not end the stream: {error or type(error).__name__}"}
        return {"ok": True, "ended": len(targets)}

    async def command_placement(self, cmd):
        return {"ok": True, "no_capacity": self.no_capacity,
                "registrations": [{"registration": r.number, "capacity": r.capacity, "connected": r.connected,
                                   "load": len(r.sessions), "sessions": list(r.sessions)}
                                  for r in self.registrations]}

    async def command_violations(self, cmd):
        return {"ok": True, "violations": list(self.violations_list)}

    async def command_results_count(self, cmd):
        return {"ok": True, "posted": self.posted}

    async def command_downloads(self, cmd):
        return {"ok": True, "downloads": list(self.downloads)}

    async def command_cert(self, cmd):
        der = ssl.PEM_cert_to_DER_cert(self.cert_pem)
        return {"ok": True, "pem": self.cert_pem, "sha256": hashlib.sha256(der).hexdigest()}

    async def command_quit(self, cmd):
        return {"ok": True}


class BackToBack:
    """One back_to_back command: go-livepeer's orchestrator under load, where
    a session's next segment is already waiting when its previous result is
    answered. Each session's next task is built and written to the gRPC
    stream by the result's Response.on_sent hook, which runs synchronously
    right after the 200 answer's bytes are written to the transport (before
    the drain, the only place that could yield): the answer and the next
    notification leave in the same event-loop turn, with nothing between
    them."""

    MAX_UNEXPECTED = 20

    def __init__(self, orch, cmd):
        self.orch = orch
        self.sessions = [str(s) for s in cmd["sessions"]]
        self.rounds = int(cmd["rounds"])
        self.error_every = int(cmd.get("error_every", 0))
        self.timeout = float(cmd.get("timeout", 120))
        self.segment = open(cmd["segment_file"], "rb").read()
        self.profiles = [video_profile(p) for p in cmd.get("profiles", [])]
        self.duration_ms = int(cmd.get("duration_ms", 2000))
        if not self.sessions or len(set(self.sessions)) != len(self.sessions):
            raise ValueError("sessions must be a non-empty list of distinct ids")
        if self.rounds < 1 or self.error_every < 0:
            raise ValueError("rounds must be >= 1 and error_every >= 0")
        self.received = {s: 0 for s in self.sessions}   # results per session
        self.failed = {}                                 # session -> why its chain stopped
        self.missing_tasks = set()                       # ids of the deliberate 404 tasks
        self.counts = {"results": 0, "renditions": 0, "errors": 0, "busy": 0, "expected_errors": 0}
        self.unexpected = []
        self.queued_sends = 0
        self.closed = False
        self.finished = asyncio.Event()

    def missing(self, seq):
        k = self.error_every
        return k > 0 and seq % k == k - 1

    def send(self, session, seq):
        """Build and write the session's task `seq` now (synchronously; queued
        on the stream only when it cannot be written at once)."""
        prepared = self.orch.prepare_task(
            {"session": session, "seq": seq, "duration_ms": self.duration_ms},
            segment=self.segment, missing=self.missing(seq), profiles=self.profiles)
        if isinstance(prepared, dict):
            self.fail(session, prepared["error"])
            return
        reg, task, note, url, field = prepared
        if self.missing(seq):
            self.missing_tasks.add(task.id)
        task.on_answered = self.answered
        payload = note.SerializeToString()
        self.orch.pins[session] = reg
        if self.orch.write_now(reg, payload, task):
            log.debug("back_to_back: task %d written at once: session %s seq %d", task.id, session, seq)
            return
        # The stream's writer is busy (or its window is short): queue it.
        self.queued_sends += 1
        log.info("back_to_back: task %d (session %s seq %d) queued, not written at once", task.id, session, seq)
        future = asyncio.get_running_loop().create_future()
        reg.outbox.put_nowait(("msg", payload, task, future))

        def sent(f):
            if f.cancelled() or f.exception() is not None:
                task.on_answered = None
                self.orch.tasks.pop(task.id, None)
                self.orch.release(session, reg)
                self.fail(session, f"notification not sent: {f.exception() if not f.cancelled() else 'cancelled'}")
        future.add_done_callback(sent)

    def fail(self, session, why):
        log.warning("back_to_back: session %s stopped: %s", session, why)
        self.failed.setdefault(session, why)
        self.check_finished()

    def answered(self, task):
        """The 200 answer to `task`'s result has just been written: count it
        and, in this same turn, write the session's next task."""
        if self.closed:
            return
        result = task.result
        self.counts["results"] += 1
        if result["kind"] == "renditions":
            self.counts["renditions"] += 1
            if task.id in self.missing_tasks:
                self.orch.violation(f"task {task.id}: renditions for a segment URL that answered 404")
        else:
            self.counts["errors"] += 1
            text = result["error_text"]
            busy = text.lstrip().lower().startswith("transcoder busy")
            expected = task.id in self.missing_tasks
            self.counts["busy"] += busy
            self.counts["expected_errors"] += expected
            if not busy and not expected and len(self.unexpected) < self.MAX_UNEXPECTED:
                self.unexpected.append(text)
        self.received[task.session] += 1
        if task.seq + 1 < self.rounds:
            self.send(task.session, task.seq + 1)
        self.check_finished()

    def check_finished(self):
        if all(self.received[s] >= self.rounds or s in self.failed for s in self.sessions):
            self.finished.set()

    def answer(self, started):
        return {**self.counts, "unexpected_errors": list(self.unexpected), "queued_sends": self.queued_sends,
                "elapsed_ms": int(round((time.monotonic() - started) * 1000)),
                "incomplete": [s for s in self.sessions if self.received[s] < self.rounds]}

    async def run(self):
        started = time.monotonic()
        log.info("back_to_back: %d sessions x %d rounds, error_every %d", len(self.sessions), self.rounds,
                 self.error_every)
        for session in self.sessions:
            self.send(session, 0)
        try:
            await asyncio.wait_for(self.finished.wait(), self.timeout)
        except asyncio.TimeoutError:
            self.closed = True
            return {"ok": False, "error": "timeout", **self.answer(started)}
        self.closed = True
        if self.failed:
            return {"ok": False, "error": next(iter(self.failed.values())), **self.answer(started)}
        return {"ok": True, **self.answer(started)}


PROFILE_ENUMS = {"format": "Format", "profile": "Profile", "encoder": "VideoCodec", "chromaFormat": "ChromaSubsampling"}
PROFILE_FIELDS = {"name", "width", "height", "bitrate", "fps", "fpsDen", "format", "profile", "gop", "encoder",
                  "colorDepth", "chromaFormat", "quality"}
ENUM_ALIASES = {"420": "CHROMA_420", "422": "CHROMA_422", "444": "CHROMA_444", "HEVC": "H265"}


def video_profile(spec):
    """A VideoProfile from its JSON form; missing fields keep proto defaults,
    enums by name (case-insensitive) or by number (any, to test refusals)."""
    profile = pb.VideoProfile()
    for key, value in spec.items():
        if key not in PROFILE_FIELDS:
            raise ValueError(f"unknown VideoProfile field {key!r}")
        if key in PROFILE_ENUMS and isinstance(value, str):
            enum = getattr(pb.VideoProfile, PROFILE_ENUMS[key])
            name = ENUM_ALIASES.get(value.upper(), value.upper())
            value = enum.Value(name)
        setattr(profile, key, value)
    return profile


# --------------------------------------------------------------------------

def say(obj):
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    sys.stdout.flush()


async def amain(args):
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    os.makedirs(args.results_dir, exist_ok=True)
    # The key lives on disk only while the TLS context loads it (so a killed
    # process leaves nothing behind).
    with tempfile.TemporaryDirectory(prefix="ot_orchestrator_tls_") as tls_dir:
        cert, key = make_certificate(tls_dir, args.cert_name)
        pem = open(cert).read()
        context = tls_context(cert, key)
    if args.cert_out:
        with open(args.cert_out, "w") as f:
            f.write(pem)
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    orch = Orchestrator(args.secret, os.path.abspath(args.results_dir), url_host, 0, args.eager_headers,
                        args.first_task_id, args.h2_window, args.enforce_capacity)
    orch.cert_pem = pem
    server = await asyncio.start_server(orch.on_connection, host, int(port), ssl=context, reuse_address=True)
    orch.port = server.sockets[0].getsockname()[1]
    say(f"listening {orch.port}")
    log.info("listening on %s:%d", host, orch.port)
    loop = asyncio.get_running_loop()
    async with server:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            answer = await orch.command(line)
            say(answer)
            if answer.get("ok") and json.loads(line).get("cmd") == "quit":
                break
        server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT (PORT 0 picks one)")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--results-dir", required=True, help="where rendition parts are saved")
    parser.add_argument("--cert-out", help="write the certificate (PEM) here")
    parser.add_argument("--cert-name", help="name only this host in the certificate "
                                            "(default: localhost and 127.0.0.1)")
    parser.add_argument("--eager-headers", action="store_true",
                        help="send gRPC response headers on registration, not with the first notification")
    parser.add_argument("--first-task-id", type=int, default=0, help="the task counter's first value")
    parser.add_argument("--h2-window", type=int, default=1 << 20,
                        help="HTTP/2 receive window per stream and connection (65535 = the protocol default)")
    parser.add_argument("--enforce-capacity", action="store_true",
                        help="place sessions as go-livepeer does: least load / capacity, never over capacity "
                             "(see the docstring)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="ot_orchestrator %(asctime)s %(levelname)s %(message)s")
    global pb
    pb = load_messages()
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
