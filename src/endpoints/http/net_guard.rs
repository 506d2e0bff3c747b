//! Where an http request may go: the `allowed_hosts` list and the SSRF guard.
//!
//! ```text
//!   URL host fixed by the config template ──────────────► allowed_hosts only
//!   URL host chosen by a variable, or a redirect target ─► allowed_hosts, then the guard:
//!        IP literal ──► address check ─┐
//!        name ──► engine's host? ──► resolve (GuardedResolver, at connect) ──► address check
//!                                      └─► refused: loopback, private, link-local (cloud
//!                                          metadata), shared, unspecified, multicast, reserved
//! ```
//!
//! The addresses checked are the ones the connection uses: the guard is the HTTP client's DNS
//! resolver, so a name that resolves to a public address for a check and to 127.0.0.1 for the
//! connection (DNS rebinding) cannot slip through. A host named in `allowed_hosts` opts in: the
//! operator vouches for it, whatever it resolves to. The engine's own host is refused unless
//! `allowed_hosts` names it exactly (a wildcard does not opt the engine in).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which hosts a URL may point at. Empty allows any host (subject to the guard).
#[derive(Debug, Clone, Default)]
pub struct HostAllowList {
    /// Exact host names or IP literals (lowercase, IPv6 without brackets).
    exact: Vec<String>,
    /// Suffixes from `*.example.com` patterns, stored as `.example.com`.
    suffixes: Vec<String>,
}

impl HostAllowList {
    /// Parses patterns; the error is (index, message) of the first bad one.
    pub fn parse(patterns: &[String]) -> Result<Self, (usize, String)> {
        let mut list = Self::default();
        for (i, pattern) in patterns.iter().enumerate() {
            let p = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
            let (rest, wildcard) = match p.strip_prefix("*.") {
                Some(rest) => (rest, true),
                None => (p.as_str(), false),
            };
            let bad = |why: &str| Err((i, format!("`{pattern}` {why}")));
            if rest.is_empty() {
                return bad("is empty");
            }
            let rest = match rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Some(v6) if !wildcard && v6.parse::<Ipv6Addr>().is_ok() => v6,
                _ if rest.contains(['*', '/', ':', '@', ' ', '[', ']']) => {
                    return bad(
                        "must be a host name, an IP address or `*.domain` (no scheme, port, path)",
                    );
                }
                _ => rest,
            };
            if wildcard {
                list.suffixes.push(format!(".{rest}"));
            } else {
                list.exact.push(rest.to_string());
            }
        }
        Ok(list)
    }

    /// Is the list empty (any host allowed)?
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// Is `host` allowed? `*.example.com` matches any subdomain, not `example.com` itself.
    pub fn allows(&self, host: &str) -> bool {
        self.is_empty() || self.names(host)
    }

    /// Does the list name `host` (exactly or by a wildcard)? Naming a host opts it out of the
    /// address checks of the guard.
    pub fn names(&self, host: &str) -> bool {
        let host = normalize(host);
        self.exact.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s))
    }

    /// Does the list name `host` exactly (not through a wildcard)?
    pub fn names_exactly(&self, host: &str) -> bool {
        self.exact.contains(&normalize(host))
    }
}

/// A host as the list stores it: lowercase, no trailing dot, IPv6 without brackets.
fn normalize(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.to_string(),
        None => host,
    }
}

/// Why an address is refused to URLs from variables; `None` for an ordinary public address.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => "unspecified (0.0.0.0/8)",
        (127, _) => "loopback",
        (10, _) | (172, 16..=31) | (192, 168) => "a private network address",
        (169, 254) => "link-local, where cloud metadata services live",
        (100, 64..=127) => "shared address space (100.64.0.0/10, cloud metadata on some clouds)",
        (192, 0) if c == 0 => "reserved for IETF protocols (192.0.0.0/24)",
        (198, 18..=19) => "reserved for benchmarking (198.18.0.0/15)",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    let s = ip.segments();
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::/96),
    // 6to4 (2002:AABB:CCDD::/48). Each reaches the IPv4 address it carries.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    let v4 = match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(embedded(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(embedded(hi, lo)),
        [0x2002, hi, lo, ..] => Some(embedded(hi, lo)),
        _ => None,
    };
    if let Some(v4) = v4 {
        return refusal_v4(v4);
    }
    Some(match s[0] {
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xfc00..=0xfdff => "a private network address (fc00::/7, cloud metadata on some clouds)",
        0xff00..=0xffff => "multicast",
        _ => return None,
    })
}

