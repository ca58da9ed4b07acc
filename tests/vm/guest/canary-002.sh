#!/usr/bin/env bash
# canary-002, run in VM A (host_id 1) and VM B (host_id 2) at once on one shared disk: seed 002's
# corruption must be impossible. For DURATION seconds both hosts loop: `lvchange -aey cv/canary`;
# when granted, read the LV's header (block 0: the number of records), append K records after
# them (4 KiB blocks, O_DIRECT, a pause between them), write the new count, log the activation
# to $SANLVM_SHARED/canary.VM.acts, `lvchange -an`; when refused, the refusal must name the
# other host. Two writers at once would read the same count and overwrite each other's records;
# the host checks the LV's contents (dumped by A at the end) against both logs.
# usage: canary-002.sh A|B DURATION_S K
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
role=$1 duration=$2 K=$3
case $role in
A) id=1 other_id=2 other=B PEER_VM=vmB ;;
B) id=2 other_id=1 other=A PEER_VM=vmA ;;
*) fail "role must be A or B" ;;
esac
disk=$(the_disk)
lockd_host "$id" 2 10
dev=/dev/mapper/cv-canary
acts=$SANLVM_SHARED/canary.$SANLVM_VM.acts

# fill FILE TEXT: a 4 KiB block of 64 identical 64-byte lines holding TEXT: a torn or mixed
# block shows as lines that differ. Builtins only (every exec costs under TCG).
fill() {
    local line
    printf -v line '%-63s\n' "$2"
    line=$line$line$line$line # 4 lines
    line=$line$line$line$line # 16
    printf '%s' "$line$line$line$line" >"$1"
}
# count_of: the record count in the LV's header (block 0); empty if it has none.
count_of() {
    local w1 w2 w3 _rest
    read_block "$dev" /tmp/hdr 0
    read -r w1 w2 w3 _rest </tmp/hdr || true
    [ "$w1 $w2" != "canary count" ] || echo "$w3"
}

if [ "$role" = A ]; then
    t lvt vgcreate --shared cv "$disk"
    signal vg-created
    t lvt vgchange --lock-start cv
    t lvt lvcreate -an -L 8M -n canary cv
    t lvt lvchange -aey cv/canary
    dd if=/dev/zero of="$dev" bs=1M count=8 oflag=direct status=none
    fill /tmp/hdr "canary count 0"
    write_block /tmp/hdr "$dev" 0
    t lvt lvchange -an cv/canary
    signal ready
    await_peer started-B
else
    await_peer vg-created
    t lvt vgchange --lock-start cv
    signal started-B
    await_peer ready
fi

: >"$acts"
up_now
end=$((UP_CS + duration * 100))
tries=0 granted=0 refused=0 busy=0 seq=0
say "looping for $duration s"
while ((UP_CS < end)); do
    tries=$((tries + 1))
    rc=0
    out=$(lvt lvchange -aey cv/canary 2>&1) || rc=$?
    if [ $rc = 0 ]; then
        granted=$((granted + 1))
        [ -b "$dev" ] || fail "-aey succeeded but there is no $dev"
        c=$(count_of)
        [ -n "$c" ] || fail "activation $granted: no header in block 0: $(head -c 64 /tmp/hdr | tr -d '\0')"
        first=$((c + 1))
        for ((k = 1; k <= K; k++)); do
            seq=$((seq + 1))
            fill /tmp/rec "canary rec host=$id act=$granted k=$k seq=$seq"
            write_block /tmp/rec "$dev" $((c + k))
            sleep 0.1
        done
        fill /tmp/hdr "canary count $((c + K))"
        write_block /tmp/hdr "$dev" 0
        up_now
        echo "act host=$id act=$granted first=$first last=$((c + K)) up=$UP" >>"$acts"
        lvt lvchange -an cv/canary
        [ ! -e "$dev" ] || fail "$dev left after -an"
        sleep "0.$((RANDOM % 5))"
    else
        # A refusal names the holder; "busy" (a shared short hold seen) is a refusal too.
        if [[ $out == *"LV cv/canary is locked by other hosts (busy)"* ]]; then
            busy=$((busy + 1))
        else
            [[ $out == *"LV cv/canary is locked by host $other_id (node$other_id"* ]] ||
                fail "attempt $tries: -aey failed (status $rc) without naming host $other_id: $out"
        fi
        refused=$((refused + 1))
        sleep "0.$((2 + RANDOM % 4))"
    fi
    up_now
done
echo "tries=$tries granted=$granted refused=$refused busy=$busy records=$seq" >"$SANLVM_SHARED/canary.$SANLVM_VM.summary"
say "tries $tries, granted $granted, refused $refused (busy $busy), records $seq"
signal "done-$role"
await_peer "done-$other"

if [ "$role" = A ]; then
    # Both loops are over and every activation ended with -an: the LV is free.
    t lvt lvchange -aey cv/canary
    dd if="$dev" of="$SANLVM_SHARED/canary.dump" bs=1M count=8 iflag=direct status=none
    t lvt lvchange -an cv/canary
    signal dumped
else
    await_peer dumped
fi
t lockd_host_stop
pass
