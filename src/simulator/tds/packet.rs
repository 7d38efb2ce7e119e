//! TDS packet framing (MS-TDS §2.2.3): the 8-byte header, reassembly of a client
//! request that spans packets until the end-of-message bit, and splitting of server
//! replies at the negotiated packet size.
//!
//! A reply can be sent in pieces: [`PacketWriter::flush_partial`] sends what is
//! buffered as non-final packets at once (BACKUP's progress messages go out as they
//! happen), [`PacketWriter::finish`] sends the rest with the end-of-message bit.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length of a packet header.
pub const HEADER_LEN: usize = 8;
/// Status bit: last packet of a message.
pub const STATUS_EOM: u8 = 0x01;
/// Status bit: the client asks to ignore this message (sent with attention in TDS 7.x).
pub const STATUS_IGNORE: u8 = 0x02;

/// Packet types a client sends, and the one a server replies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// 0x01 SQL batch.
    SqlBatch,
    /// 0x03 remote procedure call.
    Rpc,
    /// 0x04 server reply.
    Reply,
    /// 0x06 attention (cancel).
    Attention,
    /// 0x0E transaction manager request.
    TransactionManager,
    /// 0x10 LOGIN7.
    Login7,
    /// 0x12 PRELOGIN.
    PreLogin,
    /// Anything else.
    Other(u8),
}

impl PacketType {
    fn from_u8(b: u8) -> Self {
        match b {
            0x01 => Self::SqlBatch,
            0x03 => Self::Rpc,
            0x04 => Self::Reply,
            0x06 => Self::Attention,
            0x0E => Self::TransactionManager,
            0x10 => Self::Login7,
            0x12 => Self::PreLogin,
            o => Self::Other(o),
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::SqlBatch => 0x01,
            Self::Rpc => 0x03,
            Self::Reply => 0x04,
            Self::Attention => 0x06,
            Self::TransactionManager => 0x0E,
            Self::Login7 => 0x10,
            Self::PreLogin => 0x12,
            Self::Other(o) => o,
        }
    }
}

/// One complete client message (all its packets' payloads joined).
#[derive(Debug, Clone)]
pub struct Message {
    /// The type of the first packet.
    pub kind: PacketType,
    /// The payload without headers.
    pub data: Vec<u8>,
    /// The client set the ignore bit: the message is to be discarded.
    pub ignore: bool,
}

/// Reads one whole message; `Ok(None)` on a clean end of stream before a header.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Message>> {
    let mut data = Vec::new();
    let mut kind = None;
    let mut ignore = false;
    loop {
        let mut header = [0u8; HEADER_LEN];
        match r.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && kind.is_none() => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if len < HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TDS packet length below header size",
            ));
        }
        let start = data.len();
        data.resize(start + len - HEADER_LEN, 0);
        r.read_exact(&mut data[start..]).await?;
        let this_kind = PacketType::from_u8(header[0]);
        // An attention packet can arrive alone in the middle of nothing else.
        if kind.is_none() {
            kind = Some(this_kind);
        }
        ignore |= header[1] & STATUS_IGNORE != 0;
        if header[1] & STATUS_EOM != 0 || this_kind == PacketType::Attention {
            return Ok(Some(Message {
                kind: kind.unwrap_or(this_kind),
                data,
                ignore,
            }));
        }
        if data.len() > 64 * 1024 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TDS request larger than 64 MiB",
            ));
        }
    }
}

/// Buffers one server reply and writes it as packets of the negotiated size.
pub struct PacketWriter {
    buf: Vec<u8>,
    packet_size: usize,
    packet_id: u8,
    spid: u16,
}

impl PacketWriter {
    /// A writer for a connection with the given session id.
    pub fn new(spid: u16, packet_size: usize) -> Self {
        Self {
            buf: Vec::new(),
            packet_size: packet_size.clamp(512, 32767),
            packet_id: 1,
            spid,
        }
    }

    /// Changes the packet size (after LOGIN7 negotiated it).
    pub fn set_packet_size(&mut self, size: usize) {
        self.packet_size = size.clamp(512, 32767);
    }

    /// The negotiated packet size.
    pub fn packet_size(&self) -> usize {
        self.packet_size
    }

    /// Appends token bytes to the reply being built.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Sends what is buffered now, as packets without the end-of-message bit.
    pub async fn flush_partial<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.write_packets(w, &data, false).await
    }

    /// Sends the rest of the reply; its last packet carries the end-of-message bit.
    pub async fn finish<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        let data = std::mem::take(&mut self.buf);
        self.write_packets(w, &data, true).await?;
        self.packet_id = 1;
        Ok(())
    }

    async fn write_packets<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        data: &[u8],
        last: bool,
    ) -> io::Result<()> {
        let max = self.packet_size - HEADER_LEN;
        let mut chunks: Vec<&[u8]> = data.chunks(max).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let n = chunks.len();
        let mut out = Vec::with_capacity(data.len() + n * HEADER_LEN);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let eom = last && i + 1 == n;
            out.push(PacketType::Reply.as_u8());
            out.push(if eom { STATUS_EOM } else { 0 });
            out.extend_from_slice(&((chunk.len() + HEADER_LEN) as u16).to_be_bytes());
            out.extend_from_slice(&self.spid.to_be_bytes());
            out.push(self.packet_id);
            out.push(0);
            out.extend_from_slice(chunk);
            self.packet_id = self.packet_id.wrapping_add(1);
        }
        w.write_all(&out).await?;
        w.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reassembles_and_splits() {
        let payload: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let mut w = PacketWriter::new(51, 512);
        w.extend(&payload);
        let mut wire = Vec::new();
        w.finish(&mut wire).await.unwrap();
        assert_eq!(wire.len(), 2000 + 4 * HEADER_LEN); // 504*3 + 488: 4 packets
        let mut r = &wire[..];
        let msg = read_message(&mut r).await.unwrap().unwrap();
        assert_eq!(msg.kind, PacketType::Reply);
        assert_eq!(msg.data, payload);
        assert!(read_message(&mut r).await.unwrap().is_none());
    }
}
