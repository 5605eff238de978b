//! Resident memory and CPU time of a peer: the given processes and all their descendants (nginx's workers,
//! Pushpin's services), read from /proc.

use std::collections::HashSet;

/// Sum of VmRSS, in KiB, over `roots` and every process descended from them.
pub fn tree_kib(roots: &[u32]) -> u64 {
    tree(roots).iter().filter_map(|p| vm_rss_kib(*p)).sum()
}

/// CPU time (user + system) used so far by `roots` and their descendants, in clock ticks (1/100 s
/// on Linux): how much work a peer did, whatever else the machine was doing.
pub fn tree_cpu_ticks(roots: &[u32]) -> u64 {
    tree(roots).iter().filter_map(|p| cpu_ticks(*p)).sum()
}

fn tree(roots: &[u32]) -> HashSet<u32> {
    let mut pids: HashSet<u32> = roots.iter().copied().collect();
    // Parent links, read once; repeat until no new descendant appears.
    let links: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent(pid)?)))
        .collect();
    loop {
        let before = pids.len();
        for (pid, ppid) in &links {
            if pids.contains(ppid) {
                pids.insert(*pid);
            }
        }
        if pids.len() == before {
            break;
        }
    }
    pids
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    // After the command: state(3) ppid(4) … utime(14) stime(15).
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
