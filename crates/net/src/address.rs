//! Which IP addresses an outbound request may connect to.
//!
//! Only globally routable unicast addresses pass. Every special-purpose range of the IANA
//! registries for IPv4 and IPv6 is refused, and the IPv6 forms that carry an IPv4 address
//! (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by the IPv4 address they carry, so
//! `::ffff:127.0.0.1` or `2002:7f00:1::` cannot reach loopback. Teredo is refused outright: its
//! embedded server and client addresses are not where the packets go.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused; `Display` names the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} address")]
pub struct Refused(pub &'static str);

/// The address to connect to for `ip`, or why it is refused. IPv4-mapped addresses come back as
/// the IPv4 address they map (that is where a dual-stack socket would connect).
pub fn check(ip: IpAddr) -> Result<IpAddr, Refused> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4).map(IpAddr::V4),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

/// The ranges `allow_private_networks` opens (for tests and closed networks). Link-local
/// (cloud metadata at 169.254.169.254), multicast, unspecified and reserved stay refused.
const PRIVATE_KINDS: [&str; 4] = [
    "loopback",
    "private",
    "shared (CGNAT)",
    "unique local (private)",
];

/// [`check`], with loopback and private ranges allowed when `allow_private_networks` is set.
pub fn check_with(ip: IpAddr, allow_private_networks: bool) -> Result<IpAddr, Refused> {
    match check(ip) {
        Err(refused) if allow_private_networks && PRIVATE_KINDS.contains(&refused.0) => {
            Ok(match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            })
        }
        other => other,
    }
}

/// IPv4 ranges refused, with the name given in errors (RFC 6890 and the IANA registry).
const V4_REFUSED: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "unspecified (\"this network\")"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared (CGNAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 31, 196, 0], 24, "AS112"),
    ([192, 52, 193, 0], 24, "AMT"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([192, 175, 48, 0], 24, "AS112"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn check_v4(ip: Ipv4Addr) -> Result<Ipv4Addr, Refused> {
    // 255.255.255.255 (broadcast) lies in 240.0.0.0/4.
    match V4_REFUSED
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
    {
        Some((_, _, name)) => Err(Refused(name)),
        None => Ok(ip),
    }
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address in the last 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from(u128::from(ip) as u32)
}

fn check_v6(ip: Ipv6Addr) -> Result<IpAddr, Refused> {
    if ip.is_unspecified() {
        return Err(Refused("unspecified"));
    }
    if ip.is_loopback() {
        return Err(Refused("loopback"));
    }
    // ::ffff:a.b.c.d — where a dual-stack socket really connects.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        return check_v4(low_v4(ip)).map(IpAddr::V4);
    }
    // Forms that embed an IPv4 address: judged by it, connected to as given.
    let embedded = if in_v6(ip, [0; 8], 96) {
        // IPv4-compatible (deprecated): ::a.b.c.d.
        Some(low_v4(ip))
    } else if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        // NAT64 well-known prefix: the gateway forwards to the embedded address.
        Some(low_v4(ip))
    } else if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        // 6to4: 2002:AABB:CCDD::/48 routes to AA.BB.CC.DD.
        Some(Ipv4Addr::from((u128::from(ip) >> 80) as u32))
    } else {
        None
    };
    if let Some(v4) = embedded {
        check_v4(v4)?;
        return Ok(IpAddr::V6(ip));
    }
    const REFUSED: &[([u16; 8], u8, &str)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use NAT64"),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo"),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "IETF protocol assignment",
        ),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing (SRv6)"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (private)"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    ];
    if let Some((_, _, name)) = REFUSED
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return Err(Refused(name));
    }
    // Global unicast is 2000::/3; everything else is unassigned or reserved.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Err(Refused("reserved"));
    }
    Ok(IpAddr::V6(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Option<&'static str> {
        check(text.parse().unwrap()).err().map(|e| e.0)
    }

    #[test]
    fn every_special_range_is_refused() {
        let table = [
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("0.1.2.3", "unspecified (\"this network\")"),
            ("10.1.2.3", "private"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.254", "shared (CGNAT)"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "IETF protocol assignment"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("2002:7f00:1::", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("2001::1", "Teredo"),
            ("2001:2::1", "IETF protocol assignment"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("100::1", "discard-only"),
            ("fc00::1", "unique local (private)"),
            ("fd12:3456::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("4000::1", "reserved"),
            ("::2", "unspecified (\"this network\")"),
        ];
        for (ip, range) in table {
            assert_eq!(refused(ip), Some(range), "{ip}");
        }
    }

    #[test]
    fn the_private_switch_opens_private_ranges_only() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.2",
            "100.64.1.1",
            "::1",
            "fd00::1",
        ] {
            assert!(check_with(ip.parse().unwrap(), true).is_ok(), "{ip}");
            assert!(check_with(ip.parse().unwrap(), false).is_err(), "{ip}");
        }
        assert_eq!(
            check_with("::ffff:127.0.0.1".parse().unwrap(), true),
            Ok("127.0.0.1".parse().unwrap())
        );
        for ip in ["169.254.169.254", "0.0.0.0", "224.0.0.1", "fe80::1", "::"] {
            assert!(check_with(ip.parse().unwrap(), true).is_err(), "{ip}");
        }
    }

    #[test]
    fn global_addresses_pass_and_mapped_ones_connect_over_ipv4() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450::1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(check(addr), Ok(addr), "{ip}");
        }
        assert_eq!(
            check("::ffff:8.8.8.8".parse().unwrap()),
            Ok("8.8.8.8".parse().unwrap())
        );
    }
}
