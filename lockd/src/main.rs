//! lockd: the sanlvm lock daemon and its offline tools. This file only parses arguments; the
//! work is in the modules.

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85 (rust-version).

mod direct;

use std::process::ExitCode;

use direct::{Command, Common, DirectError, DumpArg, DumpDetail, LockspaceArg, ResourceArg};
use lease::ondisk::{Align, Name, SectorSize};

const USAGE: &str = "\
Usage:
lockd daemon [--config PATH]     the lock daemon, in the foreground (systemd Type=notify)
lockd status [--config PATH] [--json]
lockd gl-enable|gl-disable [--config PATH] VG   move the global lock (lvmlockctl --gl-enable)
lockd direct <action> [options]

  --config PATH  lvmlocal.toml (default /etc/lvmlocal.toml)

lockd direct init -s LOCKSPACE | -r RESOURCE [-Z 512|4096] [-A 1M|2M|4M|8M] [-o SEC]
                  [-n NUM_HOSTS] [-z 0|1 | --clear]
lockd direct read_leader -s LOCKSPACE | -r RESOURCE
lockd direct dump PATH[:OFFSET[:SIZE]] [-f 0|1|2] [--bitmap] [-D|--mode-blocks]
lockd direct acquire_id -s LOCKSPACE [-e HOST_NAME] [-o SEC] [-W SEC]
lockd direct renew_id   -s LOCKSPACE [-e HOST_NAME] [-o SEC]
lockd direct release_id -s LOCKSPACE [-e HOST_NAME] [-o SEC]
lockd direct acquire -r RESOURCE -i HOST_ID -g GENERATION [-s LOCKSPACE] [--wait] [-o SEC] [-W SEC]
lockd direct release -r RESOURCE -i HOST_ID -g GENERATION [-o SEC]

LOCKSPACE = <lockspace_name>:<host_id>:<path>:<offset>
RESOURCE  = <lockspace_name>:<resource_name>:<path>:<offset>[:SH]
  A ':' inside a path is written '\\:'. Offsets are in bytes.

Options:
  -Z 512|4096   sector size. init: default the device's logical sector size (512 for files);
                other actions: read from the record.
  -A 1M|2M|4M|8M  lease area size. init: default 1M for 512, 8M for 4096.
  -o SEC        io_timeout N (default 10). init -s writes it into every host record; the delta
                acquire waits 2N (and 8N+W for a record another host may hold).
  -W SEC        watchdog fire timeout W (default 60); must be the same on every host.
  -n, -N NUM    init -r: hosts taking part (default: all the geometry allows).
  -z 1, --clear init -r: write the 'cleared' magic instead of a lease.
  -e NAME       host name stored in the delta lease (default: /etc/machine-id).
  -i, -g        host_id and delta-lease generation of the paxos acquirer/holder.
  --wait        acquire: wait up to 8N+W for a silent owner to prove dead (needs -s)
                instead of failing at once.
  --io-stats    print the number of reads and writes to stderr.

Actions:
  acquire_id    the full delta-lease protocol: write, wait 2N, re-read; prints the generation.
  renew_id      offline (no daemon state): the record must be held by this host_id and host
                name; writes a new timestamp for the same owner and generation.
  release_id    offline, same checks as renew_id; writes timestamp 0.
  acquire       a paxos ballot as host_id/generation. Without -s it behaves like sanlock's
                direct acquire, which has no lockspace: a lease held by another host fails,
                since its owner's liveness cannot be judged. With -s LS:0:PATH:OFFSET (same
                device) the owner's delta lease decides: free or newer generation = gone.
  release       offline: -i/-g must name the leader's owner (or, with :SH, our shared mode
                block). (sanlock 3.8.5's direct release never writes anything.)
  dump          a table like sanlock's; shared holders are listed as 'SH' lines. -f 1 or
                --bitmap add host bitmaps and request records, -f 2 or -D/--mode-blocks also
                every used dblock and mode block.
Exit status: 0 on success, 1 when the action failed, 2 for a bad command line.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(args: &[String]) -> Result<(), DirectError> {
    match args.first().map(String::as_str) {
        Some("direct") => {}
        Some("daemon") => return daemon(&args[1..]),
        Some("status") => return status(&args[1..]),
        Some(c @ ("gl-enable" | "gl-disable")) => return lockd::glctl::cli(c, &args[1..]).map_err(DirectError::failed),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(other) => return Err(DirectError::usage(format!("unknown command {other:?}; see lockd --help"))),
    }
    if matches!(args.get(1).map(String::as_str), Some("-h" | "--help") | None) {
        print!("{USAGE}");
        return Ok(());
    }
    let (cmd, common) = parse_direct(&args[1..])?;
    direct::run(&cmd, &common, &mut std::io::stdout().lock())
}

/// `--config PATH` and flags of `daemon`/`status`.
fn config_args(args: &[String], flags: &[&str]) -> Result<(proto::config::Config, Vec<String>), DirectError> {
    let mut path = None;
    let mut set = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => {
                path = Some(it.next().ok_or_else(|| DirectError::usage("--config needs a PATH"))?.clone());
            }
            f if flags.contains(&f) => set.push(f.to_string()),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(DirectError::usage(format!("unknown option {other:?}; see lockd --help"))),
        }
    }
    let cfg = proto::config::Config::load(path.as_deref().map(std::path::Path::new))
        .map_err(|e| DirectError::failed(e.to_string()))?;
    Ok((cfg, set))
}

