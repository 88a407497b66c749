//! Hosts for multi-machine tests: network namespaces of the test's own
//! (iproute2 `ip netns`), one per host, each with a veth into a bridge in a
//! hub namespace and an address of `10.<a>.<b>.<host + 1>/24` chosen inside
//! those namespaces only; all removed on drop. Where namespaces are not
//! permitted (not root, no iproute2, a container without CAP_SYS_ADMIN) the
//! same hosts are all loopback, and [`Hosts::isolated`] says so.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Hosts {
    /// Namespace per host; empty on loopback.
    namespaces: Vec<String>,
    hub: Option<String>,
    addresses: Vec<String>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Hosts {
    /// `count` hosts in namespaces, or on loopback where that is not permitted.
    pub fn new(count: usize) -> Self {
        match Self::namespaced(count) {
            Some(hosts) => hosts,
            None => {
                eprintln!(
                    "network namespaces are not permitted here: the {count} hosts share loopback"
                );
                Self::loopback(count)
            }
        }
    }

    /// `count` hosts on loopback.
    pub fn loopback(count: usize) -> Self {
        Self {
            namespaces: Vec::new(),
            hub: None,
            addresses: vec!["127.0.0.1".into(); count],
        }
    }

    fn namespaced(count: usize) -> Option<Self> {
        let id = std::process::id() % 10_000 * 10 + NEXT.fetch_add(1, Ordering::Relaxed) % 10;
        let hub = format!("lpgpu-{id}-hub");
        if !ip(&["netns", "add", &hub]) {
            return None;
        }
        let mut hosts = Self {
            namespaces: Vec::new(),
            hub: Some(hub.clone()),
            addresses: Vec::new(),
        };
        let subnet = format!("10.{}.{}", 100 + id / 256 % 100, id % 256);
        let ok = ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])
            && ip(&["-n", &hub, "link", "set", "br0", "up"]);
        if !ok {
            return None;
        }
        for host in 0..count {
            let ns = format!("lpgpu-{id}-h{host}");
            let (inside, port) = (format!("lpv{id}h{host}"), format!("lpp{id}h{host}"));
            let address = format!("{subnet}.{}", host + 1);
            let ok = ip(&["netns", "add", &ns]) && {
                hosts.namespaces.push(ns.clone());
                ip(&[
                    "link", "add", &inside, "type", "veth", "peer", "name", &port,
                ]) && ip(&["link", "set", &inside, "netns", &ns])
                    && ip(&["link", "set", &port, "netns", &hub])
                    && ip(&["-n", &hub, "link", "set", &port, "master", "br0"])
                    && ip(&["-n", &hub, "link", "set", &port, "up"])
                    && ip(&[
                        "-n",
                        &ns,
                        "addr",
                        "add",
                        &format!("{address}/24"),
                        "dev",
                        &inside,
                    ])
                    && ip(&["-n", &ns, "link", "set", &inside, "up"])
                    && ip(&["-n", &ns, "link", "set", "lo", "up"])
            };
            if !ok {
                return None;
            }
            hosts.addresses.push(address);
        }
        Some(hosts)
    }

    /// Whether the hosts are separate network namespaces.
    pub fn isolated(&self) -> bool {
        !self.namespaces.is_empty()
    }

    /// The address others reach `host` at.
    pub fn address(&self, host: usize) -> &str {
        &self.addresses[host]
    }

    /// `program` to run on `host`.
    pub fn command(&self, host: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match self.namespaces.get(host) {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// GETs `http://{addr}{path}` from `host` (curl), the body or "".
    pub fn http_get(&self, host: usize, addr: &str, path: &str) -> String {
        self.command(host, "curl")
            .args(["-s", "--max-time", "5", &format!("http://{addr}{path}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth, and the peer
        // with it.
        for ns in self.namespaces.iter().chain(self.hub.iter()) {
            ip(&["netns", "del", ns]);
        }
    }
}
