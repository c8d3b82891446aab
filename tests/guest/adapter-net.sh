#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# virtio-net with a third-party back-end, unmodified: DPDK's vhost PMD in
# dpdk-testpmd (io forwarding between two vhost ports). virtio-loopback-adapter
# -d net turns each port into a network interface; one goes into a network
# namespace, and pings between the two (20 small, 200 large) lose nothing.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 30
load_module
modprobe virtio_net
command -v dpdk-testpmd >/dev/null || fail "dpdk-testpmd is missing (make deps)"

step "dpdk-testpmd: two vhost ports, io forwarding"
start_testpmd /tmp/vhost-net0.sock /tmp/vhost-net1.sock
step "virtio-loopback-adapter -d net twice"
"$VL_BIN/virtio-loopback-adapter" -s /tmp/vhost-net0.sock -d net -s /tmp/vhost-net1.sock -d net &
adapter_pid=$!
wait_until 30 '[ "$(virtio_net_interfaces | wc -l)" = 2 ]' || fail "two interfaces did not appear"
set -- $(virtio_net_interfaces)
here=$1 there=$2
step "interfaces $here and $there (moved into namespace 'peer')"
ip netns add peer
ip link set "$there" netns peer
ip addr add 10.99.0.1/24 dev "$here"
ip link set "$here" up
ip -n peer addr add 10.99.0.2/24 dev "$there"
ip -n peer link set "$there" up
ip -n peer link set lo up

step "ping: 20 packets, none lost"
# The first packets may wait for both drivers to bring their links up.
wait_until 15 'ping -c 1 -W 1 10.99.0.2 >/dev/null 2>&1' || fail "no reply from 10.99.0.2"
ping -c 20 -i 0.1 -W 2 10.99.0.2 >/tmp/ping.out 2>&1 || { cat /tmp/ping.out; fail "ping failed"; }
grep -q ' 0% packet loss' /tmp/ping.out || { cat /tmp/ping.out; fail "ping lost packets"; }

step "ping: 200 packets of 1400 bytes at 200/s, none lost"
ping -c 200 -i 0.005 -s 1400 -q -W 2 10.99.0.2 >/tmp/ping.out 2>&1 || { cat /tmp/ping.out; fail "ping failed"; }
grep -q '200 packets transmitted, 200 received' /tmp/ping.out || { cat /tmp/ping.out; fail "packets lost"; }

step "SIGTERM the adapter: the interfaces go away"
stop_cleanly "$adapter_pid" "the adapter"
adapter_pid=
wait_until 10 '[ -z "$(virtio_net_interfaces)" ] && [ "$(loopback_devices)" = 0 ]' ||
	fail "the interfaces are still there"
ip netns del peer
finish_adapter_test "$testpmd_pid"
