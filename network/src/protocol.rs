//! What nodes say to each other: the gossip topics and the sync request-response protocol.
//!
//! Sync messages use the project's canonical codec (bounded decoding, no trailing bytes),
//! one request and one response per libp2p stream. A stream is read up to a fixed size
//! before anything is decoded, so a peer cannot make the node buffer more than
//! [`MAX_RESPONSE_BYTES`] per request.

use std::io;

use async_trait::async_trait;
use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::types::MAX_BLOCK_RECEIPTS;
use fai_ledger::block::{Block, BlockHeader};
use fai_primitives::codec::{write_var_bytes, write_vec, Decode, Encode, Reader};
use fai_primitives::{CodecError, Hash256, Network, PublicKey, SecretKey, Signature};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};

use fai_inference_chain::served::SealedServed;

/// Gossip topics. Each network has its own names, so nodes of different networks that
/// meet never mix their messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    LedgerBlock,
    LedgerTx,
    InferenceBlock,
    /// Signed VM transactions of the inference layer.
    VmTx,
    /// Served inferences: stub, receipt and text, for producers and verifiers.
    Result,
    /// Verifiers' votes on inference blocks.
    Vote,
}

impl Topic {
    pub const ALL: [Topic; 6] = [
        Topic::LedgerBlock,
        Topic::LedgerTx,
        Topic::InferenceBlock,
        Topic::VmTx,
        Topic::Result,
        Topic::Vote,
    ];

    fn name(self) -> &'static str {
        match self {
            Topic::LedgerBlock => "ledger-block",
            Topic::LedgerTx => "ledger-tx",
            Topic::InferenceBlock => "inference-block",
            Topic::VmTx => "vm-tx",
            Topic::Result => "result",
            Topic::Vote => "vote",
        }
    }

    /// The gossipsub topic string, e.g. `/fai/devnet/ledger-block/1`.
    pub fn topic(self, network: Network) -> String {
        format!("/fai/{network}/{}/1", self.name())
    }

    /// The largest message accepted on this topic: a maximal block or transaction with
    /// room for its framing.
    pub fn max_bytes(self) -> usize {
        match self {
            Topic::LedgerBlock => 1_100_000,
            Topic::LedgerTx => 110_000,
            Topic::InferenceBlock => 2_100_000,
            Topic::VmTx => 200_000,
            // A prompt (400 KiB), an output (512 KiB) and its tokens (128 KiB) at most.
            Topic::Result => 1_200_000,
            // 10,000 verdicts.
            Topic::Vote => 12_000,
        }
    }
}

/// The sync protocol's name on `network`.
pub fn sync_protocol(network: Network) -> StreamProtocol {
    // Only these four names exist; the unwrap-free constructor wants a 'static str.
    StreamProtocol::new(match network {
        Network::Mainnet => "/fai/mainnet/sync/1",
        Network::Testnet => "/fai/testnet/sync/1",
        Network::Devnet => "/fai/devnet/sync/1",
        Network::Regtest => "/fai/regtest/sync/1",
    })
}

/// The protocol of relayed inference streams: one signed inference transaction in, its
/// events out (see `rpc::relay`).
pub fn relay_protocol(network: Network) -> StreamProtocol {
    StreamProtocol::new(match network {
        Network::Mainnet => "/fai/mainnet/relay/1",
        Network::Testnet => "/fai/testnet/relay/1",
        Network::Devnet => "/fai/devnet/relay/1",
        Network::Regtest => "/fai/regtest/relay/1",
    })
}

/// Proof that a peer id is run by the holder of a node key: the key's signature over
/// the peer id. Peers learn from it which connection reaches which registered inference
/// node (relayed requests go there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProof {
    pub key: PublicKey,
    pub signature: Signature,
}

impl NodeProof {
    fn digest(peer: &PeerId) -> Hash256 {
        let mut bytes = b"fai node peer ".to_vec();
        bytes.extend_from_slice(&peer.to_bytes());
        Hash256::sha256d(&bytes)
    }

    pub fn sign(key: &SecretKey, peer: &PeerId) -> Self {
        NodeProof {
            key: key.public_key(),
            signature: key.sign(&Self::digest(peer)),
        }
    }

    /// Whether this proof was made for `peer`.
    pub fn verify(&self, peer: &PeerId) -> bool {
        self.key.verify(&Self::digest(peer), &self.signature)
    }
}

/// Hashes in a block locator, at most.
pub const MAX_LOCATOR: usize = 64;
/// Headers in one response, at most.
pub const MAX_HEADERS: usize = 2_000;
/// Blocks asked for in one request, at most. The server stops adding blocks to a response
/// past [`SERVE_BYTES`], so a response stays far below [`MAX_RESPONSE_BYTES`].
pub const MAX_BLOCKS_PER_REQUEST: usize = 128;
/// The bytes of blocks served in one response, at most (the last block may pass it).
pub const SERVE_BYTES: usize = 8 * 1024 * 1024;
/// Inference blocks in one response, at most.
pub const MAX_INFERENCE_BLOCKS_PER_RESPONSE: usize = 64;
/// A request's encoded size, at most.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A response's encoded size, at most: [`SERVE_BYTES`] plus one maximal block, with room.
pub const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

