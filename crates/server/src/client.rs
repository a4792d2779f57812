//! Who the client is: its address as this server judges it (the TCP peer, or the forwarded
//! address when the peer is a trusted proxy), for rate limits and the security log.

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The client's address as this server judges it (the TCP peer, or the forwarded address when
/// the peer is a trusted proxy). Set on every request by the rate-limit middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an IP address or network ({reason}); expected e.g. 10.0.0.0/8, fd00::/8 or 127.0.0.1")]
pub struct CidrError {
    text: String,
    reason: &'static str,
}

impl IpCidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl FromStr for IpCidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let err = |reason| CidrError {
            text: text.to_owned(),
            reason,
        };
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let network = addr
            .parse::<IpAddr>()
            .map_err(|_| err("not an address"))?
            .to_canonical();
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or(err("the prefix length is out of range"))?,
        };
        let cidr = IpCidr { network, prefix };
        // `10.0.0.1/8` is more likely a typo than a network: refuse host bits.
        if !is_network_address(network, prefix) {
            return Err(err("the address has bits set beyond the prefix"));
        }
        Ok(cidr)
    }
}

fn is_network_address(ip: IpAddr, prefix: u8) -> bool {
    match ip {
        IpAddr::V4(ip) => u32::from(ip)
            .checked_shl(u32::from(prefix))
            .is_none_or(|rest| rest == 0),
        IpAddr::V6(ip) => u128::from(ip)
            .checked_shl(u32::from(prefix))
            .is_none_or(|rest| rest == 0),
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The client address of a request from `peer`: the peer itself unless it is a trusted proxy;
/// then the right-most `X-Forwarded-For` entry that is not a trusted proxy (the left-most when
/// all are). Entries left of the first untrusted one were written by the client and are
/// ignored; an unreadable entry stops the walk at the trusted hop that handed it over.
pub fn resolve_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpCidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    // Several header lines are one list, in order.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = forwarded_ip(entry) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, perhaps with a port (`1.2.3.4:5678`, `[::1]:80`).
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's address: the one the rate-limit middleware resolved (which reads
/// `X-Forwarded-For` from trusted proxies), else the TCP peer.
pub fn client_addr(parts: &Parts) -> String {
    client_addr_in(&parts.extensions)
}

fn client_addr_in(extensions: &Extensions) -> String {
    if let Some(ClientAddr(ip)) = extensions.get::<ClientAddr>() {
        return ip.to_string();
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The client's address for a whole request.
pub fn client_addr_of<B>(request: &axum::http::Request<B>) -> String {
    client_addr_in(request.extensions())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let net: IpCidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let one: IpCidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let v6: IpCidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        let all: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert_eq!(net.to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "fd00::/129",
            "example.com",
            "10.0.0.0/x",
        ] {
            let e = bad.parse::<IpCidr>().unwrap_err();
            assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
        }
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let trusted: Vec<IpCidr> = vec!["10.0.0.0/8".parse().unwrap()];
        // A spoofed header from an untrusted peer is ignored.
        assert_eq!(
            resolve_client(ip("203.0.113.5"), &xff(&["1.2.3.4"]), &trusted),
            ip("203.0.113.5")
        );
        // No trusted proxies configured: the peer, always.
        assert_eq!(
            resolve_client(ip("10.0.0.1"), &xff(&["1.2.3.4"]), &[]),
            ip("10.0.0.1")
        );
        // From a trusted proxy: the right-most untrusted entry; what the client wrote to its
        // left is ignored.
        assert_eq!(
            resolve_client(
                ip("10.0.0.1"),
                &xff(&["6.6.6.6, 198.51.100.7, 10.0.0.2"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // Several header lines are one list.
        assert_eq!(
            resolve_client(
                ip("10.0.0.1"),
                &xff(&["6.6.6.6", "198.51.100.7", "10.0.0.2"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // Ports and IPv4-mapped forms are understood.
        assert_eq!(
            resolve_client(
                ip("::ffff:10.0.0.1"),
                &xff(&["198.51.100.7:4321"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve_client(ip("10.0.0.1"), &xff(&["[2001:db8::1]:80"]), &trusted),
            ip("2001:db8::1")
        );
        // No header: the proxy itself. Every entry trusted: the left-most.
        assert_eq!(
            resolve_client(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            resolve_client(ip("10.0.0.1"), &xff(&["10.0.0.3, 10.0.0.2"]), &trusted),
            ip("10.0.0.3")
        );
        // Garbage stops the walk at the trusted hop that passed it on.
        assert_eq!(
            resolve_client(
                ip("10.0.0.1"),
                &xff(&["198.51.100.7, junk, 10.0.0.2"]),
                &trusted
            ),
            ip("10.0.0.2")
        );
        assert_eq!(
            resolve_client(ip("10.0.0.1"), &xff(&["unknown"]), &trusted),
            ip("10.0.0.1")
        );
    }
}
