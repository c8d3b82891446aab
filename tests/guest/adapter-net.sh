#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# virtio-net with a third-party back-end, unmodified: DPDK's vhost PMD in
# dpdk-testpmd (io forwarding between two vhost ports). virtio-loopback-adapter
# -d net turns each port into a network interface; one goes into a network
# namespace, and pings between the two (20 small, 200 large) lose nothing.
#
# PAIRS=N (default 1): N receive/transmit pairs per interface (testpmd's
# queues=N, the adapter's -qn N). With N > 1 the adapter serves the control
# queue: the driver's MQ_VQ_PAIRS_SET must be answered and applied (every
# pair passes traffic, ethtool -L changes the count both ways), and -qn
# above what the transport holds is refused before the kernel hears of it.
. "$(dirname "$0")/lib.sh"

PAIRS=${PAIRS:-1}
arm_hung_task_detector 30
load_module
modprobe virtio_net
command -v dpdk-testpmd >/dev/null || fail "dpdk-testpmd is missing (make deps)"

net_fail() {
	echo "--- adapter log:" >&2
	cat /tmp/adapter.log >&2
	echo "--- testpmd log (end):" >&2
	tail -n 30 /tmp/testpmd.log >&2
	fail "$@"
}

step "dpdk-testpmd: two vhost ports, io forwarding, $PAIRS queue pair(s) each"
TESTPMD_QUEUES=$PAIRS start_testpmd /tmp/vhost-net0.sock /tmp/vhost-net1.sock

if [ "$PAIRS" -gt 1 ]; then
	step "-qn 32 (more pairs than the transport's 64 queues hold): refused, no device created"
	rc=0
	timeout 20 "$VL_BIN/virtio-loopback-adapter" -s /tmp/vhost-net0.sock -d net -qn 32 \
		>/tmp/refused.log 2>&1 || rc=$?
	cat /tmp/refused.log
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "the adapter did not refuse -qn 32 (status $rc)"
	grep -q 'at most 31 receive/transmit pairs' /tmp/refused.log || fail "no clear message for -qn 32"
	[ "$(loopback_devices)" = 0 ] || fail "a device was created for a refused -qn"
	[ -z "$(virtio_net_interfaces)" ] || fail "an interface appeared for a refused -qn"
fi

step "virtio-loopback-adapter -d net -qn $PAIRS twice"
"$VL_BIN/virtio-loopback-adapter" -s /tmp/vhost-net0.sock -d net -qn "$PAIRS" \
	-s /tmp/vhost-net1.sock -d net -qn "$PAIRS" >/tmp/adapter.log 2>&1 &
adapter_pid=$!
wait_until 30 '[ "$(virtio_net_interfaces | wc -l)" = 2 ]' || net_fail "two interfaces did not appear"
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
wait_until 15 'ping -c 1 -W 1 10.99.0.2 >/dev/null 2>&1' || net_fail "no reply from 10.99.0.2"
ping -c 20 -i 0.1 -W 2 10.99.0.2 >/tmp/ping.out 2>&1 || { cat /tmp/ping.out; net_fail "ping failed"; }
grep -q ' 0% packet loss' /tmp/ping.out || { cat /tmp/ping.out; net_fail "ping lost packets"; }

step "ping: 200 packets of 1400 bytes at 200/s, none lost"
ping -c 200 -i 0.005 -s 1400 -q -W 2 10.99.0.2 >/tmp/ping.out 2>&1 || { cat /tmp/ping.out; net_fail "ping failed"; }
grep -q '200 packets transmitted, 200 received' /tmp/ping.out || { cat /tmp/ping.out; net_fail "packets lost"; }

