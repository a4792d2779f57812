//! Name resolution under the address policy: a name is usable only if every address it
//! resolves to passes [`crate::address::check`], and the caller connects to exactly the
//! addresses returned here (never resolving again, so a DNS answer that changes between the
//! check and the connection — rebinding — cannot slip a private address in).

use crate::address;
use std::net::{IpAddr, SocketAddr};

/// Looks names up. The system resolver in production; tests give fixed answers.
pub trait Resolve {
    /// The addresses of `host`.
    fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver (`getaddrinfo`, so `/etc/hosts` applies).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        use std::net::ToSocketAddrs;
        Ok((host, 0u16).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// Why a name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveRefused {
    /// The name does not resolve.
    #[error("the host name does not resolve")]
    NoAddress,
    /// One of its addresses is refused.
    #[error("the host name resolves to a {0}, which is not allowed")]
    Address(&'static str),
}

/// The addresses to connect to for `host:port`: all of them checked, or an error if any is
/// refused (a name with one private address among public ones is refused as a whole, as the
/// client could not know which one the name's owner means).
pub fn resolve_checked(
    resolver: &dyn Resolve,
    host: &str,
    port: u16,
    allow_private_networks: bool,
) -> Result<Vec<SocketAddr>, ResolveRefused> {
    let found = resolver
        .lookup(host)
        .map_err(|_| ResolveRefused::NoAddress)?;
    if found.is_empty() {
        return Err(ResolveRefused::NoAddress);
    }
    let mut checked = Vec::with_capacity(found.len());
    for ip in found {
        let target = address::check_with(ip, allow_private_networks)
            .map_err(|e| ResolveRefused::Address(e.0))?;
        let addr = SocketAddr::new(target, port);
        if !checked.contains(&addr) {
            checked.push(addr);
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A stub resolver with fixed answers.
    struct Stub(HashMap<&'static str, Vec<IpAddr>>);

    impl Resolve for Stub {
        fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
            self.0
                .get(host)
                .cloned()
                .ok_or_else(|| std::io::Error::other("NXDOMAIN"))
        }
    }

    fn stub() -> Stub {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        Stub(HashMap::from([
            (
                "public.test",
                vec![ip("93.184.215.14"), ip("2606:2800:21f::1")],
            ),
            ("internal.test", vec![ip("10.0.0.5")]),
            (
                "mixed.test",
                vec![ip("93.184.215.14"), ip("169.254.169.254")],
            ),
            ("mapped.test", vec![ip("::ffff:127.0.0.1")]),
            ("empty.test", vec![]),
        ]))
    }

    #[test]
    fn names_are_judged_by_every_address_they_resolve_to() {
        let r = stub();
        let ok = resolve_checked(&r, "public.test", 443, false).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok.iter().all(|a| a.port() == 443));
        assert_eq!(
            resolve_checked(&r, "internal.test", 80, false),
            Err(ResolveRefused::Address("private"))
        );
        assert_eq!(
            resolve_checked(&r, "mixed.test", 80, false),
            Err(ResolveRefused::Address("link-local"))
        );
        assert_eq!(
            resolve_checked(&r, "mapped.test", 80, false),
            Err(ResolveRefused::Address("loopback"))
        );
        assert_eq!(
            resolve_checked(&r, "empty.test", 80, false),
            Err(ResolveRefused::NoAddress)
        );
        assert_eq!(
            resolve_checked(&r, "nx.test", 80, false),
            Err(ResolveRefused::NoAddress)
        );
        assert!(resolve_checked(&r, "internal.test", 80, true).is_ok());
    }

    #[test]
    fn the_system_resolver_reads_hosts_entries() {
        // `localhost` is in every /etc/hosts: a name that resolves to loopback is refused.
        let refused = resolve_checked(&SystemResolver, "localhost", 80, false);
        assert_eq!(refused, Err(ResolveRefused::Address("loopback")));
    }
}
