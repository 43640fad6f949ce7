//! DogStatsD sockets: binding with large receive buffers, and the receiving threads.
//!
//! Each socket gets one OS thread that loops on `recvmmsg` (up to [`BATCH`] datagrams per
//! call, blocking for the first) and records straight into its [`Shard`]. A dedicated thread
//! keeps the socket drained even when the async runtime is busy, which matters most for the
//! Unix socket: with `net.unix.max_dgram_qlen` as low as 10, a reader that falls 10 datagrams
//! behind makes non-blocking clients drop.
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

/// Starts the receiving thread for `socket`; it stops when `stop` is set.
pub fn spawn_receiver(
    name: &str,
    socket: Socket,
    shard: Arc<Shard>,
    max_datagram_bytes: usize,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pitot-{name}"))
        .spawn(move || receive_loop(&socket, &shard, max_datagram_bytes, &stop))
}

fn receive_loop(socket: &Socket, shard: &Shard, max_datagram_bytes: usize, stop: &AtomicBool) {
    let fd = socket.as_raw_fd();
    // One byte more than the limit, so a datagram of exactly the limit is not "truncated".
    let mut buffers = vec![vec![0u8; max_datagram_bytes + 1]; BATCH];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(cmsg_space!(u32)));
    let mut received: Vec<(usize, bool)> = Vec::with_capacity(BATCH);
    let mut last_overflow: u32 = 0;
    let stats = &shard.shared.stats;
    while !stop.load(Ordering::Relaxed) {
        received.clear();
        let mut overflow = None;
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                .collect();
            match recvmmsg(fd, &mut headers, slices.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
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
            warn!(lost, "Kernel dropped DogStatsD datagrams: receive buffer full.");
            last_overflow = n;
        }
        let mut truncated = 0;
        shard.record_datagrams(received.iter().zip(&buffers).filter_map(|((len, trunc), buf)| {
            if *trunc || *len > max_datagram_bytes {
                truncated += 1;
                None
            } else {
                Some(&buf[..*len])
            }
        }));
        for _ in 0..truncated {
            stats.dropped(Dropped::DatagramTooLarge);
        }
    }
    debug!("DogStatsD receiver stopped.");
}
