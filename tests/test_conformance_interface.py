"""Replay of a real 6.12 kernel's rv/ transcript (conformance/interface.txt) against pyrv's RV.

The transcript (see conformance/README.md) was made by interface.sh in /sys/kernel/tracing/rv:
a listing (part 1), shell and ``rvio`` writes with the state after each case (parts 2-5) and
trace event formats (part 6). Here a small emulation of busybox ``sh`` and of ``rvio.c`` runs
every command against an :class:`RV` set up like that kernel (monitors wip and wwnr, one
per-task slot as before 6.17, kstrtobool without E/D) and compares:

- rvio lines (open/read/write/close with results and errno names) exactly;
- shell commands by exit status, stdout bytes and the errno of each error message (the README
  says to compare errno, not wording);
- the ``[state]`` line after each case exactly, built from RV reads as interface.sh builds it.

Every transcript unit is one test; the ones that need something outside RV are skipped with
the reason. The replay is sequential (the kernel state carries over), so it runs once per module.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyrv.monitors.monitor import Monitor
from pyrv.monitors.registry import RV, RVFile

CONFORMANCE = Path(os.environ.get("PYRV_CONFORMANCE_DIR", "/work/shared/conformance"))
TRANSCRIPT = CONFORMANCE / "interface.txt"
SCRIPT = CONFORMANCE / "interface.sh"
RV_ROOT = "/sys/kernel/tracing/rv"

pytestmark = pytest.mark.skipif(
    not (TRANSCRIPT.exists() and SCRIPT.exists()), reason=f"no transcript in {CONFORMANCE}"
)

STRERROR = {os.strerror(code): code for code in errno.errorcode}


# -- the two 6.12 monitors, as far as the interface sees them -------------------------------------


class Wip(Monitor):
    """wip: per-cpu, so no task slot."""

    def __init__(self) -> None:
        super().__init__("wip", "wakeup in preemptive per-cpu testing monitor.")


class Wwnr(Monitor):
    """wwnr: per-task, takes a slot like the DA monitors do."""

    uses_task_slot = True

    def __init__(self) -> None:
        super().__init__("wwnr", "wakeup while not running per-task testing model.")
        self.slot: int | None = None

    def enable(self) -> None:
        assert self.rv is not None
        self.slot = self.rv.get_task_slot()

    def disable(self) -> None:
        if self.slot is not None and self.rv is not None:
            self.rv.put_task_slot(self.slot)
        self.slot = None


def kernel_6_12() -> RV:
    rv = RV(per_task_slots=1, kstrtobool_enable_disable=False)
    rv.register_monitor(Wip())
    rv.register_monitor(Wwnr())
    return rv


# -- rvio.c ---------------------------------------------------------------------------------------


def put_escaped(data: bytes) -> str:
    """rvio's put_escaped()."""
    named = {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x00: "\\0", 0x22: '\\"', 0x5C: "\\\\"}
    out = []
    for c in data:
        if c in named:
            out.append(named[c])
        elif c < 32 or c >= 127:
            out.append(f"\\x{c:02x}")
        else:
            out.append(chr(c))
    return '"' + "".join(out) + '"'


def parse_escaped(text: str) -> bytes:
    """Inverse of put_escaped (without the quotes)."""
    out = bytearray()
    i = 0
    named = {"n": 0x0A, "t": 0x09, "r": 0x0D, "0": 0x00, '"': 0x22, "\\": 0x5C}
    while i < len(text):
        if text[i] == "\\":
            if text[i + 1] == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
            else:
                out.append(named[text[i + 1]])
                i += 2
        else:
            out.append(ord(text[i]))
            i += 1
    return bytes(out)