/// A destination the guard refused, with the address it resolved to when that was the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The host as the URL names it.
    pub host: String,
    /// The refused address, when the host is a name that resolved to it.
    pub addr: Option<IpAddr>,
    /// Why, e.g. `loopback`.
    pub reason: &'static str,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(addr) if addr.to_string() != self.host => write!(
                f,
                "host `{}` resolves to {addr}, {}",
                self.host, self.reason
            ),
            _ => write!(f, "host `{}` is {}", self.host, self.reason),
        }
    }
}

impl std::error::Error for Forbidden {}

/// The SSRF policy of one endpoint: its allow list and the engine's host.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Hosts the operator vouches for.
    pub allow: HostAllowList,
    /// The engine's host (from `camunda.url`), lowercase; refused unless named exactly.
    pub engine_host: Option<String>,
}

impl Guard {
    /// A guard over `allow` that also refuses the host of `engine_url` (if given and parseable).
    pub fn new(allow: HostAllowList, engine_url: Option<&str>) -> Self {
        let engine_host = engine_url
            .and_then(|u| reqwest::Url::parse(u.trim()).ok())
            .and_then(|u| u.host_str().map(normalize));
        Self { allow, engine_host }
    }

    /// Checks a host before connecting: the engine's host, and IP literals (which are never
    /// resolved, so the resolver would not see them).
    pub fn check_host(&self, host: &str) -> Result<(), Forbidden> {
        let name = normalize(host);
        if self.engine_host.as_deref() == Some(name.as_str()) && !self.allow.names_exactly(&name) {
            return Err(Forbidden {
                host: host.to_string(),
                addr: None,
                reason: "the engine's own host (camunda.url)",
            });
        }
        if self.allow.names(&name) {
            return Ok(());
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => match refusal(ip) {
                Some(reason) => Err(Forbidden {
                    host: host.to_string(),
                    addr: Some(ip),
                    reason,
                }),
                None => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }

    /// Checks what a name resolved to: every address must be an ordinary public one, unless
    /// the allow list names the host.
    pub fn check_addrs(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), Forbidden> {
        self.check_host(host)?;
        if self.allow.names(host) {
            return Ok(());
        }
        for addr in addrs {
            if let Some(reason) = refusal(addr.ip()) {
                return Err(Forbidden {
                    host: host.to_string(),
                    addr: Some(addr.ip()),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// The guarded client's DNS resolver: resolves with the system resolver, then refuses the
/// connection if [`Guard::check_addrs`] does. Runs for every connection the client opens.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<Guard>,
}

impl GuardedResolver {
    /// A resolver enforcing `guard`.
    pub fn new(guard: Arc<Guard>) -> Self {
        Self { guard }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            guard.check_addrs(&host, &addrs)?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The first [`Forbidden`] in an error's source chain, if the guard is why it failed.
pub fn forbidden_in(error: &(dyn std::error::Error + 'static)) -> Option<Forbidden> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(f) = e.downcast_ref::<Forbidden>() {
            return Some(f.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "ff02::1",
        ] {
            assert!(refusal(ip(refused)).is_some(), "{refused}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
        ] {
            assert_eq!(refusal(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn allowed_hosts_opt_in_and_the_engine_needs_an_exact_entry() {
        let allow =
            HostAllowList::parse(&["localhost".into(), "*.corp.example".into(), "[::1]".into()])
                .unwrap();
        let guard = Guard::new(allow, Some("http://camunda.corp.example:8080/engine-rest"));
        let local = [SocketAddr::new(ip("127.0.0.1"), 0)];
        assert_eq!(guard.check_addrs("localhost", &local), Ok(()));
        assert_eq!(guard.check_host("::1"), Ok(()));
        assert_eq!(guard.check_addrs("db.corp.example", &local), Ok(()));
        let engine = guard.check_host("CAMUNDA.corp.example").unwrap_err();
        assert!(engine.to_string().contains("engine"), "{engine}");
        let other = guard.check_addrs("evil.example", &local).unwrap_err();
        assert_eq!(
            other.to_string(),
            "host `evil.example` resolves to 127.0.0.1, loopback"
        );
        let exact = Guard::new(
            HostAllowList::parse(&["camunda".into()]).unwrap(),
            Some("http://camunda:8080/engine-rest"),
        );
        assert_eq!(exact.check_host("camunda"), Ok(()));
    }

    #[test]
    fn host_patterns_match_exact_names_and_subdomains() {
        let list =
            HostAllowList::parse(&["API.example.com".into(), "*.corp.example".into()]).unwrap();
        assert!(list.allows("api.example.com"));
        assert!(list.allows("a.b.corp.example"));
        assert!(!list.allows("corp.example"));
        assert!(!list.allows("evilcorp.example"));
        assert!(!list.allows("example.com"));
        assert!(HostAllowList::default().allows("anything.test"));
        assert!(HostAllowList::parse(&["https://x/".into()]).is_err());
        assert!(HostAllowList::parse(&["x:80".into()]).is_err());
    }
}
