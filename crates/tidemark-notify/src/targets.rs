//! Where webhooks may go: URL rules, and the private-address policy an application can choose.
//!
//! An application that refuses private targets (`allow_private_webhook_targets = false`) is
//! checked twice: when an endpoint is saved ([`check_target`], for a clear 400), and on every
//! request, against the addresses the request actually connects to ([`PublicOnlyResolver`]
//! for names, [`refuse_private_address_literal`] for literal addresses). The second check is
//! what matters: a name can resolve elsewhere later (DNS rebinding), and the setting can be
//! tightened after the endpoint was created.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Checks a webhook URL: absolute `http` or `https` with a host, no credentials, not over-long.
///
/// # Errors
/// A message saying what is wrong.
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("`url` is longer than {MAX_URL_LEN} characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`url` is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`url` must be http or https, not `{}`",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("`url` needs a host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("`url` must not carry credentials".into());
    }
    Ok(parsed)
}

/// Whether an address is private, loopback, link-local or otherwise not on the public internet.
/// IPv6 addresses that embed an IPv4 address (mapped, NAT64, 6to4) count as that address.
pub fn is_private_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return is_private_address(IpAddr::V4(v4));
            }
            let [first, second, ..] = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x64 && second == 0xff9b) // local-use NAT64 (64:ff9b:1::/48)
                || (first == 0x2001 && second == 0x0db8) // documentation
        }
    }
}

/// Checks where a webhook would go: when private targets are not allowed, every address the
/// host resolves to must be public.
///
/// # Errors
/// A message naming the private address, or the resolution failure.
pub async fn check_target(url: &reqwest::Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("`url` host `{host}` does not resolve: {e}"))?;
    for address in addresses {
        if is_private_address(address.ip()) {
            return Err(format!(
                "`url` resolves to the private address {}, and this application does not allow private webhook targets",
                address.ip()
            ));
        }
    }
    Ok(())
}

/// The IPv4 address an IPv6 address stands for, if it embeds one: IPv4-mapped
/// (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`, RFC 6052) and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = v6.segments();
    let octets = v6.octets();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(
            octets[12], octets[13], octets[14], octets[15],
        ));
    }
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

/// Refuses a URL whose host is a literal private address (such hosts are not resolved, so
/// [`PublicOnlyResolver`] never sees them). Names pass: the resolver checks them.
///
/// # Errors
/// A message naming the address.
pub fn refuse_private_address_literal(url: &reqwest::Url) -> Result<(), String> {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(address) if is_private_address(address) => Err(refused(host, address)),
        _ => Ok(()),
    }
}

fn refused(host: &str, address: IpAddr) -> String {
    format!(
        "refused: `{host}` is the private address {address}, and this application does not allow private webhook targets"
    )
}

/// Resolves names with the system resolver and keeps only public addresses, so a request
/// connects to no private address whatever the name resolves to at that moment.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnlyResolver;

/// Every address a name resolved to was private.
#[derive(Debug, thiserror::Error)]
#[error("refused: `{host}` resolves only to private addresses ({addresses}), and this application does not allow private webhook targets")]
struct OnlyPrivateAddresses {
    host: String,
    addresses: String,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (private, public): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
                .into_iter()
                .partition(|address| is_private_address(address.ip()));
            if public.is_empty() {
                let addresses = private
                    .iter()
                    .map(|address| address.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(OnlyPrivateAddresses { host, addresses })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(
                is_private_address(private.parse().expect("ip")),
                "{private}"
            );
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_private_address(public.parse().expect("ip")), "{public}");
        }
    }
}

#[cfg(test)]
mod literal_tests {
    use super::*;

    #[test]
    fn test_literal_private_addresses_are_refused_and_names_left_to_the_resolver() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]/x",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "https://10.1.2.3/",
        ] {
            let parsed = reqwest::Url::parse(url).expect("url");
            let error = refuse_private_address_literal(&parsed).expect_err(url);
            assert!(error.contains("private address"), "{url}: {error}");
        }
        for url in [
            "http://8.8.8.8/x",
            "http://localhost/x",
            "https://example.com/",
        ] {
            let parsed = reqwest::Url::parse(url).expect("url");
            assert_eq!(refuse_private_address_literal(&parsed), Ok(()), "{url}");
        }
    }

    #[tokio::test]
    async fn test_the_resolver_refuses_names_that_resolve_only_to_private_addresses() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let error = PublicOnlyResolver
            .resolve(name)
            .await
            .err()
            .expect("localhost is refused");
        assert!(
            error
                .to_string()
                .contains("resolves only to private addresses"),
            "{error}"
        );
    }
}
