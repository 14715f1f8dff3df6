//! Pure: where the installer's traffic may go, and where one proxy request wants to go.
//!
//! The installer container has no network. pip reaches the index through an HTTP proxy on
//! the container's loopback that forwards to codebox over a Unix socket in its staging
//! directory (`egress`); codebox opens connections only to the index and the hosts it serves
//! files from, whatever an index page links to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::config::lists::{Upstream, parse_upstreams};

const PYPI_HOST: &str = "pypi.org";
/// PyPI's index pages link their files on this host.
const PYPI_FILES_HOST: &str = "files.pythonhosted.org";
/// The longest request head a proxy client may send (pip sends a few hundred bytes).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The destinations the installer may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams(Vec<Upstream>);

impl Upstreams {
    /// The index's host and port (PyPI when none is configured) and, for PyPI, its file
    /// host. An index that links files on other hosts needs those in `extra`.
    pub fn for_index(index_url: Option<&str>, extra: &[Upstream]) -> Upstreams {
        let index = index_url
            .and_then(|url| url::Url::parse(url).ok())
            .and_then(|url| Some(Upstream::new(url.host_str()?, url.port_or_known_default()?)))
            .unwrap_or_else(|| Upstream::new(PYPI_HOST, 443));
        let mut all = vec![index];
        if all[0].host == PYPI_HOST {
            all.push(Upstream::new(PYPI_FILES_HOST, 443));
        }
        for upstream in extra {
            if !all.contains(upstream) {
                all.push(upstream.clone());
            }
        }
        Upstreams(all)
    }

    /// From PIP_INDEX_URL and PACKAGE_DOWNLOAD_HOSTS (validated with the settings; an
    /// invalid list adds nothing).
    pub fn from_settings(settings: &crate::config::PackageSettings) -> Upstreams {
        let extra = parse_upstreams(&settings.package_download_hosts).unwrap_or_default();
        Upstreams::for_index(settings.pip_index_url.as_deref(), &extra)
    }

    pub fn permits(&self, destination: &Destination) -> bool {
        let wanted = &destination.to;
        self.0.iter().any(|allowed| {
            allowed.port == wanted.port && allowed.host.eq_ignore_ascii_case(&wanted.host)
        })
    }
}

impl fmt::Display for Upstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(Upstream::to_string).collect();
        f.write_str(&names.join(", "))
    }
}

/// Where a proxy request goes: a tunnel (`CONNECT host:port`, what pip does for https) or
/// one plain-http request in absolute form (`GET http://host:port/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub to: Upstream,
    pub tunnel: bool,
}

/// A proxy request: where it goes, and how long its head is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub destination: Destination,
    pub head_len: usize,
}

/// What a complete request head (through its blank line) asks for; None while the head is
/// still incomplete; an error for anything that is not a proxy request.
pub fn destination(head: &[u8]) -> Result<Option<Asked>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(format!("not an HTTP request: {err}")),
    };
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err("not an HTTP request".to_string());
    };
    // Lines end in CRLF only: a head the rewriting below would read otherwise than the
    // server does never goes on.
    let bare_newline = head[..head_len]
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    if bare_newline {
        return Err("request lines must end in CRLF".to_string());
    }
    // pip only reads: a request with a body (or a tunnel announcing one) is not pip's.
    let has_body = request.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
    });
    if has_body {
        return Err("requests with a body are not forwarded".to_string());
    }
    if method == "CONNECT" {
        let url = url::Url::parse(&format!("tunnel://{target}"))
            .map_err(|_| format!("CONNECT to `{target}` is not host:port"))?;
        let (Some(host), Some(port)) = (url.host_str(), url.port()) else {
            return Err(format!("CONNECT to `{target}` is not host:port"));
        };
        return Ok(Some(Asked {
            destination: Destination {
                to: Upstream::new(host, port),
                tunnel: true,
            },
            head_len,
        }));
    }
    let url = url::Url::parse(target)
        .map_err(|_| format!("`{target}` is not an absolute http:// URL"))?;
    if url.scheme() != "http" {
        return Err(format!("`{target}` is not an absolute http:// URL"));
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(format!("`{target}` has no host"));
    };
    Ok(Some(Asked {
        destination: Destination {
            to: Upstream::new(host, port),
            tunnel: false,
        },
        head_len,
    }))
}

/// Whether codebox may dial an address a host *name* resolved to. Never this host (its
/// loopback, or any address of its own interfaces in `local`: the docker bridge's gateway
/// is one), a link-local address, a carrier-grade NAT or unique-local address (clouds put
/// metadata services there: 100.100.100.200, fd00:ec2::254), a NAT64 address (it leads to
/// any IPv4 address, these included), or an address that is no single host, in IPv4-mapped
/// form too: an allowed name whose DNS answer changes (rebinding) must not lead there. An
/// address written in the allowed list is the operator's choice and is not judged.
pub fn resolved_address_allowed(ip: IpAddr, local: &[IpAddr]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let own = local.iter().any(|address| {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*address, IpAddr::V4),
            v4 => *v4,
        };
        address == ip
    });
    !own && match ip {
        IpAddr::V4(v4) => v4_allowed(v4),
        IpAddr::V6(v6) => v6_allowed(v6),
    }
}

fn v4_allowed(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let carrier_grade_nat = a == 100 && (64..128).contains(&b);
    !(ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || carrier_grade_nat)
}

