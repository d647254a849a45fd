//! The aws-chunked body: `<hex size>[;chunk-signature=..]\r\n<data>\r\n`,
//! ..., then a zero chunk and (optionally) trailers, decoded and verified
//! chunk by chunk as it arrives.

use bytes::{Buf, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use sigv4::{signatures_match, ChunkSigner};

use super::*;

pub(super) enum State {
    /// Reading `<hex size>[;chunk-signature=<sig>]\r\n`.
    Header,
    /// Reading `remaining` bytes of data.
    Data {
        remaining: usize,
    },
    /// Reading the `\r\n` after a chunk's data.
    DataEnd,
    /// After the zero-length chunk: trailer lines up to an empty line.
    Trailer,
    Done,
}

/// The aws-chunked decoder.
pub(super) struct Chunked {
    signer: Option<ChunkSigner>,
    /// `(header name, running checksum)` when a trailer is expected.
    checksum: Option<(String, Checksum)>,
    state: State,
    buf: BytesMut,
    /// The signature the current chunk claims, and its data so far.
    chunk_sig: Option<String>,
    chunk_data: BytesMut,
    chunk_hasher: Sha256,
    trailer_lines: Vec<(String, String)>,
}

impl Chunked {
    pub(super) fn new(
        signer: Option<ChunkSigner>,
        checksum: Option<(String, Checksum)>,
    ) -> Chunked {
        Chunked {
            signer,
            checksum,
            state: State::Header,
            buf: BytesMut::new(),
            chunk_sig: None,
            chunk_data: BytesMut::new(),
            chunk_hasher: Sha256::new(),
            trailer_lines: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, input: Bytes) -> Result<Vec<Bytes>, PayloadError> {
        self.buf.extend_from_slice(&input);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Header => {
                    let Some(line) = self.take_line()? else { break };
                    self.start_chunk(&line, &mut out)?;
                }
                State::Data { remaining } => {
                    if self.buf.is_empty() {
                        break;
                    }
                    let n = remaining.min(self.buf.len());
                    let data = self.buf.split_to(n).freeze();
                    if let Some((_, c)) = &mut self.checksum {
                        c.update(&data);
                    }
                    if self.signer.is_some() {
                        // Released only once the chunk's signature is checked.
                        self.chunk_hasher.update(&data);
                        self.chunk_data.extend_from_slice(&data);
                    } else {
                        out.push(data);
                    }
                    self.state = if n == remaining {
                        State::DataEnd
                    } else {
                        State::Data {
                            remaining: remaining - n,
                        }
                    };
                }
                State::DataEnd => {
                    if self.buf.len() < 2 {
                        break;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return err("aws-chunked: chunk data is not followed by CRLF");
                    }
                    self.buf.advance(2);
                    self.end_chunk(&mut out)?;
                    self.state = State::Header;
                }
                State::Trailer => {
                    let Some(line) = self.take_line()? else { break };
                    if line.is_empty() {
                        self.check_trailer()?;
                        self.state = State::Done;
                    } else {
                        let (name, value) = line.split_once(':').ok_or_else(|| {
                            PayloadError(format!("aws-chunked: bad trailer line {line:?}"))
                        })?;
                        if self.trailer_lines.len() > 16 {
                            return err("aws-chunked: too many trailer lines");
                        }
                        self.trailer_lines
                            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                    }
                }
                State::Done => {
                    if !self.buf.is_empty() {
                        return err("aws-chunked: data after the final chunk");
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One line without its CRLF, once it is all there.
    fn take_line(&mut self) -> Result<Option<String>, PayloadError> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let raw = self.buf.split_to(i + 1);
                let line = raw[..i].strip_suffix(b"\r").unwrap_or(&raw[..i]);
                String::from_utf8(line.to_vec())
                    .map(Some)
                    .map_err(|_| PayloadError("aws-chunked: a header line is not UTF-8".into()))
            }
            None if self.buf.len() > MAX_LINE => err("aws-chunked: header line too long"),
            None => Ok(None),
        }
    }

    fn start_chunk(&mut self, line: &str, out: &mut Vec<Bytes>) -> Result<(), PayloadError> {
        let (size, ext) = line.split_once(';').unwrap_or((line, ""));
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| PayloadError(format!("aws-chunked: bad chunk size {size:?}")))?;
        if size > MAX_CHUNK {
            return err(format!(
                "aws-chunked: chunk of {size} bytes exceeds {MAX_CHUNK}"
            ));
        }
        self.chunk_sig = match &self.signer {
            Some(_) => Some(
                ext.trim()
                    .strip_prefix("chunk-signature=")
                    .map(|s| s.trim().to_ascii_lowercase())
                    .ok_or_else(|| PayloadError("aws-chunked: chunk lacks its signature".into()))?,
            ),
            None => None,
        };
        if size == 0 {
            // The final chunk; a (possibly empty) trailer section follows.
            self.end_chunk(out)?;
            self.state = State::Trailer;
        } else {
            self.state = State::Data { remaining: size };
        }
        Ok(())
    }

    /// Check the signature of the chunk just read and release its data.
    fn end_chunk(&mut self, out: &mut Vec<Bytes>) -> Result<(), PayloadError> {
        if let Some(signer) = &mut self.signer {
            let hash =
                kikaku_filters::keys::hex(&std::mem::take(&mut self.chunk_hasher).finalize());
            let expected = signer.next_chunk(&hash);
            let claimed = self.chunk_sig.take().unwrap_or_default();
            if !signatures_match(&expected, &claimed) {
                return err("aws-chunked: a chunk signature does not match");
            }
            let data = std::mem::take(&mut self.chunk_data).freeze();
            if !data.is_empty() {
                out.push(data);
            }
        }
        Ok(())
    }

    /// The trailer: the checksum it carries must match the data, and with
    /// signed chunks the trailer signature must match too.
    fn check_trailer(&mut self) -> Result<(), PayloadError> {
        let mut signed_lines = String::new();
        let mut trailer_sig = None;
        for (name, value) in &self.trailer_lines {
            if name == "x-amz-trailer-signature" {
                trailer_sig = Some(value.to_ascii_lowercase());
            } else {
                signed_lines.push_str(&format!("{name}:{value}\n"));
            }
        }
        if let Some((name, checksum)) = self.checksum.take() {
            let claimed = self
                .trailer_lines
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| PayloadError(format!("aws-chunked: the trailer lacks {name}")))?;
            if checksum.finish_base64() != claimed {
                return err(format!(
                    "The {name} you specified did not match the calculated checksum."
                ));
            }
            if let Some(signer) = &mut self.signer {
                let expected = signer.trailer(&signed_lines);
                let claimed = trailer_sig.ok_or_else(|| {
                    PayloadError("aws-chunked: trailer lacks its signature".into())
                })?;
                if !signatures_match(&expected, &claimed) {
                    return err("aws-chunked: the trailer signature does not match");
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(&mut self) -> Result<(), PayloadError> {
        match self.state {
            State::Done => Ok(()),
            // Some clients end the body right after the last trailer line.
            State::Trailer if self.buf.is_empty() => {
                self.check_trailer()?;
                self.state = State::Done;
                Ok(())
            }
            _ => err("aws-chunked: the body ended before the final chunk"),
        }
    }
}