fn daemon(args: &[String]) -> Result<(), DirectError> {
    let (cfg, _) = config_args(args, &[])?;
    lockd::init_logging();
    lockd::run_daemon(cfg, lockd::fence::default_fencer()).map_err(DirectError::failed)
}

fn status(args: &[String]) -> Result<(), DirectError> {
    let (cfg, flags) = config_args(args, &["--json"])?;
    let mut c = proto::lockd::client::Client::connect(&cfg.run_dir).map_err(|e| DirectError::failed(e.to_string()))?;
    match c.call(&proto::lockd::protocol::Request::Status).map_err(|e| DirectError::failed(e.to_string()))? {
        proto::lockd::protocol::Response::Status(s) => {
            if flags.iter().any(|f| f == "--json") {
                println!("{}", serde_json::to_string_pretty(&s).expect("status serializes"));
            } else {
                print!("{}", proto::lockd::status::render(&s));
            }
            Ok(())
        }
        other => Err(DirectError::failed(format!("unexpected reply {other:?}"))),
    }
}

/// Everything the command line said, before it is checked against the action.
#[derive(Default)]
struct Opts {
    ls: Option<LockspaceArg>,
    res: Option<ResourceArg>,
    host_id: Option<u64>,
    generation: Option<u64>,
    host_name: Option<Name>,
    num_hosts: u64,
    clear: bool,
    wait: bool,
    force_mode: u32,
    bitmap: bool,
    mode_blocks: bool,
}

fn parse_direct(args: &[String]) -> Result<(Command, Common), DirectError> {
    let action = args[0].as_str();
    let mut rest = &args[1..];
    let mut dump_at = None;
    if action == "dump" {
        let at = rest.first().ok_or_else(|| DirectError::usage("dump needs PATH[:OFFSET[:SIZE]]"))?;
        dump_at = Some(DumpArg::parse(at)?);
        rest = &rest[1..];
    }
    let mut common = Common::default();
    let mut o = Opts::default();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        // Flags without a value.
        match flag.as_str() {
            "--clear" => o.clear = true,
            "--wait" => o.wait = true,
            "--bitmap" => o.bitmap = true,
            "-D" | "--mode-blocks" => o.mode_blocks = true,
            "--io-stats" => common.io_stats = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => {
                let val = it.next().ok_or_else(|| DirectError::usage(format!("option {flag} needs a value")))?;
                parse_valued(flag, val, &mut o, &mut common)?;
            }
        }
    }
    let need_ls = || o.ls.clone().ok_or_else(|| DirectError::usage(format!("{action} needs -s LOCKSPACE")));
    let need_res = || o.res.clone().ok_or_else(|| DirectError::usage(format!("{action} needs -r RESOURCE")));
    let only_one = || {
        if o.ls.is_some() && o.res.is_some() {
            Err(DirectError::usage(format!("{action} takes -s or -r, not both")))
        } else {
            Ok(())
        }
    };
    let cmd = match action {
        "init" => {
            only_one()?;
            match (&o.ls, &o.res) {
                (Some(ls), None) => Command::InitLockspace { ls: ls.clone() },
                (None, Some(res)) => Command::InitResource { res: res.clone(), num_hosts: o.num_hosts, clear: o.clear },
                _ => return Err(DirectError::usage("init needs -s LOCKSPACE or -r RESOURCE")),
            }
        }
        "read_leader" => {
            only_one()?;
            match (&o.ls, &o.res) {
                (Some(ls), None) => Command::ReadLeaderLockspace { ls: ls.clone() },
                (None, Some(res)) => Command::ReadLeaderResource { res: res.clone() },
                _ => return Err(DirectError::usage("read_leader needs -s LOCKSPACE or -r RESOURCE")),
            }
        }
        "acquire_id" => Command::AcquireId { ls: need_ls()?, host_name: o.host_name },
        "renew_id" => Command::RenewId { ls: need_ls()?, host_name: o.host_name },
        "release_id" => Command::ReleaseId { ls: need_ls()?, host_name: o.host_name },
        "acquire" | "release" => {
            let res = need_res()?;
            let host_id = o.host_id.ok_or_else(|| DirectError::usage(format!("{action} needs -i HOST_ID")))?;
            let generation = o.generation.ok_or_else(|| DirectError::usage(format!("{action} needs -g GENERATION")))?;
            if action == "acquire" {
                if o.wait && o.ls.is_none() {
                    return Err(DirectError::usage("--wait needs -s LOCKSPACE to watch the owner"));
                }
                Command::Acquire { res, host_id, generation, lockspace: o.ls.clone(), wait: o.wait }
            } else {
                if o.ls.is_some() {
                    return Err(DirectError::usage("release takes no -s"));
                }
                Command::Release { res, host_id, generation }
            }
        }
        "dump" => Command::Dump {
            at: dump_at.expect("parsed above"),
            detail: DumpDetail {
                bitmap: o.bitmap || o.force_mode >= 1,
                mode_blocks: o.mode_blocks || o.force_mode >= 2,
            },
        },
        other => return Err(DirectError::usage(format!("direct action {other:?} is unknown; see lockd --help"))),
    };
    Ok((cmd, common))
}

