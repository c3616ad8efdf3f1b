//! The per-client-address connection cap (`max_connections_per_ip`).
//!
//! What it owns: a count of open connections per client address, and nothing else. A [`Slot`]
//! is one counted connection; the count drops when the slot is dropped, and an address whose
//! count returns to zero leaves the map, so the map holds only addresses with a connection open
//! (no entry per address ever seen).
//!
//! Who holds slots: the accept loop takes one per accepted socket from a direct client and
//! stores it in the socket wrapper ([`super::socket::Watched`]), so it lives exactly as long as
//! the socket, through a WebSocket upgrade too; for requests relayed by a trusted proxy the
//! per-connection service takes one per request for the forwarded client (`super::service`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Counts of open connections by client address, capped. Cheap to clone.
#[derive(Clone)]
pub(crate) struct PerIpLimit {
    shared: Arc<Shared>,
}

struct Shared {
    /// The most connections one address may hold.
    max: usize,
    /// Open connections by address, only addresses with at least one. A std mutex: held for one
    /// map operation, never across an `.await`.
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection of one address; dropping it gives the place back.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    key: IpAddr,
}

impl PerIpLimit {
    /// A cap of `max` connections per address (`max` > 0).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                max,
                counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A slot for a connection from `ip`, or `None` when `ip` already holds the maximum.
    pub(crate) fn acquire(&self, ip: IpAddr) -> Option<Slot> {
        let key = key_of(ip);
        let mut counts = self.shared.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= self.shared.max {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            shared: self.shared.clone(),
            key,
        })
    }

    /// How many addresses hold a connection now (tests: the map empties when they leave).
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.shared
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.shared.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The address a connection is counted under: IPv4 as is (an IPv4-mapped IPv6 address as its
/// IPv4 address), IPv6 by its /64, since one host is usually given a whole /64 and could
/// otherwise open each connection from a new address.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_beyond_max_and_forgets_addresses_at_zero() {
        let limit = PerIpLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.acquire(a).expect("first");
        let second = limit.acquire(a).expect("second");
        assert!(limit.acquire(a).is_none(), "the third from one address");
        let other = limit.acquire(b).expect("another address has its own count");
        drop(first);
        let third = limit.acquire(a).expect("a place came back");
        assert_eq!(limit.addresses(), 2);
        drop((second, third, other));
        assert_eq!(limit.addresses(), 0, "no entry outlives its connections");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let limit = PerIpLimit::new(1);
        let _one = limit.acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert!(limit.acquire("2001:db8::2".parse().unwrap()).is_none());
        assert!(limit.acquire("2001:db8:0:1::1".parse().unwrap()).is_some());
        let _v4 = limit.acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert!(limit.acquire("::ffff:192.0.2.1".parse().unwrap()).is_none());
    }
}
