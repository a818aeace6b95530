//! The command line as clap parses it: every option of isodhcp(8) with its
//! name, short form and default. Each value is checked on its own here (see
//! [`super::values`]); what needs several values together is checked by
//! [`crate::daemon::Config::check`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgAction, Parser};

use super::values::{self, Sections};
use crate::config::{Given, Isolation, XdpMode};
use crate::engine::config::{CustomOption, StaticEntry};
use crate::system::nft::SetRef;
use crate::wire::Mac;
use crate::wire::cidr::Cidr;

#[derive(Parser, Debug)]
#[command(
    name = "isodhcp",
    version,
    about = "Unnumbered DHCP server with client isolation"
)]
pub struct Args {
    /// Interface to serve.
    #[arg(short = 'i', long, default_value = "guest", value_parser = values::interface)]
    pub interface: String,
    /// Router address on the interface (auto-detected if omitted).
    #[arg(short = 's', long = "server-ip", value_parser = values::server_ip)]
    pub server_ip: Option<Ipv4Addr>,
    /// Address pool CIDR (auto-detected if omitted).
    #[arg(short = 'p', long, value_parser = values::pool)]
    pub pool: Option<Cidr>,
    /// DNS server(s) offered to clients; repeatable or comma-separated, up to 3.
    #[arg(short = 'd', long, value_parser = values::dns)]
    pub dns: Vec<Given<Vec<Ipv4Addr>>>,
    /// Lease time in seconds (at least 60).
    #[arg(short = 't', long = "lease-time", default_value = "3600", value_parser = values::lease_time)]
    pub lease_time: u32,
    /// JSON lease file (default dhcp_leases_<IFACE>.json).
    #[arg(short = 'f', long = "lease-file")]
    pub lease_file: Option<PathBuf>,
    /// MAC=IP[,hostname][,compat][,masquerade][,playground]
    #[arg(long = "static", value_parser = values::static_entry)]
    pub statics: Vec<Given<StaticEntry>>,
    #[arg(long = "compat-mac", value_parser = values::mac("--compat-mac"))]
    pub compat_mac: Vec<Mac>,
    #[arg(long = "compat-oui", value_parser = values::oui("--compat-oui"))]
    pub compat_oui: Vec<[u8; 3]>,
    #[arg(long = "compat-vendor")]
    pub compat_vendor: Vec<String>,
    #[arg(long = "masquerade-mac", value_parser = values::mac("--masquerade-mac"))]
    pub masquerade_mac: Vec<Mac>,
    #[arg(long = "masquerade-oui", value_parser = values::oui("--masquerade-oui"))]
    pub masquerade_oui: Vec<[u8; 3]>,
    #[arg(long = "masquerade-vendor")]
    pub masquerade_vendor: Vec<String>,
    #[arg(long = "playground-size", value_parser = values::playground_size)]
    pub playground_size: Option<Given<u32>>,
    #[arg(long = "playground-mac", value_parser = values::mac("--playground-mac"))]
    pub playground_mac: Vec<Mac>,
    #[arg(long = "playground-oui", value_parser = values::oui("--playground-oui"))]
    pub playground_oui: Vec<[u8; 3]>,
    #[arg(long = "playground-vendor")]
    pub playground_vendor: Vec<String>,
    #[arg(long = "nft-set-isolated", value_parser = values::set_ref("--nft-set-isolated"))]
    pub nft_set_isolated: Option<SetRef>,
    #[arg(long = "nft-set-compat", value_parser = values::set_ref("--nft-set-compat"))]
    pub nft_set_compat: Option<SetRef>,
    #[arg(long = "nft-set-gateway", value_parser = values::set_ref("--nft-set-gateway"))]
    pub nft_set_gateway: Option<SetRef>,
    #[arg(long = "nft-set-network", value_parser = values::set_ref("--nft-set-network"))]
    pub nft_set_network: Option<SetRef>,
    #[arg(long = "nft-set-broadcast", value_parser = values::set_ref("--nft-set-broadcast"))]
    pub nft_set_broadcast: Option<SetRef>,
    #[arg(long = "nft-set-subnet", value_parser = values::set_ref("--nft-set-subnet"))]
    pub nft_set_subnet: Option<SetRef>,
    #[arg(long = "nft-set-playground", value_parser = values::set_ref("--nft-set-playground"))]
    pub nft_set_playground: Option<SetRef>,
    #[arg(
        long = "nft-set-playground-subnet",
        value_parser = values::set_ref("--nft-set-playground-subnet")
    )]
    pub nft_set_playground_subnet: Option<SetRef>,
    /// Executable run on every lease change: add|del MAC IP [HOSTNAME].
    #[arg(long = "hook-file")]
    pub hook_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "system")]
    pub isolation: Isolation,
    /// CODE,TYPE,VALUE with TYPE one of ip, ips, str, int8, int16, int32, hex.
    #[arg(long = "dhcp-option", value_parser = values::parse_dhcp_option)]
    pub dhcp_option: Vec<CustomOption>,
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp: XdpMode,
    /// Per-client-MAC DHCP frames per second.
    #[arg(long = "rate-limit", default_value = "2", value_parser = values::rate("--rate-limit"))]
    pub rate_limit: u32,
    #[arg(long = "rate-burst", default_value = "5", value_parser = values::rate("--rate-burst"))]
    pub rate_burst: u32,
    #[arg(
        long = "global-rate-limit",
        default_value = "2000",
        value_parser = values::rate("--global-rate-limit")
    )]
    pub global_rate_limit: u32,
    #[arg(
        long = "new-client-rate",
        default_value = "100",
        value_parser = values::rate("--new-client-rate")
    )]
    pub new_client_rate: u32,
    /// Addresses set aside for the XDP OFFER responder (0: responder off).
    #[arg(
        long = "xdp-offer-stripe",
        default_value = "256",
        value_parser = values::stripe
    )]
    pub xdp_offer_stripe: u32,
    /// Broadcast OFFERs per second the XDP responder sends.
    #[arg(
        long = "xdp-offer-rate",
        default_value = "1000",
        value_parser = values::rate("--xdp-offer-rate")
    )]
    pub xdp_offer_rate: u32,
    /// REQUESTs for an XDP OFFER's address admitted per second.
    #[arg(
        long = "cookie-rate",
        default_value = "100",
        value_parser = values::rate("--cookie-rate")
    )]
    pub cookie_rate: u32,
    #[arg(long = "deny-mac", value_parser = values::mac("--deny-mac"))]
    pub deny_mac: Vec<Mac>,
    #[arg(long = "trust-mac", value_parser = values::mac("--trust-mac"))]
    pub trust_mac: Vec<Mac>,
    /// bpffs folder for pins (default /sys/fs/bpf/isodhcp/<IFACE>).
    #[arg(long = "bpf-pin-dir")]
    pub bpf_pin_dir: Option<PathBuf>,
    #[arg(long = "metrics-listen", value_parser = values::metrics_listen)]
    pub metrics_listen: Option<SocketAddr>,
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    #[arg(short = 'q', long)]
    pub quiet: bool,
    // Diagnostics client flags (isodhcp(8) DIAGNOSTICS).
    #[arg(long)]
    pub status: bool,
    #[arg(long, visible_alias = "check")]
    pub verify: bool,
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "leases,subnets",
        value_parser = values::dump_sections
    )]
    pub dump: Option<Sections>,
    #[arg(long)]
    pub show: Option<String>,
    #[arg(long)]
    pub config: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub redact: bool,
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[arg(long, value_parser = values::mac("--block"))]
    pub block: Option<Mac>,
    #[arg(long = "for", value_parser = values::block_for)]
    pub block_for: Option<Given<u64>>,
    #[arg(long, value_parser = values::mac("--unblock"))]
    pub unblock: Option<Mac>,
}
