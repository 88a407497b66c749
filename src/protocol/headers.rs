//! The `Credentials` and `Livepeer-Segment` headers: base64 (standard alphabet,
//! padded, strict) of protobuf `AuthToken` and `SegData`, and the `flatten`
//! message a segment signature covers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;

use crate::eth::{Address, PrivateKey, Signature, SignatureError};
use crate::proto::{AuthToken, SegData};

/// The only `Authorization` type lpgpu issues and accepts.
pub const AUTH_TYPE_ETH: &str = "Livepeer-Eth-1";

/// Why a header could not be decoded: the client's fault, each with its own code.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum HeaderError {
    #[error("header is not strict base64 (standard alphabet, padded)")]
    NotBase64,
    #[error("header is not a valid protobuf message: {0}")]
    NotProtobuf(String),
    #[error("{field} must be {expected} bytes, got {got}")]
    BadLength {
        field: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{0} must not be negative")]
    Negative(&'static str),
    #[error("header of {0} bytes is longer than the limit of {limit}", limit = super::limits::MAX_HEADER_VALUE_BYTES)]
    TooLong(usize),
}

/// Why credentials were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CredentialsError {
    #[error(transparent)]
    Malformed(#[from] HeaderError),
    #[error("credentials are not signed by this node's orchestrator: {0}")]
    BadSignature(SignatureError),
}

fn decode_base64_protobuf<M: Message + Default>(header: &str) -> Result<M, HeaderError> {
    if header.len() > super::limits::MAX_HEADER_VALUE_BYTES {
        return Err(HeaderError::TooLong(header.len()));
    }
    let bytes = STANDARD
        .decode(header.trim())
        .map_err(|_| HeaderError::NotBase64)?;
    M::decode(bytes.as_slice()).map_err(|e| HeaderError::NotProtobuf(e.to_string()))
}

fn check_length(field: &'static str, bytes: &[u8], expected: usize) -> Result<(), HeaderError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(HeaderError::BadLength {
            field,
            expected,
            got: bytes.len(),
        })
    }
}

/// `utf8(streamId) ‖ seq as a 32-byte big-endian uint256 ‖ hash`: the bytes that
/// `SegData.sig` signs, equal to Solidity's `abi.encodePacked(string, uint256, bytes32)`.
pub fn flatten(stream_id: &str, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stream_id.len() + 64);
    out.extend_from_slice(stream_id.as_bytes());
    out.extend_from_slice(&[0u8; 24]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(hash);
    out
}

/// A decoded `Livepeer-Segment` header with its lengths checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    pub hash: [u8; 32],
    pub sig: Vec<u8>,
}

impl SegmentHeader {
    /// Signs segment `seq` of `stream_id` whose body hashes to `hash`.
    pub fn sign(key: &PrivateKey, stream_id: &str, seq: u64, hash: [u8; 32]) -> Self {
        let sig = key.sign(&flatten(stream_id, seq, &hash)).to_vec();
        Self { seq, hash, sig }
    }

    /// Checks that `broadcaster` signed this segment of `stream_id`.
    pub fn verify(&self, stream_id: &str, broadcaster: Address) -> Result<(), SignatureError> {
        Signature::verify(
            &flatten(stream_id, self.seq, &self.hash),
            &self.sig,
            broadcaster,
        )
    }
}

pub fn decode_segment_header(header: &str) -> Result<SegmentHeader, HeaderError> {
    let data: SegData = decode_base64_protobuf(header)?;
    let seq = u64::try_from(data.seq).map_err(|_| HeaderError::Negative("seq"))?;
    let hash: [u8; 32] = data
        .hash
        .as_slice()
        .try_into()
        .map_err(|_| HeaderError::BadLength {
            field: "hash",
            expected: 32,
            got: data.hash.len(),
        })?;
    check_length("sig", &data.sig, 65)?;
    Ok(SegmentHeader {
        seq,
        hash,
        sig: data.sig,
    })
}

