//! The user header an authenticating proxy sets (upstream's `kubeflow-userid`,
//! named by `KUBEFLOW_USERID_HEADER`, its value prefixed by
//! `KUBEFLOW_USERID_PREFIX`). Anyone can write a header, so it is believed only
//! from the proxies the operator lists; from any other peer it is refused.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::{Authenticator, Error, Identity};

/// The header upstream's manifests configure (its binary's own default is
/// `x-goog-authenticated-user-email`).
pub const DEFAULT_HEADER: &str = "kubeflow-userid";

/// A block of addresses, `10.0.0.0/8`, `::1/128` or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = mask_bits(self.prefix, 32) as u32;
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = mask_bits(self.prefix, 128);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit number set.
fn mask_bits(prefix: u8, width: u32) -> u128 {
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 {
        return 0;
    }
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let host_bits = width - prefix;
    all & !((1u128 << host_bits) - 1)
}

/// IPv4 peers reach a dual-stack listener as `::ffff:a.b.c.d`; compare them as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(text: &str) -> Result<Cidr, Error> {
        let text = text.trim();
        let invalid = |why: &str| {
            Error::Config(format!(
                "trusted proxy {text:?} is not an address or CIDR block ({why})"
            ))
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = canonical(
            IpAddr::from_str(address).map_err(|_| invalid("the address does not parse"))?,
        );
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => {
                let prefix: u8 = prefix
                    .parse()
                    .map_err(|_| invalid("the prefix length is not a number"))?;
                if u32::from(prefix) > u32::from(width) {
                    return Err(invalid("the prefix length is longer than the address"));
                }
                prefix
            }
        };
        Ok(Cidr { network, prefix })
    }
}

/// Reads the identity from the configured header of requests from trusted peers.
#[derive(Clone, Debug)]
pub struct TrustedHeader {
    header: http::HeaderName,
    prefix: String,
    trusted: Vec<Cidr>,
}

impl TrustedHeader {
    /// `header` as upstream's KUBEFLOW_USERID_HEADER, `prefix` as
    /// KUBEFLOW_USERID_PREFIX, `trusted` the proxies allowed to set the header.
    pub fn new(header: &str, prefix: &str, trusted: Vec<Cidr>) -> Result<TrustedHeader, Error> {
        let header = http::HeaderName::from_str(&header.trim().to_ascii_lowercase())
            .map_err(|_| Error::Config(format!("user header {header:?} is not a header name")))?;
        Ok(TrustedHeader {
            header,
            prefix: prefix.to_string(),
            trusted,
        })
    }

    pub fn header(&self) -> &str {
        self.header.as_str()
    }

    fn is_trusted(&self, peer: Option<SocketAddr>) -> bool {
        let Some(peer) = peer else {
            return false;
        };
        self.trusted.iter().any(|block| block.contains(peer.ip()))
    }
}

#[async_trait::async_trait]
impl Authenticator for TrustedHeader {
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Option<Identity>, Error> {
        let mut values = headers.get_all(&self.header).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if !self.is_trusted(peer) {
            let from = peer.map_or_else(|| "an unknown peer".to_string(), |peer| peer.to_string());
            tracing::warn!(header = %self.header, peer = %from, "user header from an untrusted peer refused");
            return Err(Error::Unauthenticated(format!(
                "header {} is accepted only from a trusted proxy, not from {from}",
                self.header
            )));
        }
        if values.next().is_some() {
            return Err(Error::Unauthenticated(format!(
                "header {} is given more than once",
                self.header
            )));
        }
        let value = value.to_str().map_err(|_| {
            Error::Unauthenticated(format!("header {} is not visible ASCII", self.header))
        })?;
        let Some(user) = value.strip_prefix(self.prefix.as_str()) else {
            return Err(Error::Unauthenticated(format!(
                "header {} does not start with the prefix {:?}",
                self.header, self.prefix
            )));
        };
        let user = user.trim();
        if user.is_empty() {
            return Err(Error::Unauthenticated(format!(
                "header {} names no user",
                self.header
            )));
        }
        Ok(Some(Identity {
            user: user.to_string(),
            groups: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_str(name).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(SocketAddr::from_str(text).unwrap())
    }

    #[test]
    fn blocks_contain_what_they_should() {
        let block: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(block.contains("10.1.200.3".parse().unwrap()));
        assert!(!block.contains("10.2.0.1".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(!all.contains("::2".parse().unwrap()));
    }

    #[test]
    fn bad_blocks_say_why() {
        for (text, why) in [
            ("10.0.0.0/33", "longer"),
            ("10.0.0/8", "does not parse"),
            ("10.0.0.0/x", "not a number"),
        ] {
            let error = text.parse::<Cidr>().unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
            assert!(error.contains(text), "{error}");
        }
    }

    #[tokio::test]
    async fn the_header_counts_only_from_trusted_peers() {
        let auth = TrustedHeader::new(
            "Kubeflow-UserID",
            "accounts.google.com:",
            vec!["127.0.0.0/8".parse().unwrap()],
        )
        .unwrap();
        let sent = headers(&[("kubeflow-userid", "accounts.google.com:alice@example.com")]);
        let who = auth
            .authenticate(&sent, peer("127.0.0.1:5000"))
            .await
            .unwrap();
        assert_eq!(who.unwrap().user, "alice@example.com");

        let error = auth
            .authenticate(&sent, peer("192.168.1.5:5000"))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Unauthenticated(_)));
        assert!(error.to_string().contains("192.168.1.5"), "{error}");
        assert!(auth.authenticate(&sent, None).await.is_err());

        let none = auth
            .authenticate(&headers(&[]), peer("192.168.1.5:1"))
            .await
            .unwrap();
        assert_eq!(none, None);
    }

    #[tokio::test]
    async fn prefix_repeats_and_empty_names_are_refused() {
        let auth = TrustedHeader::new(DEFAULT_HEADER, "p:", vec!["::1".parse().unwrap()]).unwrap();
        let local = peer("[::1]:80");
        for bad in [
            headers(&[("kubeflow-userid", "alice")]),
            headers(&[("kubeflow-userid", "p:")]),
            headers(&[("kubeflow-userid", "p:a"), ("kubeflow-userid", "p:b")]),
        ] {
            assert!(auth.authenticate(&bad, local).await.is_err());
        }
    }
}
