#!/usr/bin/env python3
"""A fake go-livepeer standalone transcoder (`livepeer -transcoder`), written
from shared/spec/ot-protocol.md alone: it shares no code or assumptions with
lpgpu, so an lpgpu orchestrator can be tested against it.

It dials the orchestrator (gRPC over TLS, certificate not verified), calls
the server-streaming /net.Transcoder/RegisterTranscoder, and for every
NotifySegment downloads the source, transcodes it with the ffmpeg CLI and
POSTs the renditions (or an error) to https://<orch-addr>/transcodeResults
over HTTP/2.

Usage:
  ot_transcoder.py --orch-addr HOST:PORT --secret SECRET [--capacity N]
                   [--name NAME] [--version V] [--delay-seconds X]
                   [--perceptual-hash]

--perceptual-hash: also advertise capability 14 (MPEG7VideoSignature) and
serve tasks with calc_perceptual_hash: every rendition's MPEG-7 video
signature (FFmpeg's `signature` filter, binary format, computed on the scaled
frames in the same ffmpeg run that encodes the rendition, as LPMS does) is
posted as an application/octet-stream part right after the rendition's part.
Without it such tasks are refused (an error result), as go-livepeer refuses
jobs needing a capability it lacks.

stdout (one line each, flushed):
  registered capacity=N                       each time a registration stream is open
  task <taskId> session=<id> seq=<n> result=ok|error <seconds>[ phash=<n>]
      (` phash=<n>`, the number of hash parts posted, only for tasks that
      asked for calc_perceptual_hash)
stderr: logs. Exit status 3 when the orchestrator refuses the registration
with `invalid secret` or `zero capacity`.
"""

import argparse
import concurrent.futures
import hashlib
import importlib
import json
import logging
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "ot_transcoder_net.proto")

# Capabilities this peer really has (libx264 via ffmpeg, TS/MP4 output,
# direct storage, the H.264 profiles, GOP and auth tokens). Numbers from the
# spec's capability table.
CAPABILITIES = {
    "H264": 0, "MPEGTS": 1, "MP4": 2, "FractionalFramerates": 3, "StorageDirect": 4,
    "ProfileH264Baseline": 7, "ProfileH264Main": 8, "ProfileH264High": 9,
    "ProfileH264ConstrainedHigh": 10, "GOP": 11, "AuthToken": 12,
}
# Advertised only with --perceptual-hash.
CAPABILITY_MPEG7_VIDEO_SIGNATURE = 14

MAX_SEGMENT_BYTES = 300_000_000   # per downloaded segment
DOWNLOAD_SECONDS = 4.0            # for the whole download
SESSION_IDLE_SECONDS = 70.0       # a session with no segment for this long is gone
FATAL_MESSAGES = ("invalid secret", "zero capacity")
EXIT_REFUSED = 3

log = logging.getLogger("ot_transcoder")
_print_lock = threading.Lock()


def say(line: str):
    """One line on stdout, whole and flushed (tasks run in threads)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------
# Protobuf / gRPC stubs, generated at run time (nothing generated is committed)

def load_stubs():
    """Generate ot_transcoder_net_pb2{,_grpc} with grpc_tools.protoc into a
    cache directory keyed by the proto's hash and import them."""
    from grpc_tools import protoc

    source = open(PROTO, "rb").read()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"ot_transcoder_stubs_{digest}")
    if not os.path.exists(os.path.join(cache, "ot_transcoder_net_pb2_grpc.py")):
        # Build in a private directory, then rename: concurrent processes race safely.
        work = tempfile.mkdtemp(prefix="ot_transcoder_stubs_build_")
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
    return importlib.import_module("ot_transcoder_net_pb2"), importlib.import_module("ot_transcoder_net_pb2_grpc")


# --------------------------------------------------------------------------
# TLS without verification, the grpcio way

def split_addr(addr: str):
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--orch-addr must be HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


