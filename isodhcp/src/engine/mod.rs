//! Lease engine: sans-IO DHCP server state machine (RFC 2131 §4.3, design.md §Modes, §Protocol).
//!
//! `Engine::handle(now, input) -> Vec<Effect>`: time is passed in (Unix
//! milliseconds), nothing here reads a clock, opens a socket or talks to the
//! kernel. Effects are returned in the order they must be carried out:
//! kernel state first, then durable persistence, then the reply — so an ACK
//! never leaves before the lease is bound and on disk (design.md §Commit order).
//!
//! Guarantees:
//! - A DISCOVER only reserves an address for the offer hold; it commits
//!   nothing (no binding, no write). Outstanding offers are capped; the
//!   oldest is dropped first.
//! - REQUEST handling follows RFC 2131 §4.3.2 by client state (SELECTING,
//!   INIT-REBOOT, RENEWING/REBINDING) with the ACK/NAK/silence rules of design.md §Protocol.
//! - RELEASE and DECLINE are honoured only from the lease owner for its own
//!   address; static addresses never return to the pool.
//! - Every lookup is a hash or ordered-set operation: O(log n) in leases.

pub mod classify;
pub mod config;
mod handlers;
mod invariant;
mod lease;
mod log_budget;
pub mod pool;
mod quarantine;
mod reply;
mod restore;
pub mod stripe;

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

pub use classify::{Mode, Profile};
pub use config::{CustomOption, EngineConfig, StaticEntry};
pub use lease::{Binding, Lease, LeaseRecord, QuarantineRecord, RelayInfo};
pub use log_budget::LogBudget;

use isodhcp_common::Bucket;

use crate::wire::Mac;
use crate::wire::cidr::Cidr;
use crate::wire::options::MessageType;
use crate::wire::view::MessageView;
use pool::Pool;
use quarantine::Quarantine;
use stripe::{Stripe, StripeUpdate};

/// Unix time in milliseconds.
pub type Millis = u64;
/// Expiry of leases that never expire (statics).
pub const NEVER: Millis = Millis::MAX;

/// Something that happened outside the engine.
#[derive(Debug)]
pub enum Input<'a> {
    /// A DHCP request that admission delivered (design.md §Admission): a
    /// BOOTREQUEST for Ethernet whose chaddr is the frame's source MAC, so
    /// the engine does not check those again. `in_use` lists addresses the
    /// kernel neighbour table shows as alive, among those
    /// [`Engine::candidates`] named (design.md §Quarantine); empty when not probed.
    ///
    /// The message is a view of the received payload: the engine reads the
    /// request in place (no allocation per option) and copies only what it
    /// keeps (vendor class, hostname, relay information) or echoes.
    Dhcp {
        /// The received message, validated by [`MessageView::parse`].
        msg: &'a MessageView<'a>,
        /// Addresses among [`Engine::candidates`] that the neighbour table
        /// shows in use (REACHABLE, STALE, DELAY or PROBE), other than the
        /// client's own.
        in_use: &'a [Ipv4Addr],
    },
    /// Periodic timer: expire offers, leases and quarantine.
    Tick,
}

/// A reply frame to send: the BOOTP payload and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The encoded BOOTP payload, padded to at least 300 bytes and within the
    /// client's maximum message size (design.md §Options).
    pub payload: Vec<u8>,
    /// Ethernet destination: the client's MAC, or broadcast for a NAK and
    /// for a client without `ciaddr` that set the broadcast flag
    /// (design.md §Protocol).
    pub dst_mac: Mac,
    /// IPv4 destination: `ciaddr` when the client set it, else `yiaddr`, or
    /// 255.255.255.255 with a broadcast MAC (RFC 2131 §4.1).
    pub dst_ip: Ipv4Addr,
    /// Message type of the reply: OFFER, ACK (also for an INFORM) or NAK.
    pub kind: MessageType,
}

