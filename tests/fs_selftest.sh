#!/bin/sh
# SPDX-License-Identifier: MIT
#
# fs_selftest.sh - a kernel-selftest-style suite for an RV control directory.
#
# Run it with the working directory being an rv/ directory: a `pyrv mount` point, or
# /sys/kernel/tracing/rv on a kernel with CONFIG_RV. It uses nothing but a POSIX shell and
# its builtins, grep, find and dmesg, and prints KTAP; exit status 0 (all passed or skipped),
# 1 (a test failed) or 4 (KSFT_SKIP: not run here).
#
# It leaves the directory as it found the boot defaults: no monitor enabled, every reactor
# nop, monitoring_on and reacting_on 1.
#
# The live part (wwnr with the printk reactor under a scheduler load writes the kernel's
# reaction to dmesg, and writes none while monitoring_on or reacting_on is 0) needs monitors
# that watch the running kernel: set PYRV_LIVE=1 where that is so (a kernel with CONFIG_RV,
# or a pyrv mount with live monitoring), otherwise it is skipped.
#
# Containers need enough per-task slots (CONFIG_RV_PER_TASK_MONITORS) for all their per-task
# children; enabling one that has too few fails, as it does on the kernel.

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

if [ ! -f available_monitors ] || [ ! -f enabled_monitors ] || [ ! -d monitors ]; then
	echo "TAP version 13"
	echo "1..0 # SKIP $(pwd) is not an rv directory (run from a pyrv mount or tracing/rv)"
	exit $KSFT_SKIP
fi

NTEST=0
NFAIL=0
NSKIP=0
ERRS=""

# note MSG: record a failure detail for the current test
note() {
	ERRS="${ERRS}# $*
"
}

# result NAME: print the result of the test just run from the notes it made
result() {
	NTEST=$((NTEST + 1))
	if [ -n "$ERRS" ]; then
		printf '%s' "$ERRS"
		echo "not ok $NTEST $1"
		NFAIL=$((NFAIL + 1))
	else
		echo "ok $NTEST $1"
	fi
	ERRS=""
}

skip() {
	NTEST=$((NTEST + 1))
	NSKIP=$((NSKIP + 1))
	echo "ok $NTEST $1 # SKIP $2"
}

# write FILE TEXT [>>]: echo TEXT into FILE (truncating, or appending with '>>'); the
# status is the shell's (non-zero when the write fails); messages are dropped.
write() {
	if [ "$3" = ">>" ]; then
		(echo "$2" >> "$1") 2>/dev/null
	else
		(echo "$2" > "$1") 2>/dev/null
	fi
}

is_on() { grep -qx 1 "$1"; }
is_off() { grep -qx 0 "$1"; }
listed() { grep -qx "$1" enabled_monitors; }
none_enabled() { ! grep -q . enabled_monitors; }
reactor_is() { grep -qx "\[$2\]" "$1/reactors"; }

# every monitor directory (nested ones too), as monitors/<m> or monitors/<c>/<m>
monitor_dirs() {
	find monitors -type f -name enable | while read -r f; do echo "${f%/enable}"; done
}

# the top-level ones
top_dirs() {
	find monitors -type f -path 'monitors/*/enable' ! -path 'monitors/*/*/enable' |
		while read -r f; do echo "${f%/enable}"; done
}

# the name enabled_monitors and available_monitors use: "parent:child" or "name"
list_name() {
	rest=${1#monitors/}
	case $rest in
	*/*) echo "${rest%%/*}:${rest#*/}" ;;
	*) echo "$rest" ;;
	esac
}

children() {
	find "$1" -type f -path "$1/*/enable" | while read -r f; do echo "${f%/enable}"; done
}

# first_line: the first line of standard input
first_line() {
	read -r line && echo "$line"
}

is_container() {
	[ -n "$(children "$1")" ]
}

reset_all() {
	write enabled_monitors "" ">"
	for d in $(monitor_dirs); do
		write "$d/reactors" nop
	done
	write monitoring_on 1
	write reacting_on 1
}

echo "TAP version 13"
reset_all

# --- the tree ---------------------------------------------------------------------------

