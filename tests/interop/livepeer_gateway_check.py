"""Checks lpgpu's broadcaster<->orchestrator wire against Livepeer's own code.

Every message here is built and parsed with the generated classes that
Livepeer publishes in its Python SDK, PyPI `livepeer-gateway` 1.0.0
(`livepeer_gateway/lp_rpc_pb2.py`, Livepeer's descriptor of go-livepeer's
`net/lp_rpc.proto`, and `lp_rpc_pb2_grpc.py`), and `orch-info` runs that
package's own GetOrchestrator client, `orch_info.get_orch_info`. The tool shares
no code with lpgpu: it neither reads proto/ nor generates stubs; `.ci/setup`
unpacks the wheel into `.venv/livepeer-gateway` (override with
`--lpg-dir DIR` or `$LIVEPEER_GATEWAY_DIR`).

The package's `__init__` imports PyAV and much else, so it is never run: a bare
package object named `livepeer_gateway` whose `__path__` is the unpacked
directory goes into `sys.modules`, and only `lp_rpc_pb2`, `lp_rpc_pb2_grpc`,
`orch_info` and what `orch_info` imports (`errors`, `remote_signer`,
`async_cache`, and, inside `get_orch_info_sig`, `http`) are loaded from it.
`http.py` imports aiohttp at module level but uses it only in async functions
that the offchain GetOrchestrator path never calls; where aiohttp is not
installed, an empty stand-in module takes its name.

Commands (JSON on stdout, diagnostics on stderr; exit 0 = ok, 1 = check failed):

  get-orchestrator --orch HOST:PORT
      /net.Orchestrator/GetOrchestrator over TLS with an offchain
      OrchestratorRequest (address = 20 zero bytes, empty sig), as go-livepeer's
      broadcaster sends it. The certificate is not verified: the one the server
      presents is fetched and used as the only root, with the gRPC target name
      overridden to a name in it. Fails on an RPC error, and on any field or
      enum value that Livepeer's descriptor does not know.
  orch-info --orch HOST:PORT
      Livepeer's `orch_info.get_orch_info(orch_url)` with no signer (offchain:
      it sends address and sig empty and ignoreCapacityCheck = true, over TLS
      trusting the certificate on first use). Prints what it returns; fails
      likewise.
  decode-result FILE          a TranscodeResult (raw protobuf; FILE "-" = stdin)
  decode-segdata BASE64       a Livepeer-Segment header value (base64 SegData)
  decode MESSAGE HEX          any message of Livepeer's `net` package, e.g. AuthToken
  encode-segdata --manifest TEXT --seq N --hash HEX --token HEX --session ID
                 --expiration N --profile name:WxH:bitrate:fps[:mpegts|mp4] ...
      Prints base64 of a SegData built with Livepeer's classes, filled as
      go-livepeer's broadcaster fills it offchain (`profiles` = b"invalid",
      empty sig, duration in ms, renditions in fullProfiles unless
      --profiles-field says otherwise).

The JSON of a message uses the .proto field names; bytes are lowercase hex,
integers are JSON numbers, enums are names (an enum value Livepeer does not
know is printed as its number and fails the check).
"""

import argparse
import base64
import importlib
import ipaddress
import json
import os
import socket
import ssl
import sys
import tempfile
import types

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import unknown_fields as _unknown_fields

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LPG_DIR = os.path.join(HERE, "..", "..", ".venv", "livepeer-gateway")
PKG = "livepeer_gateway"


# ---------------------------------------------------------------- loading

def load_livepeer(lpg_dir=None, with_client=False):
    """Returns (lp_rpc_pb2, lp_rpc_pb2_grpc, orch_info or None) from the wheel."""
    lpg_dir = lpg_dir or os.environ.get("LIVEPEER_GATEWAY_DIR") or DEFAULT_LPG_DIR
    pkg_dir = os.path.join(os.path.abspath(lpg_dir), PKG)
    if not os.path.isfile(os.path.join(pkg_dir, "lp_rpc_pb2.py")):
        raise SystemExit(f"{pkg_dir}/lp_rpc_pb2.py not found: run .ci/setup "
                         "(it unpacks PyPI livepeer-gateway 1.0.0 there)")
    pkg = sys.modules.get(PKG)
    if pkg is None:
        # A package without its __init__ (which would import PyAV and more).
        pkg = types.ModuleType(PKG)
        pkg.__path__ = [pkg_dir]
        pkg.__file__ = None
        sys.modules[PKG] = pkg
    elif list(getattr(pkg, "__path__", [])) != [pkg_dir]:
        raise SystemExit(f"a different {PKG} is already imported: {pkg!r}")
    pb2 = importlib.import_module(f"{PKG}.lp_rpc_pb2")
    pb2_grpc = importlib.import_module(f"{PKG}.lp_rpc_pb2_grpc")
    orch_info = None
    if with_client:
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            # http.py does `import aiohttp` but only its async helpers use it;
            # get_orch_info's offchain path needs none of them.
            sys.modules["aiohttp"] = types.ModuleType("aiohttp")
        orch_info = importlib.import_module(f"{PKG}.orch_info")
    return pb2, pb2_grpc, orch_info