def certificate_name(pem: str, fallback: str) -> str:
    """The first DNS subjectAltName of the certificate, else its subject CN,
    else `fallback`. Uses `cryptography` when importable, else openssl."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
        cert = x509.load_pem_x509_certificate(pem.encode())
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = names.get_values_for_type(x509.DNSName)
            if dns:
                return dns[0]
        except x509.ExtensionNotFound:
            pass
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cns[0].value if cns else fallback
    except ImportError:
        pass
    text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem.encode(),
                          capture_output=True, check=True).stdout.decode(errors="replace")
    dns = re.search(r"DNS:([^,\s]+)", text)
    if dns:
        return dns.group(1)
    subject = re.search(r"Subject:.*?\bCN\s*=\s*([^,/\n]+)", text)
    return subject.group(1).strip() if subject else fallback


def insecure_channel_to(host: str, port: int) -> grpc.Channel:
    """A TLS channel that trusts whatever certificate the server shows now
    (go-livepeer verifies nothing): fetch it, use it as the root, and name
    the target after it."""
    pem = ssl.get_server_certificate((host, port))
    name = certificate_name(pem, host)
    creds = grpc.ssl_channel_credentials(root_certificates=pem.encode())
    return grpc.secure_channel(f"{host}:{port}", creds, options=[("grpc.ssl_target_name_override", name)])


# --------------------------------------------------------------------------
# Media: ffprobe / ffmpeg

class TaskError(Exception):
    """A failure that becomes a `livepeer/transcoding-error` result."""


def decoded_pixels(path: str):
    """(frames, Σ width × height) over the decoded frames of the first video
    stream. ffprobe -show_frames decodes every frame (like -count_frames) and
    reports each frame's size, so a resolution change mid-segment counts
    exactly."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_frames",
                          "-show_entries", "frame=width,height", "-of", "json", path],
                         capture_output=True, timeout=60)
    if out.returncode != 0:
        raise TaskError("ffprobe failed: " + last_line(out.stderr))
    frames = json.loads(out.stdout or b"{}").get("frames", [])
    return len(frames), sum(int(f.get("width", 0)) * int(f.get("height", 0)) for f in frames)


def last_line(stderr: bytes) -> str:
    lines = [l for l in stderr.decode(errors="replace").splitlines() if l.strip()]
    return lines[-1].strip()[:200] if lines else "no message"


def profile_name(p) -> str:
    return p.name or f"net_{p.width}x{p.height}_{p.bitrate}"


def filter_value(value: str) -> str:
    """`value` escaped for use as a filter option value inside a -vf
    filtergraph: two levels, as FFmpeg's "Notes on filtergraph escaping"
    describe. First the option parser (':' separates options; '\\' and
    quotes escape), then the filtergraph parser (',', ';', '[' and ']'
    separate filters and pads; '\\' and quotes escape)."""
    level1 = re.sub(r"([\\':])", r"\\\1", value)
    return re.sub(r"([\\'\[\],;])", r"\\\1", level1)


