//! Runs the isodhcp XDP program on byte frames through `BPF_PROG_TEST_RUN`.
//!
//! [`XdpRun::load`] loads the object built by `cargo xtask build-ebpf` (path
//! from `ISODHCP_EBPF_OBJ`, else `<workspace>/target/bpfel-unknown-none/
//! release/isodhcp-ebpf`) with fresh, unpinned maps, so every `XdpRun` starts
//! with empty deny/trust/known/fresh maps, full buckets and `limits.abi == 0`
//! (fail-open) until [`XdpRun::set_limits`]. Nothing is attached to any
//! interface. Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON).
//!
//! The kernel runs the program with its real monotonic clock, so buckets
//! refill in real time between runs: design tests so that refill during the
//! test cannot flip a result (low rates, bursts spent back to back).

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader, TestRun, TestRunOptions};
use isodhcp::wire::Mac;
use isodhcp::wire::dhcp::{BOOTREQUEST, HTYPE_ETHERNET, Message};
use isodhcp::wire::frame::{Addressing, build};
use isodhcp::wire::options::MESSAGE_TYPE;
use isodhcp_common::{
    ABI_VERSION, BUCKETS_MAP, Bucket, CLASSIFIED_MAP, COUNTER_COUNT, COUNTER_NAMES, COUNTERS_MAP,
    Counters, DENY_MAP, FRESH_MAP, KNOWN_MAP, LIMITS_MAP, Limits, OFFER_CFG_MAP, OfferCfg,
    STRIPE_MAP, StripeSlot, TRUST_MAP, XDP_PROGRAM, mac_key,
};

/// XDP return codes (`enum xdp_action`).
pub mod action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;

    /// Name of an action, for assertion messages.
    pub fn name(a: u32) -> &'static str {
        match a {
            ABORTED => "XDP_ABORTED",
            DROP => "XDP_DROP",
            PASS => "XDP_PASS",
            TX => "XDP_TX",
            REDIRECT => "XDP_REDIRECT",
            _ => "?",
        }
    }
}

/// Result of one run of the program on one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// XDP action returned by the program (see [`action`]).
    pub action: u32,
    /// Counters of this run only (after minus before, summed over CPUs).
    pub counters: Counters,
    /// The frame as the program left it (`data_out` of the test run).
    pub frame_out: Vec<u8>,
}

impl Outcome {
    /// The non-zero counters as `name=value`, for assertion messages.
    pub fn counters_str(&self) -> String {
        counters_str(&self.counters)
    }
}

/// `name=value` of every non-zero counter.
pub fn counters_str(c: &Counters) -> String {
    let v: Vec<String> = c
        .named()
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    format!("{{{}}}", v.join(", "))
}

/// A DHCPDISCOVER from `mac`, broadcast, as a client sends it.
pub fn discover(mac: [u8; 6]) -> Vec<u8> {
    let mut m = Message {
        op: BOOTREQUEST,
        htype: HTYPE_ETHERNET,
        hlen: 6,
        xid: 0x1234_5678,
        ..Message::default()
    };
    m.chaddr[..6].copy_from_slice(&mac);
    m.options.set(MESSAGE_TYPE, vec![1]);
    let payload = m.emit(None, 0).expect("emit DISCOVER");
    udp(mac, 68, 67, &payload)
}

/// A broadcast IPv4/UDP frame from `mac` (source address 0.0.0.0).
pub fn udp(mac: [u8; 6], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    build(
        &Addressing {
            src_mac: Mac(mac),
            dst_mac: Mac::BROADCAST,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: sport,
            dst_port: dport,
        },
        payload,
    )
    .expect("build frame")
}

/// Limits as (rate, burst) per MAC, global and for new clients.
pub fn limits(mac: (u32, u32), global: (u32, u32), new: (u32, u32)) -> Limits {
    Limits {
        mac_rate: mac.0,
        mac_burst: mac.1,
        global_rate: global.0,
        global_burst: global.1,
        new_rate: new.0,
        new_burst: new.1,
        ..Limits::default()
    }
}

/// Asserts the action and the counters of one run, and that the frame
/// landed in exactly one class and (if DHCP) exactly one outcome.
#[track_caller]
pub fn expect(o: &Outcome, act: u32, counters: &[(&str, u64)], what: &str) {
    let want = counters_with(counters);
    assert!(
        o.action == act && o.counters == want,
        "{what}: got {} {}, want {} {}",
        action::name(o.action),
        o.counters_str(),
        action::name(act),
        counters_str(&want),
    );
    // Invariant: every DHCP frame lands in exactly one drop_*/redirect/pass_stack.
    let c = &o.counters;
    let outcomes = c.drop_ihl
        + c.drop_fragment
        + c.drop_udp_len
        + c.drop_bootp_short
        + c.drop_not_request
        + c.drop_chaddr_spoof
        + c.drop_denied
        + c.drop_known_rate
        + c.drop_new_budget
        + c.drop_fresh_rate
        + c.drop_global
        + c.drop_offer_broken
        + c.redirect
        + c.pass_stack
        + c.tx_offer;
    assert_eq!(c.dhcp, outcomes, "{what}: dhcp != sum of outcomes");
    assert_eq!(
        c.dhcp + c.non_dhcp + c.pass_vlan + c.drop_vlan_depth,
        1,
        "{what}: one frame, one class"
    );
}