/// What the executors must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A lease became active: route or alias, nft elements, SNAT, hook `add`.
    Bind(Binding),
    /// A lease ended: undo what `Bind` did, hook `del`.
    Unbind(Binding),
    /// The XDP known-clients map gains (`true`) or loses a MAC (design.md §Admission).
    Known(Mac, bool),
    /// Write the lease table durably before carrying out the next effect.
    PersistNow,
    /// The lease table changed in a way that may be written lazily (renewals).
    PersistLater,
    /// Send a reply frame.
    Send(Reply),
    /// A slot of the XDP OFFER responder's stripe changed (design.md
    /// §Offer responder).
    Stripe(StripeUpdate),
}

/// Why a message was ignored (answered with silence); counted, never
/// logged per frame. The variant names are the `reason` labels of the
/// `messages_ignored` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ignored {
    /// `giaddr` is set: the message came through a relay agent, which this
    /// server does not serve (design.md §Deployment).
    Relayed,
    /// No option 53, or one that is not a single known type byte.
    NoMessageType,
    /// A SELECTING REQUEST whose option 54 names another server: the client
    /// chose another offer, so ours is withdrawn silently.
    NotOurServer,
    /// A REQUEST without an address to act on: SELECTING without option 50, or
    /// no `ciaddr` and no option 50.
    NoAddressNamed,
    /// A DISCOVER from an isolated or playground client when no address is free,
    /// even after the oldest offers gave theirs back.
    PoolExhausted,
    /// A DISCOVER from a compat client when no aligned /30 is wholly free
    /// (design.md §Compat mode).
    NoFreeBlock,
    /// A RELEASE from a client that holds no lease for its `ciaddr`.
    NotOwner,
    /// A DECLINE (option 50) of an address the sender neither leases nor was
    /// offered (design.md §Quarantine).
    DeclineNotOwner,
    /// An INFORM whose `ciaddr` lies outside the pool.
    InformOutsidePool,
    /// A message type a server does not act on (OFFER, ACK or NAK sent to the
    /// server port).
    Unsupported,
    /// The reply could not be encoded: it did not fit the client's maximum
    /// message size even with every option it did not ask for left out.
    Encode,
}

/// Counters of the engine (messages by outcome).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Messages ignored, by reason.
    pub dropped: HashMap<Ignored, u64>,
    /// Messages received, by DHCP message type name.
    pub received: HashMap<&'static str, u64>,
    /// NAKs by reason.
    pub nak_reasons: HashMap<&'static str, u64>,
    /// Requests answered with a NAK (each also counted in `nak_reasons`).
    pub naks: u64,
    /// DISCOVERs answered with an OFFER.
    pub offers: u64,
    /// ACKs for REQUESTs (new, renewed and adopted leases); INFORMs are in
    /// `informs`.
    pub acks: u64,
    /// Dynamic leases ended by a RELEASE from their owner.
    pub releases: u64,
    /// DECLINEs received, honoured or not.
    pub declines: u64,
    /// INFORMs answered.
    pub informs: u64,
    /// Leases removed because their time (or grace) ran out.
    pub expired: u64,
    /// Free addresses found in use in the neighbour table while allocating,
    /// each quarantined when room allows (design.md §Quarantine).
    pub conflicts: u64,
    /// INIT-REBOOT clients without a record whose address was adopted.
    pub adoptions: u64,
    /// REQUESTs that claimed an address the XDP responder offered.
    pub stripe_claims: u64,
    /// Lines of per-message logging (NAKs) left out by the rate limit.
    pub logs_suppressed: u64,
}

#[derive(Debug, Clone)]
struct Offer {
    ip: Ipv4Addr,
    until: Millis,
    profile: Profile,
    vendor: Option<String>,
    /// Made for an INIT-REBOOT client the engine had no record of: its
    /// first lease is short (see [`config::ADOPTED_LEASE_S`]).
    adopted: bool,
}

/// Changes to persist (see [`Engine::take_dirty`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// Each changed client's lease as it is now; `None` when the lease is gone.
    pub leases: Vec<(Mac, Option<LeaseRecord>)>,
    /// The whole quarantine when it changed, else `None`.
    pub quarantine: Option<Vec<QuarantineRecord>>,
}

