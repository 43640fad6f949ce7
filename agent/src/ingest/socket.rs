//! DogStatsD sockets: binding with large receive buffers, and the receiving threads.
//!
//! Each socket gets a receiving thread that loops on `recvmmsg` (up to [`BATCH`] datagrams
//! per call, paced as [`Pacing`] says). On UDP the same thread parses what it received into
//! the socket's [`Shard`]: the receive buffer (8 MiB by default) holds what arrives meanwhile,
//! and the thread wakes about a thousand times a second at most. On the Unix socket the queue
//! holds only `net.unix.max_dgram_qlen` datagrams (10 here), so a reader that falls 10 behind
//! makes non-blocking clients drop: there the receiver only copies datagrams into chunks, and a
//! parser thread at a lower priority records them. Chunks wait in a queue bounded in bytes
//! (`MAX_PENDING_BYTES`, 4 MiB); past it the receiver pauses, so memory stays bounded.
//!
//! Loss is never silent. On UDP, `SO_RXQ_OVFL` makes the kernel attach its cumulative drop
//! count to each datagram; the thread adds the increase to `kernel_drops`. A datagram larger
//! than `dogstatsd.max_datagram` (64 KiB by default, so no UDP datagram and no client's Unix
//! packet is) arrives cut (`MSG_TRUNC`): its complete lines are recorded and the cut line is
//! counted as `truncated`. (On a Unix datagram socket the kernel does not drop: a full queue
//! refuses the sender, so the loss is the client's to see.)
//!
//! Memory of the receive path, per socket: [`BATCH`] buffers of `max_datagram + 1` bytes (4 MiB
//! at the default; pages become resident only as far as datagrams fill them), plus on the
//! Unix socket at most `MAX_PENDING_BYTES` (4 MiB) of chunks waiting for the parser.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver as Receiver_, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::cmsg_space;
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, setsockopt, sockopt,
};
use socket2::{Domain, SockAddr, Socket, Type};
use tracing::{debug, error, warn};

use super::{Dropped, Shard};

/// Datagrams read per `recvmmsg` call.
pub const BATCH: usize = 64;
/// How often a blocked receiver wakes to check for shutdown, and the longest a gathered
/// datagram waits before it is handed to the parser when traffic stops.
const WAKE: Duration = Duration::from_millis(200);
/// How long one `recvmmsg` call gathers datagrams on a Unix socket while traffic flows.
pub const GATHER: Duration = Duration::from_millis(1);
/// Pause between non-blocking drains of a busy UDP socket.
pub const POLL: Duration = Duration::from_millis(1);

/// Asks for `bytes` of receive buffer, beyond `net.core.rmem_max` when privileged
/// (`SO_RCVBUFFORCE`), and returns what the kernel granted.
fn size_receive_buffer(socket: &Socket, bytes: usize) -> io::Result<usize> {
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err() {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.recv_buffer_size()
}

/// Binds the UDP listener.
pub fn bind_udp(addr: SocketAddr, receive_buffer: usize) -> io::Result<(Socket, usize)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    let granted = size_receive_buffer(&socket, receive_buffer)?;
    setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(WAKE))?;
    Ok((socket, granted))
}

/// Binds the Unix datagram listener at `path`, replacing a stale socket file, with `mode`.
pub fn bind_unix(path: &Path, receive_buffer: usize, mode: u32) -> io::Result<(Socket, usize)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    let granted = size_receive_buffer(&socket, receive_buffer)?;
    socket.bind(&SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    socket.set_read_timeout(Some(WAKE))?;
    Ok((socket, granted))
}

/// DogStatsD sockets handed over by systemd socket activation (`LISTEN_FDS`, from a `.socket`
/// unit's `ListenDatagram=` lines), so the agent needs no privilege to create them.
#[derive(Debug, Default)]
pub struct Activated {
    /// The UDP socket, if one was passed.
    pub udp: Option<(Socket, usize)>,
    /// The Unix datagram socket, if one was passed.
    pub unix: Option<(Socket, usize)>,
}

/// Takes the sockets systemd passed, checking each is a UDP or a Unix datagram socket
/// (listenfd checks the type before it wraps the descriptor), and sets them up like the ones
/// the agent binds itself. Empty without socket activation.
pub fn activated(receive_buffer: usize) -> io::Result<Activated> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Activated::default();
    let prepare = |socket: Socket| -> io::Result<(Socket, usize)> {
        // The unit's ReceiveBuffer= may already be larger; never shrink it.
        let current = socket.recv_buffer_size()?;
        let granted = if current < receive_buffer {
            size_receive_buffer(&socket, receive_buffer)?
        } else {
            current
        };
        socket.set_read_timeout(Some(WAKE))?;
        Ok((socket, granted))
    };
    for i in 0..fds.len() {
        if let Ok(Some(unix)) = fds.take_unix_datagram(i) {
            if out.unix.is_some() {
                return Err(io::Error::other(
                    "systemd passed more than one Unix datagram socket; the agent takes one",
                ));
            }
            out.unix = Some(prepare(Socket::from(unix))?);
            continue;
        }
        match fds.take_udp_socket(i) {
            Ok(Some(udp)) if out.udp.is_none() => {
                let socket = Socket::from(udp);
                setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
                out.udp = Some(prepare(socket)?);
            }
            Ok(Some(_)) => {
                return Err(io::Error::other(
                    "systemd passed more than one UDP socket; the agent takes one",
                ));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(io::Error::other(format!(
                    "socket {i} from systemd is neither UDP nor a Unix datagram socket ({e}); \
                     use ListenDatagram= in pitot-agent.socket"
                )));
            }
        }
    }
    Ok(out)
}

