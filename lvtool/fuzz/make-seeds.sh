#!/usr/bin/env bash
# Seeds the fuzz corpora from VGs made by real lvm2 (--driverloaded n) and by lvtool on loop
# devices. Needs root, lvm2, losetup, python3, and lvtool built (LVTOOL=path, default the
# workspace's target/release/lvtool). Writes into seeds/ (or $1); run.sh merges it into corpus/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/seeds}
lvtool=${LVTOOL:-$here/../../target/release/lvtool}
[ -x "$lvtool" ] || { echo "build lvtool first: cargo build --release -p lvtool" >&2; exit 1; }

tmp=$(mktemp -d)
loops=()
cleanup() {
    for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/etc"
cat >"$tmp/etc/lvm.conf" <<'EOF'
devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 scan_lvs = 0 }
global { event_activation = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
backup { backup = 0 archive = 0 }
EOF
export LVM_SYSTEM_DIR=$tmp/etc LVM_SUPPRESS_FD_WARNINGS=1

# attach NAME SIZE: a loop device over a new sparse file, in $dev (not echoed: a $(...)
# subshell would lose the loops+= the cleanup trap needs).
attach() {
    truncate -s "$2" "$tmp/$1.img"
    dev=$(losetup -f --show "$tmp/$1.img")
    loops+=("$dev")
}
lvm2() { local c=$1; shift; lvm "$c" --driverloaded n "${devs[@]/#/--devices=}" "$@" >/dev/null; }
lvt() { local c=$1; shift; "$lvtool" "$c" --driverloaded n "${devs[@]/#/--devices=}" "$@" >/dev/null; }

# 1. lvm2: two PVs, tags, multi-segment, striped, renamed, activation-skip, extra tags.
attach a 64M; a=$dev; attach b 64M; b=$dev
devs=("$a" "$b")
lvm2 pvcreate "$a" "$b"
lvm2 vgcreate -s 1M --addtag vgtag --addtag other_tag fz_lvm "$a" "$b"
lvm2 lvcreate -n lv1 -L 8M fz_lvm "$a"
lvm2 lvcreate -n lv2 -L 4M --addtag foo --addtag bar fz_lvm "$a"
lvm2 lvextend -L +4M fz_lvm/lv1 "$b"
lvm2 lvcreate -n lv3 -L 6M fz_lvm "$b"
lvm2 lvextend -L +2M fz_lvm/lv2 "$b"
lvm2 lvcreate -n striped -i 2 -I 64k -L 8M fz_lvm
lvm2 lvcreate -n skip -L 2M --setactivationskip y fz_lvm
lvm2 lvrename fz_lvm lv3 renamed
lvm2 lvchange --addtag "t.x+y" fz_lvm/renamed
lvm2 lvcreate -n ro -L 2M -p r fz_lvm
lvm2 lvcreate -n cont -L 4M --alloc contiguous fz_lvm
lvm2 lvremove -y fz_lvm/skip
# Unsupported segment types, kept raw by lvtool (may need DM; skipped if lvm2 refuses).
lvm2 lvcreate -n snap -s -L 4M fz_lvm/lv1 || true
lvm2 lvcreate -n mirr --type raid1 -m 1 -L 4M fz_lvm || true
python3 "$here/seeds.py" "$out" lvm2-tags "$a" "$b"
lvm vgcfgbackup --driverloaded n "${devs[@]/#/--devices=}" -f "$out/config_text/lvm2-backup.txt" fz_lvm >/dev/null

# 2. lvm2: one PV, 21 LVs (the benchmark's shape), 4 MiB extents; texts only (size).
attach c 256M; c=$dev
devs=("$c")
lvm2 pvcreate "$c"
lvm2 vgcreate fz_many "$c"
for i in $(seq 1 21); do lvm2 lvcreate -n "lv$i" -L 4M fz_many; done
SEEDS_NO_IMAGES=1 python3 "$here/seeds.py" "$out" lvm2-21lvs "$c"

# 2b. lvm2: a small VG (one LV, one tag), for small PV images.
attach f 16M; f=$dev
devs=("$f")
lvm2 pvcreate "$f"
lvm2 vgcreate -s 1M fz_small "$f"
lvm2 lvcreate -n s -L 2M --addtag t fz_small
python3 "$here/seeds.py" "$out" lvm2-small "$f"

# 3. lvtool: a shared VG (lvmlock LV, lock_args), then LVs in it.
attach d 600M; d=$dev
devs=("$d")
lvt pvcreate "$d"
lvt vgcreate --shared fz_shared "$d"
lvt lvcreate -n s1 -L 8M fz_shared
lvt lvcreate -n s2 -L 12M --addtag st fz_shared
lvt lvextend -L +4M fz_shared/s1
python3 "$here/seeds.py" "$out" lvtool-shared "$d"

# 4. lvtool local VG changed by lvm2 afterwards.
attach e 64M; e=$dev
devs=("$e")
lvt pvcreate "$e"
lvt vgcreate --addtag mixed fz_mixed "$e"
lvt lvcreate -n m1 -l 10 fz_mixed
lvm2 lvcreate -n m2 -L 8M fz_mixed
lvm2 lvextend -L +4M fz_mixed/m1
python3 "$here/seeds.py" "$out" mixed "$e"

# 5. Hand-written texts (unsupported segment types, odd syntax) and the test suite's lvm2 text.
for f in "$here"/handmade/*.txt "$here"/../tests/data/*.txt; do
    cp "$f" "$out/vg_text/"; cp "$f" "$out/config_text/"
done

echo "seeds in $out:"
for d in "$out"/*/; do echo "  $(basename "$d"): $(ls "$d" | wc -l) files, $(du -sk "$d" | cut -f1) KiB"; done