def rvio_unescape(arg: str) -> bytes:
    """rvio's unescape() of a DATA argument."""
    out = bytearray()
    i = 0
    simple = {"n": 0x0A, "t": 0x09, "r": 0x0D, "0": 0x00, "\\": 0x5C}
    while i < len(arg):
        if arg[i] == "\\" and i + 1 < len(arg):
            c = arg[i + 1]
            if c in simple:
                out.append(simple[c])
                i += 2
            elif c == "x":
                out.append(int(arg[i + 2 : i + 4], 16))
                i += 4
            else:
                out += ("\\" + c).encode()
                i += 2
        else:
            out += arg[i].encode()
            i += 1
    return bytes(out)


def rvio_ret(result: int | OSError) -> str:
    if isinstance(result, OSError):
        code = result.errno or 0
        return f" = -1 {errno.errorcode[code]} ({os.strerror(code)})"
    return f" = {result}"


def flag_str(flags: int) -> str:
    acc = flags & os.O_ACCMODE
    name = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY"}.get(acc, "O_RDWR")
    return (
        name
        + ("|O_TRUNC" if flags & os.O_TRUNC else "")
        + ("|O_APPEND" if flags & os.O_APPEND else "")
    )


def rvio(rv: RV, args: list[str]) -> list[str]:
    """Run ``rvio ARGS`` against rv and return what it prints."""
    out: list[str] = []

    def do_open(path: str, flags: int) -> RVFile | None:
        try:
            f = rv.open_file(path, flags)
        except OSError as exc:
            out.append(f'open("{path}", {flag_str(flags)})' + rvio_ret(exc))
            return None
        out.append(f'open("{path}", {flag_str(flags)})' + rvio_ret(3))
        return f

    mode, rest = args[0], args[1:]
    if mode == "w":
        flags, per = os.O_WRONLY, False
        while rest and rest[0] in ("-t", "-a", "-p"):
            opt = rest.pop(0)
            flags |= {"-t": os.O_TRUNC, "-a": os.O_APPEND}.get(opt, 0)
            per = per or opt == "-p"
        path, datas = rest[0], rest[1:]
        f = None if per else do_open(path, flags)
        if not per and f is None:
            return out
        for arg in datas:
            data = rvio_unescape(arg)
            if per:
                f = do_open(path, flags)
                if f is None:
                    continue
            assert f is not None
            try:
                res: int | OSError = f.write(data)
            except OSError as exc:
                res = exc
            out.append(f"write(3, {put_escaped(data)}, {len(data)})" + rvio_ret(res))
            if per:
                out.append("close(3) = 0")
        if not per:
            out.append("close(3) = 0")
    elif mode == "r":
        path = rest[0]
        size = int(rest[1]) if len(rest) > 1 else 4096
        f = do_open(path, os.O_RDONLY)
        if f is None:
            return out
        while True:
            try:
                chunk = f.read(size)
            except OSError as exc:
                out.append(f'read(3, "", {size})' + rvio_ret(exc))
                break
            out.append(f"read(3, {put_escaped(chunk)}, {size})" + rvio_ret(len(chunk)))
            if not chunk:
                break
        out.append("close(3) = 0")
    elif mode == "o":
        flags = 0
        for tok in (rest[1] if len(rest) > 1 else "RDONLY").split("|"):
            flags |= getattr(os, "O_" + tok)
        if do_open(rest[0], flags) is not None:
            out.append("close(3) = 0")
    else:
        raise ValueError(f"rvio mode {mode}")
    return out


# -- busybox sh, as far as interface.sh uses it ---------------------------------------------------


@dataclass
class ShResult:
    rc: int = 0
    stdout: bytes = b""
    errors: list[int] = field(default_factory=list)  # errnos the shell/tools printed


def printf_format(fmt: str) -> bytes:
    assert "%" not in fmt, fmt
    return rvio_unescape(fmt)  # \n \t \\ are all the escapes the script's printf uses