/// Bytes received but not yet parsed, at most; past it the receiver pauses and the kernel
/// queue (with its counted drops) takes over. 4 MiB is about 30 ms of traffic at 2 M lines/s.
const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;
/// Chunks (one per `recvmmsg` call) queued between the receiver and the parser.
const MAX_PENDING_CHUNKS: usize = 4096;

/// Priority of parser threads on thread-priority's 0..=99 scale (higher runs first); 30 maps
/// to about nice 7 on Linux.
const PARSER_PRIORITY: u8 = 30;

/// Datagrams from one `recvmmsg` call, copied out contiguously.
struct Chunk {
    data: Vec<u8>,
    ends: Vec<usize>,
}

/// How a receiver waits for datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// UDP: while traffic flows, sleep [`POLL`] between non-blocking drains, so the thread
    /// wakes about a thousand times a second however many datagrams arrive (the receive buffer
    /// holds them meanwhile); when a drain finds nothing, block until the next datagram, so an
    /// idle agent costs nothing.
    Poll,
    /// Unix socket: stay in the kernel receiving, gathering datagrams for up to [`GATHER`] per
    /// call. The queue holds only `net.unix.max_dgram_qlen` datagrams, so the receiver must
    /// take each one as it arrives.
    Gather,
}

/// Starts the threads for `socket`. With [`Pacing::Poll`] (UDP) one thread receives and
/// parses: the kernel buffer holds what arrives while it parses. With [`Pacing::Gather`]
/// (Unix) a receiver only drains the socket into chunks and a parser thread, at a lower
/// priority, records them. Either way they stop when `stop` is set, after everything received
/// was recorded; joining the returned handle joins them all.
pub fn spawn_receiver(
    name: &str,
    socket: Socket,
    pacing: Pacing,
    shard: Arc<Shard>,
    max_datagram_bytes: usize,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let (sink, parser) = match pacing {
        Pacing::Poll => (Sink::Inline, None),
        Pacing::Gather => {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(MAX_PENDING_CHUNKS);
            let pending = Arc::new(AtomicUsize::new(0));
            let parser = spawn_parser(name, rx, Arc::clone(&pending), Arc::clone(&shard))?;
            (Sink::Queue { out: tx, pending }, Some(parser))
        }
    };
    std::thread::Builder::new()
        .name(format!("pitot-{name}-recv"))
        .spawn(move || {
            let mut receiver = Receiver {
                socket,
                pacing,
                shard,
                max_datagram_bytes,
                sink,
                last_overflow: 0,
            };
            receiver.run(&stop);
            drop(receiver);
            if let Some(parser) = parser {
                let _joined = parser.join();
            }
        })
}

fn spawn_parser(
    name: &str,
    chunks: Receiver_<Chunk>,
    pending: Arc<AtomicUsize>,
    shard: Arc<Shard>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pitot-{name}-parse"))
        .spawn(move || {
            // Parsing yields to receiving: a receiver woken by a datagram preempts the parser at
            // once, so the socket queue is drained within microseconds even on a busy host.
            let lowered = thread_priority::ThreadPriorityValue::try_from(PARSER_PRIORITY)
                .map_err(|e| format!("{e:?}"))
                .and_then(|p| {
                    thread_priority::set_current_thread_priority(
                        thread_priority::ThreadPriority::Crossplatform(p),
                    )
                    .map_err(|e| format!("{e:?}"))
                });
            if let Err(error) = lowered {
                debug!(?error, "Cannot lower the parser thread's priority.");
            }
            for chunk in chunks {
                let mut start = 0;
                shard.record_datagrams(chunk.ends.iter().map(|&end| {
                    let d = &chunk.data[start..end];
                    start = end;
                    d
                }));
                pending.fetch_sub(chunk.data.len(), Ordering::Relaxed);
            }
        })
}

/// Where received datagrams go.
enum Sink {
    /// Parsed on the receiving thread, straight from the receive buffers.
    Inline,
    /// Copied into a chunk for the parser thread; `pending` counts bytes not yet parsed.
    Queue {
        out: SyncSender<Chunk>,
        pending: Arc<AtomicUsize>,
    },
}

