# shellcheck shell=bash
# watchdog-softdog (not in the default set): like watchdog-reset with the kernel's softdog in
# place of the i6300esb; QMP then shows only SHUTDOWN (guest-reset).
# shellcheck source=watchdog-reset.sh
. "$VM_DIR/scenarios/watchdog-reset.sh"
WATCHDOG=softdog
