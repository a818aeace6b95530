//! The two things the datapath asks a NIC driver through the ethtool ioctl
//! (`SIOCETHTOOL`, include/uapi/linux/ethtool.h): how many RX queues it
//! has (one AF_XDP socket each), and how many XDP_TX frames it failed to
//! send (the OFFER responder's check that its replies leave, design.md
//! §Offer responder).

use std::io;

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
/// Statistics read at most (drivers with thousands exist; XDP ones are early).
const MAX_STATS: usize = 4096;

/// One `SIOCETHTOOL` request on `iface` with `data` (a command struct
/// starting with its `u32` command).
fn ioctl<T>(iface: &str, data: &mut T) -> io::Result<()> {
    ioctl_raw(iface, (data as *mut T).cast())
}

/// [`ioctl`] with a command in a buffer of `u64`s (header, then payload).
fn ioctl_buf(iface: &str, buf: &mut [u64]) -> io::Result<()> {
    ioctl_raw(iface, buf.as_mut_ptr().cast())
}

/// `data` must point at a command the kernel may read and write in full
/// (its size follows from its header).
fn ioctl_raw(iface: &str, data: *mut libc::c_void) -> io::Result<()> {
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(iface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = data.cast();
    // SAFETY: a datagram socket for the ioctl, closed right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifr points at valid memory; `data` lives across the call and
    // is as large as the command it carries says.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut ifr) };
    let err = io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 { Err(err) } else { Ok(()) }
}

/// Number of RX queues of the interface (ETHTOOL_GCHANNELS; 1 if unknown).
pub fn rx_queue_count(iface: &str) -> u32 {
    #[repr(C)]
    #[derive(Default)]
    struct Channels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    let mut ch = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    match ioctl(iface, &mut ch) {
        Ok(()) => (ch.rx_count + ch.combined_count).max(1),
        Err(_) => 1,
    }
}

/// The driver's statistics by name (`ethtool -S`).
pub fn stats(iface: &str) -> io::Result<Vec<(String, u64)>> {
    #[repr(C)]
    struct SsetInfo {
        cmd: u32,
        reserved: u32,
        mask: u64,
        len: u32,
    }
    let mut info = SsetInfo {
        cmd: ETHTOOL_GSSET_INFO,
        reserved: 0,
        mask: 1 << ETH_SS_STATS,
        len: 0,
    };
    ioctl(iface, &mut info)?;
    let n = if info.mask & (1 << ETH_SS_STATS) != 0 {
        (info.len as usize).min(MAX_STATS)
    } else {
        0
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    // Header words, then the payload (strings or u64 values), as one buffer
    // of u64 so the values are aligned.
    let mut names = vec![0u64; 2 + n * ETH_GSTRING_LEN / 8];
    names[0] = u64::from(ETHTOOL_GSTRINGS) | (u64::from(ETH_SS_STATS) << 32);
    names[1] = n as u64; // `len` (u32) and padding
    ioctl_buf(iface, &mut names)?;
    let mut values = vec![0u64; 1 + n];
    values[0] = u64::from(ETHTOOL_GSTATS) | ((n as u64) << 32);
    ioctl_buf(iface, &mut values)?;
    // SAFETY: `names` holds 16 + n·32 initialised bytes.
    let bytes = unsafe { std::slice::from_raw_parts(names.as_ptr().cast::<u8>(), names.len() * 8) };
    let strings = &bytes[12..12 + n * ETH_GSTRING_LEN];
    Ok(strings
        .chunks(ETH_GSTRING_LEN)
        .zip(&values[1..])
        .map(|(s, v)| {
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            (String::from_utf8_lossy(&s[..end]).into_owned(), *v)
        })
        .collect())
}

/// XDP_TX frames the driver failed to send, summed over its queues: the
/// statistics whose name says so (`xdp_tx_errors` on veth, `xdp_tx_err`
/// on mlx5 and others). `None`: the driver reports no such counter.
pub fn xdp_tx_errors(iface: &str) -> Option<u64> {
    let s = stats(iface).ok()?;
    let mut found = false;
    let mut sum = 0u64;
    for (name, v) in s {
        if name.contains("xdp_tx_err") {
            found = true;
            sum = sum.wrapping_add(v);
        }
    }
    found.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_xdp_tx_counter_and_one_queue() {
        // lo has no driver statistics: no counter, not an error to panic on.
        assert_eq!(xdp_tx_errors("lo"), None);
        assert_eq!(rx_queue_count("lo"), 1);
        assert!(xdp_tx_errors("no-such-if0").is_none());
    }
}