for f in available_monitors enabled_monitors monitoring_on available_reactors reacting_on; do
	[ -f "$f" ] || note "missing $f"
done
for d in $(monitor_dirs); do
	for f in enable desc reactors; do
		[ -f "$d/$f" ] || note "missing $d/$f"
	done
done
result "the kernel's files exist in rv/ and in every monitor directory"

for f in $(find . -type f); do
	grep -q '' "$f"
	[ $? -le 1 ] || note "cannot read $f"
done
result "every file is readable"

for d in $(monitor_dirs); do
	grep -qx "$(list_name "$d")" available_monitors || note "$d not in available_monitors"
done
while read -r name; do
	case $name in
	*:*) [ -d "monitors/${name%%:*}/${name#*:}" ] || note "no directory for $name" ;;
	*) [ -d "monitors/$name" ] || note "no directory for $name" ;;
	esac
done < available_monitors
result "available_monitors lists exactly the monitor directories"

grep -qx nop available_reactors || note "nop is not an available reactor"
for d in $(monitor_dirs); do
	n=$(grep -c '^\[' "$d/reactors")
	[ "$n" = 1 ] || note "$d/reactors has $n selected reactors"
	reactor_is "$d" nop || note "$d does not start with nop"
	while read -r r; do
		grep -qx "$r" "$d/reactors" || grep -qx "\[$r\]" "$d/reactors" ||
			note "$d/reactors lacks $r"
	done < available_reactors
done
result "every reactors file lists the available reactors with nop selected"

none_enabled || note "enabled_monitors is not empty after truncation"
is_on monitoring_on || note "monitoring_on is not 1"
is_on reacting_on || note "reacting_on is not 1"
result "boot defaults: nothing enabled, monitoring_on=1, reacting_on=1"

# --- enable / disable every monitor and container ---------------------------------------

# check_enabled DIR: DIR (and, for a container, every child) is enabled and listed
check_enabled() {
	is_on "$1/enable" || note "$1/enable is not 1"
	if is_container "$1"; then
		for c in $(children "$1"); do
			is_on "$c/enable" || note "child $c of $1 not enabled"
			listed "$(list_name "$c")" || note "child $c of $1 not in enabled_monitors"
		done
	fi
	listed "$(list_name "$1")" || note "$(list_name "$1") not in enabled_monitors"
}

check_disabled() {
	is_off "$1/enable" || note "$1/enable is not 0"
	if is_container "$1"; then
		for c in $(children "$1"); do
			is_off "$c/enable" || note "child $c of $1 still enabled"
		done
	fi
	listed "$(list_name "$1")" && note "$(list_name "$1") still in enabled_monitors"
	none_enabled || note "enabled_monitors not empty: $(grep . enabled_monitors)"
}

for d in $(monitor_dirs); do
	write enabled_monitors "" ">"
	write "$d/enable" 1 || note "echo 1 > $d/enable failed"
	check_enabled "$d"
	write "$d/enable" 1 || note "enabling $d twice failed"
	write "$d/enable" 0 || note "echo 0 > $d/enable failed"
	check_disabled "$d"
	write "$d/enable" 0 || note "disabling $d twice failed"
	result "$(list_name "$d"): enable and disable through $d/enable"
done

for d in $(monitor_dirs); do
	name=$(list_name "$d")
	write enabled_monitors "" ">"
	write enabled_monitors "$name" ">>" || note "echo $name >> enabled_monitors failed"
	check_enabled "$d"
	write enabled_monitors "!$name" ">>" || note "echo '!$name' >> enabled_monitors failed"
	check_disabled "$d"
	case $name in
	*:*) # a nested monitor also answers to its bare name
		write enabled_monitors "${name#*:}" ">>" || note "echo ${name#*:} >> failed"
		check_enabled "$d"
		write enabled_monitors "!${name#*:}" ">>" || note "echo '!${name#*:}' >> failed"
		check_disabled "$d"
		;;
	esac
	write enabled_monitors "$name" ">" || note "echo $name > enabled_monitors failed"
	check_enabled "$d"
	write enabled_monitors "" ">"
	check_disabled "$d"
	result "$name: enable and disable through enabled_monitors"
