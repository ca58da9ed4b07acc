#!/usr/bin/env bash
# shared-flow, run in VM A (host_id 1) and VM B (host_id 2) at once on one shared disk, each
# with wdmd + lockd: the seed flows of a shared VG, in turns (barriers through the shared dir).
#   A: vgcreate --shared sv          B: sees sv
#   both: vgchange --lock-start
#   B: lvcreate lv1                  A: sees lv1, -aey, writes a marker
#   B: -aey and -asy refused, naming host 1; lvs -o +lock_owner agrees on both hosts
#   A: -an                           B: -aey, reads A's marker; lvextend (holder) + --refresh
#   A: sees 12m, -aey/lvremove refused naming host 2; owners agree
#   B: lvremove -f (active here)     both: no DM device of sv, lvs warns of none, vgchange --refresh
# usage: shared-flow.sh A|B
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
role=$1
case $role in
A) id=1 other=B PEER_VM=vmB ;;
B) id=2 other=A PEER_VM=vmA ;;
*) fail "role must be A or B" ;;
esac
disk=$(the_disk)
lockd_host "$id" 2 10
MiB=$((1024 * 1024))

# owners STEP: this host's view of the lock owners, compared with the other host's (whichever
# writes second compares); prints it.
owners() {
    local mine=$SANLVM_SHARED/owners.$1.$role theirs=$SANLVM_SHARED/owners.$1.$other
    lvt lvs --noheadings --separator '|' -o lv_name,lv_size,lock_owner sv | sed 's/^ *//' >"$mine.tmp"
    mv "$mine.tmp" "$mine"
    say "lock owners ($1): $(tr '\n' ';' <"$mine")"
    if [ -e "$theirs" ]; then
        cmp -s "$mine" "$theirs" || fail "lvs -o lock_owner differs at $1: $role: $(cat "$mine") / $other: $(cat "$theirs")"
        say "lock owners ($1) agree with $other"
    fi
}
no_device() {
    [ -z "$(dm_devices sv)" ] || fail "$1: DM devices of sv left here: $(dm_devices sv)"
    [ ! -e /dev/sv/lv1 ] && [ ! -e /dev/mapper/sv-lv1 ] || fail "$1: /dev/sv/lv1 or /dev/mapper/sv-lv1 left here"
}
size_is() {
    local got
    got=$(blockdev --getsize64 /dev/mapper/sv-lv1)
    [ "$got" = "$2" ] || fail "$1: /dev/mapper/sv-lv1 is $got bytes, not $2"
}
block /tmp/marker "sanlvm shared-flow marker from A $(date +%s%N)"

if [ "$role" = A ]; then
    t lvt vgcreate --shared sv "$disk"
    signal vg-created
else
    await_peer vg-created
    lvt vgs --noheadings -o vg_name,vg_lock_type sv | grep -q 'sv *sanlock' ||
        fail "B does not see the shared VG sv: $(lvt vgs sv 2>&1)"
fi

out=$(t lvt vgchange --lock-start sv 2>&1)
echo "$out"
grep -q "VG sv lockspace started (host_id $id, generation" <<<"$out" || fail "lock-start: $out"
signal "started-$role"
await_peer "started-$other"

if [ "$role" = B ]; then
    t lvt lvcreate -an -L 8M -n lv1 sv
    signal lv-created
    await_peer a-active
    no_device "before -aey"
    lvt_refused "LV sv/lv1 is locked by host 1 (node1" lvchange -aey sv/lv1
    lvt_refused "locked by host 1" lvchange -asy sv/lv1
    no_device "after refused -aey"
    owners 1
    signal b-refused
    await_peer a-released
    t lvt lvchange -aey sv/lv1
    [ -b /dev/mapper/sv-lv1 ] && [ -e /dev/sv/lv1 ] || fail "-aey on B made no /dev/mapper/sv-lv1 or /dev/sv/lv1"
    read_block /dev/mapper/sv-lv1 /tmp/got 0
    cmp -s /tmp/got "$SANLVM_SHARED/marker" || fail "B does not read A's marker through sv/lv1"
    size_is "after -aey on B" $((8 * MiB))
    t lvt lvextend -L +4M sv/lv1
    t lvt lvchange --refresh sv/lv1
    size_is "after lvextend + --refresh on the holder" $((12 * MiB))
    read_block /dev/mapper/sv-lv1 /tmp/got 0
    cmp -s /tmp/got "$SANLVM_SHARED/marker" || fail "A's marker changed after lvextend + --refresh"
    owners 2
    signal b-extended
    await_peer a-checked
    t lvt lvremove -f sv/lv1
    no_device "after lvremove on B"
    signal b-removed
else
    await_peer lv-created
    lvt lvs --noheadings -o lv_name sv | grep -qw lv1 || fail "A does not see lv1 created on B"
    t lvt lvchange -aey sv/lv1
    [ -b /dev/mapper/sv-lv1 ] && [ -e /dev/sv/lv1 ] || fail "-aey on A made no /dev/mapper/sv-lv1 or /dev/sv/lv1"
    cp /tmp/marker "$SANLVM_SHARED/marker"
    write_block /tmp/marker /dev/mapper/sv-lv1 0
    signal a-active
    await_peer b-refused
    owners 1
    grep -qx 'lv1|8.00m|1 (node1)' "$SANLVM_SHARED/owners.1.A" || fail "lock owner of lv1 is not host 1: $(cat "$SANLVM_SHARED/owners.1.A")"
    t lvt lvchange -an sv/lv1
    no_device "after -an on A"
    signal a-released
    await_peer b-extended
    owners 2
    grep -qx 'lv1|12.00m|2 (node2)' "$SANLVM_SHARED/owners.2.A" || fail "lv1 after lvextend on B: $(cat "$SANLVM_SHARED/owners.2.A")"
    lvt_refused "LV sv/lv1 is locked by host 2 (node2" lvchange -aey sv/lv1
    lvt_refused "locked by host 2" lvremove -f sv/lv1
    no_device "after refused -aey and lvremove"
    signal a-checked
fi

# Removal: no device anywhere. Each host checks, reports no stale device and refreshes the VG.
await_peer b-removed
out=$(lvt lvs sv 2>&1)
! grep -q lv1 <<<"$out" || fail "lv1 still listed after lvremove: $out"
! grep -q WARNING <<<"$out" || fail "lvs warns after lvremove: $out"
t lvt vgchange --refresh sv
no_device "after lvremove and vgchange --refresh"
owners 3
signal "removed-checked-$role"
await_peer "removed-checked-$other"
t lockd_host_stop
pass
