//! The listening socket. With `reuse_port`, SO_REUSEPORT lets several processes bind one address:
//! the kernel spreads incoming connections over them, so one machine can hold more connections
//! than one process's file limit allows (each node then has its own limit).

use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Binds `addr` for a server, with SO_REUSEPORT when `reuse_port` (Unix only).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std's TcpListener does: a restarted server can bind while old connections linger.
    socket.set_reuse_address(true)?;
    if reuse_port {
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        #[cfg(not(unix))]
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "reuse_port needs SO_REUSEPORT (Unix)",
        ));
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

#[cfg(all(test, unix))]
mod tests {
    #[tokio::test]
    async fn two_listeners_share_a_port_with_reuse_port_and_not_without() {
        let first = super::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.local_addr().unwrap();
        let second = super::bind(addr, true).expect("a second node binds the same port");
        assert_eq!(second.local_addr().unwrap(), addr);
        assert!(
            super::bind(addr, false).is_err(),
            "without reuse_port the port is taken"
        );
    }
}
