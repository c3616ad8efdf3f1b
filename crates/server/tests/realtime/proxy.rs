//! A TCP proxy that can cut every connection through it at once (with a reset, as a network
//! failure would), for resume tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, generation) = watch::channel(0u64);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut generation = generation.clone();
                generation.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = generation.changed() => {
                            // Reset both sides: no close handshake, no FIN, like a dead link.
                            let _ = inbound.set_zero_linger();
                            let _ = outbound.set_zero_linger();
                        }
                    }
                });
            }
        });
        Proxy { addr, cut, accept }
    }

    /// Cuts every connection open now; new ones go through.
    pub fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
