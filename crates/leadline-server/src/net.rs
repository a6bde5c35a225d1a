//! The client's address: the socket peer, or, when the peer is a trusted proxy,
//! the right-most address in `X-Forwarded-For` that is not itself a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::Request;

use crate::config::Cidr;

/// The client IP of a request.
pub fn client_ip<B>(req: &Request<B>, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    // Walk from the right: each hop was added by the proxy before it.
    let hops: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, xff: Option<&str>) -> Request<()> {
        let mut r = Request::builder();
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        let mut r = r.body(()).expect("request");
        r.extensions_mut()
            .insert(ConnectInfo(format!("{peer}:1234").parse::<SocketAddr>().expect("addr")));
        r
    }

    #[test]
    fn forwarded_for_is_honoured_only_from_trusted_proxies() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").expect("cidr")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            client_ip(&req("203.0.113.9", Some("1.2.3.4")), &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_ip(&req("10.0.0.2", Some("1.2.3.4")), &trusted),
            Some(ip("1.2.3.4"))
        );
        // A client-supplied left part cannot hide the real client.
        assert_eq!(
            client_ip(&req("10.0.0.2", Some("9.9.9.9, 1.2.3.4, 10.0.0.7")), &trusted),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(client_ip(&req("10.0.0.2", None), &trusted), Some(ip("10.0.0.2")));
        assert_eq!(
            client_ip(&req("10.0.0.2", Some("garbage")), &trusted),
            Some(ip("10.0.0.2"))
        );
    }
}