def od_to_bytes(lines: list[str]) -> bytes:
    """Parse ``od -c`` output back to the bytes (4-column fields after a 7-digit offset)."""
    escapes = {"\\0": 0, "\\a": 7, "\\b": 8, "\\t": 9, "\\n": 10, "\\v": 11, "\\f": 12, "\\r": 13}
    out = bytearray()
    for line in lines[:-1]:
        rest = line[7:]
        for i in range(0, len(rest), 4):
            tok = rest[i : i + 4].strip()
            if not tok:
                out.append(0x20)
            elif tok in escapes:
                out.append(escapes[tok])
            elif len(tok) == 3 and tok.isdigit():
                out.append(int(tok, 8))
            else:
                out += tok.encode()
    assert len(out) == int(lines[-1].strip(), 8), lines
    return bytes(out)


def sh(rv: RV, command: str) -> ShResult:
    """Run one command line of interface.sh (cwd rv/)."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=";|>")
    lex.whitespace_split = True
    tokens = list(lex)
    res = ShResult()
    if "|" in tokens:  # cat FILE | od -c
        assert tokens[0] == "cat" and tokens[tokens.index("|") + 1 :] == ["od", "-c"]
        res.stdout = rv.read(tokens[1])
        return res
    redirect = None
    if len(tokens) >= 2 and tokens[-2] in (">", ">>"):
        redirect = (tokens[-2], tokens[-1])
        tokens = tokens[:-2]
    if tokens and tokens[0] == "{":
        assert tokens[-1] == "}"
        body = tokens[1:-1]
        cmds, cur = [], []
        for t in body:
            if t == ";":
                cmds.append(cur)
                cur = []
            else:
                cur.append(t)
        if cur:
            cmds.append(cur)
    else:
        cmds = [tokens]
    handle: RVFile | None = None
    if redirect is not None:
        op, target = redirect
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if op == ">" else os.O_APPEND)
        try:
            handle = rv.open_file(target, flags)
        except OSError as exc:
            res.rc = 1
            res.errors.append(exc.errno or 0)
            return res
    for cmd in cmds:
        res.rc = run_simple(rv, cmd, handle, res)
    return res


def run_simple(rv: RV, cmd: list[str], handle: RVFile | None, res: ShResult) -> int:
    name, args = cmd[0], cmd[1:]
    if name == ":":
        return 0
    if name in ("echo", "printf"):
        assert handle is not None, "the script only echoes into rv/ files"
        data = (" ".join(args) + "\n").encode() if name == "echo" else printf_format(args[0])
        if not data:
            return 0
        try:
            handle.write(data)
        except OSError as exc:
            if name == "echo":  # busybox echo reports "write error"; printf only fails
                res.errors.append(exc.errno or 0)
            return 1
        return 0
    try:
        if name == "cat":
            res.stdout += rv.read(args[0])
        elif name == "rm":
            rv.unlink(args[0])
        elif name == "mkdir":
            rv.mkdir(args[0])
        elif name == "rmdir":
            rv.rmdir(args[0])
        else:
            raise ValueError(f"command {name}")
    except OSError as exc:
        res.errors.append(exc.errno or 0)
        return 1
    return 0


def state_line(rv: RV) -> str:
    """interface.sh's state()."""
    em = rv.read("enabled_monitors").decode().replace("\n", ",")
    em = em[:-1] if em.endswith(",") else em

    def flag(path: str) -> str:
        return rv.read(path).decode().replace("\0", "").replace("\n", "")

    def reactor(mon: str) -> str:
        lines = rv.read(f"monitors/{mon}/reactors").decode().split("\n")
        return "\n".join(x for x in lines if x.startswith("["))

    return (
        f"  [state] enabled_monitors={{{em}}} monitoring_on={flag('monitoring_on')} "
        f"reacting_on={flag('reacting_on')} "
        f"wip.enable={flag('monitors/wip/enable')} wip.reactor={reactor('wip')} "
        f"wwnr.enable={flag('monitors/wwnr/enable')} wwnr.reactor={reactor('wwnr')}"
    )


# -- interface.sh: where baseline runs and what it does -------------------------------------------


