//! The NRI connection multiplexer: several logical byte streams ("conns")
//! over one unix socket, as in containerd/nri `pkg/net/multiplex`.
//!
//! A frame is an 8-byte big-endian header `u32 conn_id, u32 payload_len`
//! followed by the payload. Conn 1 carries the Plugin service (the runtime is
//! the ttrpc client), conn 2 the Runtime service (we are the client).
//!
//! Incoming frames are reassembled into a byte stream per conn, so a ttrpc
//! message may span frames and a frame may hold any bytes. Outgoing bytes are
//! re-framed per ttrpc message: the Go side reads each frame into a 4096-byte
//! buffer and fails with ENOMEM on a larger one, so every frame we send is at
//! most [`MAX_OUT_FRAME`] bytes and never holds parts of two messages.

use std::collections::HashMap;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf,
};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

/// Conn of the Plugin service (runtime → plugin calls).
pub const PLUGIN_CONN: u32 = 1;
/// Conn of the Runtime service (plugin → runtime calls).
pub const RUNTIME_CONN: u32 = 2;

/// Mux frame header length.
pub const FRAME_HEADER_LEN: usize = 8;
/// ttrpc message header length: `u32 len, u32 stream, u8 type, u8 flags`.
pub const TTRPC_HEADER_LEN: usize = 10;
/// ttrpc's own limit on a message's payload (4 MiB).
pub const TTRPC_MESSAGE_MAX: usize = 4 << 20;
/// Largest frame we send, header included.
pub const MAX_OUT_FRAME: usize = 4096;
/// Largest payload of a frame we send.
pub const MAX_OUT_PAYLOAD: usize = MAX_OUT_FRAME - FRAME_HEADER_LEN;

/// Size of the in-memory pipe between the mux and each conn's user.
const PIPE_SIZE: usize = 256 * 1024;
/// Read buffer on the trunk.
const READ_BUFFER: usize = 64 * 1024;

/// Size limits enforced by the mux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest incoming frame payload accepted (upstream: 4 MiB + 10).
    pub max_frame: usize,
    /// Largest ttrpc message payload we send (upstream: 4 MiB).
    pub max_message: usize,
    /// Largest payload of a frame we send: [`MAX_OUT_PAYLOAD`]. (A test
    /// double of the Go runtime raises it to send whole messages per frame,
    /// as upstream's mux does.)
    pub out_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: TTRPC_HEADER_LEN + TTRPC_MESSAGE_MAX,
            max_message: TTRPC_MESSAGE_MAX,
            out_payload: MAX_OUT_PAYLOAD,
        }
    }
}

impl Limits {
    /// How upstream's Go mux behaves: it accepts incoming frames only up to
    /// its 4096-byte read buffer, and sends a write of up to 4 MiB + 10 as
    /// one frame.
    pub fn go_runtime() -> Self {
        Self {
            max_frame: 4096,
            max_message: TTRPC_MESSAGE_MAX,
            out_payload: TTRPC_HEADER_LEN + TTRPC_MESSAGE_MAX,
        }
    }
}

/// Why the mux stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("connection I/O failed: {0}")]
    Io(String),
    #[error("incoming frame for conn {conn} has {len} bytes, more than the {max} allowed")]
    FrameTooLarge { conn: u32, len: usize, max: usize },
    #[error("outgoing ttrpc message on conn {conn} has {len} bytes, more than the {max} allowed")]
    MessageTooLarge { conn: u32, len: usize, max: usize },
}

impl From<std::io::Error> for MuxError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            MuxError::Closed
        } else {
            MuxError::Io(e.to_string())
        }
    }
}

/// A running multiplexer. Dropping it stops it and closes every conn.
pub struct Mux {
    conns: HashMap<u32, DuplexStream>,
    done: watch::Receiver<Option<MuxError>>,
    task: JoinHandle<()>,
}

