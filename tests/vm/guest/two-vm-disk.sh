#!/usr/bin/env bash
# two-vm-disk, run in VM A and VM B at once, both given the same image: A writes a marker block,
# B must read exactly it, then B answers with its own block, which A must read. O_DIRECT both
# ways, as the lease code does. usage: two-vm-disk.sh A|B TOKEN
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
role=$1 token=$2
disk=$(the_disk)
say "disk $disk, serial $(cat "/sys/block/${disk#/dev/}/serial"), $(blockdev --getsize64 "$disk") bytes"
block /tmp/a "sanlvm two-vm-disk A $token"
block /tmp/b "sanlvm two-vm-disk B $token"
case $role in
A)
    t write_block /tmp/a "$disk" 256 # byte 1 MiB
    signal a-wrote
    await b-wrote
    read_block "$disk" /tmp/got 512 # byte 2 MiB
    cmp -s /tmp/b /tmp/got || fail "A does not see B's block: $(head -c 60 /tmp/got | tr -d '\0')"
    ;;
B)
    await a-wrote
    read_block "$disk" /tmp/got 256
    cmp -s /tmp/a /tmp/got || fail "B does not see A's block: $(head -c 60 /tmp/got | tr -d '\0')"
    t write_block /tmp/b "$disk" 512
    signal b-wrote
    ;;
*) fail "role must be A or B" ;;
esac
pass
