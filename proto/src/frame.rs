//! Framing of both daemons' socket protocols (wdmd's and lockd's): a 4-byte big-endian length,
//! then that many bytes of JSON. JSON because the traffic is a few small messages, so size and
//! speed do not matter, while `socat`-readable messages and serde's tolerance of added fields do.
//! The length prefix lets a daemon reject an oversized frame before reading its body; each
//! protocol names its own limit.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

const PREFIX: usize = 4;

#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    TooLarge { len: usize, max: usize },
    Json(serde_json::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::TooLarge { len, max } => write!(f, "frame of {len} bytes exceeds the limit of {max}"),
            FrameError::Json(e) => write!(f, "malformed message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Encodes one frame: length prefix and JSON body.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("protocol types always serialize");
    let mut out = Vec::with_capacity(PREFIX + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg))?;
    w.flush()
}

fn body_len(prefix: [u8; PREFIX], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Reads one frame body of at most `max` bytes (blocking). EOF before a complete frame is
/// `UnexpectedEof`.
pub fn read_body(r: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; PREFIX];
    r.read_exact(&mut prefix)?;
    let mut body = vec![0u8; body_len(prefix, max)?];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Reads and decodes one frame of at most `max` bytes (blocking).
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read, max: usize) -> Result<T, FrameError> {
    serde_json::from_slice(&read_body(r, max)?).map_err(FrameError::Json)
}

/// Splits a byte stream into frame bodies, for a daemon's non-blocking reads.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: usize,
}

impl FrameDecoder {
    /// A decoder refusing bodies over `max` bytes.
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder { buf: Vec::new(), max }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame body, if any. An oversized length is reported as soon as its
    /// prefix arrives, without buffering the body.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(prefix) = self.buf.first_chunk::<PREFIX>() else { return Ok(None) };
        let len = body_len(*prefix, self.max)?;
        if self.buf.len() < PREFIX + len {
            return Ok(None);
        }
        let body = self.buf[PREFIX..PREFIX + len].to_vec();
        self.buf.drain(..PREFIX + len);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_splits_frames_arriving_byte_by_byte() {
        let msgs = [serde_json::json!({"a": 1}), serde_json::json!("x"), serde_json::json!([])];
        let mut dec = FrameDecoder::new(64);
        let mut got = Vec::new();
        for b in msgs.iter().flat_map(encode) {
            dec.push(&[b]);
            while let Some(body) = dec.next_frame().unwrap() {
                got.push(serde_json::from_slice::<serde_json::Value>(&body).unwrap());
            }
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn the_limit_is_each_protocols() {
        let frame = encode(&"x".repeat(10));
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
        assert!(read_body(&mut &frame[..], 12).is_ok());
        assert!(matches!(read_body(&mut &frame[..], 11), Err(FrameError::TooLarge { len: 12, max: 11 })));
        let mut dec = FrameDecoder::new(11);
        // Refused from the prefix alone.
        dec.push(&frame[..4]);
        assert!(matches!(dec.next_frame(), Err(FrameError::TooLarge { len: 12, max: 11 })));
    }
}
