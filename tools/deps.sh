# Sourced by tools/run and tools/check: installs the Debian packages a build needs, and
# with "test" what the test suite needs too, with "run" what tools/run adds (node and npm,
# for the console). Only what is missing is installed.
gr_install_packages() {
    local want=(build-essential cmake pkg-config libuv1-dev libwebsockets-dev
                libwebsockets-evlib-uv libjansson-dev libpq-dev libssl-dev libnats-dev)
    if [ "${1:-}" = test ]; then
        want+=(clang-format postgresql openssl chromium) # chromium: tests/browser
        want+=(systemd) # systemd-analyze for tests/ops (it runs without systemd as PID 1)
        want+=(nats-server haproxy) # the cluster tests (tests/js/cluster*.js)
    fi
    if [ "${1:-}" = test ] || [ "${1:-}" = run ]; then # run: npm builds the console (web/)
        command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)
    fi
    local missing=()
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
}
