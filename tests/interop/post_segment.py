"""An independent broadcaster's upload: GetTranscoder over grpcio, then
POST /segment over HTTP/2 with httpx, in both response forms, checking every
rendition with ffprobe. Shares no code with lpgpu.

Usage: post_segment.py SPEC.json   (written by tests/interop.rs)
"""

import base64
import json
import ssl
import subprocess
import sys
import tempfile

import grpc
import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from get_transcoder import load_stubs, sign_protocol

SIZES = {"P360p30fps16x9": (640, 360), "P240p30fps16x9": (426, 240), "P720p30fps16x9": (1280, 720)}


def probe(data: bytes):
    with tempfile.NamedTemporaryFile(suffix=".ts") as f:
        f.write(data)
        f.flush()
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                              "stream=codec_name,width,height,nb_read_frames", "-of", "json", f.name],
                             capture_output=True, check=True)
    stream = json.loads(out.stdout)["streams"][0]
    return stream["codec_name"], stream["width"], stream["height"], int(stream["nb_read_frames"])


def check(name, data, source_frames):
    codec, width, height, frames = probe(data)
    assert codec == "h264", (name, codec)
    assert (width, height) == SIZES[name], (name, width, height)
    assert abs(frames - source_frames) <= source_frames * 0.1, (name, frames, source_frames)
    print(f"ok {name}: {codec} {width}x{height}, {frames} frames")


def parse_multipart(content_type: str, body: bytes):
    boundary = content_type.split("boundary=")[1].strip().encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, rest = chunk[2:].partition(b"\r\n\r\n")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        length = int(headers[b"Content-Length"])
        parts.append((headers[b"Rendition-Name"].decode(), rest[:length]))
    return parts


def main():
    spec = json.load(open(sys.argv[1]))
    net_pb2, net_pb2_grpc = load_stubs(spec["proto_dir"])
    host, port, hostname = spec["host"], spec["port"], spec["hostname"]
    key = Account.decrypt(json.load(open(spec["broadcaster_keyfile"])), spec["password"])

    pem = ssl.get_server_certificate((host, port))
    channel = grpc.secure_channel(f"{host}:{port}", grpc.ssl_channel_credentials(root_certificates=pem.encode()),
                                  options=[("grpc.ssl_target_name_override", hostname)])
    job_id = spec["job_id"]
    info = net_pb2_grpc.OrchestratorStub(channel).GetTranscoder(
        net_pb2.TranscoderRequest(jobId=job_id, sig=sign_protocol(key, str(job_id).encode())), timeout=10)

    body = open(spec["segment"], "rb").read()
    # Self-signed: trust the certificate the transcoder presents (it may be
    # another process than the orchestrator); the hostname is still checked.
    transcoder = httpx.URL(info.transcoder)
    context = ssl.create_default_context(cadata=ssl.get_server_certificate((transcoder.host, transcoder.port)))
    with httpx.Client(http2=True, verify=context, timeout=120) as client:
        for seq, form in [(1, "multipart"), (2, "protobuf")]:
            data_hash = keccak(body)
            flatten = spec["stream_id"].encode() + seq.to_bytes(32, "big") + data_hash
            seg = net_pb2.SegData(seq=seq, hash=data_hash, sig=sign_protocol(key, flatten))
            headers = {
                "Authorization": info.authType,
                "Credentials": info.credentials,
                "Livepeer-Segment": base64.b64encode(seg.SerializeToString()).decode(),
                "Content-Type": "video/MP2T",
            }
            if form == "multipart":
                headers["Accept"] = "multipart/mixed"
            response = client.post(f"{info.transcoder}/segment", content=body, headers=headers)
            assert response.http_version == "HTTP/2", response.http_version
            assert response.status_code == 200, (response.status_code, response.text[:300])
            if form == "multipart":
                parts = parse_multipart(response.headers["content-type"], response.content)
                assert [name for name, _ in parts] == spec["profiles"], parts
                for name, data in parts:
                    check(name, data, spec["source_frames"])
            else:
                assert response.headers["content-type"] == "application/x-protobuf"
                result = net_pb2.TranscodeResult()
                result.ParseFromString(response.content)
                assert result.seq == seq and result.WhichOneof("result") == "data", result
                hashes = b""
                for name, segment in zip(spec["profiles"], result.data.segments):
                    fetched = client.get(segment.url)
                    assert fetched.status_code == 200, (segment.url, fetched.status_code)
                    hashes += keccak(fetched.content)
                    check(name, fetched.content, spec["source_frames"])
                if spec.get("unsigned_results"):
                    assert result.data.sig == b"", "a transcoder without a key signs nothing"
                    print("ok TranscodeData.sig is empty (the transcoder has no key)")
                else:
                    signer = Account.recover_message(encode_defunct(primitive=keccak(hashes)),
                                                     signature=result.data.sig)
                    assert signer == spec["orchestrator"], signer
                    print("ok TranscodeData.sig is the node's")
            print(f"ok segment {seq} in the {form} form")

        # A tampered body is refused with the stable code.
        response = client.post(f"{info.transcoder}/segment", content=body[:-188], headers=headers)
        assert response.status_code == 403 and response.json()["error"] == "hash_mismatch", response.text
        print("ok tampered body refused: hash_mismatch")
    print("segments: all checks passed")


if __name__ == "__main__":
    main()
