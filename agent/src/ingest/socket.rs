//! DogStatsD sockets: binding with large receive buffers, and the receiving threads.
//!
//! Each socket gets two OS threads. The receiver does nothing but loop on `recvmmsg` (up to
//! [`BATCH`] datagrams per call, blocking for the first) and copy what arrived into a chunk;
//! the parser records chunks into the socket's [`Shard`]. Keeping parsing off the receiving
//! thread keeps the kernel queue short, which matters most for the Unix socket: with
//! `net.unix.max_dgram_qlen` as low as 10, a reader that falls 10 datagrams behind makes
//! non-blocking clients drop. Chunks wait in a queue bounded in bytes
//! (`MAX_PENDING_BYTES`, 16 MiB); past it the receiver pauses, so memory stays bounded and any
//! overflow happens in the kernel, where UDP counts it.
//!
//! Loss is never silent. On UDP, `SO_RXQ_OVFL` makes the kernel attach its cumulative drop
//! count to each datagram; the thread adds the increase to `kernel_drops`. Datagrams larger
//! than the buffer arrive with `MSG_TRUNC` and are counted as `datagram_too_large`. (On a Unix
//! datagram socket the kernel does not drop: a full queue refuses the sender, so the loss is
//! the client's to see.)

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// How often a blocked receiver wakes to check for shutdown.
const WAKE: Duration = Duration::from_millis(200);

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

/// Bytes received but not yet parsed, at most; past it the receiver pauses and the kernel
/// queue (with its counted drops) takes over. 16 MiB is about 50 ms of traffic at 2 M lines/s.
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;
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

/// Starts the threads for `socket`: a receiver that only drains the kernel queue into chunks,
/// and a parser that records them into `shard`. They stop when `stop` is set, after the parser
/// has recorded everything received. Joining the returned handle joins both.
pub fn spawn_receiver(
    name: &str,
    socket: Socket,
    shard: Arc<Shard>,
    max_datagram_bytes: usize,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(MAX_PENDING_CHUNKS);
    let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let parser_pending = Arc::clone(&pending);
    let parser_shard = Arc::clone(&shard);
    let parser = std::thread::Builder::new()
        .name(format!("pitot-{name}-parse"))
        .spawn(move || {
            // Parsing yields to receiving: a receiver woken by a datagram preempts the parser at
            // once, so the kernel queue is drained within microseconds even on a busy host.
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
            for chunk in rx {
                let mut start = 0;
                parser_shard.record_datagrams(chunk.ends.iter().map(|&end| {
                    let d = &chunk.data[start..end];
                    start = end;
                    d
                }));
                parser_pending.fetch_sub(chunk.data.len(), Ordering::Relaxed);
            }
        })?;
    std::thread::Builder::new()
        .name(format!("pitot-{name}-recv"))
        .spawn(move || {
            receive_loop(&socket, &shard, max_datagram_bytes, &stop, &tx, &pending);
            drop(tx);
            let _joined = parser.join();
        })
}

fn receive_loop(
    socket: &Socket,
    shard: &Shard,
    max_datagram_bytes: usize,
    stop: &AtomicBool,
    out: &std::sync::mpsc::SyncSender<Chunk>,
    pending: &std::sync::atomic::AtomicUsize,
) {
    let fd = socket.as_raw_fd();
    // One byte more than the limit, so a datagram of exactly the limit is not "truncated".
    let mut buffers = vec![vec![0u8; max_datagram_bytes + 1]; BATCH];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(cmsg_space!(u32)));
    let mut received: Vec<(usize, bool)> = Vec::with_capacity(BATCH);
    let mut last_overflow: u32 = 0;
    let stats = &shard.shared.stats;
    while !stop.load(Ordering::Relaxed) {
        while pending.load(Ordering::Relaxed) > MAX_PENDING_BYTES && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_micros(200));
        }
        received.clear();
        let mut overflow = None;
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                .collect();
            match recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
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
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(error) => {
                    error!(%error, "DogStatsD receive failed; retrying.");
                    std::thread::sleep(WAKE);
                    continue;
                }
            }
        }
        if let Some(n) = overflow
            && n != last_overflow
        {
            let lost = n.wrapping_sub(last_overflow);
            stats
                .kernel_drops
                .fetch_add(u64::from(lost), Ordering::Relaxed);
            warn!(
                lost,
                "Kernel dropped DogStatsD datagrams: receive buffer full."
            );
            last_overflow = n;
        }
        let total: usize = received.iter().map(|(len, _)| *len).sum();
        let mut chunk = Chunk {
            data: Vec::with_capacity(total),
            ends: Vec::with_capacity(received.len()),
        };
        for ((len, truncated), buf) in received.iter().zip(&buffers) {
            if *truncated || *len > max_datagram_bytes {
                stats.dropped(Dropped::DatagramTooLarge);
                continue;
            }
            chunk.data.extend_from_slice(&buf[..*len]);
            chunk.ends.push(chunk.data.len());
        }
        pending.fetch_add(chunk.data.len(), Ordering::Relaxed);
        if out.send(chunk).is_err() {
            break;
        }
    }
    debug!("DogStatsD receiver stopped.");
}