done

# --- enabled_monitors: truncation and append --------------------------------------------

first=""
second=""
for d in $(top_dirs); do
	is_container "$d" && continue
	if [ -z "$first" ]; then first=$d; elif [ -z "$second" ]; then second=$d; fi
done
if [ -n "$second" ]; then
	a=$(list_name "$first")
	b=$(list_name "$second")
	write enabled_monitors "$a" ">"
	write enabled_monitors "$b" ">>"
	listed "$a" && listed "$b" || note "'>>' did not keep $a beside $b"
	write enabled_monitors "$b" ">"
	listed "$a" && note "'>' did not disable $a"
	listed "$b" || note "'>' did not enable $b"
	write enabled_monitors "$a" ">>"
	write enabled_monitors "" ">"
	none_enabled || note "'echo > enabled_monitors' left: $(grep . enabled_monitors)"
	write enabled_monitors "$a" ">>"
	: > enabled_monitors
	none_enabled || note "': > enabled_monitors' left: $(grep . enabled_monitors)"
	write enabled_monitors "$a" ">>"
	{
		echo "$b"
		echo "!$a"
	} >> enabled_monitors 2>/dev/null
	# the first write on the open file enables b, the second (at offset > 0) does nothing
	listed "$b" || note "the first write on one open file did not enable $b"
	listed "$a" || note "a second write on one open file was not a no-op"
	write enabled_monitors "" ">"
	result "O_TRUNC ('>') disables all, '>>' appends, one write per open counts"
else
	skip "O_TRUNC ('>') disables all, '>>' appends, one write per open counts" \
		"needs two top-level monitors that are not containers"
fi

# --- reactors -------------------------------------------------------------------------------

for d in $(monitor_dirs); do
	write enabled_monitors "" ">"
	while read -r r; do
		write "$d/reactors" "$r" || note "echo $r > $d/reactors failed"
		reactor_is "$d" "$r" || note "$d/reactors does not select $r"
		if is_container "$d"; then
			for c in $(children "$d"); do
				reactor_is "$c" "$r" || note "child $c of $d did not get $r"
			done
		fi
	done < available_reactors
	write "$d/reactors" nop
	reactor_is "$d" nop || note "$d/reactors does not go back to nop"
	is_off "$d/enable" || note "setting reactors enabled $d"
	result "$(list_name "$d"): every available reactor can be selected"
done

d=$(top_dirs | while read -r x; do
	is_container "$x" || {
		echo "$x"
		break
	}
done)
if [ -n "$d" ]; then
	write "$d/enable" 1
	r=$(grep -vx nop available_reactors | grep -vx panic | first_line)
	if [ -n "$r" ]; then
		write "$d/reactors" "$r"
		is_on "$d/enable" || note "changing the reactor disabled $d"
		reactor_is "$d" "$r" || note "$d did not take $r while enabled"
		write enabled_monitors "!$(list_name "$d")" ">>"
		write enabled_monitors "$(list_name "$d")" ">>"
		reactor_is "$d" "$r" || note "disable/enable lost the reactor of $d"
		write enabled_monitors "" ">"
		reactor_is "$d" "$r" || note "truncating enabled_monitors reset the reactor of $d"
		write "$d/reactors" nop
	fi
	write "$d/enable" 0
	result "a reactor survives enabling, disabling and truncation"
fi

# --- errors ---------------------------------------------------------------------------------

d=$(top_dirs | first_line)
write enabled_monitors "$(list_name "$d")" ">"
write enabled_monitors pyrv_no_such_monitor ">>" && note "enabling a non-existent monitor succeeded"
listed "$(list_name "$d")" || note "a failed '>>' changed enabled_monitors"
write enabled_monitors "!pyrv_no_such_monitor" ">>" &&
	note "disabling a non-existent monitor succeeded"
write enabled_monitors "" ">"
result "a non-existent monitor is refused"

write "$d/reactors" pyrv_no_such_reactor && note "selecting a non-existent reactor succeeded"
reactor_is "$d" nop || note "a failed reactor write changed $d/reactors"
write "$d/reactors" "[nop]" && note "a bracketed reactor name was accepted"
result "a non-existent reactor is refused"

