#!/usr/bin/env bash
# dm-smoke: the kernel's device-mapper works on the virtio disk. A dm-linear device over 1 MiB of
# the disk at sector 4096 (2 MiB); data written through it must be on the disk at 2 MiB and
# nowhere before it; removing it leaves no device behind.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
disk=$(the_disk)
name=sanlvm-smoke
t modprobe dm_mod
dmsetup targets | grep -q '^linear' || fail "no linear target: $(dmsetup targets | tr '\n' ' ')"
t dmsetup create "$name" --table "0 2048 linear $disk 4096"
dmsetup table "$name"
[ -b "/dev/mapper/$name" ] || fail "/dev/mapper/$name missing after create"
[ "$(blockdev --getsz "/dev/mapper/$name")" = 2048 ] || fail "size is not 2048 sectors"

head -c 1048576 /dev/urandom >/tmp/pattern
t dd if=/tmp/pattern of="/dev/mapper/$name" bs=1M oflag=direct conv=fsync status=none
dd if="$disk" of=/tmp/back bs=1M skip=2 count=1 iflag=direct status=none
cmp -s /tmp/pattern /tmp/back || fail "data written through $name is not at byte 2 MiB of $disk"
dd if="$disk" of=/tmp/before bs=1M count=2 iflag=direct status=none
cmp -s -n 2097152 /tmp/before /dev/zero || fail "the first 2 MiB of $disk were written"
dd if="/dev/mapper/$name" of=/tmp/through bs=1M iflag=direct status=none
cmp -s /tmp/pattern /tmp/through || fail "reading back through $name differs"

t dmsetup remove "$name"
if dmsetup info "$name" >/dev/null 2>&1; then fail "$name still exists after remove"; fi
[ ! -e "/dev/mapper/$name" ] || fail "/dev/mapper/$name still exists after remove"
pass