// A response holds up to SERVE_BYTES of blocks plus the one that crosses it: a maximal
// inference block must fit beside them.
const _: () =
    assert!(SERVE_BYTES + fai_inference_chain::block::MAX_BLOCK_BYTES <= MAX_RESPONSE_BYTES);

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The peer's genesis, tip, height and chain work.
    Status,
    /// Headers of the peer's active chain after the first locator hash it knows.
    LedgerHeaders { locator: Vec<Hash256> },
    /// These blocks, in this order (unknown ones are left out).
    LedgerBlocks { hashes: Vec<Hash256> },
    /// The peer's canonical inference blocks from this height on, in order.
    InferenceBlocks { from_height: u32 },
    /// The text (prompt, output, tokens) of the inferences of this inference block that
    /// the peer still keeps: what a verifier that missed the result gossip replays.
    Payloads { block: Hash256 },
}

/// A sync response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Status(Status),
    LedgerHeaders(Vec<BlockHeader>),
    LedgerBlocks(Vec<Block>),
    InferenceBlocks(Vec<InferenceBlock>),
    /// Served inferences of the block asked for, with their text sealed to its verifiers.
    Payloads(Vec<SealedServed>),
    /// The request was not served (rate limit, overload); the text says why.
    Refused(String),
}

/// A node's view of its ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub genesis: Hash256,
    pub height: u32,
    pub tip: Hash256,
    /// Total work of the active chain, big-endian.
    pub chain_work: [u8; 32],
    /// The height of the inference tip as of the ledger tip.
    pub inference_height: u32,
    /// The node key behind this peer id.
    pub node: Option<Box<NodeProof>>,
}

impl Encode for Request {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Request::Status => out.push(0),
            Request::LedgerHeaders { locator } => {
                out.push(1);
                write_vec(out, locator);
            }
            Request::LedgerBlocks { hashes } => {
                out.push(2);
                write_vec(out, hashes);
            }
            Request::InferenceBlocks { from_height } => {
                out.push(3);
                from_height.encode_to(out);
            }
            Request::Payloads { block } => {
                out.push(4);
                block.encode_to(out);
            }
        }
    }
}

impl Decode for Request {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.read_u8()? {
            0 => Request::Status,
            1 => Request::LedgerHeaders {
                locator: r.read_vec("locator", MAX_LOCATOR as u64, 32)?,
            },
            2 => Request::LedgerBlocks {
                hashes: r.read_vec("block hashes", MAX_BLOCKS_PER_REQUEST as u64, 32)?,
            },
            3 => Request::InferenceBlocks {
                from_height: r.read_u32()?,
            },
            4 => Request::Payloads {
                block: Hash256::decode_from(r)?,
            },
            _ => {
                return Err(CodecError::Invalid {
                    what: "sync request",
                    reason: "unknown kind",
                })
            }
        })
    }
}

impl Encode for Response {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Response::Status(s) => {
                out.push(0);
                s.genesis.encode_to(out);
                s.height.encode_to(out);
                s.tip.encode_to(out);
                out.extend_from_slice(&s.chain_work);
                s.inference_height.encode_to(out);
                match &s.node {
                    None => out.push(0),
                    Some(proof) => {
                        out.push(1);
                        proof.key.encode_to(out);
                        proof.signature.encode_to(out);
                    }
                }
            }
            Response::LedgerHeaders(headers) => {
                out.push(1);
                write_vec(out, headers);
            }
            Response::LedgerBlocks(blocks) => {
                out.push(2);
                write_vec(out, blocks);
            }
            Response::InferenceBlocks(blocks) => {
                out.push(4);
                write_vec(out, blocks);
            }
            Response::Payloads(list) => {
                out.push(5);
                write_vec(out, list);
            }
            Response::Refused(reason) => {
                out.push(3);
                // At most 200 bytes, cut at a character boundary.
                let cut = (0..=reason.len().min(200))
                    .rev()
                    .find(|i| reason.is_char_boundary(*i))
                    .unwrap_or(0);
                write_var_bytes(out, reason.get(..cut).unwrap_or("").as_bytes());
            }
        }
    }
}

