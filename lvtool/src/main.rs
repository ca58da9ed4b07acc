//! `lvtool`: for now the read-only reports `pvs`, `vgs`, `lvs` over the devices given with
//! `--devices DEV` (repeatable, as in lvm2).

use std::path::PathBuf;
use std::process::ExitCode;

use lvtool::report;
use lvtool::scan::Scan;

fn usage() -> ExitCode {
    eprintln!("usage: lvtool {{pvs|vgs|lvs}} --devices DEV [--devices DEV ...]");
    ExitCode::from(3)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else { return usage() };
    let mut devices: Vec<PathBuf> = vec![];
    while let Some(a) = args.next() {
        match a.as_str() {
            "--devices" => match args.next() {
                Some(d) => devices.extend(d.split(',').map(PathBuf::from)),
                None => return usage(),
            },
            s if s.starts_with("--devices=") => devices.extend(s["--devices=".len()..].split(',').map(PathBuf::from)),
            _ => return usage(),
        }
    }
    if devices.is_empty() {
        eprintln!("lvtool: no devices given (use --devices DEV)");
        return ExitCode::from(3);
    }
    let scan = Scan::devices(&devices);
    for (p, e) in &scan.errors {
        eprintln!("  WARNING: {}: {e}", p.display());
    }
    let out = match cmd.as_str() {
        "pvs" => report::pvs(&scan),
        "vgs" => report::vgs(&scan),
        "lvs" => report::lvs(&scan),
        _ => return usage(),
    };
    print!("{out}");
    for name in scan.vg_names() {
        match scan.read_vg(&name) {
            Ok(r) => {
                for d in &r.disagreements {
                    eprintln!("  WARNING: VG {name}: {} mda at {}: {:?}", d.device.display(), d.mda_start, d.problem);
                }
                for m in &r.missing {
                    eprintln!("  WARNING: VG {name} is missing PV {m}");
                }
            }
            Err(e) => eprintln!("  ERROR: {e}"),
        }
    }
    ExitCode::SUCCESS
}
