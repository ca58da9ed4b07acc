#!/usr/bin/env bash
# fence-error: lockd's fencer on a real kernel. One host (wdmd on the i6300esb, lockd, N=2,
# W=10) holds fe/lv1 active and keeps writing to it. The PV is a DM device over the disk
# (pvdisk); to make the lease I/O fail and nothing else, its table is switched so that only
# the lvmlock LV's extents return EIO while the LV's data extents still work. Then, 8N after
# the last renewal: lockd fails the lockspace, switches fe-lv1 to the `error` target (writes
# through it now fail, though the disk under it works), releases, tells wdmd the lockspace is
# clean, and the watchdog never fires: this script is still running at 8N + W + 10 s.
# Writes are logged with uptimes so the order of events is checked, not just the end state.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
N=2 W=10
disk=$(the_disk)
log=$SANLVM_SHARED/$SANLVM_VM.lockd.log

# The PV: a linear DM device over the whole disk; once the VG exists, the lvmlock LV's part of it
# goes through a device of its own (leasepart), which the test can break alone. It is the one
# device lvtool and lockd read (the disk under it carries the same label).
modprobe dm_mod
sectors=$(blockdev --getsz "$disk")
dmsetup create pvdisk --table "0 $sectors linear $disk 0"
pv=/dev/mapper/pvdisk
lockd_host 1 "$N" "$W" "$pv"
t lvt vgcreate --shared fe "$pv"
t lvt vgchange --lock-start fe
t lvt lvcreate -L 8M -n lv1 fe
t lvt lvcreate -L 8M -n lv2 fe
t lvt lvchange -an fe/lv2
t lvt lvchange -aey fe/lv1
[ -b /dev/mapper/fe-lv1 ] || fail "no /dev/mapper/fe-lv1 after -aey"

# Where the lvmlock LV and lv1 lie on the PV (sectors).
pe_start=$(lvt pvs --noheadings --nosuffix --units s -o pe_start "$pv" | tr -d ' S')
ext=$(lvt vgs --noheadings --nosuffix --units s -o vg_extent_size fe | tr -d ' S')
pe_range() { lvt lvs -a --noheadings -o seg_pe_ranges "$1" | sed 's/.*:\([0-9]*\)-\([0-9]*\).*/\1 \2/'; }
read -r lock_pe lock_last < <(pe_range fe/lvmlock)
read -r lv_first _ < <(pe_range fe/lv1)
lock_start=$((pe_start + lock_pe * ext)) lock_len=$(((lock_last - lock_pe + 1) * ext))
say "lvmlock LV at PV sectors $lock_start+$lock_len"
rest=$((lock_start + lock_len))
dmsetup create leasepart --table "0 $lock_len linear $disk $lock_start"
lease_dev=$(dmsetup info -c --noheadings -o major,minor --separator : leasepart | tr -d ' ')
# Same bytes at the same place: only the path changes.
dmsetup suspend pvdisk
dmsetup load pvdisk --table "0 $lock_start linear $disk 0
$lock_start $lock_len linear $lease_dev 0
$rest $((sectors - rest)) linear $disk $rest"
dmsetup resume pvdisk

# The writer: one 4 KiB block a round through the LV, each result with its uptime.
block /tmp/rec "fence-error record"
writes=$SANLVM_SHARED/writes
: >"$writes"
(
    set +eE
    trap - ERR
    i=0
    while :; do
        if dd if=/tmp/rec of=/dev/mapper/fe-lv1 bs=4096 seek=$((i % 16)) count=1 oflag=direct conv=notrunc \
            status=none 2>/dev/null; then r=ok; else r=fail; fi
        up_now
        echo "$r $UP" >>"$writes"
        i=$((i + 1))
        sleep 0.3
    done
) &
writer=$!
sleep 3
grep -q '^ok ' "$writes" || fail "no write through fe/lv1 succeeded before the break"