# ---------------------------------------------------------------- JSON and unknowns

def _scalar_json(fd, value, path, unknown):
    if fd.type == _descriptor.FieldDescriptor.TYPE_MESSAGE:
        return to_json(value, path, unknown)
    if fd.type == _descriptor.FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    if fd.type == _descriptor.FieldDescriptor.TYPE_ENUM:
        ev = fd.enum_type.values_by_number.get(value)
        if ev is None:
            unknown.append(f"{path}: enum value {value} not in {fd.enum_type.full_name}")
            return value
        return ev.name
    return value


def to_json(msg, path=None, unknown=None):
    """A dict of the set fields of msg, and unknown fields/enum values appended
    to `unknown` as "path: ..." strings (recursively)."""
    if unknown is None:
        unknown = []
    path = path or msg.DESCRIPTOR.name
    for f in _unknown_fields.UnknownFieldSet(msg):
        unknown.append(f"{path}: unknown field {f.field_number} (wire type {f.wire_type})")
    out = {}
    for fd, value in msg.ListFields():
        p = f"{path}.{fd.name}"
        is_map = (fd.type == _descriptor.FieldDescriptor.TYPE_MESSAGE
                  and fd.message_type.GetOptions().map_entry)
        if is_map:
            vfd = fd.message_type.fields_by_name["value"]
            out[fd.name] = {str(k): _scalar_json(vfd, v, f"{p}[{k}]", unknown)
                            for k, v in sorted(value.items())}
        elif _is_repeated(fd):
            out[fd.name] = [_scalar_json(fd, v, f"{p}[{i}]", unknown)
                            for i, v in enumerate(value)]
        else:
            out[fd.name] = _scalar_json(fd, value, p, unknown)
    return out


def _is_repeated(fd):
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return rep() if callable(rep) else rep
    return fd.label == _descriptor.FieldDescriptor.LABEL_REPEATED


