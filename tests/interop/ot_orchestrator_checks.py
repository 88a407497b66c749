#!/usr/bin/env python3
"""Checks of an orchestrator's side of the orchestrator <-> transcoder
protocol (the side go-livepeer's orchestrator implements: it accepts
RegisterTranscoder, serves the segment URL and receives
POST /transcodeResults), written from shared/spec/ot-protocol.md alone so
that it shares no code or assumptions with the server it tests.

Usage:
  ot_orchestrator_checks.py --orch-addr HOST:PORT --secret SECRET
                            [--no-pool-addr HOST:PORT]

stdout, one line per passed check, flushed:
  ok <what>
and, once registered properly, the line
  waiting for a task
after which the test harness makes the orchestrator send one task. The
last line is `orchestrator checks passed` (exit 0). The first failed check
prints `FAIL <what>: <detail>` and exits 1. stderr: informational logs.
"""

import argparse
import os
import queue
import sys
import threading
import time
import urllib.parse

import grpc
import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ot_transcoder  # noqa: E402  (spec-written helpers: stubs, TLS channel)

# --------------------------------------------------------------------------
# Constants from the spec

AUTH = "Livepeer-Transcoder-1.0"      # the only accepted `Authorization` value
TRANSCODING_ERROR = "livepeer/transcoding-error"
UNKNOWN_TASK_ID = 987654321           # no orchestrator has handed out this many tasks
BIG = 2 * 1024 * 1024 + 4096          # > 2 MB: bigger than any default HTTP/2 window,
                                      # so the server must keep granting flow control
MAX_SEGMENT_BYTES = 300_000_000       # per segment
DOWNLOAD_SECONDS = 4.0                # go-livepeer's transcoder: 4 s for the whole download
REFUSAL_TIMEOUT = 15.0                # a refused registration must end within this
TASK_TIMEOUT = 60.0                   # the harness sends a task within this
HTTP_TIMEOUT = 30.0

# Capabilities of a plain H.264 transcoder (numbers from the spec's table):
# H264 0, MPEGTS 1, MP4 2, FractionalFramerates 3, StorageDirect 4,
# ProfileH264Baseline 7, Main 8, High 9, ConstrainedHigh 10, GOP 11, AuthToken 12.
CAPABILITY_BITS = (0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12)
VERSION = "0.9.1"


# --------------------------------------------------------------------------
# Output

def say(line: str):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def log(msg: str):
    sys.stderr.write(f"ot_orchestrator_checks: {msg}\n")
    sys.stderr.flush()


class CheckFailed(Exception):
    def __init__(self, what: str, detail: str):
        super().__init__(f"{what}: {detail}")
        self.what, self.detail = what, detail


def ok(what: str):
    say(f"ok {what}")


def fail(what: str, detail: str):
    raise CheckFailed(what, detail)


# --------------------------------------------------------------------------
# gRPC

