//! Trusted proxies (`trusted_proxies`) and the client address their `X-Forwarded-For` names.
//!
//! Behind a proxy every connection comes from the proxy's address, so the per-address cap
//! counts the address the proxy names instead. Only proxies listed here are believed: anyone
//! else can write any `X-Forwarded-For` they like.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// A `trusted_proxies` entry that is neither an IP address nor a CIDR block.
#[derive(Debug, thiserror::Error)]
#[error("trusted_proxies: {entry:?} is not an IP address or a CIDR block (like 10.0.0.0/8)")]
pub struct InvalidProxy {
    /// The entry as written.
    entry: String,
}

/// The addresses whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    /// Single addresses are stored as /32 or /128 blocks.
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses entries like `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub(crate) fn parse(entries: &[String]) -> Result<Self, InvalidProxy> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| InvalidProxy {
                        entry: entry.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    /// Whether `ip` is one of the trusted proxies.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client a request relayed by a trusted proxy comes from: the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy (each proxy appends the
    /// address it received the request from, so entries left of the first untrusted one were
    /// written by the client and prove nothing). `None` when the header is absent or an entry
    /// is not an address: such a request is not counted.
    pub(crate) fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let mut entries: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            entries.extend(value.to_str().ok()?.split(','));
        }
        let mut client = None;
        for entry in entries.iter().rev() {
            let ip: IpAddr = entry.trim().parse().ok()?;
            client = Some(ip);
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn entries_are_addresses_or_blocks() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.7", "::1"]);
        assert!(trusted.contains("10.1.2.3".parse().unwrap()));
        assert!(trusted.contains("192.0.2.7".parse().unwrap()));
        assert!(trusted.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(trusted.contains("::1".parse().unwrap()));
        assert!(!trusted.contains("192.0.2.8".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_entry() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let client = |values: &[&str]| trusted.forwarded_client(&forwarded(values));
        assert_eq!(
            client(&["6.6.6.6, 203.0.113.5, 10.0.0.2"]),
            Some("203.0.113.5".parse().unwrap()),
            "a spoofed left entry is ignored, trusted hops are skipped"
        );
        assert_eq!(
            client(&["203.0.113.5", "10.0.0.3"]),
            Some("203.0.113.5".parse().unwrap()),
            "several header lines read as one list"
        );
        assert_eq!(client(&["10.0.0.3"]), Some("10.0.0.3".parse().unwrap()));
        assert_eq!(client(&[]), None);
        assert_eq!(client(&["garbage, 10.0.0.3"]), None);
    }
}