/// Why the engine refused its configuration (fatal at start, exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("static {mac}={ip}: {why}")]
    /// A static entry the engine cannot honour (its address and the playground
    /// block do not agree; design.md §Statics).
    Static {
        /// The static client's MAC.
        mac: Mac,
        /// The static address.
        ip: Ipv4Addr,
        /// What is wrong, for the error message.
        why: &'static str,
    },
    #[error("no aligned block of {0} addresses is free for the playground")]
    /// `--playground-size` (the value carried) asked for a block, and no
    /// aligned block of the next power of two inside the pool avoids the
    /// statics and restored leases of other modes (design.md §Playground
    /// mode).
    NoPlaygroundBlock(u32),
}

/// The lease engine.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    pool: Pool,
    statics: HashMap<Mac, StaticEntry>,
    leases: HashMap<Mac, Lease>,
    owners: HashMap<Ipv4Addr, Mac>,
    /// (time, mac) at which a lease stops holding its address.
    expiry: BTreeSet<(Millis, Mac)>,
    offers: HashMap<Mac, Offer>,
    offer_expiry: BTreeSet<(Millis, Mac)>,
    quarantine: Quarantine,
    /// Leases changed since the last [`Engine::take_dirty`].
    dirty: BTreeSet<Mac>,
    quarantine_dirty: bool,
    /// Last "no free /30" warning per client (one a minute).
    block_warned: HashMap<Mac, Millis>,
    /// Budget of INIT-REBOOT adoptions (time in ns of engine milliseconds).
    adopt_budget: Bucket,
    /// Per-message log lines (NAKs).
    log_budget: LogBudget,
    /// Addresses set aside for the XDP OFFER responder.
    stripe: Stripe,
    /// Time of the input being handled.
    now: Millis,
    /// Counters, read by the metrics and control endpoints.
    pub stats: Stats,
}

