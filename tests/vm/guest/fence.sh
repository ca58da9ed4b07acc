#!/usr/bin/env bash
# fence, run in VM A (host_id 1) and VM B (host_id 2) at once on one shared disk, each with wdmd
# on its i6300esb and lockd (N=2, W=10: host_dead 8N+W = 26 s). A activates fv/lv1, then freezes
# its lockd (SIGSTOP) and goes on writing to the LV: nothing renews A's delta lease, wdmd stops
# petting before the expiry lockd gave it, and the watchdog resets A. B tries `lvchange -aey
# fv/lv1` every second from before the freeze until it is granted. What each side did is left
# in the shared directory with host-clock mtimes (b-try.I / b-res.I per attempt, a-frozen,
# a-alive) plus clock marks; the host compares them with QMP's reset event (scenarios/fence.sh).
# A never passes: reaching its end means it was not reset.
# usage: fence.sh A|B
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
role=$1
S=$SANLVM_SHARED
case $role in
A) PEER_VM=vmB ;;
B) PEER_VM=vmA ;;
*) fail "role must be A or B" ;;
esac
disk=$(the_disk)
dev=/dev/mapper/fv-lv1

if [ "$role" = A ]; then
    # Debug logging: every renewal with its CLOCK_MONOTONIC time (mono_ms=).
    LOCKD_DEBUG=1 lockd_host 1 2 10
    t lvt vgcreate --shared fv "$disk"
    signal vg-created
    t lvt vgchange --lock-start fv
    t lvt lvcreate -an -L 8M -n lv1 fv
    t lvt lvchange -aey fv/lv1
    signal a-active
    await_peer b-refused
    # Freeze lockd in its steady state, after a renewal: the check times host_dead from A's last
    # renewal (right after the join the first one may still be 2N away).
    lockd_log=$S/$SANLVM_VM.lockd.log
    for _ in $(seq 100); do
        grep -q "lvm_fv: renewed in" "$lockd_log" && break
        sleep 0.1
    done
    grep -q "lvm_fv: renewed in" "$lockd_log" || fail "lockd did not renew lvm_fv within 10 s of B's refusal"
    clock_mark start
    up_now
    u=$UP
    kill -STOP "$LOCKD_PID"
    up_now
    echo "$u $UP" >"$S/a-frozen"
    say "lockd (pid $LOCKD_PID) frozen; writing to $dev until the watchdog resets this VM"
    i=0
    up_now
    until=$((UP_CS + 12000))
    while ((UP_CS < until)); do
        i=$((i + 1))
        # One 4 KiB record (4095 bytes and a newline), O_DIRECT.
        printf '%-4095s\n' "fence: A still writes, record $i, up $UP" >/tmp/alive
        write_block /tmp/alive "$dev" 1
        echo "$i $UP" >"$S/a-alive"
        clock_mark alive
        sleep 0.5
        up_now
    done
    fail "not reset 120 s after lockd was frozen"
fi

lockd_host 2 2 10
await_peer vg-created
t lvt vgchange --lock-start fv
await_peer a-active
clock_mark b0
i=0 refused=0
up_now
t0=$UP_CS
# An attempt a second (or at once when the last one took longer); only builtins in between.
while :; do
    i=$((i + 1))
    up_now
    start=$UP_CS
    echo "$UP" >"$S/b-try.$i"
    rc=0
    out=$(lvt lvchange -aey fv/lv1 2>&1) || rc=$?
    up_now
    if [ $rc = 0 ]; then
        echo "ok $UP" >"$S/b-res.$i"
        break
    fi
    echo "refused $UP $out" >"$S/b-res.$i"
    [[ $out == *"LV fv/lv1 is locked by host 1 (node1"* ]] ||
        fail "attempt $i: -aey failed (status $rc) without naming host 1: $out"
    refused=$((refused + 1))
    ((refused != 1)) || signal b-refused
    ((UP_CS - t0 < 15000)) || fail "not granted in 150 s"
    left=$((start + 100 - UP_CS))
    ((left <= 0)) || sleep "$((left / 100)).$(printf %02d $((left % 100)))"
done
clock_mark b1
say "granted at attempt $i after $refused refusals"
[ -b "$dev" ] || fail "-aey succeeded but there is no $dev"
read_block "$dev" /tmp/got 1
head -1 /tmp/got | tr -d '\0' >"$S/b-saw"
say "A's last record on the LV: $(cat "$S/b-saw")"
sleep 2
read_block "$dev" /tmp/again 1
cmp -s /tmp/got /tmp/again || fail "the LV changed under B after it was granted: $(head -1 /tmp/again | tr -d '\0')"
grep -q "held ex (persistent) mono_ms=" <(grep "LV fv/lv1" "$S/$SANLVM_VM.lockd.log") || fail "no grant logged by B's lockd"
t lvt lvchange -an fv/lv1
t lockd_host_stop
pass