# Break the lease area only: from the suspend on, lease I/O stalls, then fails (EIO).
up_now
t_break=$UP
dmsetup suspend --noflush leasepart
dmsetup load leasepart --table "0 $lock_len error"
dmsetup resume leasepart
say "lease area of fe now fails (uptime $t_break); waiting 8N + W + 10 = $((8 * N + W + 10)) s"

# Past the point where the watchdog would have reset us had lockd not cleaned up.
deadline=$(awk -v t="$t_break" -v n="$N" -v w="$W" 'BEGIN { print t + 8 * n + w + 10 }')
while :; do
    up_now
    awk -v u="$UP" -v d="$deadline" 'BEGIN { exit !(u >= d) }' && break
    sleep 1
done
kill "$writer"
wait "$writer" 2>/dev/null || true
say "still alive at uptime $UP: the watchdog did not fire"

grep -q "lockspace lvm_fe FAILED" "$log" || fail "lockd logged no lockspace failure: $(tail -5 "$log")"
grep -q "lockspace lvm_fe: 1 active LV(s) of VG fe fenced" "$log" || fail "lockd did not fence fe: $(grep lvm_fe "$log" | tail -5)"
grep -q "lockspace lvm_fe: clean after failure; wdmd expiry cleared" "$log" ||
    fail "lockd did not clear the wdmd expiry: $(grep lvm_fe "$log" | tail -5)"
table=$(dmsetup table fe-lv1)
[[ $table =~ ^0\ [0-9]+\ error ]] || fail "fe-lv1's table is \"$table\", not the error target"
say "fe-lv1 table after the failure: $table"
# The disk under the LV still works: writes fail because of the fence, not the break.
dd if=/tmp/rec of="$pv" bs=512 seek=$((pe_start + lv_first * ext)) count=8 oflag=direct conv=notrunc status=none ||
    fail "the PV under fe/lv1 does not take writes: the test broke more than the lease area"

# The order of events, from the writer's log and lockd's (mono_ms is CLOCK_MONOTONIC = uptime).
fenced_ms=$(sed -n 's/.*lockspace lvm_fe FAILED.* mono_ms=\([0-9]*\).*/\1/p' "$log" | tail -1)
cleared_ms=$(sed -n 's/.*lvm_fe: clean after failure.* mono_ms=\([0-9]*\).*/\1/p' "$log" | tail -1)
awk -v tb="$t_break" -v f="$fenced_ms" -v c="$cleared_ms" -v n="$N" -v w="$W" '
    $1 == "ok" && $2 > tb { ok_after++; last_ok = $2 }
    $1 == "fail" { if (!first_fail) first_fail = $2; if ($2 < tb) early++ }
    $1 == "ok" && first_fail { ok_after_fail++ }
    END {
        f /= 1000; c /= 1000
        printf "break %.1f; LV writes ok until +%.1f s (%d after the break); lockspace failed +%.1f s; first failed write +%.1f s; wdmd cleared +%.1f s (watchdog would fire by +%d s)\n",
            tb, last_ok - tb, ok_after, f - tb, first_fail - tb, c - tb, 8 * n + w
        if (early) { print "writes failed before the break"; exit 1 }
        if (ok_after < 3) { print "the LV stopped taking writes right at the break: not the fencer"; exit 1 }
        if (!first_fail) { print "no write failed after the fence"; exit 1 }
        if (ok_after_fail) { print ok_after_fail " writes succeeded after one had failed"; exit 1 }
        if (f - tb > 8 * n + 1) { print "lockspace failed later than 8N after the break"; exit 1 }
        if (c - tb >= 8 * n + w - 2) { print "wdmd cleared too close to the watchdog firing"; exit 1 }
    }' "$writes" >/tmp/order || fail "order of events: $(tr '\n' ' ' </tmp/order)"
say "$(cat /tmp/order)"
cp /tmp/order "$SANLVM_SHARED/order"

# New requests in the failed VG are refused, with the reason.
out=$(lvt lvchange -aey fe/lv2 2>&1) && fail "-aey of fe/lv2 in the failed lockspace succeeded: $out"
say "refused as expected: $(head -1 <<<"$out")"
pass