impl Engine {
    /// Builds the engine: reserves statics, chooses the playground block
    /// (avoiding `existing`, the addresses of leases about to be restored).
    pub fn new(cfg: EngineConfig, existing: &[Ipv4Addr]) -> Result<Engine, ConfigError> {
        let mut reserved = Vec::new();
        let mut avoid: Vec<Ipv4Addr> = existing.to_vec();
        for s in &cfg.statics {
            if s.compat {
                let b = u32::from(s.ip) & !3;
                reserved.extend((b..b + 4).map(Ipv4Addr::from));
            } else {
                reserved.push(s.ip);
            }
            if !s.playground {
                avoid.push(s.ip);
            }
        }
        let pool = Pool::new(
            cfg.pool,
            cfg.server_ip,
            &reserved,
            cfg.playground_size,
            &avoid,
        );
        if let Some(n) = cfg.playground_size {
            if pool.playground().is_none() {
                return Err(ConfigError::NoPlaygroundBlock(n));
            }
        }
        let mut statics = HashMap::new();
        for s in &cfg.statics {
            let in_block = pool.playground().is_some_and(|p| p.block.contains(s.ip));
            if s.playground && !pool.playground_host(s.ip) {
                return Err(ConfigError::Static {
                    mac: s.mac,
                    ip: s.ip,
                    why: "a playground static must be a host of the playground block",
                });
            }
            if !s.playground && in_block {
                return Err(ConfigError::Static {
                    mac: s.mac,
                    ip: s.ip,
                    why: "address lies in the playground block",
                });
            }
            statics.insert(s.mac, s.clone());
        }
        let quarantine = Quarantine::new((cfg.pool.size() as usize / 2).max(16));
        // Sized in `start`, once restored leases and statics are out of
        // the pool (`stripe_size`).
        let stripe = Stripe::default();
        Ok(Engine {
            cfg,
            pool,
            statics,
            leases: HashMap::new(),
            owners: HashMap::new(),
            expiry: BTreeSet::new(),
            offers: HashMap::new(),
            offer_expiry: BTreeSet::new(),
            quarantine,
            dirty: BTreeSet::new(),
            quarantine_dirty: false,
            block_warned: HashMap::new(),
            adopt_budget: Bucket::default(),
            log_budget: LogBudget::default(),
            stripe,
            now: 0,
            stats: Stats::default(),
        })
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn lease_ms(&self) -> Millis {
        Millis::from(self.cfg.lease_time) * 1000
    }

    fn insert_lease(&mut self, l: Lease) {
        if l.profile.mode != Mode::Compat {
            self.pool.take(l.ip);
        }
        self.owners.insert(l.ip, l.mac);
        if !l.is_static {
            self.expiry.insert((l.hold_until(), l.mac));
        }
        self.leases.insert(l.mac, l);
    }

    /// Removes a dynamic lease and returns its address (or /30) to the pool.
    fn remove_lease(&mut self, mac: Mac) -> Option<Lease> {
        let l = self.leases.remove(&mac)?;
        self.dirty.insert(mac);
        self.expiry.remove(&(l.hold_until(), mac));
        self.owners.remove(&l.ip);
        match l.profile.mode {
            Mode::Compat => self.pool.give_back_block(l.ip),
            _ => self.pool.give_back(l.ip),
        }
        Some(l)
    }

    /// What the executors need for a lease (design.md §Modes, §Kernel state).
    pub fn binding(&self, l: &Lease) -> Binding {
        let (gateway, subnet) = match l.profile.mode {
            Mode::Isolated => (self.cfg.server_ip, None),
            Mode::Compat => {
                let b = u32::from(l.ip) & !3;
                (
                    Ipv4Addr::from(b + 1),
                    Some(Cidr {
                        addr: Ipv4Addr::from(b),
                        prefix: 30,
                    }),
                )
            }
            Mode::Playground => match self.pool.playground() {
                Some(p) => (p.gateway, Some(p.block)),
                None => (self.cfg.server_ip, None),
            },
        };
        Binding {
            mac: l.mac,
            ip: l.ip,
            mode: l.profile.mode,
            masq: l.profile.masq,
            gateway,
            subnet,
            hostname: l.hostname.clone(),
            expires: (!l.is_static).then_some(l.expires),
        }
    }

    /// Active leases (for persistence and reconcile).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// The lease of client `mac` (dynamic, static or in grace), if any.
    pub fn lease(&self, mac: &Mac) -> Option<&Lease> {
        self.leases.get(mac)
    }

    /// The client holding `ip` (lease or static), if any.
    pub fn owner_of(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.owners.get(&ip).copied()
    }

    /// Bindings that should exist now (design.md §Reconcile): one per static and per
    /// lease that has not expired (leases in grace have none until the
    /// client returns).
    pub fn desired(&self, now: Millis) -> Vec<Binding> {
        self.leases
            .values()
            .filter(|l| l.expires > now)
            .map(|l| self.binding(l))
            .collect()
    }

    /// The playground gateway alias, when it is not the server IP.
    pub fn playground_alias(&self) -> Option<(Ipv4Addr, u8)> {
        self.pool
            .playground()
            .filter(|p| p.gateway != self.cfg.server_ip)
            .map(|p| (p.gateway, p.block.prefix))
    }

    /// The playground block, when `--playground-size` set one aside
    /// (design.md §Playground mode).
    pub fn playground_block(&self) -> Option<Cidr> {
        self.pool.playground().map(|p| p.block)
    }

    /// The address pools, read-only (control, metrics, reconcile).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Free addresses in the main pool and the playground block together.
    pub fn free_count(&self) -> usize {
        self.pool.free_count()
    }

    /// Offers held now, at most [`EngineConfig::max_offers`].
    pub fn offers_outstanding(&self) -> usize {
        self.offers.len()
    }

    /// Addresses in quarantine now (design.md §Quarantine).
    pub fn quarantined_count(&self) -> usize {
        self.quarantine.len()
    }

    /// Quarantined addresses, for persistence.
    pub fn quarantined(&self) -> Vec<QuarantineRecord> {
        self.quarantine.records()
    }

    /// MACs the XDP known-clients map should hold: leases and offers.
    pub fn known_macs(&self) -> impl Iterator<Item = Mac> + '_ {
        self.leases.keys().chain(self.offers.keys()).copied()
    }

