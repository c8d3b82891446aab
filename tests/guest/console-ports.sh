#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# vhost-user-console with many ports through the adapter, and a back-end
# restart under a running driver:
# - 12 ports (26 queues), set up ROUNDS times with a new adapter each time:
#   every port appears with its name, and the kernel logs no soft lockup or
#   RCU stall (virtio_console busy-waits for the device at probe; see
#   driver_polls_device() in the adapter and serve_control() in the
#   back-end);
# - kill -9 of vhost-user-console and a restart while the driver runs: the
#   adapter reconnects, the back-end announces the ports again, and the
#   console (/dev/hvc0, kept open), a named port kept open, a named port
#   opened after the restart, and resize all work again; a port whose host
#   client went with the old back-end reads as hung up.
. "$(dirname "$0")/lib.sh"

PORTS=12
ROUNDS=${ROUNDS:-3}
# One page per receive buffer (-qs 128) for 12 ports and the control queue.
WINDOW_MB=8

arm_hung_task_detector 30
load_module
modprobe virtio_console

# Lockups and stalls print "BUG: soft lockup" and "rcu: INFO: rcu_sched
# self-detected stall" (rcu_preempt on some configurations).
check_no_lockup() {
	lockups=$(dmesg | tail -n +"$((_vl_dmesg_start + 1))" |
		grep -E 'soft lockup|hard LOCKUP|self-detected stall|detected stalls on CPUs' || true)
	[ -z "$lockups" ] || fail "the kernel logged: $lockups"
}

port_args="-p pty:/tmp/hvc.pty"
i=1
while [ $i -lt $PORTS ]; do
	port_args="$port_args -p org.test.p$i=unix:/tmp/port$i.sock"
	i=$((i + 1))
done
start_backend() {
	# shellcheck disable=SC2086 # one word per option
	"$VL_BIN/vhost-user-console" -s /tmp/con.sock $port_args 2>>/tmp/backend.log &
	con_pid=$!
	wait_for_file /tmp/con.sock 20 || fail "vhost-user-console did not create its socket"
}

# The vport of the port named org.test.pN.
vport_of() {
	for n in /sys/class/virtio-ports/vport*/name; do
		[ "$(cat "$n" 2>/dev/null)" = "org.test.p$1" ] && { basename "$(dirname "$n")"; return 0; }
	done
	return 1
}
named_ports() {
	cat /sys/class/virtio-ports/vport*/name 2>/dev/null | grep -c '^org\.test\.p' || true
}
all_ports_up() {
	[ "$(named_ports)" = $((PORTS - 1)) ] && (exec 5<>/dev/hvc0) 2>/dev/null
}

start_backend
r=0
while [ $r -lt "$ROUNDS" ]; do
	r=$((r + 1))
	step "round $r: $PORTS ports set up"
	rm -f /tmp/adapter.log
	t0=$(now_ms)
	"$VL_BIN/virtio-loopback-adapter" -s /tmp/con.sock -d console --window-mb $WINDOW_MB \
		--reconnect-grace 30 2>/tmp/adapter.log &
	adapter_pid=$!
	wait_until 60 all_ports_up ||
		fail "round $r: $(named_ports) named ports of $((PORTS - 1)) after 60 s; adapter: $(cat /tmp/adapter.log)"
	step "round $r: every port there after $(($(now_ms) - t0)) ms; $(sed -n 's/.*set-up: //p' /tmp/adapter.log)"
	check_no_lockup
	[ $r -lt "$ROUNDS" ] || break
	stop_cleanly "$adapter_pid" "the adapter"
	wait_until 10 '[ "$(loopback_devices)" = 0 ]' || fail "the device remains after the adapter exited"
done
dmesg | tail -n +"$((_vl_dmesg_start + 1))" | grep -q "Error allocating inbufs" &&
	fail "the driver ran out of window (--window-mb $WINDOW_MB)"