def encode_options(net_pb2, p, index: int, signature_path=None):
    """The ffmpeg output options for one VideoProfile, or TaskError for what
    this peer does not do. With `signature_path`, the video filter chain
    ends with the MPEG-7 `signature` filter (binary format) writing the
    rendition's perceptual hash there: it sees the frames after fps and
    scaling, i.e. exactly the frames that are encoded."""
    VP = net_pb2.VideoProfile
    if p.format not in (VP.MPEGTS, VP.MP4):
        raise TaskError("unrecognized profile output format")
    if p.encoder != VP.H264:
        raise TaskError(f"unsupported encoder {p.encoder}")
    if p.width <= 0 or p.height <= 0:
        raise TaskError(f"invalid resolution {p.width}x{p.height}")
    if p.bitrate < 0:
        raise TaskError(f"invalid bitrate {p.bitrate}")
    if p.gop <= -2:
        raise TaskError(f"invalid gop {p.gop}")

    filters = []
    if p.fps:
        filters.append(f"fps={p.fps}/{p.fpsDen or 1}")
    filters.append(f"scale={p.width}:{p.height}")
    if signature_path is not None:
        filters.append(f"signature=format=binary:filename={filter_value(signature_path)}")
    opts = ["-map", "0:v:0", "-map", "0:a:0?", "-vf", ",".join(filters),
            # keep every filtered frame as is: no cfr duplication or dropping
            "-fps_mode", "passthrough",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    profiles = {VP.H264_BASELINE: ["-profile:v", "baseline"], VP.H264_MAIN: ["-profile:v", "main"],
                VP.H264_HIGH: ["-profile:v", "high"],
                # Constrained High = High without B-frames
                VP.H264_CONSTRAINED_HIGH: ["-profile:v", "high", "-bf", "0"]}
    if p.profile != VP.ENCODER_DEFAULT:
        if p.profile not in profiles:
            raise TaskError(f"unsupported profile {p.profile}")
        opts += profiles[p.profile]
    if p.quality:
        opts += ["-crf", str(min(int(p.quality), 51))]
        if p.bitrate:
            opts += ["-maxrate", str(p.bitrate), "-bufsize", str(2 * p.bitrate)]
    elif p.bitrate:
        opts += ["-b:v", str(p.bitrate)]
    if p.gop == -1:
        opts += ["-g", "1"]  # intra only
    elif p.gop > 0:
        opts += ["-force_key_frames", f"expr:gte(t,n_forced*{p.gop / 1000.0})", "-sc_threshold", "0"]
    opts += ["-c:a", "aac", "-b:a", "96k"]
    if p.format == VP.MP4:
        opts += ["-f", "mp4"]
        suffix, ctype = ".mp4", "video/mp4"
    else:
        opts += ["-f", "mpegts"]
        suffix, ctype = ".ts", "video/mp2t"
    return opts, f"out{index}{suffix}", ctype


def transcode(net_pb2, src: str, profiles, workdir: str, phash: bool = False):
    """One ffmpeg run (decode once) with one output per profile. Returns
    [(content_type, bytes, pixels, hash bytes or None)] in profile order;
    with `phash` each rendition's MPEG-7 video signature comes along."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", src]
    outputs = []
    for i, p in enumerate(profiles):
        # workdir comes from mkdtemp (no ':' or quotes); filter_value escapes anyway.
        sig = os.path.join(workdir, f"out{i}.sig.bin") if phash else None
        opts, name, ctype = encode_options(net_pb2, p, i, sig)
        path = os.path.join(workdir, name)
        cmd += opts + [path]
        outputs.append((path, ctype, sig))
    run = subprocess.run(cmd, capture_output=True, timeout=120)
    if run.returncode != 0:
        raise TaskError("ffmpeg failed: " + last_line(run.stderr))
    results = []
    for path, ctype, sig in outputs:
        # Pixels = frames encoded × encoded width × height, recounted from
        # the rendition itself.
        _, pixels = decoded_pixels(path)
        signature = None
        if sig is not None:
            try:
                signature = open(sig, "rb").read()
            except OSError as e:
                raise TaskError(f"no perceptual hash for {os.path.basename(path)}: {e.strerror}") from e
            if not signature:
                raise TaskError(f"empty perceptual hash for {os.path.basename(path)}")
        results.append((ctype, open(path, "rb").read(), pixels, signature))
    return results


# --------------------------------------------------------------------------
# The transcoder

class Transcoder:
    def __init__(self, args, net_pb2, net_pb2_grpc):
        self.args = args
        self.pb, self.grpc = net_pb2, net_pb2_grpc
        self.host, self.port = split_addr(args.orch_addr)
        self.results_url = f"https://{args.orch_addr}/transcodeResults"
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.capacity),
                                                          thread_name_prefix="task")
        # Shared clients: certificates are not verified, like go-livepeer.
        # Downloads may use HTTP/1.1 (any URL, e.g. an object store); results
        # go over HTTP/2 (ALPN h2).
        self.download = httpx.Client(http2=True, verify=False, timeout=DOWNLOAD_SECONDS, follow_redirects=False)
        self.upload = httpx.Client(http2=True, verify=False, timeout=60)
        self.sessions = {}  # session_id -> {"last": time, "segments": n}
        self.sessions_lock = threading.Lock()

    # ---- registration ----------------------------------------------------

    def capabilities(self):
        bits = list(CAPABILITIES.values())
        if self.args.perceptual_hash:
            bits.append(CAPABILITY_MPEG7_VIDEO_SIGNATURE)
        words = [0]
        for bit in bits:
            while len(words) <= bit // 64:
                words.append(0)
            words[bit // 64] |= 1 << (bit % 64)
        return self.pb.Capabilities(
            bitstring=words, capacities={bit: 1 for bit in bits},
            version=self.args.version, constraints=self.pb.Capabilities.Constraints())

    def run_forever(self):
        attempt = 0
        while True:
            try:
                self.serve_once()
                log.info("registration stream ended")
            except grpc.RpcError as e:
                code, details = e.code(), (e.details() or "")
                if code == grpc.StatusCode.UNKNOWN and details.strip() in FATAL_MESSAGES:
                    print(details.strip(), file=sys.stderr, flush=True)
                    return EXIT_REFUSED
                log.warning("registration stream failed: %s %s", code, details)
            except (OSError, ssl.SSLError, subprocess.CalledProcessError) as e:
                log.warning("cannot reach the orchestrator: %s", e)
            # go-livepeer: 0.5 s × 1.5^n, never reset (capped at 5 s here for tests;
            # no jitter so tests can predict it).
            delay = min(0.5 * 1.5 ** attempt, self.args.backoff_cap)
            attempt += 1
            log.info("reconnecting in %.2f s", delay)
            time.sleep(delay)

    def serve_once(self):
        channel = insecure_channel_to(self.host, self.port)
        running = []
        try:
            stub = self.grpc.TranscoderStub(channel)
            call = stub.RegisterTranscoder(self.pb.RegisterRequest(
                secret=self.args.secret, capacity=self.args.capacity, capabilities=self.capabilities()))
            announced = threading.Event()
            announce_lock = threading.Lock()

            def announce():
                with announce_lock:
                    if not announced.is_set():
                        announced.set()
                        log.info("registered with %s as %s", self.args.orch_addr, self.args.name)
                        say(f"registered capacity={self.args.capacity}")

            def watch_headers():
                # The orchestrator sends no message until there is work, so
                # "registered" is printed once the call is established: when
                # the response headers (initial metadata) arrive. A refusal
                # comes as a trailers-only response, which also "delivers"
                # (empty) initial metadata together with the status, so allow
                # a moment for the status and do not announce a call that
                # has already ended. (A server that sends headers only with
                # its first message -- grpc-go does that unless told
                # otherwise -- gets announced at the first message.)
                try:
                    call.initial_metadata()
                except Exception:
                    return
                time.sleep(0.2)
                if not call.done():
                    announce()

            threading.Thread(target=watch_headers, daemon=True).start()
            for note in call:
                announce()
                running = [f for f in running if not f.done()]
                fut = self.on_notification(note)
                if fut is not None:
                    running.append(fut)
        finally:
            # Like go-livepeer: finish the running tasks before reconnecting.
            for fut in running:
                try:
                    fut.result()
                except Exception:
                    pass
            channel.close()

    # ---- notifications ---------------------------------------------------

    def on_notification(self, note):
        received = time.monotonic()
        seg = note.segData
        session = seg.auth_token.session_id
        self.expire_sessions()
        if not note.url:
            with self.sessions_lock:
                known = self.sessions.pop(session, None) is not None
            log.info("teardown of session %s (%s)", session, "known" if known else "unknown")
            return None
        with self.sessions_lock:
            state = self.sessions.get(session)
            if state is None or seg.ForceSessionReinit:
                # Every segment is its own ffmpeg run, so a "session" here
                # is bookkeeping only; a re-init just starts it afresh.
                state = self.sessions[session] = {"segments": 0}
                log.info("session %s %s", session, "re-initialised" if seg.ForceSessionReinit else "started")
            state["last"] = time.monotonic()
            state["segments"] += 1
        log.info("task %d: session=%s seq=%d url=%s", note.taskId, session, seg.seq, note.url)
        return self.pool.submit(self.task, note, received)

    def expire_sessions(self):
        now = time.monotonic()
        with self.sessions_lock:
            for sid in [s for s, st in self.sessions.items() if now - st["last"] > SESSION_IDLE_SECONDS]:
                log.info("session %s expired after %.0f s idle", sid, SESSION_IDLE_SECONDS)
                del self.sessions[sid]

    def task(self, note, received):
        seg = note.segData
        session = seg.auth_token.session_id
        workdir = tempfile.mkdtemp(prefix=f"ot_task_{note.taskId}_")
        try:
            try:
                pixels, parts = self.process(note, workdir)
                error = None
            except TaskError as e:
                error = str(e) or "transcoding error"
            except Exception as e:  # a peer bug must not kill the thread pool
                log.exception("task %d", note.taskId)
                error = f"{type(e).__name__}: {e}"
            if error is not None:
                log.warning("task %d failed: %s", note.taskId, error)
                with self.sessions_lock:  # an error ends the stream's session
                    self.sessions.pop(session, None)
            if self.args.delay_seconds > 0:
                time.sleep(self.args.delay_seconds)
            hashes = 0
            if error is None:
                self.post_renditions(note.taskId, pixels, parts)
                hashes = sum(1 for part in parts if part[3] is not None)
            else:
                self.post_error(note.taskId, error)
            # result= is the kind of result posted; a failed POST is logged.
            # phash= only for tasks that asked for hashes (keeps other lines as they were).
            say(f"task {note.taskId} session={session} seq={seg.seq} "
                f"result={'ok' if error is None else 'error'} {time.monotonic() - received:.3f}"
                + (f" phash={hashes}" if seg.calc_perceptual_hash else ""))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def process(self, note, workdir):
        """Checks, download, transcode: (input pixels, [(ctype, data, pixels)])."""
        seg = note.segData
        if seg.duration < 0 or seg.duration > 300_000:
            raise TaskError("invalid duration")
        if seg.HasField("capabilities") and not self.compatible(seg.capabilities):
            raise TaskError("incompatible segment capabilities")
        if seg.calc_perceptual_hash and not self.args.perceptual_hash:
            raise TaskError("perceptual hash not supported")  # capability 14 not advertised
        if seg.HasField("segment_parameters") and (getattr(seg.segment_parameters, "from")
                                                   or seg.segment_parameters.to):
            raise TaskError("segment slicing not supported")  # capability 26 not advertised
        profiles = list(seg.fullProfiles3) or list(seg.fullProfiles2) or list(seg.fullProfiles)
        if not profiles:
            raise TaskError("no profiles")
        log.info("task %d profiles: %s", note.taskId, ", ".join(
            f"{profile_name(p)} {p.width}x{p.height} {p.bitrate}bps fps={p.fps}/{p.fpsDen or 1} fmt={p.format}"
            for p in profiles))
        for i, p in enumerate(profiles):  # refuse unsupported profiles before downloading
            encode_options(self.pb, p, i)

        src = os.path.join(workdir, "source")
        with open(src, "wb") as f:
            f.write(self.fetch(note.url))
        _, in_pixels = decoded_pixels(src)
        parts = transcode(self.pb, src, profiles, workdir, phash=seg.calc_perceptual_hash)
        return in_pixels, parts

    def compatible(self, job):
        """The job's capability bits must be a subset of ours, and its
        minimum version (if any) no newer than ours."""
        ours = self.capabilities().bitstring
        for i, word in enumerate(job.bitstring):
            if word & ~(ours[i] if i < len(ours) else 0):
                return False
        minimum = job.constraints.minVersion if job.HasField("constraints") else ""
        if minimum:
            have, need = semver(self.args.version), semver(minimum)
            if have is None or need is None or have < need:
                return False
        return True

    def fetch(self, url: str) -> bytes:
        """Plain GET, no credentials, certificate not checked, 4 s in all,
        at most 300 MB, status 200 only."""
        deadline = time.monotonic() + DOWNLOAD_SECONDS
        try:
            with self.download.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise TaskError(f"{resp.status_code} {resp.reason_phrase}".strip())
                data = bytearray()
                for chunk in resp.iter_bytes():
                    data += chunk
                    if len(data) > MAX_SEGMENT_BYTES:
                        raise TaskError("segment too large")
                    if time.monotonic() > deadline:
                        raise TaskError("download timed out")
                return bytes(data)
        except httpx.HTTPError as e:
            raise TaskError(f"download failed: {type(e).__name__}: {e}") from e

    # ---- results ---------------------------------------------------------

    def headers(self, task_id: int, pixels: int, content_type: str):
        return {"Authorization": "Livepeer-Transcoder-1.0", "Credentials": self.args.secret,
                "TaskId": str(task_id), "Pixels": str(pixels), "Content-Type": content_type}

    def post_renditions(self, task_id, pixels, parts):
        boundary = secrets.token_hex(16)
        body = bytearray()
        for ctype, data, part_pixels, signature in parts:  # in profile order, no names
            body += (f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                     f"Pixels: {part_pixels}\r\n\r\n").encode()
            body += data + b"\r\n"
            if signature is not None:  # the rendition's hash right after it, no Pixels
                body += (f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                         f"Content-Length: {len(signature)}\r\n\r\n").encode()
                body += signature + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        self.post(task_id, self.headers(task_id, pixels, f"multipart/mixed; boundary={boundary}"), bytes(body))

    def post_error(self, task_id, text):
        self.post(task_id, self.headers(task_id, 0, "livepeer/transcoding-error"), text.encode())

    def post(self, task_id, headers, body):
        try:
            resp = self.upload.post(self.results_url, headers=headers, content=body)
            if resp.http_version != "HTTP/2":
                log.warning("task %d: result went over %s, not HTTP/2", task_id, resp.http_version)
            log.info("task %d: posted %d bytes: %d %s", task_id, len(body), resp.status_code,
                     resp.text.strip()[:200])
        except httpx.HTTPError as e:
            log.warning("task %d: posting the result failed: %s: %s", task_id, type(e).__name__, e)


def semver(v: str):
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", v.strip())
    return tuple(int(x) for x in m.groups()) if m else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orch-addr", required=True, help="the orchestrator's HOST:PORT")
    ap.add_argument("--secret", required=True, help="the shared orchestrator secret")
    ap.add_argument("--capacity", type=int, default=1, help="concurrent sessions (and task threads)")
    ap.add_argument("--name", default="ot-transcoder", help="a name for the logs")
    ap.add_argument("--version", default="0.9.1", help="the version advertised in Capabilities")
    ap.add_argument("--delay-seconds", type=float, default=0.0, help="sleep before posting each result")
    ap.add_argument("--backoff-cap", type=float, default=5.0, help="reconnect backoff cap in seconds")
    ap.add_argument("--perceptual-hash", action="store_true",
                    help="advertise capability 14 and serve calc_perceptual_hash tasks "
                         "(MPEG-7 video signature per rendition); default: refuse them")
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"%(asctime)s {args.name} %(threadName)s %(levelname)s %(message)s")
    net_pb2, net_pb2_grpc = load_stubs()
    try:
        return Transcoder(args, net_pb2, net_pb2_grpc).run_forever()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