impl Decode for Response {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.read_u8()? {
            0 => Response::Status(Status {
                genesis: Hash256::decode_from(r)?,
                height: r.read_u32()?,
                tip: Hash256::decode_from(r)?,
                chain_work: r.read_array()?,
                inference_height: r.read_u32()?,
                node: match r.read_u8()? {
                    0 => None,
                    1 => Some(Box::new(NodeProof {
                        key: PublicKey::decode_from(r)?,
                        signature: Signature::decode_from(r)?,
                    })),
                    _ => {
                        return Err(CodecError::Invalid {
                            what: "status",
                            reason: "node proof flag",
                        })
                    }
                },
            }),
            1 => Response::LedgerHeaders(r.read_vec("headers", MAX_HEADERS as u64, 80)?),
            2 => Response::LedgerBlocks(r.read_vec("blocks", MAX_BLOCKS_PER_REQUEST as u64, 81)?),
            4 => Response::InferenceBlocks(r.read_vec(
                "inference blocks",
                MAX_INFERENCE_BLOCKS_PER_RESPONSE as u64,
                100,
            )?),
            // A stub, a receipt and an empty text take well over 300 bytes.
            5 => Response::Payloads(r.read_vec("payloads", MAX_BLOCK_RECEIPTS, 300)?),
            3 => {
                let bytes = r.read_var_bytes("reason", 200)?;
                Response::Refused(String::from_utf8(bytes).map_err(|_| CodecError::Invalid {
                    what: "refusal reason",
                    reason: "not UTF-8",
                })?)
            }
            _ => {
                return Err(CodecError::Invalid {
                    what: "sync response",
                    reason: "unknown kind",
                })
            }
        })
    }
}

/// Reads one message of at most `max` bytes (the stream ends after it) and decodes it.
async fn read_message<T, M>(io: &mut T, max: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: Decode,
{
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    io.take(limit).read_to_end(&mut bytes).await?;
    if bytes.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message over {max} bytes"),
        ));
    }
    M::from_bytes(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_message<T, M>(io: &mut T, message: &M) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    M: Encode,
{
    io.write_all(&message.to_bytes()).await?;
    io.close().await
}

/// The request-response codec of the sync protocol.
#[derive(Clone, Default)]
pub struct SyncCodec;

#[async_trait]
impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, MAX_REQUEST_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, MAX_RESPONSE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_bytes_are_errors() {
        let requests = [
            Request::Status,
            Request::LedgerHeaders {
                locator: vec![Hash256([1; 32]), Hash256([2; 32])],
            },
            Request::LedgerBlocks {
                hashes: vec![Hash256([3; 32])],
            },
            Request::InferenceBlocks { from_height: 9 },
            Request::Payloads {
                block: Hash256([3; 32]),
            },
        ];
        for r in requests {
            assert_eq!(Request::from_bytes(&r.to_bytes()).unwrap(), r);
        }
        let status = Response::Status(Status {
            genesis: Hash256([9; 32]),
            height: 7,
            tip: Hash256([8; 32]),
            chain_work: [1; 32],
            inference_height: 3,
            node: None,
        });
        assert_eq!(Response::from_bytes(&status.to_bytes()).unwrap(), status);
        let key = SecretKey::generate();
        let peer = PeerId::random();
        let proven = Response::Status(Status {
            genesis: Hash256([9; 32]),
            height: 7,
            tip: Hash256([8; 32]),
            chain_work: [1; 32],
            inference_height: 3,
            node: Some(Box::new(NodeProof::sign(&key, &peer))),
        });
        assert_eq!(Response::from_bytes(&proven.to_bytes()).unwrap(), proven);
        let proof = NodeProof::sign(&key, &peer);
        assert!(proof.verify(&peer));
        assert!(!proof.verify(&PeerId::random()), "made for another peer id");
        let none = Response::Payloads(Vec::new());
        assert_eq!(Response::from_bytes(&none.to_bytes()).unwrap(), none);
        let refused = Response::Refused("slow down".into());
        assert_eq!(Response::from_bytes(&refused.to_bytes()).unwrap(), refused);
        // A long reason is cut at a character boundary; a reason that is not UTF-8 is
        // refused (found by the fuzzer: it was decoded lossily, so the bytes a peer sent
        // were not the encoding of what was read).
        let long = Response::Refused("é".repeat(150));
        let Response::Refused(cut) = Response::from_bytes(&long.to_bytes()).unwrap() else {
            panic!("not a refusal");
        };
        assert_eq!(cut, "é".repeat(100));
        assert!(Response::from_bytes(&[3, 1, 0x85]).is_err());
        // Unknown kinds, truncation, trailing bytes and oversized lists are refused.
        assert!(Request::from_bytes(&[9]).is_err());
        assert!(Request::from_bytes(&[]).is_err());
        let mut long = vec![1u8, 0xfd, 0x00, 0x01]; // a locator of 256 hashes
        long.extend(std::iter::repeat_n(0u8, 256 * 32));
        assert!(Request::from_bytes(&long).is_err());
        let mut trailing = Request::Status.to_bytes();
        trailing.push(0);
        assert!(Request::from_bytes(&trailing).is_err());
    }

    #[test]
    fn a_block_at_the_consensus_size_limit_travels_in_gossip_and_in_a_sync_response() {
        use fai_inference_chain::block::MAX_BLOCK_BYTES;
        // Gossipsub's framing (topic, sender, signature) is far below 64 KiB.
        assert!(Topic::InferenceBlock.max_bytes() >= MAX_BLOCK_BYTES + 64 * 1024);
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..5_000 {
            let len = rng.gen_range(0..300);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = Request::from_bytes(&bytes);
            let _ = Response::from_bytes(&bytes);
        }
    }
}