/// `frame` with `tags` (TPID, TCI) inserted after the MAC addresses,
/// outermost first.
pub fn with_tags(mut frame: Vec<u8>, tags: &[(u16, u16)]) -> Vec<u8> {
    for (i, (tpid, tci)) in tags.iter().enumerate() {
        let [a, b] = tpid.to_be_bytes();
        let [c, d] = tci.to_be_bytes();
        frame.splice(12 + 4 * i..12 + 4 * i, [a, b, c, d]);
    }
    frame
}

/// `a - b` field by field (`a` taken after `b`).
pub fn counters_sub(a: &Counters, b: &Counters) -> Counters {
    let (av, bv) = (a.values(), b.values());
    Counters::from_values(std::array::from_fn(|i| av[i].wrapping_sub(bv[i])))
}

/// Counters with the named fields set, e.g. `counters_with(&[("dhcp", 1)])`.
/// Panics on an unknown name.
pub fn counters_with(fields: &[(&str, u64)]) -> Counters {
    let mut v = [0u64; COUNTER_COUNT];
    for (name, n) in fields {
        let i = COUNTER_NAMES
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no counter named {name}"));
        v[i] = *n;
    }
    Counters::from_values(v)
}

/// Path of the XDP object: `ISODHCP_EBPF_OBJ`, else the xtask build output.
pub fn object_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ISODHCP_EBPF_OBJ").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives in the workspace")
        .join("target/bpfel-unknown-none/release/isodhcp-ebpf")
}

/// `CLOCK_MONOTONIC` now, in ns: the clock of `bpf_ktime_get_ns` and of the
/// deny map's expiries.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The loaded program and its (private, unpinned) maps.
pub struct XdpRun {
    ebpf: Ebpf,
    path: PathBuf,
}

impl XdpRun {
    /// Loads the object at [`object_path`]; fails clearly without root or
    /// without a built object, and with the verifier log on rejection.
    pub fn load() -> Result<XdpRun> {
        XdpRun::load_object(&object_path())
    }

