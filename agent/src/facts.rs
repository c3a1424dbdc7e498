//! Facts an agent advertises about its machine.

use std::collections::BTreeMap;

/// Hostname, OS, architecture, CPUs, memory, version, plus `id` and `role=agent`.
pub fn collect(id: &str) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    facts.insert("hostname".into(), hostname);
    facts.insert("os".into(), std::env::consts::OS.into());
    facts.insert("arch".into(), std::env::consts::ARCH.into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    facts.insert("cpus".into(), cpus.to_string());
    if let Some(kb) = mem_total_kb() {
        facts.insert("memory_mb".into(), (kb / 1024).to_string());
    }
    facts.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    facts.insert("id".into(), id.into());
    facts.insert("role".into(), "agent".into());
    facts
}

fn mem_total_kb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_the_basics() {
        let f = super::collect("abc");
        for key in ["hostname", "os", "arch", "cpus", "version", "id", "role"] {
            assert!(f.contains_key(key), "{key}");
        }
        assert_eq!(f["role"], "agent");
        assert!(f["cpus"].parse::<usize>().unwrap() >= 1);
    }
}
