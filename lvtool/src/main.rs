//! `lvtool`: LVM's volume commands (pvcreate, vgcreate, lvcreate, lvs, ...) over the devices
//! named in lvmlocal.toml or by `--devices`.

// A command allocates tens of thousands of small strings reading a big VG and frees them at
// once; glibc's malloc spent a quarter of a 500-LV `lvchange` on that.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(lvtool::cli::run(&argv));
}