def script_baseline() -> tuple[list[str], set[str]]:
    """The body of baseline() and the keys of what follows each call (case title, boolfile
    file, final state)."""
    lines = SCRIPT.read_text().splitlines()
    start = lines.index("baseline() {")
    end = lines.index("}", start)
    body = [x.strip() for x in lines[start + 1 : end]]
    keys: set[str] = set()
    for i, line in enumerate(lines):
        if line.strip() != "baseline":
            continue
        for nxt in lines[i + 1 :]:
            m = re.match(r'(?:sh_case|io_case) "(.*?)"', nxt)
            b = re.match(r"boolfile (\S+) ", nxt)
            if m:
                keys.add("case:" + m.group(1))
            elif b:
                keys.add("bool:" + b.group(1))
            elif nxt.startswith('echo "--- final state'):
                keys.add("final")
            else:
                continue
            break
    return body, keys


# -- the transcript -------------------------------------------------------------------------------


@dataclass
class Unit:
    uid: str
    kind: str
    lines: list[str] = field(default_factory=list)
    title: str = ""
    skip: str = ""


STATE = "  [state] "


def parse_transcript() -> list[Unit]:
    lines = TRANSCRIPT.read_text().split("\n")
    units: list[Unit] = []
    i = 0

    def block(j: int, stop: re.Pattern[str]) -> tuple[list[str], int]:
        out = []
        while j < len(lines) and not stop.match(lines[j]):
            out.append(lines[j])
            j += 1
        return out, j

    while i < len(lines):
        line = lines[i]
        if line.startswith("$ ls -la"):
            body, i = block(i + 1, re.compile(r"\$ find"))
            units += parse_ls(body)
            continue
        if line.startswith("$ find"):
            body, i = block(i + 1, re.compile(r"^$"))
            units.append(Unit("find", "find", body))
            continue
        if line.startswith("--- every file, read with one"):
            body, i = block(i + 1, re.compile(r"^$"))
            units += [Unit(f"read4096:{x.split(':')[0]}", "read4096", [x]) for x in body]
            continue
        if line.startswith("--- the same files through cat | od -c"):
            body, i = block(i + 1, re.compile(r"^$"))
            for x in body:
                if x.startswith("$ cat "):
                    units.append(Unit(f"od:{x.split()[2]}", "od", [x]))
                else:
                    units[-1].lines.append(x)
            continue
        if line.startswith("--- short reads"):
            body, i = block(i + 1, re.compile(r"^$"))
            for x in body:
                if x.startswith("open("):
                    units.append(Unit(f"shortread:{x.split(chr(34))[1]}", "shortread", []))
                units[-1].lines.append(x)
            continue
        if line.startswith("--- initial state:"):
            units.append(Unit("initial-state", "state", [lines[i + 1]]))
            i += 2
            continue
        m = re.match(r"=== \[(\d+)\] (.*)", line)
        if m:
            body, i = block(i + 1, re.compile(r"=== |--- |#+ PART|^$"))
            units.append(Unit(f"case-{int(m.group(1)):03d}", "case", body, title=m.group(2)))
            continue
        m = re.match(r"--- (monitoring_on|reacting_on|monitors/\w+/enable)$", line)
        if m:
            body, i = block(i + 1, re.compile(r"=== |--- |#+ PART|^$"))
            units += [
                Unit(f"bool:{m.group(1)}:{n:02d}", "bool", [x], title=m.group(1))
                for n, x in enumerate(body)
            ]
            continue
        if line.startswith("--- final state"):
            units.append(Unit("final-state", "state", [lines[i + 1]], title="final"))
            i += 2
            continue
        if line.startswith("--- dmesg lines mentioning rv"):
            units.append(
                Unit(
                    "dmesg",
                    "skip",
                    skip="the VM's kernel log (grep of dmesg), not rv/ state; "
                    "no reaction can happen without trace events",
                )
            )
        if line.startswith("################ PART 6"):
            body = lines[i + 1 :]
            for x in body:
                if x.startswith("$ "):
                    units.append(
                        Unit(
                            f"part6:{x[2:]}",
                            "skip",
                            skip="trace event formats live in tracefs events/, not in rv/",
                        )
                    )
            break
        i += 1
    return units


