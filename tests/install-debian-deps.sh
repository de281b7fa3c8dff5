#!/bin/sh
# What the fault tests need from Debian beyond Python: iptables (packet loss inside a test's own network
# namespace). Installed only when missing and when we are root with apt-get; otherwise those tests skip
# and say why. Never fails the test command.
command -v iptables >/dev/null 2>&1 && exit 0
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || { echo "tests: no iptables; packet-loss tests will skip" >&2; exit 0; }
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables; } >/dev/null 2>&1 ||
    echo "tests: could not install iptables; packet-loss tests will skip" >&2
exit 0