def has_unknown(msg):
    """Independent second check: dropping unknown fields changes the size."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    copy.DiscardUnknownFields()
    return copy.ByteSize() != msg.ByteSize()


def report(msg, extra=None):
    """Prints {type, message, unknown, ...}; returns the exit code."""
    unknown = []
    body = to_json(msg, None, unknown)
    if has_unknown(msg) and not any("unknown field" in u for u in unknown):
        unknown.append(f"{msg.DESCRIPTOR.name}: unknown fields (DiscardUnknownFields changed the size)")
    out = {"type": msg.DESCRIPTOR.full_name, "message": body}
    if extra:
        out.update(extra)
    out["unknown"] = unknown
    print(json.dumps(out, indent=2, sort_keys=False))
    for u in unknown:
        print(f"FAIL not in Livepeer's descriptor: {u}", file=sys.stderr)
    return 1 if unknown else 0


def parse(cls, data):
    msg = cls()
    try:
        msg.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError
        print(f"FAIL {cls.DESCRIPTOR.full_name} does not parse: {e}", file=sys.stderr)
        return None
    return msg


# ---------------------------------------------------------------- TLS / gRPC

def split_orch(orch):
    """HOST:PORT, [V6]:PORT or https://HOST:PORT -> (host, port)."""
    orch = orch.strip()
    if "://" in orch:
        scheme, orch = orch.split("://", 1)
        if scheme != "https":
            raise SystemExit(f"only https orchestrators: {scheme}")
        orch = orch.rstrip("/")
    if orch.startswith("["):
        host, rest = orch[1:].split("]", 1)
        return host, int(rest.lstrip(":"))
    host, port = orch.rsplit(":", 1)
    return host, int(port)


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def fetch_certificate(host, port, timeout):
    """The server's certificate (PEM) and a name in it for the gRPC target
    override, from a TLS handshake that verifies nothing (like go-livepeer's
    InsecureSkipVerify). SNI only for a DNS name, ALPN h2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname=None if _is_ip(host) else host) as tls:
            der = tls.getpeercert(binary_form=True)
            alpn = tls.selected_alpn_protocol()
    pem = ssl.DER_cert_to_PEM_cert(der)
    names = []
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(pem)
    try:
        decoded = ssl._ssl._test_decode_cert(f.name)  # CPython's PEM decoder
    except Exception:
        decoded = {}
    finally:
        os.unlink(f.name)
    for kind in ("DNS", "IP Address"):
        names += [v for t, v in decoded.get("subjectAltName", ()) if t == kind and v]
    for rdn in decoded.get("subject", ()):
        names += [v for k, v in rdn if k == "commonName" and v]
    names = list(dict.fromkeys(names))
    authority = host if host in names else (names[0] if names else host)
    return pem.encode(), authority, {"names": names, "alpn": alpn,
                                     "target_name_override": authority}


def cmd_get_orchestrator(args):
    pb2, pb2_grpc, _ = load_livepeer(args.lpg_dir)
    host, port = split_orch(args.orch)
    try:
        pem, authority, tls = fetch_certificate(host, port, args.timeout)
    except (OSError, ssl.SSLError) as e:
        print(f"FAIL TLS handshake with {host}:{port}: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1
    creds = grpc.ssl_channel_credentials(root_certificates=pem)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = [("grpc.ssl_target_name_override", authority),
               ("grpc.default_authority", authority)]
    request = pb2.OrchestratorRequest(address=bytes(20), sig=b"")
    with grpc.secure_channel(target, creds, options=options) as channel:
        stub = pb2_grpc.OrchestratorStub(channel)
        try:
            info = stub.GetOrchestrator(request, timeout=args.timeout)
        except grpc.RpcError as e:
            print(f"FAIL GetOrchestrator: {e.code()}: {e.details()}", file=sys.stderr)
            return 1
    return report(info, {"tls": tls})


def cmd_orch_info(args):
    _, _, orch_info = load_livepeer(args.lpg_dir, with_client=True)
    try:
        info = orch_info.get_orch_info(args.orch)
    except Exception as e:  # OrchestratorRpcError and TLS probe failures
        print(f"FAIL get_orch_info: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1
    target = orch_info._parse_grpc_target(args.orch)
    pinned = orch_info._TOFU_CERT_CACHE.get(target)
    extra = {"tofu": {"target": target, "authority": pinned[1]}} if pinned else None
    return report(info, extra)


# ---------------------------------------------------------------- decoding

def cmd_decode_result(args):
    pb2, _, _ = load_livepeer(args.lpg_dir)
    data = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
    msg = parse(pb2.TranscodeResult, data)
    if msg is None:
        return 1
    return report(msg, {"result": msg.WhichOneof("result")})


PROFILE_FIELDS = ("fullProfiles", "fullProfiles2", "fullProfiles3")


def cmd_decode_segdata(args):
    pb2, _, _ = load_livepeer(args.lpg_dir)
    try:
        data = base64.b64decode(args.value.strip(), validate=True)
    except Exception as e:
        print(f"FAIL Livepeer-Segment is not base64: {e}", file=sys.stderr)
        return 1
    msg = parse(pb2.SegData, data)
    if msg is None:
        return 1
    set_fields = [n for n in PROFILE_FIELDS if len(getattr(msg, n))]
    # go-livepeer's O reads 35, then 34, then 33.
    used = next((n for n in reversed(PROFILE_FIELDS) if n in set_fields), None)
    return report(msg, {"profiles_fields_set": set_fields, "profiles_field_read": used})


def cmd_decode(args):
    pb2, _, _ = load_livepeer(args.lpg_dir)
    cls = getattr(pb2, args.message, None)
    if cls is None or not hasattr(cls, "DESCRIPTOR"):
        print(f"FAIL no message net.{args.message} in Livepeer's descriptor", file=sys.stderr)
        return 1
    h = args.hex[2:] if args.hex.lower().startswith("0x") else args.hex
    msg = parse(cls, bytes.fromhex(h))
    if msg is None:
        return 1
    return report(msg)


# ---------------------------------------------------------------- encoding

def _hex(s):
    s = s[2:] if s.lower().startswith("0x") else s
    return bytes.fromhex(s)


def _bitrate(s):
    s = s.strip()
    mult = {"k": 1000, "K": 1000, "m": 1000000, "M": 1000000}.get(s[-1:], 1)
    return int(s[:-1] if mult != 1 else s) * mult


def parse_profile(pb2, spec):
    """name:WxH:bitrate:fps[:mpegts|mp4], fps N or N/D."""
    parts = spec.split(":")
    if len(parts) not in (4, 5):
        raise SystemExit(f"--profile {spec!r}: want name:WxH:bitrate:fps[:mpegts|mp4]")
    name, res, bitrate, fps = parts[:4]
    w, h = (int(x) for x in res.lower().split("x"))
    p = pb2.VideoProfile(name=name, width=w, height=h, bitrate=_bitrate(bitrate))
    if "/" in fps:
        num, den = fps.split("/")
        p.fps, p.fpsDen = int(num), int(den)
    else:
        p.fps = int(fps)
    if len(parts) == 5:
        p.format = {"mpegts": pb2.VideoProfile.MPEGTS, "mp4": pb2.VideoProfile.MP4}[parts[4].lower()]
    return p


def cmd_encode_segdata(args):
    pb2, _, _ = load_livepeer(args.lpg_dir)
    seg = pb2.SegData(
        manifestId=args.manifest.encode(),
        seq=args.seq,
        hash=_hex(args.hash),
        profiles=args.legacy_profiles.encode(),
        sig=_hex(args.sig),
        duration=args.duration,
        auth_token=pb2.AuthToken(token=_hex(args.token), session_id=args.session,
                                 expiration=args.expiration),
        calc_perceptual_hash=args.calc_perceptual_hash,
    )
    if args.capability or args.min_version is not None:
        words = [0] * (max(args.capability, default=0) // 64 + 1) if args.capability else []
        for c in args.capability:
            words[c // 64] |= 1 << (c % 64)
        seg.capabilities.bitstring.extend(words)
        if args.min_version is not None:
            seg.capabilities.constraints.minVersion = args.min_version
    getattr(seg, args.profiles_field).extend(parse_profile(pb2, p) for p in args.profile)
    print(base64.b64encode(seg.SerializeToString()).decode())
    return 0


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lpg-dir", help="the unpacked livepeer-gateway wheel "
                    "(default $LIVEPEER_GATEWAY_DIR or .venv/livepeer-gateway)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("get-orchestrator", help="GetOrchestrator with Livepeer's messages")
    p.add_argument("--orch", required=True, help="HOST:PORT")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(fn=cmd_get_orchestrator)

    p = sub.add_parser("orch-info", help="Livepeer's orch_info.get_orch_info")
    p.add_argument("--orch", required=True, help="HOST:PORT")
    p.set_defaults(fn=cmd_orch_info)

    p = sub.add_parser("decode-result", help="decode a TranscodeResult file")
    p.add_argument("file")
    p.set_defaults(fn=cmd_decode_result)

    p = sub.add_parser("decode-segdata", help="decode a Livepeer-Segment header value")
    p.add_argument("value")
    p.set_defaults(fn=cmd_decode_segdata)

    p = sub.add_parser("decode", help="decode hex as any net.* message")
    p.add_argument("message", help="e.g. AuthToken, OrchestratorInfo, Payment")
    p.add_argument("hex")
    p.set_defaults(fn=cmd_decode)

    p = sub.add_parser("encode-segdata", help="base64 SegData built with Livepeer's classes")
    p.add_argument("--manifest", required=True, help="manifestId (its UTF-8 bytes)")
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--hash", required=True, help="keccak256 of the segment, hex")
    p.add_argument("--token", required=True, help="AuthToken.token, hex")
    p.add_argument("--session", required=True, help="AuthToken.session_id")
    p.add_argument("--expiration", type=int, required=True, help="AuthToken.expiration")
    p.add_argument("--profile", action="append", default=[],
                   help="name:WxH:bitrate:fps[:mpegts|mp4] (repeat, in order)")
    p.add_argument("--profiles-field", choices=PROFILE_FIELDS, default="fullProfiles")
    p.add_argument("--duration", type=int, default=2000, help="ms (default 2000)")
    p.add_argument("--sig", default="", help="SegData.sig, hex (default empty: offchain)")
    p.add_argument("--calc-perceptual-hash", action="store_true",
                   help="SegData.calc_perceptual_hash (field 10)")
    p.add_argument("--legacy-profiles", default="invalid",
                   help='SegData.profiles bytes (default "invalid", as go-livepeer sends)')
    p.add_argument("--capability", type=int, action="append", default=[],
                   help="capability number to set in capabilities.bitstring (repeat)")
    p.add_argument("--min-version", help="capabilities.constraints.minVersion")
    p.set_defaults(fn=cmd_encode_segdata)

    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