struct Receiver {
    socket: Socket,
    pacing: Pacing,
    shard: Arc<Shard>,
    max_datagram_bytes: usize,
    sink: Sink,
    last_overflow: u32,
}

impl Receiver {
    fn run(&mut self, stop: &AtomicBool) {
        let fd = self.socket.as_raw_fd();
        // One byte more than the limit, so a datagram of exactly the limit is not "truncated".
        let mut buffers = vec![vec![0u8; self.max_datagram_bytes + 1]; BATCH];
        let mut headers =
            MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(cmsg_space!(u32)));
        let mut received: Vec<(usize, bool)> = Vec::with_capacity(BATCH);
        let mut busy = false;
        let mut full = false;
        while !stop.load(Ordering::Relaxed) {
            if let Sink::Queue { pending, .. } = &self.sink {
                while pending.load(Ordering::Relaxed) > MAX_PENDING_BYTES
                    && !stop.load(Ordering::Relaxed)
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            let (flags, timeout) = match (self.pacing, busy) {
                (Pacing::Poll, true) => {
                    if !full {
                        std::thread::sleep(POLL);
                    }
                    (MsgFlags::MSG_DONTWAIT, None)
                }
                (Pacing::Poll, false) => (MsgFlags::MSG_WAITFORONE, None),
                // Block for up to BATCH datagrams or GATHER, whichever comes first. The timeout
                // is checked after each datagram; when traffic stops, SO_RCVTIMEO ends the call.
                (Pacing::Gather, _) => (
                    MsgFlags::empty(),
                    Some(nix::sys::time::TimeSpec::from_duration(GATHER)),
                ),
            };
            received.clear();
            let mut overflow = None;
            {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                    .collect();
                match recvmmsg(fd, &mut headers, slices.iter_mut(), flags, timeout) {
                    Ok(results) => {
                        for msg in results {
                            received.push((msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC)));
                            if let Ok(cmsgs) = msg.cmsgs() {
                                for cmsg in cmsgs {
                                    if let ControlMessageOwned::RxqOvfl(n) = cmsg {
                                        overflow = Some(n);
                                    }
                                }
                            }
                        }
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => {
                        busy = false;
                        continue;
                    }
                    Err(error) => {
                        error!(%error, "DogStatsD receive failed; retrying.");
                        std::thread::sleep(WAKE);
                        continue;
                    }
                }
            }
            // A full batch means more is waiting: drain again at once. A partial one means
            // the queue is empty: pause (Poll) or block.
            busy = !received.is_empty();
            full = received.len() == BATCH;
            self.note_overflow(overflow);
            if !self.hand_over(&received, &buffers) {
                break;
            }
        }
        debug!("DogStatsD receiver stopped.");
    }

    /// Adds the increase of the kernel's cumulative drop counter to `kernel_drops`.
    fn note_overflow(&mut self, overflow: Option<u32>) {
        if let Some(n) = overflow
            && n != self.last_overflow
        {
            let lost = n.wrapping_sub(self.last_overflow);
            self.shard
                .shared
                .stats
                .kernel_drops
                .fetch_add(u64::from(lost), Ordering::Relaxed);
            warn!(
                lost,
                "Kernel dropped DogStatsD datagrams: receive buffer full."
            );
            self.last_overflow = n;
        }
    }

    /// Records the received datagrams (inline) or queues them for the parser; false when the
    /// parser is gone. A cut datagram (longer than the limit) gives its complete lines.
    fn hand_over(&self, received: &[(usize, bool)], buffers: &[Vec<u8>]) -> bool {
        if received.is_empty() {
            return true;
        }
        let stats = &self.shard.shared.stats;
        let limit = self.max_datagram_bytes;
        let whole = |(len, truncated): &(usize, bool), buf: &'_ [u8]| -> usize {
            if !*truncated && *len <= limit {
                return *len;
            }
            stats.dropped(Dropped::Truncated);
            let seen = &buf[..(*len).min(limit)];
            seen.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
        };
        match &self.sink {
            Sink::Inline => {
                self.shard.record_datagrams(
                    received
                        .iter()
                        .zip(buffers)
                        .map(|(r, buf)| &buf[..whole(r, buf)])
                        .filter(|d| !d.is_empty()),
                );
                true
            }
            Sink::Queue { out, pending } => {
                let total: usize = received.iter().map(|(len, _)| *len).sum();
                let mut chunk = Chunk {
                    data: Vec::with_capacity(total),
                    ends: Vec::with_capacity(received.len()),
                };
                for (r, buf) in received.iter().zip(buffers) {
                    let n = whole(r, buf);
                    if n > 0 {
                        chunk.data.extend_from_slice(&buf[..n]);
                        chunk.ends.push(chunk.data.len());
                    }
                }
                pending.fetch_add(chunk.data.len(), Ordering::Relaxed);
                out.send(chunk).is_ok()
            }
        }
    }
}