impl Mux {
    /// Starts multiplexing `trunk` with the logical conns `ids` open.
    /// Frames for any other conn id are read and dropped.
    pub fn start<T>(trunk: T, ids: &[u32], limits: Limits) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut conns = HashMap::new();
        let mut inbound = HashMap::new();
        let mut outbound = Vec::new();
        for &id in ids {
            let (user, ours) = tokio::io::duplex(PIPE_SIZE);
            let (rd, wr) = tokio::io::split(ours);
            conns.insert(id, user);
            inbound.insert(id, wr);
            outbound.push((id, rd));
        }
        let (tx, done) = watch::channel(None);
        let task = tokio::spawn(async move {
            let end = drive(trunk, inbound, outbound, limits).await;
            let _ = tx.send(Some(end));
        });
        Self { conns, done, task }
    }

    /// The byte stream of conn `id`, once.
    pub fn take(&mut self, id: u32) -> Option<DuplexStream> {
        self.conns.remove(&id)
    }

    /// Waits until the mux stopped and says why.
    pub async fn closed(&self) -> MuxError {
        let mut done = self.done.clone();
        loop {
            if let Some(end) = done.borrow_and_update().clone() {
                return end;
            }
            if done.changed().await.is_err() {
                return MuxError::Closed;
            }
        }
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn drive<T>(
    trunk: T,
    inbound: HashMap<u32, WriteHalf<DuplexStream>>,
    outbound: Vec<(u32, ReadHalf<DuplexStream>)>,
    limits: Limits,
) -> MuxError
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(trunk);
    // Buffered: a frame's header and payload (and often the next frames)
    // come from one read of the socket instead of three or four.
    let rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
    let wr = Mutex::new(wr);
    let mut writers: FuturesUnordered<_> = outbound
        .into_iter()
        .map(|(id, conn)| write_loop(id, conn, &wr, limits))
        .collect();
    let writers_fail = async {
        while let Some(res) = writers.next().await {
            // A conn whose user went away just stops sending.
            if let Err(e) = res {
                return e;
            }
        }
        std::future::pending().await
    };
    tokio::select! {
        e = read_loop(rd, inbound, limits) => e,
        e = writers_fail => e,
    }
}

/// Reads frames from the trunk and appends each payload to its conn's stream.
async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    mut inbound: HashMap<u32, WriteHalf<DuplexStream>>,
    limits: Limits,
) -> MuxError {
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    let mut buf = Vec::new();
    loop {
        // EOF on a frame boundary is a clean close.
        match rd.read(&mut hdr[..1]).await {
            Ok(0) => return MuxError::Closed,
            Ok(_) => {}
            Err(e) => return e.into(),
        }
        if let Err(e) = rd.read_exact(&mut hdr[1..]).await {
            return e.into();
        }
        let conn = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        if len > limits.max_frame {
            return MuxError::FrameTooLarge {
                conn,
                len,
                max: limits.max_frame,
            };
        }
        // Grow with the bytes that arrive, not the length a header claims:
        // a header alone never costs a 4 MiB buffer.
        buf.clear();
        match (&mut rd).take(len as u64).read_to_end(&mut buf).await {
            Ok(n) if n == len => {}
            Ok(_) => return std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into(),
            Err(e) => return e.into(),
        }
        match inbound.get_mut(&conn) {
            Some(pipe) => {
                if pipe.write_all(&buf).await.is_err() {
                    // The conn's user is gone: drop its later frames too.
                    inbound.remove(&conn);
                }
            }
            None => tracing::debug!(conn, len, "dropping frame for a conn that is not open"),
        }
    }
}

/// Reads whole ttrpc messages from one conn's user and sends each in its own
/// frames. Returns `Ok` when the user closed the conn.
async fn write_loop<W: AsyncWrite + Unpin>(
    conn: u32,
    mut pipe: ReadHalf<DuplexStream>,
    trunk: &Mutex<W>,
    limits: Limits,
) -> Result<(), MuxError> {
    let mut msg = Vec::new();
    loop {
        let mut hdr = [0u8; TTRPC_HEADER_LEN];
        match pipe.read(&mut hdr[..1]).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
        if pipe.read_exact(&mut hdr[1..]).await.is_err() {
            return Ok(());
        }
        let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        if len > limits.max_message {
            return Err(MuxError::MessageTooLarge {
                conn,
                len,
                max: limits.max_message,
            });
        }
        msg.clear();
        msg.extend_from_slice(&hdr);
        match (&mut pipe).take(len as u64).read_to_end(&mut msg).await {
            Ok(n) if n == len => {}
            _ => return Ok(()),
        }
        let frames = frame_message(conn, &msg, limits.out_payload);
        let mut wr = trunk.lock().await;
        wr.write_all(&frames).await?;
        wr.flush().await?;
    }
}