fn parse_valued(flag: &str, val: &str, o: &mut Opts, common: &mut Common) -> Result<(), DirectError> {
    let num = |what: &str| -> Result<u64, DirectError> {
        if val.is_empty() || !val.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DirectError::usage(format!("{flag}: {what} {val:?} is not a decimal number")));
        }
        val.parse().map_err(|_| DirectError::usage(format!("{flag}: {what} {val:?} is too large")))
    };
    let small = |what: &str| -> Result<u32, DirectError> {
        u32::try_from(num(what)?).map_err(|_| DirectError::usage(format!("{flag}: {what} {val:?} is too large")))
    };
    match flag {
        "-s" => o.ls = Some(LockspaceArg::parse(val)?),
        "-r" => o.res = Some(ResourceArg::parse(val)?),
        "-i" => o.host_id = Some(num("host_id")?),
        "-g" => o.generation = Some(num("generation")?),
        "-e" => o.host_name = Some(Name::new(val).map_err(|e| DirectError::usage(format!("-e: {e}")))?),
        "-n" | "-N" => o.num_hosts = num("num_hosts")?,
        "-z" => o.clear = num("clear")? != 0,
        "-f" => o.force_mode = small("force mode")?,
        "-o" => common.io_timeout = small("io_timeout")?,
        "-W" => common.watchdog_fire = small("watchdog fire timeout")?,
        "-Z" => {
            common.sector = Some(
                SectorSize::from_bytes(num("sector size")?)
                    .ok_or_else(|| DirectError::usage(format!("-Z: sector size {val} is not 512 or 4096")))?,
            )
        }
        "-A" => {
            common.align = Some(
                Align::parse(val)
                    .ok_or_else(|| DirectError::usage(format!("-A: align {val:?} is not 1M, 2M, 4M or 8M")))?,
            )
        }
        _ => return Err(DirectError::usage(format!("unknown option {flag}; see lockd --help"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(Command, Common), DirectError> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse_direct(&v)
    }

    #[test]
    fn sanlock_style_command_lines() {
        let (c, o) = parse("init -s ls:0:/dev/x:0 -Z 4096 -A 8M -o 5").unwrap();
        assert!(matches!(c, Command::InitLockspace { .. }));
        assert_eq!((o.sector, o.align, o.io_timeout), (Some(SectorSize::B4096), Some(Align::M8), 5));
        let (c, _) = parse("init -r ls:r:/dev/x:1048576 -n 10 -z 1").unwrap();
        assert!(matches!(c, Command::InitResource { num_hosts: 10, clear: true, .. }));
        let (c, _) = parse("acquire -r ls:r:/dev/x:1048576 -i 1 -g 3 -s ls:0:/dev/x:0 --wait").unwrap();
        assert!(matches!(c, Command::Acquire { host_id: 1, generation: 3, wait: true, .. }));
        let (c, _) = parse("dump /dev/x:0:2M -f 1").unwrap();
        assert!(matches!(c, Command::Dump { detail: DumpDetail { bitmap: true, mode_blocks: false }, .. }));
        let (c, _) = parse("acquire_id -s ls:3:/dev/x:0 -e node3").unwrap();
        assert!(matches!(c, Command::AcquireId { host_name: Some(_), .. }));
    }

    #[test]
    fn bad_command_lines() {
        for bad in [
            "init",
            "init -s ls:0:/x:0 -r ls:r:/x:0",
            "acquire -r ls:r:/x:0 -i 1",
            "acquire -r ls:r:/x:0 -g 1",
            "acquire -r ls:r:/x:0 -i 1 -g 1 --wait",
            "acquire_id -s ls:1:/x",
            "init -s ls:0:/x:0 -Z 1024",
            "init -s ls:0:/x:0 -A 3M",
            "init -s ls:0:/x:0 -o",
            "frobnicate -s ls:0:/x:0",
            "acquire_id -s ls:1:/x:0 -q 1",
            "dump",
        ] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("{bad} parsed"));
            assert!(e.usage, "{bad}: {e}");
        }
    }
}
