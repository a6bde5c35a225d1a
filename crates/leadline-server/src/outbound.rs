//! Webhook delivery over HTTP, and the SSRF guard on webhook targets.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use leadline_core::webhook::{WebhookEndpoint, sign};

/// Whether an address is one a webhook must not reach unless private targets are
/// allowed: loopback, private, link-local (cloud metadata included), shared,
/// unspecified, multicast, documentation, IETF protocol assignments
/// (192.0.0.0/24) and unique-local ranges, and every IPv6 form that embeds an
/// IPv4 address (mapped, compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
/// whose IPv4 address is one of those; local-use NAT64 (`64:ff9b:1::/48`) always.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                std::net::Ipv4Addr::new((hi >> 8) as u8, (hi & 0xff) as u8, (lo >> 8) as u8, (lo & 0xff) as u8)
            };
            // ::ffff:a.b.c.d and ::a.b.c.d (::1 and :: included: 0.0.0.x is private).
            if let Some(v4) = v6.to_ipv4() {
                return is_private(IpAddr::V4(v4));
            }
            // NAT64 well-known prefix: the IPv4 address in the last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_private(IpAddr::V4(embedded(s[6], s[7])));
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                return true;
            }
            // 6to4: the IPv4 address in bits 16 to 48.
            if s[0] == 0x2002 {
                return is_private(IpAddr::V4(embedded(s[1], s[2])));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// Resolves a webhook URL's host and refuses private targets (unless allowed).
pub async fn check_target(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|_| "is not a valid URL".to_owned())?;
    let host = parsed.host_str().ok_or_else(|| "has no host".to_owned())?;
    if allow_private {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| "has a host name that does not resolve".to_owned())?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err("has a host name that does not resolve".into());
    }
    if addrs.into_iter().any(is_private) {
        return Err("points at a private, loopback or link-local address, which webhooks may not reach".into());
    }
    Ok(())
}

/// The resolver of webhook deliveries: the addresses a name resolves to, minus
/// the private ones, checked when the connection is made, so a name that
/// resolves to a public address when the target is checked and to a private one
/// a moment later (DNS rebinding) connects nowhere.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the host name resolves to no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// How an attempt went.
#[derive(Debug)]
pub struct Outcome {
    /// 2xx.
    pub success: bool,
    /// HTTP status, if one came back.
    pub code: Option<u16>,
    /// Short description.
    pub detail: String,
    /// `Retry-After` of a 429 or 503.
    pub retry_after: Option<Duration>,
    /// Whether retrying makes sense (not after 410 or a refused target).
    pub retryable: bool,
    /// 410: disable the endpoint.
    pub gone: bool,
    /// How long it took.
    pub latency: Duration,
}

/// Posts one signed event. `msg_id` is the `webhook-id`, stable across retries.
pub async fn deliver(
    client: &reqwest::Client,
    ep: &WebhookEndpoint,
    msg_id: &str,
    body: &str,
    allow_private: bool,
) -> Outcome {
    let started = Instant::now();
    let fail = |detail: String, retryable: bool| Outcome {
        success: false,
        code: None,
        detail,
        retry_after: None,
        retryable,
        gone: false,
        latency: started.elapsed(),
    };
    // Checked again at delivery: the name may resolve elsewhere now.
    if let Err(e) = check_target(&ep.url, allow_private).await {
        return fail(format!("target refused: the URL {e}"), false);
    }
    let now = crate::clock::now();
    let ts = now.timestamp();
    let sigs: Vec<String> = ep
        .signing_secrets(now)
        .into_iter()
        .filter_map(|s| sign(s, msg_id, ts, body.as_bytes()))
        .collect();
    let res = client
        .post(&ep.url)
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sigs.join(" "))
        .body(body.to_owned())
        .send()
        .await;
    match res {
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "request failed"
            };
            fail(what.to_owned(), true)
        }
        Ok(r) => {
            let status = r.status();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .filter(|_| status.as_u16() == 429 || status.as_u16() == 503);
            let gone = status.as_u16() == 410;
            Outcome {
                success: status.is_success(),
                code: Some(status.as_u16()),
                detail: format!("HTTP {}", status.as_u16()),
                retry_after,
                retryable: !gone,
                gone,
                latency: started.elapsed(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        // IPv6 forms that embed a private IPv4 address, and 192.0.0.0/24.
        for ip in [
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "::a9fe:a9fe",
            "::127.0.0.1",
            "192.0.0.170",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "8.8.8.8",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }

    /// A name that resolves to a private address connects nowhere, whatever it
    /// resolved to when the target was checked (DNS rebinding).
    #[tokio::test]
    async fn the_resolver_connects_to_public_addresses_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = s.shutdown().await;
            }
        });
        let plain = reqwest::Client::new();
        assert!(plain.get(format!("http://localhost:{port}/")).send().await.is_ok());
        let guarded = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(PublicOnly))
            .build()
            .expect("client");
        let err = guarded
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .expect_err("no public address");
        assert!(err.is_connect(), "{err}");
    }

    #[tokio::test]
    async fn literal_private_targets_are_refused() {
        assert!(check_target("https://127.0.0.1/hook", false).await.is_err());
        assert!(check_target("https://[::1]:8443/hook", false).await.is_err());
        assert!(
            check_target("https://169.254.169.254/latest/meta-data", false)
                .await
                .is_err()
        );
        assert!(check_target("https://localhost/hook", false).await.is_err());
        assert!(check_target("https://127.0.0.1/hook", true).await.is_ok());
    }
}
