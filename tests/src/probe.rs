//! A small crafted DHCP client for suites that need many leases quickly
//! (crash consistency, firewall): DORA, INIT-REBOOT and RELEASE over the
//! crafted raw port, a reader of the lease file with its journal replayed,
//! and a seedable generator for reproducible random runs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use isodhcp::wire::Mac;
use isodhcp::wire::dhcp::{BOOTREPLY, BOOTREQUEST, FLAG_BROADCAST, Message};
use isodhcp::wire::frame::{self, Addressing, DHCP_CLIENT_PORT, DHCP_SERVER_PORT};
use isodhcp::wire::options::{self, MessageType};
use serde_json::Value;

use crate::crafted::RawPort;
use crate::lab::SERVER_IP;
use crate::netns::Netns;

/// A locally administered MAC derived from `seed` and `n` (never multicast).
pub fn test_mac(seed: u16, n: u32) -> Mac {
    let s = seed.to_be_bytes();
    let b = n.to_be_bytes();
    Mac([0x02, s[0] | 0x40, s[1], b[1], b[2], b[3]])
}

/// A reply received for one of our requests.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: MessageType,
    pub yiaddr: Ipv4Addr,
    pub server_id: Option<Ipv4Addr>,
    pub msg: Message,
}

/// DHCP over an AF_PACKET socket in a client namespace: frames with any
/// source MAC (chaddr = Ethernet source), broadcast flag set so replies are
/// broadcast. One probe per thread.
pub struct DhcpProbe {
    port: RawPort,
    xid: u32,
    /// Per-attempt wait for a reply.
    pub reply_timeout: Duration,
}