/// Frames one whole message for `conn`: consecutive frames with payloads of
/// at most `max_payload` bytes, concatenated.
pub fn frame_message(conn: u32, msg: &[u8], max_payload: usize) -> Vec<u8> {
    let max_payload = max_payload.max(1);
    let count = msg.len().div_ceil(max_payload).max(1);
    let mut out = Vec::with_capacity(msg.len() + count * FRAME_HEADER_LEN);
    for chunk in msg.chunks(max_payload) {
        out.extend_from_slice(&conn.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(conn: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = conn.to_be_bytes().to_vec();
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A ttrpc message with a `len`-byte payload of `fill`.
    fn ttrpc_msg(stream: u32, len: usize, fill: u8) -> Vec<u8> {
        let mut m = (len as u32).to_be_bytes().to_vec();
        m.extend_from_slice(&stream.to_be_bytes());
        m.extend_from_slice(&[1, 0]);
        m.extend(std::iter::repeat_n(fill, len));
        m
    }

    /// Splits a trunk byte stream into (conn, payload) frames.
    fn parse_frames(mut bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert!(bytes.len() >= FRAME_HEADER_LEN, "truncated frame header");
            let conn = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
            let len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
            out.push((conn, bytes[8..8 + len].to_vec()));
            bytes = &bytes[8 + len..];
        }
        out
    }

    async fn read_n(s: &mut DuplexStream, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        s.read_exact(&mut v).await.unwrap();
        v
    }

    #[tokio::test]
    async fn reassembles_a_message_split_over_frames() {
        let (mut peer, trunk) = tokio::io::duplex(1 << 20);
        let mut mux = Mux::start(trunk, &[PLUGIN_CONN, RUNTIME_CONN], Limits::default());
        let mut c1 = mux.take(PLUGIN_CONN).unwrap();
        let msg = ttrpc_msg(1, 9000, 0xab);
        for part in msg.chunks(3001) {
            peer.write_all(&frame(PLUGIN_CONN, part)).await.unwrap();
        }
        assert_eq!(read_n(&mut c1, msg.len()).await, msg);
    }

    #[tokio::test]
    async fn several_frames_in_one_write_reach_their_conns() {
        let (mut peer, trunk) = tokio::io::duplex(1 << 20);
        let mut mux = Mux::start(trunk, &[PLUGIN_CONN, RUNTIME_CONN], Limits::default());
        let mut c1 = mux.take(PLUGIN_CONN).unwrap();
        let mut c2 = mux.take(RUNTIME_CONN).unwrap();
        let mut burst = frame(PLUGIN_CONN, b"one-");
        burst.extend(frame(RUNTIME_CONN, b"two"));
        burst.extend(frame(PLUGIN_CONN, b"three"));
        burst.extend(frame(PLUGIN_CONN, b""));
        peer.write_all(&burst).await.unwrap();
        assert_eq!(read_n(&mut c1, 9).await, b"one-three");
        assert_eq!(read_n(&mut c2, 3).await, b"two");
    }

    #[tokio::test]
    async fn frames_for_unknown_conns_are_dropped() {
        let (mut peer, trunk) = tokio::io::duplex(1 << 20);
        let mut mux = Mux::start(trunk, &[PLUGIN_CONN], Limits::default());
        let mut c1 = mux.take(PLUGIN_CONN).unwrap();
        let mut burst = frame(0, b"reserved");
        burst.extend(frame(RUNTIME_CONN, b"not-open"));
        burst.extend(frame(77, b"unknown"));
        burst.extend(frame(PLUGIN_CONN, b"mine"));
        peer.write_all(&burst).await.unwrap();
        assert_eq!(read_n(&mut c1, 4).await, b"mine");
        drop(peer);
        let mut rest = Vec::new();
        c1.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "got foreign bytes {rest:?}");
    }

    #[tokio::test]
    async fn oversized_incoming_frame_stops_the_mux() {
        let (mut peer, trunk) = tokio::io::duplex(1 << 20);
        let limits = Limits {
            max_frame: 1024,
            ..Limits::default()
        };
        let mut mux = Mux::start(trunk, &[PLUGIN_CONN], limits);
        let mut c1 = mux.take(PLUGIN_CONN).unwrap();
        let mut hdr = PLUGIN_CONN.to_be_bytes().to_vec();
        hdr.extend_from_slice(&1025u32.to_be_bytes());
        peer.write_all(&hdr).await.unwrap();
        assert_eq!(
            mux.closed().await,
            MuxError::FrameTooLarge {
                conn: 1,
                len: 1025,
                max: 1024
            }
        );
        // The conn's user sees the end of the stream.
        let mut rest = Vec::new();
        drop(mux);
        c1.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn default_limit_is_upstream_four_mib_plus_header() {
        assert_eq!(Limits::default().max_frame, (4 << 20) + 10);
        assert_eq!(Limits::default().max_message, 4 << 20);
    }

    #[tokio::test]
    async fn outgoing_frames_are_small_and_hold_one_message_each() {
        let (mut peer, trunk) = tokio::io::duplex(1 << 20);
        let mut mux = Mux::start(trunk, &[PLUGIN_CONN, RUNTIME_CONN], Limits::default());
        let mut c2 = mux.take(RUNTIME_CONN).unwrap();
        let big = ttrpc_msg(1, 10_000, 1);
        let small = ttrpc_msg(3, 5, 2);
        let empty = ttrpc_msg(5, 0, 0);
        // One write with three messages: the mux must cut at message borders.
        let mut all = big.clone();
        all.extend(&small);
        all.extend(&empty);
        c2.write_all(&all).await.unwrap();
        let want = [&big, &small, &empty]
            .iter()
            .map(|m| frame_message(RUNTIME_CONN, m, MAX_OUT_PAYLOAD).len())
            .sum();
        let mut got = vec![0u8; want];
        peer.read_exact(&mut got).await.unwrap();
        let frames = parse_frames(&got);
        // 10_010 bytes: 3 frames; then one frame per small message.
        assert_eq!(
            frames.len(),
            5,
            "{:?}",
            frames.iter().map(|f| f.1.len()).collect::<Vec<_>>()
        );
        for (conn, payload) in &frames {
            assert_eq!(*conn, RUNTIME_CONN);
            assert!(payload.len() + FRAME_HEADER_LEN <= MAX_OUT_FRAME);
        }
        let first: Vec<u8> = frames[..3].iter().flat_map(|f| f.1.clone()).collect();
        assert_eq!(first, big);
        assert_eq!(frames[3].1, small);
        assert_eq!(frames[4].1, empty);
    }

    #[tokio::test]
    async fn oversized_outgoing_message_stops_the_mux() {
        let (_peer, trunk) = tokio::io::duplex(1 << 20);
        let limits = Limits {
            max_message: 100,
            ..Limits::default()
        };
        let mut mux = Mux::start(trunk, &[PLUGIN_CONN], limits);
        let mut c1 = mux.take(PLUGIN_CONN).unwrap();
        c1.write_all(&ttrpc_msg(1, 101, 0)[..TTRPC_HEADER_LEN])
            .await
            .unwrap();
        assert_eq!(
            mux.closed().await,
            MuxError::MessageTooLarge {
                conn: 1,
                len: 101,
                max: 100
            }
        );
    }

    #[tokio::test]
    async fn peer_close_ends_the_mux_and_the_conns() {
        let (peer, trunk) = tokio::io::duplex(1 << 20);
        let mut mux = Mux::start(trunk, &[PLUGIN_CONN], Limits::default());
        let mut c1 = mux.take(PLUGIN_CONN).unwrap();
        drop(peer);
        assert_eq!(mux.closed().await, MuxError::Closed);
        drop(mux);
        let mut rest = Vec::new();
        assert_eq!(c1.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[test]
    fn frame_message_splits_at_the_payload_limit() {
        let msg = vec![7u8; MAX_OUT_PAYLOAD * 2 + 1];
        let frames = parse_frames(&frame_message(9, &msg, MAX_OUT_PAYLOAD));
        let sizes: Vec<usize> = frames.iter().map(|f| f.1.len()).collect();
        assert_eq!(sizes, [MAX_OUT_PAYLOAD, MAX_OUT_PAYLOAD, 1]);
        assert!(frames.iter().all(|f| f.0 == 9));
    }
}
