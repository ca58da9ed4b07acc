//! The `lvtool` command line: lvm2's verbs, flags, messages and exit codes (0 success,
//! 3 invalid command line, 5 command failed). Every metadata change goes through
//! [`Session::begin`]/[`Session::commit`] and every activation through [`Session::activate`],
//! where the locks are taken.

pub mod args;
mod display;
mod lvcmds;
mod pvvg;
mod repair;
mod reports;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::activate::{Activator, DmActivator, NoDriver, Unavailable};
use crate::error::Error;
use crate::lockd_locker::LockdLocker;
use crate::session::{Locker, NoLocks, Session};
use crate::settings::Settings;
use crate::units::{SizeError, SuffixStyle, Units};
use args::{Args, OptSet, O};

/// lvm2's exit codes.
pub const ECMD_PROCESSED: i32 = 0;
pub const EINVALID_CMD_LINE: i32 = 3;
pub const ECMD_FAILED: i32 = 5;

/// Why a command stopped.
#[derive(Debug)]
pub enum Fail {
    /// Bad command line (exit 3); the message and a pointer to --help are printed.
    Usage(String),
    /// The command failed (exit 5) with this message.
    Failed(String),
    /// Failed, messages already printed.
    Quiet,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidName { name, reason } => Fail::Usage(format!("Name \"{name}\" is invalid: {reason}.")),
            e => Fail::Failed(e.to_string()),
        }
    }
}

impl From<SizeError> for Fail {
    fn from(e: SizeError) -> Self {
        Fail::Usage(e.0)
    }
}

pub type CmdResult = Result<(), Fail>;

/// What every command has: its name, its arguments, the session, output settings.
pub struct Ctx {
    pub cmd: String,
    pub args: Args,
    pub session: Session,
    pub units: Units,
    /// Set when one of several objects failed (the command goes on, exit 5 at the end).
    pub partial_failure: bool,
    /// lvmlocal.toml as read (devices already applied to the session).
    pub settings: Settings,
}

impl Ctx {
    /// A message on stdout, indented as lvm2 prints them.
    pub fn say(&self, msg: &str) {
        if !self.args.has(O::Quiet) {
            println!("  {msg}");
        }
    }

    pub fn err(&self, msg: &str) {
        eprintln!("  {msg}");
    }

    /// A size for messages: `12.00 MiB`.
    pub fn size(&self, sectors: u64) -> String {
        self.units.format(sectors, SuffixStyle::Short)
    }

    /// Asks a yes/no question (lvm2's `yes_no_prompt`); `--yes` answers yes, end of input no.
    pub fn confirm(&self, question: &str) -> bool {
        if self.args.has(O::Yes) {
            return true;
        }
        print!("{question} [y/n]: ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(n) if n > 0 => line.trim().eq_ignore_ascii_case("y") || line.trim().eq_ignore_ascii_case("yes"),
            _ => {
                println!("[n]");
                false
            }
        }
    }

    /// Whether this command accepts `o` (for code shared by several commands).
    pub fn opts_accept(&self, o: O) -> bool {
        COMMANDS.iter().find(|c| c.name == self.cmd).is_some_and(|c| c.opts.accepts(o))
    }

    /// Records a failure of one object and prints it.
    pub fn fail_one(&mut self, f: Fail) {
        match f {
            Fail::Failed(m) | Fail::Usage(m) => self.err(&m),
            Fail::Quiet => {}
        }
        self.partial_failure = true;
    }
}

struct Command {
    name: &'static str,
    opts: OptSet,
    run: fn(&mut Ctx) -> CmdResult,
    /// Positional arguments that are devices to add to the scan.
    scans_args: bool,
}

const COMMANDS: &[Command] = &[
    Command { name: "pvcreate", opts: pvvg::PVCREATE, run: pvvg::pvcreate, scans_args: true },
    Command { name: "pvremove", opts: pvvg::PVREMOVE, run: pvvg::pvremove, scans_args: true },
    Command { name: "pvs", opts: reports::PVS, run: reports::pvs, scans_args: true },
    Command { name: "vgcreate", opts: pvvg::VGCREATE, run: pvvg::vgcreate, scans_args: true },
    Command { name: "vgremove", opts: pvvg::VGREMOVE, run: pvvg::vgremove, scans_args: false },
    Command { name: "vgck", opts: repair::VGCK, run: repair::vgck, scans_args: false },
    Command { name: "vgextend", opts: pvvg::VGEXTEND, run: pvvg::vgextend, scans_args: true },
    Command { name: "vgreduce", opts: pvvg::VGREDUCE, run: pvvg::vgreduce, scans_args: false },
    Command { name: "vgs", opts: reports::VGS, run: reports::vgs, scans_args: false },
    Command { name: "vgdisplay", opts: display::VGDISPLAY, run: display::vgdisplay, scans_args: false },
    Command { name: "vgchange", opts: lvcmds::VGCHANGE, run: lvcmds::vgchange, scans_args: false },
    Command { name: "lvcreate", opts: lvcmds::LVCREATE, run: lvcmds::lvcreate, scans_args: false },
    Command { name: "lvremove", opts: lvcmds::LVREMOVE, run: lvcmds::lvremove, scans_args: false },
    Command { name: "lvextend", opts: lvcmds::RESIZE, run: lvcmds::lvresize, scans_args: false },
    Command { name: "lvreduce", opts: lvcmds::RESIZE, run: lvcmds::lvresize, scans_args: false },
    Command { name: "lvresize", opts: lvcmds::RESIZE, run: lvcmds::lvresize, scans_args: false },
    Command { name: "lvrename", opts: lvcmds::LVRENAME, run: lvcmds::lvrename, scans_args: false },
    Command { name: "lvchange", opts: lvcmds::CHANGE, run: lvcmds::lvchange, scans_args: false },
    Command { name: "lvs", opts: reports::LVS, run: reports::lvs, scans_args: false },
    Command { name: "lvdisplay", opts: display::LVDISPLAY, run: display::lvdisplay, scans_args: false },
];

