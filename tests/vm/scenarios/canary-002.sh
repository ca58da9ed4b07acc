# shellcheck shell=bash
# canary-002: seed 002's corruption (two hosts writing one LV at once) cannot happen. Two VMs
# (A host_id 1, B host_id 2; wdmd on the i6300esb, lockd N=2 W=10) loop for CANARY_SECS: -aey
# the same LV, append K tagged records (O_DIRECT) after the count in its header, -an
# (guest/canary-002.sh). The host then checks the LV (dumped at the end) against both hosts'
# activation logs: the header counts every record; each activation's records form one run at
# the slots it logged; no slot claimed twice, no torn or foreign block, nothing after the end;
# both hosts were granted and refused.
CANARY_SECS=${CANARY_SECS:-60}
CANARY_K=3
scenario() {
    build_lockd
    local img vm
    img=$(new_disk shared0 512M)
    boot_vm vmA "$img" canary-002.sh A "$CANARY_SECS" "$CANARY_K"
    boot_vm vmB "$img" canary-002.sh B "$CANARY_SECS" "$CANARY_K"
    wait_vms 300 vmA vmB
    for vm in vmA vmB; do
        [ "${VM_RC[$vm]}" = 0 ] && [ "$(guest_result $vm)" = PASS ] || daemon_log_tail $vm
    done
    expect_guest_pass vmA
    expect_guest_pass vmB
    local report
    report=$(check_canary "$SHARED" "$CANARY_K") || fail "canary: $report"
    echo "$report"
    timing "$report"
    timing "vmA: $(cat "$SHARED/canary.vmA.summary"); vmB: $(cat "$SHARED/canary.vmB.summary")"
}

# check_canary SHARED K: checks canary.dump against canary.vm{A,B}.acts; prints a summary, or
# the first violation (status 1).
check_canary() {
    "$PY" - "$1" "$2" <<'PYEOF'
import re, sys
shared, K = sys.argv[1], int(sys.argv[2])
def bad(msg):
    print(msg)
    sys.exit(1)
data = open(f"{shared}/canary.dump", "rb").read()
blocks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
def lines(b):
    ls = b.split(b"\n")
    return ls[:-1] if ls and ls[-1] == b"" else ls
def uniform(i):
    ls = lines(blocks[i])
    if len(ls) != 64 or len(set(ls)) != 1:
        bad(f"block {i} is torn or mixed: {sorted(set(l[:40] for l in ls))[:4]}")
    return ls[0].decode().strip()
m = re.fullmatch(r"canary count (\d+)", uniform(0))
if not m:
    bad(f"header: {blocks[0][:64]!r}")
count = int(m.group(1))
acts = []
for vm in ("vmA", "vmB"):
    for l in open(f"{shared}/canary.{vm}.acts"):
        a = dict(kv.split("=") for kv in l.split()[1:])
        acts.append((int(a["first"]), int(a["last"]), int(a["host"]), int(a["act"])))
acts.sort()
summ = {}
for vm in ("vmA", "vmB"):
    summ[vm] = dict(kv.split("=") for kv in open(f"{shared}/canary.{vm}.summary").read().split())
records = sum(int(s["records"]) for s in summ.values())
if count != records:
    bad(f"header counts {count} records, the hosts wrote {records}: lost or doubled appends")
slot = 1
for first, last, host, act in acts:
    if first != slot:
        bad(f"host {host} activation {act} claims slots {first}..{last}, expected to start at {slot} (overlap or gap)")
    if last - first + 1 != K:
        bad(f"host {host} activation {act} claims {last - first + 1} slots, not {K}")
    for k, s in enumerate(range(first, last + 1), 1):
        want = f"canary rec host={host} act={act} k={k} "
        got = uniform(s)
        if not (got + " ").startswith(want):
            bad(f"slot {s}: {got!r}, expected host {host} activation {act} record {k}: overwritten by another writer")
    slot = last + 1
if slot - 1 != count:
    bad(f"activations cover slots 1..{slot - 1}, header says {count}")
for i in range(count + 1, len(blocks)):
    if blocks[i].strip(b"\0"):
        bad(f"block {i}, after the last record, is not empty: {blocks[i][:60]!r}")
per = {h: sum(1 for a in acts if a[2] == h) for h in (1, 2)}
refused = {vm: int(s["refused"]) for vm, s in summ.items()}
if min(per.values()) < 2:
    bad(f"a host was hardly granted: activations per host {per}")
if sum(refused.values()) < 1:
    bad("no attempt was ever refused: the hosts never contended")
runs = "".join("AB"[a[2] - 1] for a in acts)
switches = sum(1 for x, y in zip(runs, runs[1:]) if x != y)
print(f"canary OK: {count} records in {len(acts)} activations (A {per[1]}, B {per[2]}), "
      f"refused A {refused['vmA']} B {refused['vmB']}, holder switched {switches} times: {runs}")
PYEOF
}
