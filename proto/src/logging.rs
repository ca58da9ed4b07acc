//! Log lines of both daemons (wdmd and lockd): stderr, no colours, no module paths; under
//! systemd (`JOURNAL_STREAM` set) without our time stamps, as journald stamps every line itself.

use tracing::Level;

/// Installs the subscriber; `debug` adds the per-renewal and per-request lines.
pub fn init(debug: bool) {
    let level = if debug { Level::DEBUG } else { Level::INFO };
    let fmt = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_max_level(level);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        fmt.without_time().init();
    } else {
        fmt.init();
    }
}
