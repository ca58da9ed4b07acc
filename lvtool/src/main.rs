//! `lvtool`: LVM's volume commands (pvcreate, vgcreate, lvcreate, lvs, ...) over the devices
//! named in lvmlocal.toml or by `--devices`.

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(lvtool::cli::run(&argv));
}