for f in monitoring_on reacting_on "$d/enable"; do
	write "$f" garbage && note "garbage accepted by $f"
	write "$f" "" && note "an empty line accepted by $f"
done
write available_monitors x && note "write to available_monitors succeeded"
write available_reactors x && note "write to available_reactors succeeded"
write "$d/desc" x && note "write to $d/desc succeeded"
(echo x > pyrv_selftest_newfile) 2>/dev/null && note "a new file could be created"
[ -e pyrv_selftest_newfile ] && note "pyrv_selftest_newfile exists"
result "bad values and read-only files are refused"

for f in monitoring_on reacting_on; do
	write "$f" 0 || note "echo 0 > $f failed"
	is_off "$f" || note "$f is not 0"
	write "$f" 1 || note "echo 1 > $f failed"
	is_on "$f" || note "$f is not 1"
done
write enabled_monitors "$(list_name "$d")" ">"
write monitoring_on 0
listed "$(list_name "$d")" || note "monitoring_on=0 changed enabled_monitors"
write monitoring_on 1
write enabled_monitors "" ">"
result "monitoring_on and reacting_on switch, and keep the enabled monitors"

# --- live: reactions in the kernel log ----------------------------------------------------

# load: a scheduler load made of short-lived processes and pipes
load() {
	# two CPU-bound shells keep the CPUs busy (a task switched in from the idle task is not
	# watched on kernels that lose those switches), while a pipeline of one-line writes
	# wakes its reader again and again: some wakeups find the reader still running
	spin & s1=$!
	spin & s2=$!
	i=0
	while [ $i -lt 5000 ]; do
		echo x
		i=$((i + 1))
	done | grep -c x > /dev/null
	kill $s1 $s2 2> /dev/null
	wait $s1 $s2 2> /dev/null
}

spin() {
	j=0
	while [ $j -lt 100000 ]; do
		j=$((j + 1))
	done
}

# count: the kernel log's wwnr reactions so far
count() {
	dmesg | grep -c 'rv: monitor wwnr does not allow event'
}

LIVE_NAME="wwnr with printk writes its reactions to dmesg, none with monitoring_on or reacting_on 0"
if [ "${PYRV_LIVE:-0}" != 1 ]; then
	skip "$LIVE_NAME" "needs live monitoring: set PYRV_LIVE=1 on a live pyrv mount or a CONFIG_RV kernel"
elif [ ! -d monitors/wwnr ] || ! grep -qx printk available_reactors; then
	skip "$LIVE_NAME" "needs the wwnr monitor and the printk reactor"
elif ! dmesg > /dev/null 2>&1; then
	skip "$LIVE_NAME" "dmesg cannot read the kernel log here"
else
	write monitors/wwnr/reactors printk
	write monitors/wwnr/enable 1
	before=$(count)
	n=0 # one round is a few tens of ms: up to ~30 s of load, left as soon as a reaction shows
	while [ "$(count)" = "$before" ] && [ $n -lt 1000 ]; do
		load
		n=$((n + 1))
	done
	[ "$(count)" != "$before" ] || note "no 'rv: monitor wwnr' reaction in dmesg under load"
	dmesg | grep 'rv: monitor wwnr does not allow event' | first_line |
		grep -q 'rv: monitor wwnr does not allow event [a-z_]* on state [a-z_]*' ||
		note "the reaction does not read like the kernel's"
	for sw in monitoring_on reacting_on; do
		write "$sw" 0
		before=$(count)
		load
		load
		[ "$(count)" = "$before" ] || note "reactions reached dmesg with $sw=0"
		write "$sw" 1
	done
	write monitors/wwnr/enable 0
	write monitors/wwnr/reactors nop
	result "$LIVE_NAME"
fi

reset_all
echo "1..$NTEST"
echo "# totals: pass:$((NTEST - NFAIL - NSKIP)) fail:$NFAIL skip:$NSKIP"
if [ $NFAIL -gt 0 ]; then
	exit $KSFT_FAIL
fi
exit $KSFT_PASS