# Line through /dev/hvc0 and the pty, both ways: hvc_lines TAG
hvc_lines() {
	timeout 20 head -n1 <&3 >/tmp/got &
	reader=$!
	sleep 0.3
	printf 'ping %s\n' "$1" >/tmp/hvc.pty
	wait "$reader" || fail "$1: nothing arrived on /dev/hvc0"
	[ "$(cat /tmp/got)" = "ping $1" ] || fail "$1: /dev/hvc0 got '$(cat /tmp/got)'"
	timeout 20 head -n1 /tmp/hvc.pty >/tmp/back &
	reader=$!
	sleep 0.3
	printf 'pong %s\n' "$1" >&3
	wait "$reader" || fail "$1: nothing came back on the pty"
	[ "$(cat /tmp/back)" = "pong $1" ] || fail "$1: the pty got '$(cat /tmp/back)'"
}
# A line each way between a socket client of port N and its vport, open
# on fd 4: vport_lines N TAG
vport_lines() {
	timeout 20 python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
got = b""
while not got.endswith(b"\n"):
    chunk = s.recv(64)
    if not chunk:
        break
    got += chunk
sys.stdout.write(got.decode())
' "/tmp/port$1.sock" "to vport $2" >/tmp/sockgot &
	client=$!
	# A read on a vport whose host side is not open returns end-of-file at
	# once: read again until the client is connected.
	wait_until 20 'timeout 10 head -n1 <&4 >/tmp/vgot && [ -s /tmp/vgot ]' ||
		fail "$2: nothing arrived on port $1"
	[ "$(cat /tmp/vgot)" = "to vport $2" ] || fail "$2: port $1 got '$(cat /tmp/vgot)'"
	printf 'to socket %s\n' "$2" >&4
	wait "$client" || fail "$2: the socket client of port $1 got nothing back"
	[ "$(cat /tmp/sockgot)" = "to socket $2" ] || fail "$2: the client of port $1 got '$(cat /tmp/sockgot)'"
}
# Whether the driver says the host side of the vport open on fd N is gone.
host_hung_up() {
	python3 -c '
import select, sys
p = select.poll()
p.register(int(sys.argv[1]), select.POLLIN)
sys.exit(0 if any(ev & select.POLLHUP for _, ev in p.poll(0)) else 1)
' "$1"
}

step "before the restart: console, port 5 and resize work"
exec 3<>/dev/hvc0
stty raw -echo <&3
hvc_lines "before"
p5=$(vport_of 5) || fail "no vport named org.test.p5"
exec 4<>"/dev/$p5"
vport_lines 5 "before"
stty -F /tmp/hvc.pty rows 30 cols 90
wait_until 10 '[ "$(stty size <&3)" = "30 90" ]' || fail "stty size on /dev/hvc0 is '$(stty size <&3)', not '30 90'"
# A client of port 3 that is still connected when the back-end dies.
p3=$(vport_of 3) || fail "no vport named org.test.p3"
exec 6<>"/dev/$p3"
python3 -c '
import socket, time
s = socket.socket(socket.AF_UNIX)
s.connect("/tmp/port3.sock")
time.sleep(3600)
' &
holder=$!
wait_until 20 '! host_hung_up 6' || fail "port 3: the driver never saw the host side open"

step "kill -9 vhost-user-console and start it again"
kill -9 "$con_pid"
wait "$con_pid" 2>/dev/null || true
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
sleep 1
t0=$(now_ms)
start_backend
wait_until 30 'grep -q "back-end reconnected" /tmp/adapter.log' ||
	fail "the adapter did not reconnect: $(cat /tmp/adapter.log)"
step "the adapter reconnected $(($(now_ms) - t0)) ms after the restart"
grep -q "announcing the $PORTS port(s) again" /tmp/backend.log ||
	fail "the back-end did not announce the ports again: $(tail -n 20 /tmp/backend.log)"
[ "$(named_ports)" = $((PORTS - 1)) ] || fail "$(named_ports) named ports after the restart"

step "after the restart: console, the open port 5, port 7 opened now, resize"
hvc_lines "after"
vport_lines 5 "after"
exec 4>&-
p7=$(vport_of 7) || fail "no vport named org.test.p7"
exec 4<>"/dev/$p7"
vport_lines 7 "after"
exec 4>&-
stty -F /tmp/hvc.pty rows 41 cols 101
wait_until 10 '[ "$(stty size <&3)" = "41 101" ]' ||
	fail "stty size on /dev/hvc0 is '$(stty size <&3)' after the restart, not '41 101'"
step "port 3: its client left with the old back-end; the driver is told"
wait_until 10 'host_hung_up 6' || fail "port 3 still reads as connected on the host side"
exec 6>&-
exec 3>&-
check_no_lockup

step "SIGTERM: the adapter removes the device, the back-end exits cleanly"
stop_cleanly "$adapter_pid" "the adapter"
wait_until 10 '[ "$(loopback_devices)" = 0 ]' || fail "the device remains after the adapter exited"
stop_cleanly "$con_pid" "vhost-user-console"
unload_module
check_kernel_log
step PASS
