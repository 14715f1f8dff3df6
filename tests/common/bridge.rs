//! Where containers on Docker's default bridge reach this host.
//!
//! The bridge's IPAM Gateway is not a reliable source: a freshly started dockerd 20.10
//! reports only `{"Subnet": "172.17.0.0/16"}` there. The host side of the bridge is the
//! bridge interface itself (docker0 unless the daemon was told otherwise), whose IPv4
//! address the kernel always knows, so that is read first; the IPAM Gateway remains a
//! fallback for a daemon whose bridge interface is not visible from here.

use std::net::Ipv4Addr;
use std::process::Command;

use serde_json::Value;

const DEFAULT_BRIDGE_INTERFACE: &str = "docker0";

/// The IPv4 address of this host on Docker's default bridge.
pub fn bridge_host() -> String {
    let out = Command::new("docker")
        .args(["network", "inspect", "bridge", "--format", "{{json .}}"])
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker network inspect bridge: {out:?}"
    );
    let network: Value = serde_json::from_slice(&out.stdout).expect("network inspect JSON");
    let interface = network["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap_or(DEFAULT_BRIDGE_INTERFACE);
    if let Some(ip) = interface_ipv4(interface) {
        return ip.to_string();
    }
    let gateway = network["IPAM"]["Config"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|config| config["Gateway"].as_str())
        .find(|gateway| gateway.parse::<Ipv4Addr>().is_ok());
    match gateway {
        Some(gateway) => gateway.to_string(),
        None => panic!("no IPv4 address on {interface} and no IPAM gateway: {network}"),
    }
}

fn interface_ipv4(interface: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|entry| entry.interface_name == interface)
        .find_map(|entry| Some(entry.address?.as_sockaddr_in()?.ip()))
}