pub fn encode_segment_header(segment: &SegmentHeader) -> String {
    // Segment numbers past int64 do not occur; saturate rather than panic.
    let seq = i64::try_from(segment.seq).unwrap_or(i64::MAX);
    let data = SegData {
        seq,
        hash: segment.hash.to_vec(),
        sig: segment.sig.clone(),
    };
    STANDARD.encode(data.encode_to_vec())
}

/// Mints the `Credentials` for `job_id`: base64 of an `AuthToken` that the
/// orchestrator signed over the ascii decimal job id.
pub fn mint_credentials(orchestrator: &PrivateKey, job_id: u64) -> String {
    let sig = orchestrator.sign(job_id.to_string().as_bytes()).to_vec();
    encode_credentials(&AuthToken {
        sig,
        job_id: i64::try_from(job_id).unwrap_or(i64::MAX),
    })
}

pub fn encode_credentials(token: &AuthToken) -> String {
    STANDARD.encode(token.encode_to_vec())
}

/// Decodes `Credentials` and checks the orchestrator's signature; returns the job id.
pub fn decode_credentials(header: &str, orchestrator: Address) -> Result<u64, CredentialsError> {
    let token: AuthToken = decode_base64_protobuf(header)?;
    let job_id = u64::try_from(token.job_id).map_err(|_| HeaderError::Negative("jobId"))?;
    check_length("credentials sig", &token.sig, 65)?;
    Signature::verify(job_id.to_string().as_bytes(), &token.sig, orchestrator)
        .map_err(CredentialsError::BadSignature)?;
    Ok(job_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::{hex_bytes, vectors};

    fn key() -> PrivateKey {
        PrivateKey::from_hex(vectors()["keys"][0]["private_key"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn flatten_matches_the_vectors() {
        let v = &vectors()["keys"][0]["segment_signature"];
        let hash: [u8; 32] = hex_bytes(&v["data_hash"]).try_into().unwrap();
        let stream_id = v["stream_id"].as_str().unwrap();
        let flat = flatten(stream_id, v["seq"].as_u64().unwrap(), &hash);
        assert_eq!(hex::encode(&flat), v["flatten_hex"].as_str().unwrap());
        assert_eq!(
            hex::encode(crate::eth::keccak256(&flat)),
            v["keccak256_flatten"].as_str().unwrap()[2..]
        );

        let short = &vectors()["flatten_short"];
        let hash: [u8; 32] = hex_bytes(&short["data_hash"]).try_into().unwrap();
        let flat = flatten(
            short["stream_id"].as_str().unwrap(),
            short["seq"].as_u64().unwrap(),
            &hash,
        );
        assert_eq!(hex::encode(&flat), short["flatten_hex"].as_str().unwrap());
        assert_eq!(
            hex::encode(crate::eth::keccak256(&flat)),
            short["keccak256_flatten"].as_str().unwrap()[2..]
        );
    }

    #[test]
    fn segment_headers_match_the_vectors_both_ways() {
        let v = &vectors()["keys"][0]["segment_signature"];
        let stream_id = v["stream_id"].as_str().unwrap();
        let hash = crate::eth::keccak256(v["body_ascii"].as_str().unwrap());
        assert_eq!(hash.to_vec(), hex_bytes(&v["data_hash"]));
        let signed = SegmentHeader::sign(&key(), stream_id, v["seq"].as_u64().unwrap(), hash);
        let header = encode_segment_header(&signed);
        assert_eq!(
            header,
            v["segdata_v27_28"]["livepeer_segment_header"]
                .as_str()
                .unwrap()
        );
        let data = SegData {
            seq: 7,
            hash: hash.to_vec(),
            sig: signed.sig.clone(),
        };
        assert_eq!(
            hex::encode(data.encode_to_vec()),
            v["segdata_v27_28"]["protobuf_hex"].as_str().unwrap()
        );
        for form in ["segdata_v27_28", "segdata_v0_1"] {
            let decoded =
                decode_segment_header(v[form]["livepeer_segment_header"].as_str().unwrap())
                    .unwrap();
            assert_eq!(decoded.seq, 7);
            assert_eq!(decoded.hash, hash);
            assert_eq!(decoded.verify(stream_id, key().address()), Ok(()), "{form}");
        }
    }

    #[test]
    fn credentials_match_the_vectors() {
        let v = &vectors()["keys"][0]["auth_token_job_42"];
        let header = v["credentials_header"].as_str().unwrap();
        assert_eq!(decode_credentials(header, key().address()), Ok(42));
        let token = AuthToken::decode(hex_bytes(&v["protobuf_hex"]).as_slice()).unwrap();
        assert_eq!(encode_credentials(&token), header);
        // What we mint ourselves carries v = 27/28 but is otherwise the same token.
        let minted = mint_credentials(&key(), 42);
        assert_eq!(decode_credentials(&minted, key().address()), Ok(42));

        let fixed = &vectors()["auth_token_fixed_sig"];
        let token = AuthToken {
            sig: hex_bytes(&fixed["sig"]),
            job_id: fixed["job_id"].as_i64().unwrap(),
        };
        assert_eq!(
            hex::encode(token.encode_to_vec()),
            fixed["protobuf_hex"].as_str().unwrap()
        );
        assert_eq!(
            encode_credentials(&token),
            fixed["credentials_header"].as_str().unwrap()
        );
        // 0xabab… is no signature of anyone's: a typed signature error.
        let result = decode_credentials(
            fixed["credentials_header"].as_str().unwrap(),
            key().address(),
        );
        assert!(
            matches!(result, Err(CredentialsError::BadSignature(_))),
            "{result:?}"
        );
    }

    #[test]
    fn transcoder_request_matches_the_vector() {
        let v = &vectors()["keys"][0]["transcoder_request_job_42"];
        let request =
            crate::proto::TranscoderRequest::decode(hex_bytes(&v["protobuf_hex"]).as_slice())
                .unwrap();
        assert_eq!(request.job_id, 42);
        assert_eq!(Signature::recover(b"42", &request.sig), Ok(key().address()));
        assert_eq!(
            hex::encode(request.encode_to_vec()),
            v["protobuf_hex"].as_str().unwrap()
        );
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        assert_eq!(
            decode_segment_header("not base64!"),
            Err(HeaderError::NotBase64)
        );
        // Unpadded base64 is refused: the wire says padded.
        assert_eq!(decode_segment_header("CAc"), Err(HeaderError::NotBase64));
        assert!(matches!(
            decode_segment_header("//8="),
            Err(HeaderError::NotProtobuf(_))
        ));
        let short_hash = STANDARD.encode(
            SegData {
                seq: 1,
                hash: vec![1; 31],
                sig: vec![0; 65],
            }
            .encode_to_vec(),
        );
        assert_eq!(
            decode_segment_header(&short_hash),
            Err(HeaderError::BadLength {
                field: "hash",
                expected: 32,
                got: 31
            })
        );
        let no_sig = STANDARD.encode(
            SegData {
                seq: 1,
                hash: vec![1; 32],
                sig: vec![],
            }
            .encode_to_vec(),
        );
        assert_eq!(
            decode_segment_header(&no_sig),
            Err(HeaderError::BadLength {
                field: "sig",
                expected: 65,
                got: 0
            })
        );
        let negative = STANDARD.encode(
            SegData {
                seq: -1,
                hash: vec![1; 32],
                sig: vec![0; 65],
            }
            .encode_to_vec(),
        );
        assert_eq!(
            decode_segment_header(&negative),
            Err(HeaderError::Negative("seq"))
        );
        assert!(matches!(
            decode_credentials("", key().address()),
            Err(CredentialsError::Malformed(_))
        ));
        let negative_job = encode_credentials(&AuthToken {
            sig: vec![0; 65],
            job_id: -5,
        });
        assert_eq!(
            decode_credentials(&negative_job, key().address()),
            Err(CredentialsError::Malformed(HeaderError::Negative("jobId")))
        );
    }

    #[test]
    fn a_signature_over_another_seq_does_not_verify() {
        let hash = crate::eth::keccak256(b"body");
        let mut header = SegmentHeader::sign(&key(), "stream", 3, hash);
        header.seq = 4;
        assert!(header.verify("stream", key().address()).is_err());
    }
}
