//! Lease store benchmark: what a full snapshot (the fold that puts every
//! journalled commit into the lease file, design.md §Persistence) and a
//! journal group commit cost as the lease table grows. The fold runs about
//! once a second under churn, so its cost per lease is the daemon's CPU
//! per lease at scale. Run with `cargo bench -p isodhcp --bench store`.
//! Files go to `$TMPDIR`. Two figures per line: the thread's CPU time
//! (encoding and system calls; stable on a shared machine) and wall-clock
//! time (adds waiting for the disk's fsyncs, and for the CPU when others
//! run). Compare runs made the same way.

use std::net::Ipv4Addr;
use std::time::Instant;

use isodhcp::engine::{Dirty, LeaseRecord, Mode};
use isodhcp::store::LeaseStore;
use isodhcp::wire::Mac;

fn record(i: u32) -> LeaseRecord {
    let [_, a, b, c] = i.to_be_bytes();
    LeaseRecord {
        mac: Mac([2, 0x42, 0, a, b, c]),
        ip: Ipv4Addr::from(0xc612_0000 + i),
        expires: Some(1_800_000_000_000 + u64::from(i)),
        mode: if i.is_multiple_of(16) {
            Mode::Compat
        } else {
            Mode::Isolated
        },
        masq: i.is_multiple_of(7),
        hostname: i.is_multiple_of(2).then(|| format!("guest-{i}")),
        vendor: i.is_multiple_of(3).then(|| "android-dhcp-14".to_string()),
    }
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// This thread's CPU time, ms.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

/// Median CPU and wall ms of `f` over `runs` calls.
fn measure(runs: u32, mut f: impl FnMut(u32)) -> (f64, f64) {
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for k in 0..runs {
        let (c, t) = (cpu_ms(), Instant::now());
        f(k);
        cpu.push(cpu_ms() - c);
        wall.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median_ms(cpu), median_ms(wall))
}

fn row(label: &str, (cpu, wall): (f64, f64), leases: u32) {
    let per = cpu * 1000.0 / f64::from(leases);
    println!("{label:<32} {cpu:>9.2} {wall:>9.2} {per:>13.3}");
}

fn main() {
    let dir = std::env::temp_dir().join(format!("isodhcp-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let path = dir.join("leases.json");
    println!(
        "{:<32} {:>9} {:>9} {:>13}",
        "operation", "CPU ms", "wall ms", "CPU µs/lease"
    );
    for n in [1_000u32, 10_000, 60_000] {
        let records: Vec<LeaseRecord> = (0..n).map(record).collect();
        let (mut store, _) = LeaseStore::open(&path).expect("open");
        let snap = measure(9, |_| {
            store
                .snapshot(1_790_000_000_000, records.iter(), &[])
                .expect("snapshot");
        });
        row(&format!("snapshot of {n} leases"), snap, n);
        // A group commit of 32 leases, as a busy batch makes.
        let commit = measure(50, |k| {
            let mut d = Dirty::default();
            for r in records.iter().skip((k * 32) as usize).take(32) {
                d.leases.push((r.mac, Some(r.clone())));
            }
            store.commit(&d).expect("commit");
        });
        row("  journal commit of 32 leases", commit, 32);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
