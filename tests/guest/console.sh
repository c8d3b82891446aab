#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# vhost-user-console through the adapter and the transport, with the
# kernel's virtio_console driver (multiport):
# - a line written on port 0's pty arrives on /dev/hvc0, and one written
#   there comes back on the pty;
# - a named port (a Unix socket on the host side) appears as
#   /dev/vportNp1 with its name in /sys/class/virtio-ports/*/name, and a
#   line goes each way between a socket client and the vport;
# - resizing the pty reaches the driver: `stty size` on /dev/hvc0.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 30
load_module
modprobe virtio_console

"$VL_BIN/vhost-user-console" -s /tmp/con.sock -p pty:/tmp/hvc.pty \
	-p org.virtio-loopback.test=unix:/tmp/port1.sock &
con_pid=$!
wait_for_file /tmp/con.sock 20 || fail "vhost-user-console did not create its socket"
[ -L /tmp/hvc.pty ] || fail "no symlink to port 0's pty"

step "adapter: console device"
"$VL_BIN/virtio-loopback-adapter" -s /tmp/con.sock -d console &
adapter_pid=$!
wait_until 30 'grep -qs org.virtio-loopback.test /sys/class/virtio-ports/vport*p1/name' ||
	fail "the named port did not appear in /sys/class/virtio-ports"
port1=$(basename "$(dirname "$(grep -l org.virtio-loopback.test /sys/class/virtio-ports/vport*p1/name)")")
[ -c "/dev/$port1" ] || fail "/dev/$port1 is not a character device"
# /dev/hvc0 is there once the driver made port 0 a console (CONSOLE_PORT).
wait_until 30 '( exec 3<>/dev/hvc0 ) 2>/dev/null' || fail "/dev/hvc0 does not open"
# Keep it open: hvc resets the tty's mode on the last close.
exec 3<>/dev/hvc0
stty raw -echo <&3

step "host -> guest: a line on the pty arrives on /dev/hvc0"
timeout 20 head -n1 <&3 >/tmp/got &
reader=$!
sleep 0.3
printf 'ping from the host\n' >/tmp/hvc.pty
wait "$reader" || fail "nothing arrived on /dev/hvc0"
[ "$(cat /tmp/got)" = "ping from the host" ] || fail "/dev/hvc0 got '$(cat /tmp/got)'"

step "guest -> host: a line on /dev/hvc0 comes back on the pty"
timeout 20 head -n1 /tmp/hvc.pty >/tmp/back &
reader=$!
sleep 0.3
printf 'pong from the guest\n' >&3
wait "$reader" || fail "nothing came back on the pty"
[ "$(cat /tmp/back)" = "pong from the guest" ] || fail "the pty got '$(cat /tmp/back)'"

step "resize: the pty's size reaches the driver"
stty -F /tmp/hvc.pty rows 33 cols 111
wait_until 10 '[ "$(stty size <&3)" = "33 111" ]' ||
	fail "stty size on /dev/hvc0 is '$(stty size <&3)', not '33 111'"
stty -F /tmp/hvc.pty rows 40 cols 100
wait_until 10 '[ "$(stty size <&3)" = "40 100" ]' ||
	fail "stty size on /dev/hvc0 is '$(stty size <&3)' after the second resize, not '40 100'"
exec 3>&-

step "named port: a socket client and /dev/$port1, both ways"
# The client sends a line, then waits for one. The vport's reads and writes
# work only while the device says the host side is open (PORT_OPEN). The
# vport stays open all along (a port opens once at a time): the driver
# drops what it holds for a port when the guest closes it, so a line
# arriving between two reads that each opened the port could be lost.
exec 4<>"/dev/$port1"
timeout 20 python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/tmp/port1.sock")
s.sendall(b"to the vport\n")
got = b""
while not got.endswith(b"\n"):
    chunk = s.recv(64)
    if not chunk:
        break
    got += chunk
sys.stdout.write(got.decode())
' >/tmp/sockgot &
client=$!
# A read on a vport whose host side is not open returns end-of-file at
# once: read again until the client is connected.
wait_until 20 'timeout 10 head -n1 <&4 >/tmp/vgot && [ -s /tmp/vgot ]' ||
	fail "nothing arrived on /dev/$port1"
[ "$(cat /tmp/vgot)" = "to the vport" ] || fail "/dev/$port1 got '$(cat /tmp/vgot)'"
printf 'to the socket\n' >&4
wait "$client" || fail "the socket client got nothing back"
[ "$(cat /tmp/sockgot)" = "to the socket" ] || fail "the socket client got '$(cat /tmp/sockgot)'"
exec 4>&-

step "SIGTERM: the adapter removes the device, the back-end exits cleanly"
stop_cleanly "$adapter_pid" "the adapter"
wait_until 10 '[ "$(loopback_devices)" = 0 ]' || fail "the device remains after the adapter exited"
stop_cleanly "$con_pid" "vhost-user-console"
[ ! -e /tmp/hvc.pty ] || fail "vhost-user-console left its pty symlink behind"
[ ! -e /tmp/port1.sock ] || fail "vhost-user-console left its port socket behind"
unload_module
check_kernel_log
step PASS