fn usage() -> i32 {
    let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    eprintln!("usage: lvtool COMMAND [--config PATH] [--devices DEV]... [--driverloaded y|n] [ARGS]");
    eprintln!("commands: {}", names.join(" "));
    EINVALID_CMD_LINE
}

/// Runs `lvtool <argv>`; returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    let Some((name, rest)) = argv.split_first() else { return usage() };
    // `lvtool lvs` and a link named `lvs` both work.
    let Some(cmd) = COMMANDS.iter().find(|c| c.name == name.as_str()) else {
        eprintln!("  No such command '{name}'.  Try 'lvtool' without arguments for a list.");
        return 2;
    };
    let args = match args::parse(rest, &cmd.opts) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("  {}: {e}", cmd.name);
            eprintln!("  Run `{} --help' for more information.", cmd.name);
            return EINVALID_CMD_LINE;
        }
    };
    if args.has(O::Help) {
        let opts: Vec<String> = cmd.opts.accepted.iter().map(|o| format!("--{}", o.spec().long)).collect();
        println!("  {} {}", cmd.name, opts.join(" "));
        return ECMD_PROCESSED;
    }
    // lvm2 needs root to open devices; without it a scan would find nothing and a report
    // would print an empty table as if there were no PVs.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("  {}: must be run as root (LVM reads and writes block devices).", cmd.name);
        return ECMD_FAILED;
    }
    let driver = match args.get(O::Driverloaded) {
        None | Some("y") | Some("yes") | Some("1") => true,
        Some("n") | Some("no") | Some("0") => false,
        Some(v) => {
            eprintln!("  Invalid argument for --driverloaded: {v}");
            return EINVALID_CMD_LINE;
        }
    };
    let settings = match Settings::load(args.get(O::Config).map(std::path::Path::new)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("  {e}");
            return ECMD_FAILED;
        }
    };
    for w in settings.warnings() {
        eprintln!("  WARNING: {w}");
    }
    let mut devices: Vec<PathBuf> =
        args.all(O::Devices).iter().flat_map(|d| d.split(',')).filter(|d| !d.is_empty()).map(PathBuf::from).collect();
    if devices.is_empty() {
        devices = settings.devices.clone();
    }
    if cmd.scans_args {
        for p in &args.pos {
            let p = PathBuf::from(p);
            if p.is_absolute() && !devices.contains(&p) {
                devices.push(p);
            }
        }
    }
    let activator: Box<dyn Activator> = match (driver, DmActivator::open(devices.clone())) {
        (false, _) => Box::new(NoDriver),
        (true, Ok(dm)) => Box::new(dm),
        (true, Err(_)) => Box::new(Unavailable::probe()),
    };
    let description = format!("Write from lvtool {}.", argv.join(" "));
    // A host with a host_id takes part in shared VGs through lockd; others take no locks.
    let lockd = settings.host_id.is_some() && !args.has(O::Nolocking);
    let locker: Box<dyn Locker> =
        if lockd { Box::new(LockdLocker::new(&settings.run_dir, settings.timeouts)) } else { Box::new(NoLocks) };
    let mut session = Session::new(devices, activator, locker, description, settings.timeouts);
    if lockd {
        session.set_lockd(&settings.run_dir);
    }
    let mut ctx =
        Ctx { cmd: cmd.name.to_string(), args, session, units: Units::default(), partial_failure: false, settings };
    let result = (cmd.run)(&mut ctx);
    ctx.session.finish();
    match result {
        Ok(()) if ctx.partial_failure => ECMD_FAILED,
        Ok(()) => ECMD_PROCESSED,
        Err(Fail::Usage(m)) => {
            eprintln!("  {m}");
            eprintln!("  Run `{} --help' for more information.", ctx.cmd);
            EINVALID_CMD_LINE
        }
        Err(Fail::Failed(m)) => {
            eprintln!("  {m}");
            ECMD_FAILED
        }
        Err(Fail::Quiet) => ECMD_FAILED,
    }
}

/// Splits `VG/LV` (or `/dev/VG/LV`); a bare name is a VG.
pub fn split_lv_path(s: &str) -> (String, Option<String>) {
    let s = s.strip_prefix("/dev/").unwrap_or(s);
    match s.split_once('/') {
        Some((vg, lv)) => (vg.to_string(), Some(lv.to_string())),
        None => (s.to_string(), None),
    }
}

/// `--units`, `--nosuffix`.
pub fn units_from(args: &Args) -> Result<Units, Fail> {
    let u = match args.get(O::Units) {
        Some(s) => Units::parse(s).ok_or_else(|| Fail::Usage(format!("Invalid argument for --units: {s}")))?,
        None => Units::default(),
    };
    Ok(u.with_suffix(!args.has(O::Nosuffix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No command recognises one spelling twice (a short letter would silently pick one).
    #[test]
    fn option_sets_are_consistent() {
        for c in COMMANDS {
            args::check_set(c.name, &c.opts).unwrap();
        }
        let clash = OptSet::new(&[O::Extents, O::Maxlogicalvolumes], &[]);
        assert!(args::check_set("x", &clash).is_err());
    }
}