# What the interface IF sent on transmit queue Q, from ethtool -S: 6.1
# counts packets (tx_queue_Q_packets); 6.12 reports packets per queue only
# through netlink, so its notifications of the device (txQ_kicks: the
# driver notifies on every packet it adds, the transport has no EVENT_IDX
# for drivers).
tx_packets() { # [netns] if q
	if [ $# = 3 ]; then stats=$(ip netns exec "$1" ethtool -S "$2"); shift; else stats=$(ethtool -S "$1"); fi
	echo "$stats" | awk -v a="tx_queue_$2_packets:" -v b="tx$2_kicks:" '$1 == a || $1 == b { print $2; exit }'
}

# Pings from each CPU in turn (the driver picks the transmit queue by CPU),
# none lost.
ping_from_each_cpu() { # what
	for cpu in 0 1; do
		taskset -c $cpu ping -c 10 -i 0.05 -W 2 -q 10.99.0.2 >/tmp/ping.out 2>&1 ||
			{ cat /tmp/ping.out; net_fail "$1: ping from CPU $cpu failed"; }
		grep -q '10 packets transmitted, 10 received' /tmp/ping.out ||
			{ cat /tmp/ping.out; net_fail "$1: ping from CPU $cpu lost packets"; }
	done
}

if [ "$PAIRS" -gt 1 ]; then
	step "multiqueue: the driver asked for $PAIRS pairs and the adapter enabled them"
	# Lines of the adapter's log that say how many pairs the back-ends have.
	enabled() { grep -c "pairs enabled in the back-end: $1 of $PAIRS" /tmp/adapter.log || true; }
	wait_until 10 '[ "$(enabled "$PAIRS")" = 2 ]' ||
		net_fail "the adapter did not enable $PAIRS pairs on both devices"
	[ "$(grep -c "MQ_VQ_PAIRS_SET $PAIRS: the driver uses" /tmp/adapter.log)" = 2 ] ||
		net_fail "the adapter did not answer MQ_VQ_PAIRS_SET $PAIRS of both drivers"
	! dmesg | tail -n +"$((_vl_dmesg_start + 1))" | grep -q 'Fail to set num of queue pairs' ||
		net_fail "the driver could not set the pair count"
	if command -v ethtool >/dev/null; then
		ethtool -l "$here" | tee /tmp/channels.out
		sed -n '/Current hardware settings/,$p' /tmp/channels.out | grep -q "Combined:[[:space:]]*$PAIRS\$" ||
			net_fail "ethtool -l does not show $PAIRS combined channels"
		before=$(tx_packets peer "$there" 1)
		ping_from_each_cpu "$PAIRS pairs"
		after=$(tx_packets peer "$there" 1)
		echo "$there: tx queue 1 sent $before then $after packets"
		[ -n "$after" ] && [ "$after" -gt "${before:-0}" ] || {
			ip netns exec peer ethtool -S "$there"
			net_fail "no traffic on the second pair (tx queue 1 of $there: $before -> $after)"
		}

		step "ethtool -L combined 1, then back to $PAIRS: traffic passes each time"
		# shellcheck disable=SC2034 # read by wait_until's condition
		ones=$(enabled 1)
		ethtool -L "$here" combined 1 || net_fail "ethtool -L $here combined 1 failed"
		ip netns exec peer ethtool -L "$there" combined 1 || net_fail "ethtool -L $there combined 1 failed"
		wait_until 10 '[ "$(enabled 1)" = $((ones + 2)) ]' ||
			net_fail "the adapter did not go back to one pair"
		ping_from_each_cpu "1 pair"
		ethtool -L "$here" combined "$PAIRS" || net_fail "ethtool -L $here combined $PAIRS failed"
		ip netns exec peer ethtool -L "$there" combined "$PAIRS" ||
			net_fail "ethtool -L $there combined $PAIRS failed"
		wait_until 10 '[ "$(enabled "$PAIRS")" = 4 ]' || net_fail "the adapter did not enable $PAIRS pairs again"
		before=$(tx_packets peer "$there" 1)
		ping_from_each_cpu "$PAIRS pairs again"
		after=$(tx_packets peer "$there" 1)
		[ "$after" -gt "$before" ] || net_fail "no traffic on the second pair after ethtool -L"
		# More than the device has: the driver refuses it itself.
		! ethtool -L "$here" combined $((PAIRS + 1)) 2>/dev/null || net_fail "ethtool -L above the maximum worked"
	else
		echo "ethtool is not installed: channel and per-queue checks skipped (make deps installs it)"
		ping_from_each_cpu "$PAIRS pairs"
	fi
fi

step "SIGTERM the adapter: the interfaces go away"
stop_cleanly "$adapter_pid" "the adapter"
adapter_pid=
wait_until 10 '[ -z "$(virtio_net_interfaces)" ] && [ "$(loopback_devices)" = 0 ]' ||
	net_fail "the interfaces are still there"
ip netns del peer
! grep -E '^[0-9:.]+ (error|warn) ' /tmp/adapter.log || net_fail "the adapter logged errors or warnings"
finish_adapter_test "$testpmd_pid"
