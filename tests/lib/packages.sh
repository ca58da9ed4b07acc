# shellcheck shell=bash
# Debian packages the project's commands need, and the one installer every command uses (the
# README's commands, tests/run, the VM tier, the benches), so each works on a fresh Debian
# machine that has only a Rust toolchain.

# What `cargo build` of the workspace needs: a C compiler and linker (rustc links with cc; some
# crates build C), and the devicemapper crate's build script finds libdevmapper with pkg-config
# and runs bindgen (libclang).
BUILD_PACKAGES=(gcc libc6-dev libdevmapper-dev libclang-dev pkg-config)
# The oracles of on-disk compatibility and lvmlockd's protocol; unshare for lvmlockd's test mode.
ORACLE_PACKAGES=(sanlock lvm2 lvm2-lockd util-linux)

# apt_install PKG...: installs those not installed yet (as root, or through sudo). Fails when
# apt-get does: a command that needs a package must not go on without it.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    printf 'installing %s\n' "${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq || return 1
    # May remove qemu-utils (a backport here conflicts with qemu-system-x86 7.2); nothing needs it.
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

require_cargo() {
    command -v cargo >/dev/null && return 0
    echo "cargo not found; install a Rust toolchain (>= 1.87, e.g. rustup)" >&2
    return 1
}