fn v6_allowed(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let unique_local = segments[0] & 0xfe00 == 0xfc00;
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unicast_link_local()
        || unique_local
        || nat64)
}

/// A plain-http request's head as it goes upstream: one request per connection
/// (`Connection: close`), so a client that reuses its proxy connection for another host
/// opens a new one, which is checked again, instead of reaching the first host.
pub fn one_shot_head(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(head.len() + 20);
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        let hop_by_hop = ["connection", "proxy-connection", "keep-alive"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if !hop_by_hop {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(host: &str, port: u16) -> Destination {
        Destination {
            to: Upstream {
                host: host.into(),
                port,
            },
            tunnel: true,
        }
    }

    #[test]
    fn pypi_by_default_with_its_file_host() {
        let allowed = Upstreams::for_index(None, &[]);
        assert_eq!(
            allowed.to_string(),
            "pypi.org:443, files.pythonhosted.org:443"
        );
        assert!(allowed.permits(&to("files.pythonhosted.org", 443)));
        assert!(allowed.permits(&to("PyPI.org", 443)));
        assert!(!allowed.permits(&to("pypi.org", 80)));
        assert!(!allowed.permits(&to("172.17.0.1", 2375)));
        assert!(!allowed.permits(&to("169.254.169.254", 80)));
    }

    #[test]
    fn a_configured_index_is_the_only_destination_with_the_operators_extras() {
        let allowed = Upstreams::for_index(
            Some("http://user:pw@172.17.0.1:8080/simple/"),
            &parse_upstreams("cdn.example.com, [fd00::1]:8443").unwrap(),
        );
        assert_eq!(
            allowed.to_string(),
            "172.17.0.1:8080, cdn.example.com:443, [fd00::1]:8443"
        );
        assert!(allowed.permits(&to("172.17.0.1", 8080)));
        assert!(!allowed.permits(&to("172.17.0.1", 22)));
        assert!(!allowed.permits(&to("pypi.org", 443)));
        assert!(allowed.permits(&to("fd00::1", 8443)));
        assert_eq!(
            Upstreams::for_index(Some("https://mirror.lan/simple"), &[]).to_string(),
            "mirror.lan:443"
        );
        assert!(parse_upstreams("a.example/x").is_err());
        assert!(parse_upstreams("u@a.example").is_err());
    }

    #[test]
    fn tunnels_and_absolute_requests_name_their_destination() {
        let going = |head: &[u8]| destination(head).map(|a| a.map(|a| a.destination));
        assert_eq!(
            going(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n"),
            Ok(Some(to("pypi.org", 443)))
        );
        assert_eq!(
            going(b"GET http://172.17.0.1:9000/simple/x/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(Destination {
                to: Upstream {
                    host: "172.17.0.1".into(),
                    port: 9000
                },
                tunnel: false
            }))
        );
        assert_eq!(
            going(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n"),
            Ok(Some(to("::1", 443)))
        );
        let head = b"GET http://a:1/ HTTP/1.1\r\nHost: a:1\r\n\r\nBODY";
        assert_eq!(destination(head).unwrap().unwrap().head_len, head.len() - 4);
        assert_eq!(destination(b"CONNECT pypi.org:443 HTTP/1.1\r\n"), Ok(None));
    }

    #[test]
    fn plain_requests_go_upstream_one_per_connection() {
        let head = b"GET http://a:1/x HTTP/1.1\r\nHost: a:1\r\nConnection: keep-alive\r\nproxy-connection: keep-alive\r\nKeep-Alive: 5\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            String::from_utf8(one_shot_head(head)).unwrap(),
            "GET http://a:1/x HTTP/1.1\r\nHost: a:1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn names_never_lead_to_the_host_itself_or_link_local_addresses() {
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "100.100.100.200",
            "100.64.0.1",
            "100.127.255.254",
            "::ffff:100.100.100.200",
            "fc00::1",
            "fdff:ffff::1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::808:808",
        ] {
            assert!(
                !resolved_address_allowed(bad.parse().unwrap(), &[]),
                "{bad}"
            );
        }
        // This host's own addresses: the docker bridge's gateway, any interface.
        let local: Vec<IpAddr> = ["172.17.0.1", "192.168.5.20", "2001:db8::7"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        for own in [
            "172.17.0.1",
            "192.168.5.20",
            "::ffff:172.17.0.1",
            "2001:db8::7",
        ] {
            assert!(
                !resolved_address_allowed(own.parse().unwrap(), &local),
                "{own}"
            );
        }
        for good in [
            "151.101.0.223",
            "10.1.2.3",
            "172.17.0.2",
            "100.63.255.255",
            "100.128.0.1",
            "2a04:4e42::223",
            "fe00::1",
        ] {
            assert!(
                resolved_address_allowed(good.parse().unwrap(), &local),
                "{good}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for head in [
            &b"GET /simple/ HTTP/1.1\r\n\r\n"[..],
            b"GET https://pypi.org/ HTTP/1.1\r\n\r\n",
            b"CONNECT pypi.org HTTP/1.1\r\n\r\n",
            b"GET http://a:1/ HTTP/1.1\nConnection: keep-alive\n\n",
            b"GET http://a:1/ HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
            b"POST http://a:1/ HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
            b"GET http://a:1/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert!(destination(head).is_err(), "{head:?}");
        }
    }
}