def capabilities(pb):
    """capability k is bit k % 64 of word k / 64; go-livepeer sends
    capacity 1 for each capability; constraints present but empty."""
    words = [0] * (max(CAPABILITY_BITS) // 64 + 1)
    for bit in CAPABILITY_BITS:
        words[bit // 64] |= 1 << (bit % 64)
    return pb.Capabilities(bitstring=words, capacities={bit: 1 for bit in CAPABILITY_BITS},
                           version=VERSION, constraints=pb.Capabilities.Constraints())


def open_channel(what: str, addr: str):
    """A TLS channel that trusts whatever certificate the orchestrator shows
    (its certificate is self-signed and new at every start; go-livepeer's
    transcoder verifies nothing)."""
    host, port = ot_transcoder.split_addr(addr)
    try:
        return ot_transcoder.insecure_channel_to(host, port)
    except Exception as e:  # connection refused, TLS failure, openssl missing
        fail(what, f"cannot open a TLS channel to {addr}: {type(e).__name__}: {e}")


def expect_refusal(what, stub, pb, secret, capacity, want_code, want_details, exact=True):
    """RegisterTranscoder must end the call (before any notification) with
    `want_code` and details equal to (or, with exact=False, containing)
    `want_details`."""
    call = stub.RegisterTranscoder(
        pb.RegisterRequest(secret=secret, capacity=capacity, capabilities=capabilities(pb)),
        timeout=REFUSAL_TIMEOUT)
    try:
        note = next(call)
    except StopIteration:
        fail(what, f"the stream ended with OK (status {call.code()}), not {want_code.name}")
    except grpc.RpcError as e:
        code, details = e.code(), e.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            fail(what, f"the registration was not refused within {REFUSAL_TIMEOUT:.0f} s")
        matched = details == want_details if exact else want_details in details
        if code != want_code or not matched:
            fail(what, f"got status {code.name} {details!r}, want {want_code.name} "
                       f"{'exactly ' if exact else 'containing '}{want_details!r}")
        log(f"{what}: {code.name} {details!r}")
        return
    finally:
        call.cancel()
    fail(what, f"the orchestrator accepted the registration and sent a notification "
               f"(taskId={note.taskId}, url={note.url!r})")


def check_no_pool(addr, secret, pb, pb_grpc):
    """An orchestrator that does not take remote transcoders answers
    UNIMPLEMENTED and says which flag enables it."""
    what = "no-pool orchestrator refuses RegisterTranscoder with UNIMPLEMENTED"
    channel = open_channel(what, addr)
    try:
        expect_refusal(what, pb_grpc.TranscoderStub(channel), pb, secret, 1,
                       grpc.StatusCode.UNIMPLEMENTED, "--orch-secret", exact=False)
    finally:
        channel.close()
    ok(what)


def check_refusals(addr, secret, pb, pb_grpc):
    """Registration outcomes: wrong secret -> UNKNOWN `invalid secret`;
    capacity <= 0 -> UNKNOWN `zero capacity`; the secret is checked first.
    (go-livepeer's transcoder treats exactly these two messages as fatal, so
    they must match exactly.)"""
    channel = open_channel("registration refusals", addr)
    stub = pb_grpc.TranscoderStub(channel)
    wrong = secret + "-wrong"
    try:
        cases = [
            ("wrong secret → UNKNOWN invalid secret", wrong, 1, "invalid secret"),
            ("zero capacity → UNKNOWN zero capacity", secret, 0, "zero capacity"),
            # the spec says capacity <= 0, not just 0
            ("negative capacity → UNKNOWN zero capacity", secret, -1, "zero capacity"),
            ("wrong secret and zero capacity → UNKNOWN invalid secret", wrong, 0, "invalid secret"),
        ]
        for what, s, cap, want in cases:
            expect_refusal(what, stub, pb, s, cap, grpc.StatusCode.UNKNOWN, want)
            ok(what)
    finally:
        channel.close()


class Registration:
    """A proper registration: the stream's notifications (or its end) are
    read by a thread into a queue, so waiting for a task can time out while
    the stream stays open for the rest of the checks."""

    def __init__(self, addr, secret, pb, pb_grpc):
        what = "registration"
        self.channel = open_channel(what, addr)
        stub = pb_grpc.TranscoderStub(self.channel)
        self.call = stub.RegisterTranscoder(
            pb.RegisterRequest(secret=secret, capacity=1, capabilities=capabilities(pb)))
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="notifications").start()

    def _read(self):
        try:
            for note in self.call:
                self.events.put(("note", note))
            self.events.put(("end", None))
        except grpc.RpcError as e:
            self.events.put(("error", e))

    def established(self, wait=10.0):
        """Wait for the response headers, which a server that accepts the
        registration may send before any notification; a refusal comes as a
        trailers-only response, so also allow a moment for the status. A
        server that holds its headers back until the first message is given
        `wait` seconds and then assumed to be fine."""
        got = threading.Event()

        def headers():
            try:
                self.call.initial_metadata()
            except Exception:
                pass
            got.set()

        threading.Thread(target=headers, daemon=True).start()
        got.wait(wait)
        time.sleep(0.3)
        if self.call.done():  # refused, or a stream that ended at once
            fail("registration", f"the stream ended at once: {self.call.code()} {self.call.details()!r}")

    def next_task(self, timeout):
        """The first NotifySegment with a non-empty url; an empty url is a
        session teardown (nothing to do)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("task received", f"no NotifySegment with a url within {timeout:.0f} s")
            try:
                kind, ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if kind == "error":
                fail("task received", f"the registration stream failed: {ev.code().name} {ev.details()!r}")
            if kind == "end":
                fail("task received", "the registration stream ended (OK) before any task")
            if ev.url:
                return ev
            log(f"teardown notification for session {ev.segData.auth_token.session_id!r} (ignored)")

    def close(self):
        self.call.cancel()
        self.channel.close()


# --------------------------------------------------------------------------
# HTTP: POST /transcodeResults

def result_headers(secret, task_id, pixels, content_type, authorization=AUTH):
    """The spec's request headers; a value of None leaves the header out."""
    h = {"Authorization": authorization, "Credentials": secret, "TaskId": task_id,
         "Pixels": pixels, "Content-Type": content_type}
    return {k: v for k, v in h.items() if v is not None}


def post_result(what, url, headers, body):
    """One POST over HTTP/2 on a fresh connection (certificate not verified);
    returns (status, body bytes). The whole response must arrive: a server
    that answers early must still keep the stream's flow control going (or
    read the body) so the request can be sent whole."""
    try:
        with httpx.Client(http2=True, verify=False, timeout=HTTP_TIMEOUT) as client:
            resp = client.post(url, headers=headers, content=body)
            data = resp.read()
    except httpx.TimeoutException as e:
        fail(what, f"timed out after {HTTP_TIMEOUT:.0f} s sending {len(body)} bytes or reading the "
                   f"response (flow control stalled?): {type(e).__name__}: {e}")
    except httpx.HTTPError as e:
        fail(what, f"the request or response did not go through whole ({len(body)} bytes sent): "
                   f"{type(e).__name__}: {e}")
    if resp.http_version != "HTTP/2":
        fail(what, f"answered over {resp.http_version}, not HTTP/2")
    length = resp.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) != len(data):
        fail(what, f"response body is {len(data)} bytes, Content-Length says {length}")
    return resp.status_code, data