    /// What changed since the last call, for the lease store's journal: the
    /// record of every changed MAC (`None`: lease gone) and, if it changed,
    /// the whole quarantine. The caller writes it durably; the engine then
    /// counts those expiries as written (renewal batching, design.md §Persistence).
    pub fn take_dirty(&mut self) -> Dirty {
        let macs = std::mem::take(&mut self.dirty);
        let mut leases = Vec::with_capacity(macs.len());
        for mac in macs {
            let rec = self.leases.get_mut(&mac).map(|l| {
                l.persisted_expires = l.expires;
                LeaseRecord::from(&*l)
            });
            leases.push((mac, rec));
        }
        let quarantine =
            std::mem::take(&mut self.quarantine_dirty).then(|| self.quarantine.records());
        Dirty { leases, quarantine }
    }

    /// Whether anything awaits [`Engine::take_dirty`].
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.quarantine_dirty
    }

    /// Every lease as a record (for a full snapshot).
    pub fn snapshot(&self) -> Vec<LeaseRecord> {
        self.leases.values().map(LeaseRecord::from).collect()
    }

    /// Whether a per-message log line may be written now (see [`LogBudget`]).
    fn may_log(&mut self) -> bool {
        let ok = self.log_budget.allow(self.now);
        if !ok {
            self.stats.logs_suppressed += 1;
        }
        ok
    }

    fn ignore(&mut self, why: Ignored) -> Vec<Effect> {
        *self.stats.dropped.entry(why).or_default() += 1;
        Vec::new()
    }

    /// Handles one input at `now` (Unix ms) and returns the effects to carry
    /// out, in order (design.md §Commit order). Before a message is acted on,
    /// offers, leases and quarantine entries that ran out are expired as on
    /// an [`Input::Tick`].
    pub fn handle(&mut self, now: Millis, input: Input<'_>) -> Vec<Effect> {
        self.now = now;
        match input {
            Input::Tick => self.tick(now),
            Input::Dhcp { msg, in_use } => self.on_message(now, msg, in_use),
        }
    }

    fn on_message(
        &mut self,
        now: Millis,
        msg: &MessageView<'_>,
        in_use: &[Ipv4Addr],
    ) -> Vec<Effect> {
        if !msg.giaddr().is_unspecified() {
            return self.ignore(Ignored::Relayed);
        }
        let msg_type = msg.options().message_type();
        let kind = match msg_type {
            Some(t) => t.name(),
            None => "none",
        };
        *self.stats.received.entry(kind).or_default() += 1;
        // Offers, leases and quarantine that ran out are gone before we look at state.
        let mut fx = self.tick(now);
        let more = match msg_type {
            Some(MessageType::Discover) => self.on_discover(now, msg, in_use),
            Some(MessageType::Request) => self.on_request(now, msg),
            Some(MessageType::Release) => self.on_release(msg),
            Some(MessageType::Decline) => self.on_decline(now, msg),
            Some(MessageType::Inform) => self.on_inform(msg),
            Some(_) => self.ignore(Ignored::Unsupported),
            None => self.ignore(Ignored::NoMessageType),
        };
        fx.extend(more);
        fx
    }

    fn tick(&mut self, now: Millis) -> Vec<Effect> {
        let mut fx = Vec::new();
        while let Some(&(until, mac)) = self.offer_expiry.first() {
            if until > now {
                break;
            }
            fx.extend(self.cancel_offer(mac));
        }
        for ip in self.quarantine.expire(now) {
            self.quarantine_dirty = true;
            self.pool.give_back(ip);
        }
        fx.extend(self.stripe_fill());
        while let Some(&(at, mac)) = self.expiry.first() {
            if at > now {
                break;
            }
            let Some(l) = self.leases.get(&mac) else {
                self.expiry.pop_first();
                continue;
            };
            let b = self.binding(l);
            self.remove_lease(mac);
            self.stats.expired += 1;
            tracing::info!(%mac, ip = %b.ip, "lease expired");
            fx.push(Effect::Unbind(b));
            fx.push(Effect::Known(mac, false));
            fx.push(Effect::PersistNow);
        }
        fx
    }
}

#[cfg(test)]
pub(crate) mod tests;
