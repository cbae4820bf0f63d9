//! The frames of the relay protocol (`/fai/<network>/relay/1`): on a stream each side
//! writes frames of a kind byte, a big-endian u32 length and that many bytes. The
//! relaying node sends one request frame (an inference transaction's bytes); the serving
//! node answers with event frames (`token`, `receipt` or `error`, the JSON data of the
//! RPC's event stream). Every read is bounded by the caller's limit before anything is
//! allocated.

use std::io;

use fai_api::InferenceEvent;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request frame: an inference transaction's prompt and context fit well.
pub const MAX_REQUEST_BYTES: u32 = 1024 * 1024;
/// The largest event frame (a receipt carries the whole output text: 512 KiB, up to six
/// times that escaped in JSON, and twice that again as the hex of a sealed event).
pub const MAX_EVENT_BYTES: u32 = 8 * 1024 * 1024;
/// The kinds of frame: a request, then a token, a receipt or an error event.
pub const FRAME_REQUEST: u8 = 0;
pub const FRAME_TOKEN: u8 = 1;
pub const FRAME_RECEIPT: u8 = 2;
pub const FRAME_ERROR: u8 = 3;
/// A request sealed to the serving node (`SealedRequest`).
pub const FRAME_SEALED_REQUEST: u8 = 4;
/// An event of the answer to a sealed request, sealed with its reply key.
pub const FRAME_SEALED: u8 = 5;

/// The frame kind of an event name (an unknown name is an error frame).
pub fn event_kind(event: &str) -> u8 {
    match event {
        "token" => FRAME_TOKEN,
        "receipt" => FRAME_RECEIPT,
        "sealed" => FRAME_SEALED,
        _ => FRAME_ERROR,
    }
}

/// The event name of a frame kind; none for a request or an unknown kind.
pub fn event_name(kind: u8) -> Option<&'static str> {
    match kind {
        FRAME_TOKEN => Some("token"),
        FRAME_RECEIPT => Some("receipt"),
        FRAME_ERROR => Some("error"),
        FRAME_SEALED => Some("sealed"),
        _ => None,
    }
}

/// Writes one frame: kind, big-endian length, bytes.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    bytes: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(bytes).await
}

/// Reads one frame of at most `max` bytes; `None` at a clean end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended inside a frame header",
            ));
        }
        got += n;
    }
    let [kind, a, b, c, d] = head;
    let len = u32::from_be_bytes([a, b, c, d]);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the limit of {max}"),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    r.read_exact(&mut bytes).await?;
    Ok(Some((kind, bytes)))
}

/// The event an event frame carries, or why it is not one.
pub fn decode_event(kind: u8, bytes: Vec<u8>) -> Result<InferenceEvent, String> {
    match (event_name(kind), String::from_utf8(bytes)) {
        (Some(name), Ok(data)) => InferenceEvent::parse(name, &data),
        _ => Err("not an event".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], max: u32) -> io::Result<Option<(u8, Vec<u8>)>> {
        futures::executor::block_on(read_frame(&mut futures::io::Cursor::new(bytes), max))
    }

    #[test]
    fn frames_round_trip_and_bad_ones_are_errors() {
        let mut bytes = Vec::new();
        futures::executor::block_on(async {
            write_frame(&mut bytes, FRAME_TOKEN, b"{\"text\":\"hi\"}")
                .await
                .unwrap();
            write_frame(&mut bytes, FRAME_RECEIPT, b"").await.unwrap();
        });
        let mut cursor = futures::io::Cursor::new(bytes.as_slice());
        let first = futures::executor::block_on(read_frame(&mut cursor, 100)).unwrap();
        assert_eq!(first, Some((FRAME_TOKEN, b"{\"text\":\"hi\"}".to_vec())));
        let second = futures::executor::block_on(read_frame(&mut cursor, 100)).unwrap();
        assert_eq!(second, Some((FRAME_RECEIPT, Vec::new())));
        let end = futures::executor::block_on(read_frame(&mut cursor, 100)).unwrap();
        assert_eq!(end, None, "a clean end");
        // Over the limit: refused before the body is read.
        let err = read(&bytes, 4).unwrap_err();
        assert!(err.to_string().contains("over the limit of 4"), "{err}");
        // Cut inside the header or the body.
        assert_eq!(
            read(&bytes[..3], 100).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            read(&bytes[..8], 100).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        // Event names and kinds map both ways; unknown kinds have no name.
        for name in ["token", "receipt", "error"] {
            assert_eq!(event_name(event_kind(name)), Some(name));
        }
        assert_eq!(event_name(FRAME_REQUEST), None);
        assert_eq!(event_name(9), None);
    }
}