def expect_status(what, url, headers, body, want_status, want_text=None):
    status, data = post_result(what, url, headers, body)
    text = data.decode(errors="replace")
    if status != want_status:
        fail(what, f"got {status} {text.strip()[:200]!r}, want {want_status}")
    if want_text is not None and want_text not in text:
        fail(what, f"status {status} but the body {text.strip()[:200]!r} lacks {want_text!r}")
    log(f"{what}: {status} {text.strip()[:100]!r}")
    ok(what)


def multipart(boundary: str, parts):
    """A well-formed multipart/mixed body: parts = [(headers dict, data)]."""
    body = bytearray()
    for headers, data in parts:
        body += f"--{boundary}\r\n".encode()
        for k, v in headers.items():
            body += f"{k}: {v}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body)


def check_results_endpoint(addr, secret):
    """go-livepeer's checks, in order: Authorization (401), Credentials
    (401), a parsable Content-Type (415), TaskId an integer (400 `Invalid
    Task ID`); the error type is answered 200 at once; Pixels an integer
    (400); then the multipart parts (500 on an error); unknown task ids are
    answered 200 and dropped. Each request also breaks every *later* check,
    so a server checking in another order answers with the wrong status."""
    url = f"https://{addr}/transcodeResults"
    junk = b"\x00" * BIG  # contains no multipart delimiter at all

    expect_status("results: missing Authorization → 401", url,
                  result_headers(secret, "abc", "many", ";;;", authorization=None), junk, 401)
    expect_status("results: wrong Authorization → 401", url,
                  result_headers(secret, "abc", "many", ";;;", authorization="Livepeer-Transcoder-0.9"),
                  junk, 401)
    expect_status("results: wrong Credentials → 401", url,
                  result_headers(secret + "-wrong", "abc", "many", ";;;"), junk, 401)
    # `;;;` has no media type: unparsable (Go's mime.ParseMediaType fails).
    expect_status("results: unparsable Content-Type → 415", url,
                  result_headers(secret, "abc", "many", ";;;"), junk, 415)
    expect_status("results: TaskId abc → 400 Invalid Task ID", url,
                  result_headers(secret, "abc", "many", "multipart/mixed; boundary=x"), junk, 400,
                  want_text="Invalid Task ID")
    # The error type is answered before Pixels is looked at: no Pixels here.
    error_text = (b"synthetic transcoding error from ot_orchestrator_checks; " * (BIG // 56 + 1))[:BIG]
    expect_status("results: transcoding error for an unknown TaskId → 200", url,
                  result_headers(secret, str(UNKNOWN_TASK_ID), None, TRANSCODING_ERROR), error_text, 200)
    # Pixels is checked before the parts are read: the body is not multipart.
    expect_status("results: Pixels many → 400 Invalid Pixels", url,
                  result_headers(secret, str(UNKNOWN_TASK_ID), "many", "multipart/mixed; boundary=x"),
                  junk, 400, want_text="Invalid Pixels")
    # One rendition part as a transcoder sends it (Content-Type,
    # Content-Length, Pixels; no name), for a task the orchestrator never
    # sent: read, then answered 200 and dropped.
    boundary = "ot0checks0boundary0" + "5f" * 8
    data = b"\x47" + b"\x00" * (BIG - 1)
    body = multipart(boundary, [({"Content-Type": "video/mp2t", "Content-Length": len(data),
                                  "Pixels": 1234}, data)])
    expect_status("results: well-formed multipart for an unknown TaskId → 200", url,
                  result_headers(secret, str(UNKNOWN_TASK_ID), "5678", f"multipart/mixed; boundary={boundary}"),
                  body, 200)


# --------------------------------------------------------------------------
# The task

def check_task(note):
    what = "task notification"
    if note.taskId <= 0:
        fail(what, f"taskId {note.taskId} is not > 0 (absent?)")
    if not note.HasField("segData"):
        fail(what, "segData is absent")
    seg = note.segData
    session = seg.auth_token.session_id
    if not session:
        fail(what, "segData.auth_token.session_id is empty")
    lists = [(name, len(getattr(seg, name))) for name in ("fullProfiles", "fullProfiles2", "fullProfiles3")]
    filled = [(name, n) for name, n in lists if n > 0]
    if len(filled) != 1:
        fail(what, "exactly one of fullProfiles/fullProfiles2/fullProfiles3 must be non-empty, got "
                   + ", ".join(f"{name}={n}" for name, n in lists))
    if not 0 <= seg.duration <= 300_000:
        fail(what, f"segData.duration {seg.duration} ms is outside 0..300000")
    # Legacy field, "always the bytes `invalid`" (NotifySegment.profiles, 17).
    if note.profiles != b"invalid":
        fail(what, f"NotifySegment.profiles is {note.profiles!r}, want b'invalid'")
    # The spec's SegData table says the same of SegData.profiles (4).
    if seg.profiles != b"invalid":
        fail(what, f"segData.profiles is {seg.profiles!r}, want b'invalid'")
    log(f"task {note.taskId}: url={note.url} session={session} seq={seg.seq} duration={seg.duration} "
        f"orchId={note.orchId!r} profiles=" + ", ".join(
            f"{p.name or '(unnamed)'} {p.width}x{p.height} {p.bitrate}bps" for p in getattr(seg, filled[0][0])))
    ok(f"task {note.taskId} received: session {session}, seq {seg.seq}, duration {seg.duration} ms")
    ok(f"task profiles in {filled[0][0]} ({filled[0][1]})")


def check_segment_urls(url):
    """The url is served without authentication; a transcoder GETs it with
    no credentials, no certificate check, HTTP/1.1 being enough -- so the
    200 GET is plain HTTP/1.1 (the least a transcoder may use); the 404 GET
    may negotiate HTTP/2."""
    what = "segment GET → 200 MPEG-TS"
    started = time.monotonic()
    try:
        with httpx.Client(http2=False, verify=False, timeout=HTTP_TIMEOUT, follow_redirects=False) as c:
            resp = c.get(url)
            data = resp.read()
    except httpx.HTTPError as e:
        fail(what, f"GET {url}: {type(e).__name__}: {e}")
    took = time.monotonic() - started
    if resp.status_code != 200:
        fail(what, f"GET {url}: {resp.status_code} {resp.text.strip()[:200]!r}")
    if not data:
        fail(what, f"GET {url}: empty body")
    if data[0] != 0x47:
        fail(what, f"GET {url}: body starts with {data[:4].hex()}, not the MPEG-TS sync byte 0x47")
    if len(data) > MAX_SEGMENT_BYTES:
        fail(what, f"GET {url}: {len(data)} bytes, over the {MAX_SEGMENT_BYTES} limit")
    if took > DOWNLOAD_SECONDS:
        log(f"warning: the download took {took:.2f} s; go-livepeer's transcoder gives up after "
            f"{DOWNLOAD_SECONDS:.0f} s")
    ok(f"segment GET → 200 ({len(data)} bytes, MPEG-TS, {resp.http_version})")

    what = "unknown segment GET → 404"
    parts = urllib.parse.urlsplit(url)
    head, _, _ = parts.path.rpartition("/")
    missing = urllib.parse.urlunsplit(parts._replace(path=f"{head}/999999.tempfile"))
    try:
        with httpx.Client(http2=True, verify=False, timeout=HTTP_TIMEOUT, follow_redirects=False) as c:
            resp = c.get(missing)
            resp.read()
    except httpx.HTTPError as e:
        fail(what, f"GET {missing}: {type(e).__name__}: {e}")
    if resp.status_code != 404:
        fail(what, f"GET {missing}: {resp.status_code}, want 404")
    ok(what)


def check_broken_result(addr, secret, task_id):
    """A multipart result that opens a part and never closes it: the parts
    are read after every header check passed, and "an error in them is
    500"."""
    what = "broken result body → 500"
    body = b"--zzz\r\nContent-Type: video/mp2t\r\n\r\n" + b"\x47" + b"\x00" * 99
    status, data = post_result(what, f"https://{addr}/transcodeResults",
                               result_headers(secret, str(task_id), "0", "multipart/mixed; boundary=zzz"),
                               body)
    if status != 500:
        fail(what, f"got {status} {data.decode(errors='replace').strip()[:200]!r}, want 500")
    log(f"{what}: {status} {data.decode(errors='replace').strip()[:100]!r}")
    ok(what)


# --------------------------------------------------------------------------

def run(args):
    for flag, addr in (("--orch-addr", args.orch_addr), ("--no-pool-addr", args.no_pool_addr)):
        try:
            if addr is not None:
                ot_transcoder.split_addr(addr)
        except SystemExit:  # split_addr's way of saying "not HOST:PORT"
            fail("arguments", f"{flag} must be HOST:PORT, got {addr!r}")
    pb, pb_grpc = ot_transcoder.load_stubs()

    if args.no_pool_addr:
        check_no_pool(args.no_pool_addr, args.secret, pb, pb_grpc)
    check_refusals(args.orch_addr, args.secret, pb, pb_grpc)
    check_results_endpoint(args.orch_addr, args.secret)

    reg = Registration(args.orch_addr, args.secret, pb, pb_grpc)
    try:
        reg.established()
        say("waiting for a task")
        note = reg.next_task(TASK_TIMEOUT)
        check_task(note)
        check_segment_urls(note.url)
        check_broken_result(args.orch_addr, args.secret, note.taskId)
    finally:
        reg.close()
    say("orchestrator checks passed")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--orch-addr", required=True, metavar="HOST:PORT",
                    help="the orchestrator that takes remote transcoders")
    ap.add_argument("--secret", required=True, help="its orchestrator secret")
    ap.add_argument("--no-pool-addr", metavar="HOST:PORT",
                    help="an orchestrator that does not take remote transcoders")
    args = ap.parse_args(argv)
    # The lines carry `→`: write UTF-8 whatever the locale says.
    sys.stdout.reconfigure(encoding="utf-8")
    try:
        run(args)
    except CheckFailed as e:
        say(f"FAIL {e.what}: {e.detail}")
        return 1
    except Exception as e:  # a bug or an unforeseen failure is a failure too
        say(f"FAIL unexpected error: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
