//! Checks on a URL before anything is resolved or fetched.

use crate::address;
use std::net::IpAddr;
use url::{Host, Url};

/// Longest URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// What the operator allows beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Ports allowed besides the scheme's default (80, 443).
    pub extra_ports: Vec<u16>,
    /// Allow loopback and private addresses (never link-local, multicast or reserved ones).
    /// Off by default; tests turn it on to reach their local servers.
    pub allow_private_networks: bool,
}

/// Why a URL is refused; safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    /// Longer than [`MAX_URL_BYTES`].
    #[error("the URL is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
    /// Not a URL.
    #[error("not a valid URL")]
    Malformed,
    /// A scheme other than http or https.
    #[error("only http and https URLs are accepted")]
    Scheme,
    /// A user name or password in the URL.
    #[error("URLs with credentials are not accepted")]
    Credentials,
    /// A port that is not allowed.
    #[error("port {0} is not allowed")]
    Port(u16),
    /// A host that names this machine or a refused address.
    #[error("the URL points to a {0}, which is not allowed")]
    Address(&'static str),
}

/// A URL that passed the checks that need no DNS: scheme, credentials, port, length, and a
/// literal address (every numeric form normalized first: `http://2130706433/`,
/// `http://0x7f.1/` and `http://[::ffff:7f00:1]/` are all 127.0.0.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundUrl {
    url: Url,
}

impl OutboundUrl {
    /// Parses and checks `text` under `policy`.
    pub fn parse(text: &str, policy: &UrlPolicy) -> Result<OutboundUrl, UrlRefused> {
        if text.len() > MAX_URL_BYTES {
            return Err(UrlRefused::TooLong);
        }
        // The WHATWG parser normalizes hosts: IPv4 in decimal, octal, hex and short forms,
        // IPv6 compressed forms, percent-encoding and case.
        let url = Url::parse(text.trim()).map_err(|_| UrlRefused::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRefused::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefused::Credentials);
        }
        if let Some(port) = url.port() {
            if !policy.extra_ports.contains(&port) {
                return Err(UrlRefused::Port(port));
            }
        }
        let literal = match url.host() {
            None => return Err(UrlRefused::Malformed),
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                let local = name == "localhost" || name.ends_with(".localhost");
                if local && !policy.allow_private_networks {
                    return Err(UrlRefused::Address("loopback"));
                }
                None
            }
        };
        if let Some(ip) = literal {
            address::check_with(ip, policy.allow_private_networks)
                .map_err(|e| UrlRefused::Address(e.0))?;
        }
        Ok(OutboundUrl { url })
    }

    /// The normalized URL.
    pub fn as_url(&self) -> &Url {
        &self.url
    }

    /// The host name, when the host is a name (a literal address was checked by the parse).
    pub fn domain(&self) -> Option<&str> {
        self.url.domain()
    }

    /// The port connected to: the URL's, else the scheme's.
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(443)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Option<UrlRefused> {
        OutboundUrl::parse(text, &UrlPolicy::default()).err()
    }

    #[test]
    fn numeric_hosts_are_normalized_before_the_check() {
        for url in [
            "http://127.0.0.1/a.mp3",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[0:0:0:0:0:ffff:7f00:0001]/",
            "http://[::1]/",
            "http://LOCALHOST./",
            "http://a.localhost/",
        ] {
            assert_eq!(refused(url), Some(UrlRefused::Address("loopback")), "{url}");
        }
        assert_eq!(
            refused("http://169.254.169.254/latest/meta-data/"),
            Some(UrlRefused::Address("link-local"))
        );
        assert_eq!(
            refused("http://0/"),
            Some(UrlRefused::Address("unspecified (\"this network\")"))
        );
        assert_eq!(
            refused("http://[fd00::1]/"),
            Some(UrlRefused::Address("unique local (private)"))
        );
    }

    #[test]
    fn schemes_credentials_ports_and_length() {
        for url in [
            "file:///etc/passwd",
            "ftp://example.com/a",
            "gopher://x/",
            "data:,x",
        ] {
            assert_eq!(refused(url), Some(UrlRefused::Scheme), "{url}");
        }
        assert_eq!(
            refused("http://user:pw@example.com/"),
            Some(UrlRefused::Credentials)
        );
        assert_eq!(
            refused("http://user@example.com/"),
            Some(UrlRefused::Credentials)
        );
        assert_eq!(
            refused("http://example.com:6379/"),
            Some(UrlRefused::Port(6379))
        );
        assert_eq!(refused("http://example.com:80/"), None, "default port");
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(refused(&long), Some(UrlRefused::TooLong));
        assert_eq!(refused("not a url"), Some(UrlRefused::Malformed));
        let ok = OutboundUrl::parse("HTTPS://Example.COM/a b.mp3", &UrlPolicy::default()).unwrap();
        assert_eq!(ok.as_url().as_str(), "https://example.com/a%20b.mp3");
    }

    #[test]
    fn private_networks_only_with_the_switch_and_listed_ports() {
        let policy = UrlPolicy {
            extra_ports: vec![8080],
            allow_private_networks: true,
        };
        assert!(OutboundUrl::parse("http://127.0.0.1:8080/x.wav", &policy).is_ok());
        assert_eq!(
            OutboundUrl::parse("http://127.0.0.1:8080/x.wav", &UrlPolicy::default()).err(),
            Some(UrlRefused::Port(8080))
        );
        let ports_only = UrlPolicy {
            extra_ports: vec![8080],
            allow_private_networks: false,
        };
        assert_eq!(
            OutboundUrl::parse("http://127.0.0.1:8080/x.wav", &ports_only).err(),
            Some(UrlRefused::Address("loopback"))
        );
    }
}
