//! The floor for ingestion benchmarks: a receiver that does nothing but `recvmmsg` and count.
//!
//! `recvmmsg_floor udp 127.0.0.1:9125 SECONDS` or `recvmmsg_floor unix /path.sock SECONDS`
//! binds, receives for SECONDS, then prints `datagrams=N lines=N bytes=N kernel_drops=N`.
//! Lines are counted (a newline count per datagram) so loss can be compared with the agent's.

use std::io::{IoSliceMut, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::cmsg_space;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, setsockopt, sockopt,
};
use socket2::{Domain, SockAddr, Socket, Type};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (kind, addr, seconds) = match args.as_slice() {
        [_, k, a, s] => (k.as_str(), a.as_str(), s.parse::<u64>().unwrap_or(10)),
        _ => {
            eprintln!("usage: recvmmsg_floor udp|unix ADDR SECONDS");
            std::process::exit(64);
        }
    };
    let socket = if kind == "udp" {
        let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
        if setsockopt(&s, sockopt::RcvBufForce, &(8 << 20)).is_err() {
            s.set_recv_buffer_size(8 << 20)?;
        }
        setsockopt(&s, sockopt::RxqOvfl, &1).map_err(std::io::Error::from)?;
        s.bind(&addr.into())?;
        s
    } else {
        let _stale_socket_removed = std::fs::remove_file(addr);
        let s = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
        s.bind(&SockAddr::unix(addr)?)?;
        s
    };
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let fd = socket.as_raw_fd();
    let mut buffers = vec![vec![0u8; 65_536]; 64];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(64, Some(cmsg_space!(u32)));
    let (mut datagrams, mut lines, mut bytes, mut drops) = (0u64, 0u64, 0u64, 0u32);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let mut lens = Vec::with_capacity(64);
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                .collect();
            let Ok(results) = recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) else {
                continue;
            };
            for msg in results {
                lens.push(msg.bytes);
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::RxqOvfl(n) = c {
                            drops = n;
                        }
                    }
                }
            }
        }
        for (len, buf) in lens.iter().zip(&buffers) {
            datagrams += 1;
            bytes += *len as u64;
            lines += buf[..*len]
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64;
        }
    }
    writeln!(
        std::io::stdout(),
        "datagrams={datagrams} lines={lines} bytes={bytes} kernel_drops={drops}"
    )?;
    Ok(())
}
