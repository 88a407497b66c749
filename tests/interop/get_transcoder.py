"""An independent broadcaster: asks an lpgpu node for a transcoder over TLS with
grpcio and checks the answer with eth-account. Shares no code with lpgpu: the
stubs are generated from proto/net.proto here, and every signature is made and
checked with eth-account.

Usage: get_transcoder.py SPEC.json   (written by tests/interop.rs)
Prints one line per check; exits non-zero on the first failure.
"""

import base64
import json
import os
import ssl
import sys
import tempfile

import grpc
from grpc_tools import protoc
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak


def load_stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="lpgpu-interop-")
    # grpc_tools ships the well-known protos; proto_dir holds net.proto (and
    # the files it imports, compiled beside it).
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}",
                        f"--grpc_python_out={out}", *sorted(os.path.join(proto_dir, f) for f in os.listdir(proto_dir) if f.endswith(".proto"))])
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")
    sys.path.insert(0, out)
    import net_pb2, net_pb2_grpc  # noqa: E402
    return net_pb2, net_pb2_grpc


def sign_protocol(key, message: bytes) -> bytes:
    """lpgpu's Sign(msg): EIP-191 over keccak256(msg)."""
    signed = Account.sign_message(encode_defunct(primitive=keccak(message)), private_key=key)
    return bytes(signed.signature)


def recover_protocol(message: bytes, signature: bytes) -> str:
    return Account.recover_message(encode_defunct(primitive=keccak(message)), signature=signature)


def main():
    spec = json.load(open(sys.argv[1]))
    net_pb2, net_pb2_grpc = load_stubs(spec["proto_dir"])
    host, port, hostname = spec["host"], spec["port"], spec["hostname"]

    # The broadcaster's key comes out of lpgpu's keystore file, decrypted by
    # eth-account: this also checks that lpgpu writes V3 files others read.
    keyfile = json.load(open(spec["broadcaster_keyfile"]))
    key = Account.decrypt(keyfile, spec["password"])
    broadcaster = Account.from_key(key).address
    assert broadcaster == spec["broadcaster"], (broadcaster, spec["broadcaster"])
    print("ok keystore decrypts with eth-account", broadcaster)

    # Self-signed: trust exactly the certificate the node presents, and check the name.
    pem = ssl.get_server_certificate((host, port))
    credentials = grpc.ssl_channel_credentials(root_certificates=pem.encode())
    options = [("grpc.ssl_target_name_override", hostname)]
    channel = grpc.secure_channel(f"{host}:{port}", credentials, options=options)
    stub = net_pb2_grpc.OrchestratorStub(channel)

    job_id = spec["job_id"]
    info = stub.GetTranscoder(net_pb2.TranscoderRequest(jobId=job_id, sig=sign_protocol(key, str(job_id).encode())),
                              timeout=10)
    assert info.authType == "Livepeer-Eth-1", info.authType
    assert info.transcoder == spec["service_uri"], (info.transcoder, spec["service_uri"])
    token = net_pb2.AuthToken()
    raw = base64.b64decode(info.credentials, validate=True)
    token.ParseFromString(raw)
    assert base64.b64encode(raw).decode() == info.credentials, "credentials are not canonical base64"
    assert token.jobId == job_id, token.jobId
    signer = recover_protocol(str(job_id).encode(), token.sig)
    assert signer == spec["orchestrator"], (signer, spec["orchestrator"])
    assert token.sig[64] in (27, 28), token.sig[64]
    assert sorted(info.streamIds.values()) == sorted(spec["profiles"]), dict(info.streamIds)
    for stream_id in info.streamIds:
        assert stream_id[:64] == spec["manifest_id"], stream_id
    print("ok credentials issued and signed by", signer)

    def refused(name, request, code):
        try:
            stub.GetTranscoder(request, timeout=10)
        except grpc.RpcError as error:
            assert error.code() == code, (name, error.code(), error.details())
            print(f"ok refused {name}: {error.code().name}: {error.details()}")
            return
        raise AssertionError(f"{name} was accepted")

    stranger = Account.create().key
    refused("a stranger's signature",
            net_pb2.TranscoderRequest(jobId=job_id, sig=sign_protocol(stranger, str(job_id).encode())),
            grpc.StatusCode.INVALID_ARGUMENT)
    plain = bytes(Account.sign_message(encode_defunct(text=str(job_id)), private_key=key).signature)
    refused("a plain personal_sign", net_pb2.TranscoderRequest(jobId=job_id, sig=plain),
            grpc.StatusCode.INVALID_ARGUMENT)
    refused("a short signature",
            net_pb2.TranscoderRequest(jobId=job_id, sig=sign_protocol(key, str(job_id).encode())[:64]),
            grpc.StatusCode.INVALID_ARGUMENT)
    unknown = spec["unknown_job_id"]
    refused("an unknown job", net_pb2.TranscoderRequest(jobId=unknown, sig=sign_protocol(key, str(unknown).encode())),
            grpc.StatusCode.NOT_FOUND)
    expired = spec["expired_job_id"]
    refused("a job past its endBlock",
            net_pb2.TranscoderRequest(jobId=expired, sig=sign_protocol(key, str(expired).encode())),
            grpc.StatusCode.FAILED_PRECONDITION)

    # The wrong name must fail the TLS handshake.
    wrong = grpc.secure_channel(f"{host}:{port}", credentials, options=[("grpc.ssl_target_name_override", "wrong.example")])
    try:
        net_pb2_grpc.OrchestratorStub(wrong).GetTranscoder(net_pb2.TranscoderRequest(jobId=job_id), timeout=5)
        raise AssertionError("a certificate name mismatch was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.code()
        print("ok name mismatch refused by grpcio")
    print("interop: all checks passed")


if __name__ == "__main__":
    main()