impl DhcpProbe {
    /// Opens a raw port on `ifname` inside `ns`.
    pub fn open(ns: &Netns, ifname: &str) -> Result<DhcpProbe> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1)
            ^ std::process::id().rotate_left(16);
        Ok(DhcpProbe {
            port: RawPort::open(ns, ifname)?,
            xid: seed | 1,
            reply_timeout: Duration::from_millis(700),
        })
    }

    fn next_xid(&mut self) -> u32 {
        // xorshift32: distinct transaction ids.
        let mut x = self.xid;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.xid = x;
        x
    }

    /// Builds a client frame.
    pub fn frame(
        kind: MessageType,
        mac: Mac,
        xid: u32,
        ciaddr: Ipv4Addr,
        opts: &[(u8, Vec<u8>)],
    ) -> Vec<u8> {
        let mut m = Message {
            op: BOOTREQUEST,
            xid,
            flags: FLAG_BROADCAST,
            ciaddr,
            ..Message::default()
        };
        m.chaddr[..6].copy_from_slice(&mac.0);
        m.options.set(options::MESSAGE_TYPE, vec![kind as u8]);
        for (c, v) in opts {
            m.options.set(*c, v.clone());
        }
        m.options
            .set(options::PARAM_REQUEST_LIST, vec![1, 3, 6, 51, 54, 121]);
        let payload = m.emit(None, 0).expect("client message encodes");
        let src_ip = if ciaddr.is_unspecified() {
            Ipv4Addr::UNSPECIFIED
        } else {
            ciaddr
        };
        frame::build(
            &Addressing {
                src_mac: mac,
                dst_mac: Mac::BROADCAST,
                src_ip,
                dst_ip: Ipv4Addr::BROADCAST,
                src_port: DHCP_CLIENT_PORT,
                dst_port: DHCP_SERVER_PORT,
            },
            &payload,
        )
        .expect("frame builds")
    }

    pub fn send(&self, frame: &[u8]) -> Result<()> {
        self.port.send(frame)
    }

    /// Waits (until `deadline`) for a server reply with `xid` for `mac`.
    pub fn recv_reply(&self, mac: Mac, xid: u32, deadline: Instant) -> Result<Option<Reply>> {
        // Bounded: each frame read consumes one round; the deadline ends it.
        for _ in 0..10_000 {
            let Some(f) = self.port.recv(deadline)? else {
                return Ok(None);
            };
            let Ok(udp) = frame::parse(&f) else {
                continue;
            };
            if udp.src_port != DHCP_SERVER_PORT || udp.dst_port != DHCP_CLIENT_PORT {
                continue;
            }
            let Ok(msg) = Message::parse(udp.payload) else {
                continue;
            };
            if msg.op != BOOTREPLY || msg.xid != xid || msg.client_mac() != mac {
                continue;
            }
            let Some(kind) = msg.options.message_type() else {
                continue;
            };
            return Ok(Some(Reply {
                kind,
                yiaddr: msg.yiaddr,
                server_id: msg.options.get_ip(options::SERVER_ID),
                msg,
            }));
        }
        Ok(None)
    }

    /// Sends `frame_of(xid)` up to `tries` times until a reply arrives.
    fn exchange(
        &mut self,
        mac: Mac,
        tries: usize,
        frame_of: impl Fn(u32) -> Vec<u8>,
    ) -> Result<Option<Reply>> {
        let xid = self.next_xid();
        let f = frame_of(xid);
        for _ in 0..tries {
            self.send(&f)?;
            if let Some(r) = self.recv_reply(mac, xid, Instant::now() + self.reply_timeout)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// DISCOVER → OFFER (up to `tries` DISCOVERs).
    pub fn discover(
        &mut self,
        mac: Mac,
        tries: usize,
        extra: &[(u8, Vec<u8>)],
    ) -> Result<Option<Reply>> {
        let extra = extra.to_vec();
        self.exchange(mac, tries, move |xid| {
            DhcpProbe::frame(
                MessageType::Discover,
                mac,
                xid,
                Ipv4Addr::UNSPECIFIED,
                &extra,
            )
        })
    }

    /// REQUEST in SELECTING state for `ip` from server `sid`.
    pub fn request_selecting(
        &mut self,
        mac: Mac,
        ip: Ipv4Addr,
        sid: Ipv4Addr,
        tries: usize,
    ) -> Result<Option<Reply>> {
        self.exchange(mac, tries, move |xid| {
            DhcpProbe::frame(
                MessageType::Request,
                mac,
                xid,
                Ipv4Addr::UNSPECIFIED,
                &[
                    (options::REQUESTED_IP, ip.octets().to_vec()),
                    (options::SERVER_ID, sid.octets().to_vec()),
                ],
            )
        })
    }

    /// REQUEST in INIT-REBOOT state (option 50 only, ciaddr 0).
    pub fn request_init_reboot(
        &mut self,
        mac: Mac,
        ip: Ipv4Addr,
        tries: usize,
    ) -> Result<Option<Reply>> {
        self.exchange(mac, tries, move |xid| {
            DhcpProbe::frame(
                MessageType::Request,
                mac,
                xid,
                Ipv4Addr::UNSPECIFIED,
                &[(options::REQUESTED_IP, ip.octets().to_vec())],
            )
        })
    }

    /// Full DORA; returns the ACKed address, or an error naming what failed.
    pub fn dora(&mut self, mac: Mac, tries: usize) -> Result<Ipv4Addr> {
        let offer = self
            .discover(mac, tries, &[])?
            .ok_or_else(|| anyhow!("{mac}: no OFFER"))?;
        if offer.kind != MessageType::Offer {
            bail!("{mac}: DISCOVER answered with {:?}", offer.kind);
        }
        let sid = offer.server_id.unwrap_or(SERVER_IP);
        let ack = self
            .request_selecting(mac, offer.yiaddr, sid, tries)?
            .ok_or_else(|| anyhow!("{mac}: no answer to REQUEST for {}", offer.yiaddr))?;
        if ack.kind != MessageType::Ack {
            bail!(
                "{mac}: REQUEST for {} answered with {:?}",
                offer.yiaddr,
                ack.kind
            );
        }
        if ack.yiaddr != offer.yiaddr {
            bail!("{mac}: offered {} but ACKed {}", offer.yiaddr, ack.yiaddr);
        }
        Ok(ack.yiaddr)
    }

    /// RELEASE of `ip` by `mac` (no reply expected).
    pub fn release(&mut self, mac: Mac, ip: Ipv4Addr) -> Result<()> {
        let xid = self.next_xid();
        let f = DhcpProbe::frame(
            MessageType::Release,
            mac,
            xid,
            ip,
            &[(options::SERVER_ID, SERVER_IP.octets().to_vec())],
        );
        self.send(&f)
    }
}

// ---------------------------------------------------------------------------
// Lease file
// ---------------------------------------------------------------------------

/// The leases on disk: the lease file (if any) with `<file>.journal`
/// replayed onto it (`put`/`del` lines), MAC (lower case) → IP. A torn last
/// journal line is ignored.
pub fn leases_on_disk(file: &Path) -> Result<BTreeMap<String, Ipv4Addr>> {
    let mut out = BTreeMap::new();
    match std::fs::read(file) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            for (mac, l) in v
                .get("leases")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(ip) = l
                    .get("ip")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                {
                    out.insert(mac.to_ascii_lowercase(), ip);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    let jpath = journal_path(file);
    if let Ok(text) = std::fs::read(&jpath) {
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            if let (Some(mac), Some(ip)) = (
                v.get("put").and_then(Value::as_str),
                v.pointer("/lease/ip").and_then(Value::as_str),
            ) {
                if let Ok(ip) = ip.parse() {
                    out.insert(mac.to_ascii_lowercase(), ip);
                }
            } else if let Some(mac) = v.get("del").and_then(Value::as_str) {
                out.remove(&mac.to_ascii_lowercase());
            }
        }
    }
    Ok(out)
}

/// `<file>.journal`.
pub fn journal_path(file: &Path) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}.journal", file.display()))
}

/// Small deterministic PRNG (xorshift64*) for randomised tests; seed printed
/// by the caller so a failure can be replayed (`ISODHCP_TEST_SEED`).
pub struct Rng(u64);

impl Rng {
    /// Seed from `ISODHCP_TEST_SEED`, else from the clock.
    pub fn from_env() -> (Rng, u64) {
        let seed = std::env::var("ISODHCP_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(42)
            });
        (Rng(seed.max(1)), seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}