    /// [`XdpRun::load`] for the object at `path`.
    pub fn load_object(path: &Path) -> Result<XdpRun> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            bail!(
                "XDP verdict tests load BPF programs and need root; euid is {euid}. \
                 Run them as root (e.g. `sudo -E cargo test -p isodhcp-tests --release --test xdp_verdicts`)."
            );
        }
        let path = path.to_path_buf();
        if !path.is_file() {
            bail!(
                "XDP object {} not found: build it with `cargo xtask build-ebpf` \
                 or point ISODHCP_EBPF_OBJ at it",
                path.display()
            );
        }
        let mut ebpf = EbpfLoader::new()
            .load_file(&path)
            .with_context(|| format!("parsing/creating maps of {}", path.display()))?;
        let prog: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM)
            .with_context(|| format!("program {XDP_PROGRAM} missing from {}", path.display()))?
            .try_into()
            .context("program is not XDP")?;
        // The error's Display chain includes the verifier log.
        prog.load()
            .map_err(|e| anyhow::anyhow!("verifier rejected {XDP_PROGRAM}: {e:#?}"))?;
        Ok(XdpRun { ebpf, path })
    }

    /// Path of the loaded object.
    pub fn object(&self) -> &Path {
        &self.path
    }

    /// Whether the object has a map called `name`.
    pub fn has_map(&self, name: &str) -> bool {
        self.ebpf.map(name).is_some()
    }

    /// Takes the ring buffer `name` and returns how many records wait in it.
    pub fn ring_records(&mut self, name: &str) -> Result<usize> {
        let map = self
            .ebpf
            .take_map(name)
            .with_context(|| format!("no map {name}"))?;
        let mut ring =
            RingBuf::try_from(map).with_context(|| format!("{name} is no ring buffer"))?;
        let mut n = 0;
        while ring.next().is_some() {
            n += 1;
        }
        Ok(n)
    }

    fn prog(&self) -> Result<&Xdp> {
        let p = self.ebpf.program(XDP_PROGRAM).context("program missing")?;
        p.try_into().context("program is not XDP")
    }

    /// Writes the admission limits with this build's ABI version.
    pub fn set_limits(&mut self, mut l: Limits) -> Result<()> {
        l.abi = ABI_VERSION;
        self.set_limits_raw(l)
    }

    /// Writes `limits` exactly as given (e.g. a foreign or zero `abi`).
    pub fn set_limits_raw(&mut self, l: Limits) -> Result<()> {
        let mut m: Array<&mut MapData, Limits> =
            Array::try_from(self.ebpf.map_mut(LIMITS_MAP).context("limits map")?)?;
        m.set(0, l, 0).context("writing limits")?;
        Ok(())
    }

    /// Denies `mac` until `until_ns` (`CLOCK_MONOTONIC`; 0 = for ever).
    pub fn deny(&mut self, mac: [u8; 6], until_ns: u64) -> Result<()> {
        let mut m: HashMap<&mut MapData, u64, u64> =
            HashMap::try_from(self.ebpf.map_mut(DENY_MAP).context("deny map")?)?;
        m.insert(mac_key(mac), until_ns, 0)
            .context("writing deny")?;
        Ok(())
    }

    pub fn trust(&mut self, mac: [u8; 6]) -> Result<()> {
        let mut m: HashMap<&mut MapData, u64, u32> =
            HashMap::try_from(self.ebpf.map_mut(TRUST_MAP).context("trust map")?)?;
        m.insert(mac_key(mac), 1, 0).context("writing trust")?;
        Ok(())
    }

    /// Makes `mac` a known client with a full (never used) per-MAC bucket.
    pub fn known(&mut self, mac: [u8; 6]) -> Result<()> {
        let mut m: HashMap<&mut MapData, u64, Bucket> =
            HashMap::try_from(self.ebpf.map_mut(KNOWN_MAP).context("known map")?)?;
        m.insert(mac_key(mac), Bucket::default(), 0)
            .context("writing known")?;
        Ok(())
    }

    /// Writes the OFFER responder's configuration (turns it on).
    pub fn set_offer(&mut self, cfg: &OfferCfg) -> Result<()> {
        let mut m: Array<&mut MapData, OfferCfg> =
            Array::try_from(self.ebpf.map_mut(OFFER_CFG_MAP).context("offer_cfg map")?)?;
        m.set(0, *cfg, 0).context("writing offer_cfg")
    }

    /// Writes slot `idx` of the stripe.
    pub fn set_stripe(&mut self, idx: u32, slot: StripeSlot) -> Result<()> {
        let mut m: Array<&mut MapData, StripeSlot> =
            Array::try_from(self.ebpf.map_mut(STRIPE_MAP).context("stripe map")?)?;
        m.set(idx, slot, 0).context("writing stripe")
    }

    /// Marks a MAC or OUI key as classified (compat/playground rule).
    pub fn classify(&mut self, key: u64) -> Result<()> {
        let mut m: HashMap<&mut MapData, u64, u32> = HashMap::try_from(
            self.ebpf
                .map_mut(CLASSIFIED_MAP)
                .context("classified map")?,
        )?;
        m.insert(key, 1, 0).context("writing classified")
    }

    /// The LRU bucket of an unknown MAC, if it has one.
    pub fn fresh(&self, mac: [u8; 6]) -> Result<Option<Bucket>> {
        let m: HashMap<&MapData, u64, Bucket> =
            HashMap::try_from(self.ebpf.map(FRESH_MAP).context("fresh map")?)?;
        match m.get(&mac_key(mac), 0) {
            Ok(b) => Ok(Some(b)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("reading fresh"),
        }
    }

    /// Entry `idx` of the shared `buckets` array.
    pub fn bucket(&self, idx: u32) -> Result<Bucket> {
        let m: Array<&MapData, Bucket> =
            Array::try_from(self.ebpf.map(BUCKETS_MAP).context("buckets map")?)?;
        Ok(m.get(&idx, 0)?)
    }

    /// Overwrites entry `idx` of the shared `buckets` array (to stage what
    /// another CPU would have written).
    pub fn set_bucket(&mut self, idx: u32, b: Bucket) -> Result<()> {
        let mut m: Array<&mut MapData, Bucket> =
            Array::try_from(self.ebpf.map_mut(BUCKETS_MAP).context("buckets map")?)?;
        m.set(idx, b, 0).context("writing buckets")
    }

    /// Counters summed over all CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let m: PerCpuArray<&MapData, Counters> =
            PerCpuArray::try_from(self.ebpf.map(COUNTERS_MAP).context("counters map")?)?;
        let mut sum = Counters::default();
        for c in m.get(&0, 0).context("reading counters")?.iter() {
            sum.add(c);
        }
        Ok(sum)
    }

    /// Pins the counters map at `path` (on a bpffs), as the daemon's loader does.
    pub fn pin_counters(&self, path: &Path) -> Result<()> {
        let m = self.ebpf.map(COUNTERS_MAP).context("counters map")?;
        m.pin(path)
            .with_context(|| format!("pinning counters at {}", path.display()))?;
        Ok(())
    }

    /// Runs the program once on `frame`.
    pub fn run(&self, frame: &[u8]) -> Result<Outcome> {
        let before = self.counters()?;
        let mut out = vec![0u8; frame.len() + 512];
        let r = self
            .prog()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat: 1,
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        out.truncate(r.data_size_out as usize);
        let after = self.counters()?;
        Ok(Outcome {
            action: r.return_value,
            counters: counters_sub(&after, &before),
            frame_out: out,
        })
    }

    /// Runs the program `repeat` times on `frame` inside the kernel; returns
    /// the last action and the mean time per run.
    pub fn bench(&self, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        let r = self
            .prog()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        Ok((r.return_value, r.duration))
    }
}