def parse_ls(body: list[str]) -> list[Unit]:
    units = []
    cur = ""
    for x in body:
        if x.endswith(":") and x.startswith("/"):
            cur = x[:-1]
        elif re.match(r"[d-][rwx-]{9} ", x):
            name = x.split()[-1]
            path = os.path.normpath(f"{cur}/{name}")
            uid = f"ls:{cur}/{name}"
            if not (path == RV_ROOT or path.startswith(RV_ROOT + "/")):
                units.append(Unit(uid, "skip", skip="outside rv/ (the tracing directory)"))
            else:
                units.append(Unit(uid, "ls", [x], title=path))
    return units


UNITS = parse_transcript() if TRANSCRIPT.exists() and SCRIPT.exists() else []


# -- replay ---------------------------------------------------------------------------------------


def rel(path: str) -> str:
    return path[len(RV_ROOT) :].lstrip("/")


def check_ls(rv: RV, unit: Unit) -> list[str]:
    fields = unit.lines[0].split()
    mode, nlink, size = fields[0], int(fields[1]), int(fields[4])
    st = rv.stat(rel(unit.title))
    got = (stat.filemode(st.mode), st.nlink, st.size)
    return [] if got == (mode, nlink, size) else [f"ls {unit.title}: {got} != {fields[:5]}"]


def check_find(rv: RV, unit: Unit) -> list[str]:
    got = sorted([RV_ROOT] + [f"{RV_ROOT}/{p}" for p in rv.walk()])
    return [] if got == unit.lines else [f"find: {got} != {unit.lines}"]


def check_read4096(rv: RV, unit: Unit) -> list[str]:
    path = unit.lines[0].split(":")[0]
    data = rv.read(path, 4096)
    got = f"{path}: {put_escaped(data)}, 4096) = {len(data)}"
    return [] if got == unit.lines[0] else [f"{got!r} != {unit.lines[0]!r}"]


def check_od(rv: RV, unit: Unit) -> list[str]:
    path = unit.lines[0].split()[2]
    expected = od_to_bytes(unit.lines[1:])
    data = sh(rv, f"cat {path} | od -c").stdout
    return [] if data == expected else [f"{path}: {data!r} != {expected!r}"]


def check_shortread(rv: RV, unit: Unit) -> list[str]:
    path = unit.lines[0].split('"')[1]
    size = re.search(r", (\d+)\) = ", unit.lines[1])
    assert size is not None
    got = rvio(rv, ["r", path, size.group(1)])
    return [] if got == unit.lines else [f"{got} != {unit.lines}"]


def check_state(rv: RV, unit: Unit) -> list[str]:
    got = state_line(rv)
    return [] if got == unit.lines[0] else [f"state {got!r} != {unit.lines[0]!r}"]


def expected_errors(out: list[str]) -> list[int]:
    """Errnos of the shell's/tools' messages: the text after the last ': ' is strerror."""
    return [STRERROR[x.rsplit(": ", 1)[1]] for x in out if x.startswith("  stderr| ")]


def expected_stdout(command: str, out: list[str]) -> bytes:
    text = [x[len("  stdout| ") :] for x in out if x.startswith("  stdout| ")]
    if "| od -c" in command:
        return od_to_bytes(text)
    return "".join(t + "\n" for t in text).encode()


def case_steps(unit: Unit) -> tuple[list[tuple[str, list[str]]], str]:
    """A numbered case: its ``(command, expected output lines)`` steps and its state line."""
    steps: list[tuple[str, list[str]]] = []
    state = ""
    for x in unit.lines:
        if x.startswith("$ "):
            steps.append((x[2:], []))
        elif x.startswith(STATE):
            state = x
        else:
            steps[-1][1].append(x)
    return steps, state


