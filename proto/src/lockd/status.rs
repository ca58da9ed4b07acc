//! `lockd status`: the daemon's view, as text.

use std::fmt::Write as _;

use crate::lockd::protocol::{DaemonStatus, Mode};

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Ex => "ex",
        Mode::Sh => "sh",
        Mode::Un => "un",
    }
}

pub fn render(s: &DaemonStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "host_id {} name {} pid {} io_timeout {} watchdog_fire_timeout {} watchdog {}",
        s.host_id,
        s.host_name,
        s.pid,
        s.io_timeout,
        s.watchdog_fire_timeout,
        if s.use_watchdog { "wdmd" } else { "DISABLED" }
    );
    if s.lockspaces.is_empty() {
        let _ = writeln!(o, "no lockspaces started");
    }
    for ls in &s.lockspaces {
        let _ = writeln!(
            o,
            "\nlockspace {} (VG {}) {}{}\n  host_id {} generation {} at {}:{}\n  renewal last {} ms max {} ms, {} ms ago",
            ls.lockspace,
            ls.vg,
            ls.state,
            if ls.gl_enabled { ", global lock" } else { "" },
            ls.host_id,
            ls.generation,
            ls.pv_path.display(),
            ls.offset,
            ls.renewal_last_ms,
            ls.renewal_max_ms,
            ls.renewal_age_ms
        );
        let _ = writeln!(o, "  hosts:");
        for h in &ls.hosts {
            let me = if h.host_id == ls.host_id { " (this host)" } else { "" };
            let age = h.last_live_age_ms.map_or("never seen renewing".to_string(), |a| format!("renewed {a} ms ago"));
            let _ = writeln!(
                o,
                "    {:>4} {:<8} gen {:<4} {} io_timeout {} {age}{me}",
                h.host_id, h.state, h.generation, h.host_name, h.io_timeout
            );
        }
        let _ = writeln!(o, "  locks:");
        if ls.locks.is_empty() {
            let _ = writeln!(o, "    none");
        }
        for l in &ls.locks {
            let name = l.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            let _ = writeln!(
                o,
                "    {} {}{name} at {} lver {}{}{}",
                mode(l.mode),
                l.resource,
                l.offset,
                l.lver,
                if l.persistent { " persistent" } else { "" },
                if l.commands > 0 { format!(" commands {}", l.commands) } else { String::new() }
            );
        }
    }
    o
}
