#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs in a guest (scripts/vm-run): the whole stack with the guest kernel's
# own, unmodified virtio_input driver as the front-end. vhost-user-input's
# synthetic source feeds it through virtio-loopback-adapter and the
# transport; the events must come out of /dev/input/eventN exactly as they
# were written into the FIFO, an LED set on that node must reach the
# back-end over the status queue, and a killed and restarted back-end must
# serve the same input device again.
VL_SRC_DIR=${VL_SRC_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
. "$VL_SRC_DIR/tests/guest/lib.sh"

name="vl-input guest test"
sock=/tmp/input.sock
fifo=/tmp/input.fifo

# start_backend LOG: starts vhost-user-input, waits until it listens.
start_backend() {
	"$VL_BIN/vhost-user-input" -s "$sock" --synthetic "$fifo" --name "$name" 2>"$1" &
	backend_pid=$!
	backend_log=$1
	wait_until 10 'grep -q "listening on $sock" "$backend_log"' ||
		fail "vhost-user-input did not listen on $sock: $(cat "$1")"
}

# write_and_read COUNT TEXT EXPECTED: writes TEXT into the FIFO and checks
# that the node delivers exactly EXPECTED ("type code value" lines).
write_and_read() {
	"$VL_BIN/vl-evdev-read" -n "$1" -t 20 "$node" >/tmp/events &
	reader=$!
	sleep 0.5 # the reader has the node open
	printf "$2" >"$fifo"
	wait "$reader" || fail "the node delivered $(wc -l </tmp/events) of $1 events: $(cat /tmp/events)"
	printf "$3" | cmp -s - /tmp/events || fail "events differ: want
$(printf "$3")
got
$(cat /tmp/events)"
}

arm_hung_task_detector 30
load_module
modprobe evdev
modprobe virtio_input

step "vhost-user-input --synthetic, virtio-loopback-adapter -d input"
start_backend /tmp/backend1.log
"$VL_BIN/virtio-loopback-adapter" -s "$sock" -d input 2>/tmp/adapter.log &
adapter_pid=$!
wait_until 30 'node=$("$VL_BIN/vl-evdev-read" --find "$name" 2>/dev/null)' ||
	fail "no input device '$name' appeared: $(cat /tmp/adapter.log "$backend_log")"
sys=/sys/class/input/$(basename "$node")/device
step "$node: $(cat "$sys/name"), ev $(cat "$sys/capabilities/ev"), rel $(cat "$sys/capabilities/rel"), abs $(cat "$sys/capabilities/abs")"
# EV_SYN, EV_KEY, EV_REL, EV_ABS and EV_LED; REL_X, REL_Y, REL_WHEEL; ABS_X, ABS_Y.
[ "$(cat "$sys/capabilities/ev")" = 2000f ] || fail "event types $(cat "$sys/capabilities/ev")"
[ "$(cat "$sys/capabilities/rel")" = 103 ] || fail "relative axes $(cat "$sys/capabilities/rel")"
[ "$(cat "$sys/capabilities/abs")" = 3 ] || fail "absolute axes $(cat "$sys/capabilities/abs")"
[ "$(cat "$sys/capabilities/led")" = 7 ] || fail "LEDs $(cat "$sys/capabilities/led")"
[ "$(cat "$sys/properties")" = 2 ] || fail "properties $(cat "$sys/properties")"
[ "$(cat "$sys/id/bustype")" = 0006 ] || fail "bustype $(cat "$sys/id/bustype")"

step "lines written into the FIFO come out of $node"
write_and_read 10 'key KEY_A 1\nsyn\nkey KEY_A 0\nsyn\nrel REL_X -5\nrel REL_WHEEL 1\nsyn\nabs ABS_X 1234\nkey BTN_TOUCH 1\nsyn\n' \
	'1 30 1\n0 0 0\n1 30 0\n0 0 0\n2 0 -5\n2 8 1\n0 0 0\n3 0 1234\n1 330 1\n0 0 0\n'

step "an LED set on $node reaches the back-end on the status queue"
# struct input_event (x86-64): a zero timeval, type, code, value; then SYN_REPORT.
zero16='\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'
printf "${zero16}\021\0\01\0\01\0\0\0${zero16}\0\0\0\0\0\0\0\0" >"$node" || fail "writing an LED event to $node"
wait_until 10 'grep -q "status event from the driver: EV_LED LED_CAPSL 1" "$backend_log"' ||
	fail "the back-end did not get the LED: $(cat "$backend_log")"

step "kill -9 the back-end, start another: the same device works again"
kill -KILL "$backend_pid"
wait "$backend_pid" 2>/dev/null || true
start_backend /tmp/backend2.log
wait_until 30 'grep -q "front-end connected" "$backend_log"' ||
	fail "the adapter did not reconnect: $(cat /tmp/adapter.log)"
write_and_read 2 'key KEY_B 1\nsyn\n' '1 48 1\n0 0 0\n'
[ "$("$VL_BIN/vl-evdev-read" --find "$name")" = "$node" ] || fail "the input device was replaced"

step "SIGTERM: the adapter removes the device, the back-end exits 0"
stop_cleanly "$adapter_pid" "the adapter"
adapter_pid=
wait_until 10 '[ ! -e "$node" ]' || fail "$node is still there"
stop_cleanly "$backend_pid" "vhost-user-input"
# The second back-end found the FIFO its killed predecessor made and used
# it; it removes only a FIFO it created.
[ -p "$fifo" ] || fail "the FIFO the second back-end did not create was removed"
unload_module
check_kernel_log
step PASS