def check_case(rv: RV, unit: Unit) -> list[str]:
    problems: list[str] = []
    steps, state = case_steps(unit)
    for command, out in steps:
        if command.startswith("rvio "):
            got = ["  " + y for y in rvio(rv, shlex.split(command)[1:])]
            if got != out:
                problems.append(f"$ {command}: {got} != {out}")
            continue
        res = sh(rv, command)
        rc = int(next(x for x in out if x.startswith("  rc="))[5:])
        exp = (rc, expected_stdout(command, out), expected_errors(out))
        got_t = (res.rc, res.stdout, res.errors)
        if got_t != exp:
            problems.append(f"$ {command}: (rc, stdout, errnos) {got_t} != {exp}")
    if state_line(rv) != state:
        problems.append(f"state {state_line(rv)!r} != {state!r}")
    return problems


BOOL_ROW = re.compile(
    r"  .*?from0: (?P<r0>\"(?P<d0>(?:[^\"\\]|\\.)*)\", \d+\) = (?:-1 \w+ \([^)]*\)|\d+))\s+"
    r"now=(?P<a0>\d) \| from1: (?P<r1>\"(?P<d1>(?:[^\"\\]|\\.)*)\", \d+\) = "
    r"(?:-1 \w+ \([^)]*\)|\d+))\s+now=(?P<a1>\d)$"
)


def check_bool(rv: RV, unit: Unit) -> list[str]:
    """One boolfile() row: set the file to 0 (then 1), rvio-write the value, read back."""
    m = BOOL_ROW.match(unit.lines[0])
    assert m is not None, unit.lines[0]
    path = unit.title
    problems = []
    for start, r, d, a in (("0", "r0", "d0", "a0"), ("1", "r1", "d1", "a1")):
        sh(rv, f"printf '{start}' > {path}")
        data = parse_escaped(m.group(d))
        line = rvio(rv, ["w", path, put_escaped(data)[1:-1]])[1]
        got = line.removeprefix("write(3, ")
        now = rv.read(path).decode().replace("\0", "").replace("\n", "")
        if (got, now) != (m.group(r), m.group(a)):
            problems.append(f"from{start}: {(got, now)} != {(m.group(r), m.group(a))}")
    return problems


CHECKS = {
    "ls": check_ls,
    "find": check_find,
    "read4096": check_read4096,
    "od": check_od,
    "shortread": check_shortread,
    "state": check_state,
    "case": check_case,
    "bool": check_bool,
}


def replay() -> dict[str, list[str]]:
    """Run every unit in transcript order on one 6.12-like RV; uid -> problems."""
    rv = kernel_6_12()
    baseline, before = script_baseline()
    results: dict[str, list[str]] = {}
    bool_started: set[str] = set()
    for unit in UNITS:
        if unit.kind == "skip":
            continue
        key = {"case": "case:" + unit.title, "bool": "bool:" + unit.title}.get(unit.kind, "")
        if unit.title == "final":
            key = "final"
        if key in before and not (unit.kind == "bool" and unit.title in bool_started):
            for command in baseline:
                sh(rv, command)
        if unit.kind == "bool":
            bool_started.add(unit.title)
        results[unit.uid] = CHECKS[unit.kind](rv, unit)
    return results


@pytest.fixture(scope="module")
def replayed() -> dict[str, list[str]]:
    return replay()


@pytest.mark.parametrize("unit", UNITS, ids=[u.uid for u in UNITS])
def test_transcript_unit(unit: Unit, replayed: dict[str, list[str]]) -> None:
    if unit.kind == "skip":
        pytest.skip(unit.skip)
    assert replayed[unit.uid] == []


def test_transcript_coverage(replayed: dict[str, list[str]]) -> None:
    """Every numbered case and every boolean row of the transcript is replayed."""
    kinds = [u.kind for u in UNITS]
    assert kinds.count("case") == 75
    assert kinds.count("bool") == 4 * 49
    assert kinds.count("state") == 2
    same = sum(1 for problems in replayed.values() if not problems)
    skipped = kinds.count("skip")
    print(f"\ninterface.txt: {same}/{len(replayed)} units replay identically, {skipped} skipped")
    assert same == len(replayed)
