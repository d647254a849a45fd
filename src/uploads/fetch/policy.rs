//! Which URLs and addresses the URL upload may reach (DESIGN §6): http(s)
//! only, no credentials in the URL, and no address that leads back into
//! the host or its network — loopback, private, link-local, CGNAT,
//! multicast, unspecified, reserved, IPv4-mapped / NAT64 / 6to4 / Teredo
//! IPv6, unique-local, and the cloud metadata names — unless the operator
//! allows the host or range (`uploads.url_fetch.allow`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

use crate::config::{parse_allow_entry, AllowEntry};

/// What the operator allows besides public addresses.
#[derive(Debug, Default)]
pub struct Policy {
    hosts: HashSet<String>,
    nets: Vec<IpNet>,
}

/// Names that are the machine itself or a cloud's metadata service.
const BLOCKED_NAMES: &[&str] = &[
    "localhost",
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

impl Policy {
    /// From `uploads.url_fetch.allow`: CIDRs, bare addresses, or host
    /// names (empty entries are skipped, so `${VAR:-}` may leave it empty).
    pub fn new(allow: &[String]) -> Result<Policy, String> {
        let mut p = Policy::default();
        for entry in allow {
            match parse_allow_entry(entry)? {
                Some(AllowEntry::Net(net)) => p.nets.push(net),
                Some(AllowEntry::Host(h)) => {
                    p.hosts.insert(h);
                }
                None => {}
            }
        }
        Ok(p)
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts
            .contains(&host.trim_end_matches('.').to_ascii_lowercase())
    }

    /// Check what can be checked before any lookup: the scheme, the
    /// credentials, and the host when it is an address or a blocked name.
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "only http and https URLs can be fetched, not {}:",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL may not carry a user name or password".into());
        }
        match url.host() {
            None => Err("the URL has no host".into()),
            Some(Host::Ipv4(ip)) => self.check_addr("", IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_addr("", IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                if self.host_allowed(name) {
                    return Ok(());
                }
                let n = name.trim_end_matches('.').to_ascii_lowercase();
                if BLOCKED_NAMES.contains(&n.as_str()) || n.ends_with(".localhost") {
                    return Err(format!(
                        "{name} is the gateway's own host or a metadata service"
                    ));
                }
                Ok(())
            }
        }
    }

    /// Check one address `host` resolved to (`host` empty for a literal).
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        if (!host.is_empty() && self.host_allowed(host))
            || self.nets.iter().any(|n| n.contains(&ip))
        {
            return Ok(());
        }
        match refused(ip) {
            None => Ok(()),
            Some(why) if host.is_empty() => Err(format!("{ip} is {why}")),
            Some(why) => Err(format!("{host} resolves to {ip}, which is {why}")),
        }
    }
}

/// Why an address may not be fetched from, if it may not.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "unspecified (0.0.0.0/8)",
        [127, ..] => "a loopback address",
        [10, ..] => "a private address (RFC 1918)",
        [172, b, ..] if (16..32).contains(&b) => "a private address (RFC 1918)",
        [192, 168, ..] => "a private address (RFC 1918)",
        [169, 254, ..] => "link-local (and the cloud metadata service)",
        [100, b, ..] if (64..128).contains(&b) => "shared address space (CGNAT, 100.64.0.0/10)",
        [192, 0, 0, _] => "reserved for protocol assignments (192.0.0.0/24)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "reserved for documentation",
        [198, b, ..] if b == 18 || b == 19 => "reserved for benchmarking (198.18.0.0/15)",
        [a, ..] if (224..240).contains(&a) => "a multicast address",
        [a, ..] if a >= 240 => "reserved (240.0.0.0/4 or broadcast)",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    Some(match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => "an IPv4-mapped IPv6 address",
        [0, 0, 0, 0, 0, 0, ..] => "an IPv4-compatible IPv6 address",
        [0x64, 0xff9b, ..] => "a NAT64 address (64:ff9b::/96)",
        [0x2002, ..] => "a 6to4 address (2002::/16)",
        [0x2001, 0, ..] => "a Teredo address (2001::/32)",
        [0x2001, 0xdb8, ..] => "reserved for documentation",
        [a, ..] if a & 0xfe00 == 0xfc00 => "a unique local address (fc00::/7)",
        [a, ..] if a & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [a, ..] if a & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [a, ..] if a & 0xff00 == 0xff00 => "a multicast address",
        [0x100, 0, 0, 0, ..] => "a discard-only address (100::/64)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_refused(p: &Policy, u: &str) -> bool {
        p.check_url(&Url::parse(u).unwrap()).is_err()
    }

    #[test]
    fn literal_forms_parse_to_the_address_they_name() {
        let p = Policy::default();
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://127.1/",
            "http://0/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.100.100.200/",
            "http://10.0.0.1/",
            "http://172.31.255.255/",
            "http://192.168.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://metadata.google.internal/",
            "http://user:pw@example.com/",
            "ftp://example.com/",
            "file:///etc/passwd",
        ] {
            assert!(url_refused(&p, u), "{u} must be refused");
        }
        for u in [
            "http://93.184.215.14/",
            "https://example.com/x.jpg",
            "http://[2606:4700::1]/",
        ] {
            assert!(!url_refused(&p, u), "{u} is public");
        }
    }

    #[test]
    fn the_allow_list_exempts_hosts_and_ranges() {
        let p = Policy::new(&[
            "files.internal".into(),
            "10.9.0.0/16".into(),
            "127.0.0.5".into(),
        ])
        .unwrap();
        assert!(p.check_addr("", "10.9.3.4".parse().unwrap()).is_ok());
        assert!(p.check_addr("", "10.8.3.4".parse().unwrap()).is_err());
        assert!(p
            .check_addr("files.internal", "10.1.1.1".parse().unwrap())
            .is_ok());
        assert!(p.check_addr("", "127.0.0.5".parse().unwrap()).is_ok());
        let e = p
            .check_addr("evil.example", "127.0.0.1".parse().unwrap())
            .unwrap_err();
        assert!(e.contains("evil.example resolves to 127.0.0.1"), "{e}");
        assert!(Policy::new(&["not a host!".into()]).is_err());
    }
}
