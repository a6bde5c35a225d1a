//! Webhook delivery over HTTP, and the SSRF guard on webhook targets.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use leadline_core::webhook::{WebhookEndpoint, sign};

/// Whether an address is one a webhook must not reach unless private targets are
/// allowed: loopback, private, link-local (cloud metadata included), shared,
/// unspecified, multicast, documentation and unique-local ranges.
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
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
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
    let now = chrono::Utc::now();
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
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
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
