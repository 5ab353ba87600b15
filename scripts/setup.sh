# Shared set-up for scripts/demo and scripts/test: make sure the toolchain
# and the system libraries the package links are present. Sourced, not run.

mmulab_require_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        echo "mmulab: the Swift toolchain is not on PATH. Install Swift 6.1 or later (swift.org) and retry." >&2
        exit 1
    fi
}

# libdrm-dev: the GPU plugin discovers DRM devices through libdrm, found
# with pkg-config. Installed with apt-get when missing and we are root.
mmulab_require_libdrm() {
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libdrm; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "mmulab: installing libdrm-dev and pkg-config with apt-get..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq libdrm-dev pkg-config >/dev/null
        if pkg-config --exists libdrm; then return 0; fi
        echo "mmulab: apt-get could not install libdrm-dev." >&2
        exit 1
    fi
    echo "mmulab: libdrm-dev is missing. Install it first, for example:" >&2
    echo "    sudo apt-get install libdrm-dev pkg-config" >&2
    exit 1
}

# chromium: the tests render the HTML report in a real browser (headless).
# Installed with apt-get when missing and we are root; otherwise the
# browser test fails, naming the package.
mmulab_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

mmulab_require_chromium() {
    if mmulab_chromium; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "mmulab: installing chromium (headless, for the HTML report test) with apt-get..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium >/dev/null
        if mmulab_chromium; then return 0; fi
        echo "mmulab: apt-get could not install chromium; the HTML report test will fail." >&2
        return 0
    fi
    echo "mmulab: chromium is missing; the HTML report test will fail. Install it first, for example:" >&2
    echo "    sudo apt-get install chromium" >&2
}

# Installs Debian packages with apt-get when we are root, else says what to
# install. $1 says why they are needed; the rest are the packages.
mmulab_apt_install() {
    local why=$1
    shift
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "mmulab: installing $* ($why) with apt-get..." >&2
        export DEBIAN_FRONTEND=noninteractive
        if [ -z "${MMULAB_APT_UPDATED:-}" ]; then
            apt-get update -qq >/dev/null
            MMULAB_APT_UPDATED=1
        fi
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
        return $?
    fi
    echo "mmulab: $* missing ($why). Install them first, for example:" >&2
    echo "    sudo apt-get install $*" >&2
    return 1
}

# libsqlite3-dev: the bug database (GRDB) links the system SQLite.
mmulab_require_sqlite() {
    if [ -f /usr/include/sqlite3.h ]; then
        return 0
    fi
    mmulab_apt_install "the bug database links SQLite" libsqlite3-dev || exit 1
}

# slurm-wlm and munge: the tests start a single-node Slurm cluster
# (scripts/slurm-cluster) to run campaigns through `--engine slurm`. When
# they cannot be installed the Slurm tests say so (and fail in CI).
mmulab_require_slurm() {
    if command -v sbatch >/dev/null 2>&1 && { command -v slurmd >/dev/null 2>&1 || [ -x /usr/sbin/slurmd ]; } &&
        { command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ]; }; then
        return 0
    fi
    mmulab_apt_install "the Slurm engine's tests run a one-node cluster" slurm-wlm munge ||
        echo "mmulab: the Slurm campaign tests will not be able to start a cluster." >&2
    return 0
}

mmulab_setup() {
    cd "$(dirname "$0")/.." || exit 1
    mmulab_require_swift
    mmulab_require_libdrm
    mmulab_require_sqlite
}
