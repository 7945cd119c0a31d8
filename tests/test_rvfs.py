"""pyrv mount: the FUSE operations in-process, then real mounts (lifecycle, permissions, hooks,
the kernel-selftest-style shell suite tests/fs_selftest.sh).

The real-mount tests need /dev/fuse, libfuse3 and mfusepy (and root for the mode checks);
they skip with the reason where those are absent. Every mount is made in a fresh temporary
directory and removed in a ``finally``, so no FUSE mount outlives a test.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from pyrv.fs.mount import (
    FSTYPE,
    build_rv,
    fuse_unavailable_reason,
    mount_state,
    normalize,
    pyrv_mounts,
    read_owner,
)
from pyrv.fs.rvfs import KERNEL_ROOT_NAMES, VERDICTS_FILE, RVFs, VerdictLog
from pyrv.monitors.registry import DIR_MODE, READ_MODE, RV, WRITE_MODE
from tests.conftest import REPO

CLI = [sys.executable, "-m", "pyrv.cli.mount"]
SELFTEST = REPO / "tests" / "fs_selftest.sh"


def small_rv() -> RV:
    return build_rv(["wip", "wwnr"], per_task_slots=1, kstrtobool_enable_disable=False)


def fi(flags: int = os.O_RDONLY) -> SimpleNamespace:
    return SimpleNamespace(flags=flags, fh=0, direct_io=0, keep_cache=1)


# -- in-process: the operations over an RV -----------------------------------------------------


class TestOperations:
    def test_getattr_is_the_registry_stat(self) -> None:
        fs = RVFs(small_rv(), uid=0, gid=0)
        root = fs.getattr("/")
        assert (root["st_mode"], root["st_nlink"], root["st_size"]) == (DIR_MODE, 3, 0)
        mons = fs.getattr("/monitors")
        assert (mons["st_mode"], mons["st_nlink"]) == (DIR_MODE, 4)
        assert fs.getattr("/monitors/wip/enable")["st_mode"] == WRITE_MODE
        assert fs.getattr("/monitors/wip/desc")["st_mode"] == READ_MODE
        assert fs.getattr("/available_monitors")["st_mode"] == READ_MODE
        assert fs.getattr("/" + VERDICTS_FILE)["st_mode"] == READ_MODE
        assert (root["st_uid"], root["st_gid"]) == (0, 0)
        with pytest.raises(FileNotFoundError):
            fs.getattr("/nosuch")

    def test_readdir_adds_only_the_verdicts_file(self) -> None:
        rv = small_rv()
        fs = RVFs(rv)
        assert fs.readdir("/") == [".", "..", *rv.listdir(""), VERDICTS_FILE]
        assert fs.readdir("/monitors") == [".", "..", "wip", "wwnr"]
        assert RVFs(rv, verdicts=False).readdir("/") == [".", "..", *rv.listdir("")]
        assert VERDICTS_FILE not in KERNEL_ROOT_NAMES
        assert set(rv.listdir("")) == KERNEL_ROOT_NAMES

    def test_open_sets_direct_io_and_o_trunc_disables_all(self) -> None:
        rv = small_rv()
        fs = RVFs(rv)
        rv.write("enabled_monitors", b"wip")
        f = fi(os.O_WRONLY)
        fs.open("/enabled_monitors", f)
        assert (f.direct_io, f.keep_cache) == (1, 0)
        assert rv.read("enabled_monitors") == b"wip\n"  # no O_TRUNC: nothing happens
        fs.open("/enabled_monitors", fi(os.O_RDONLY | os.O_TRUNC))
        assert rv.read("enabled_monitors") == b"wip\n"  # read-only O_TRUNC: nothing either
        fs.open("/enabled_monitors", fi(os.O_WRONLY | os.O_TRUNC))
        assert rv.read("enabled_monitors") == b""
        rv.write("enabled_monitors", b"wip")
        assert fs.truncate("/enabled_monitors", 0) == 0  # truncate(2) is a no-op, as tracefs
        assert rv.read("enabled_monitors") == b"wip\n"

    def test_write_at_offset_reaches_the_registry(self) -> None:
        rv = small_rv()
        fs = RVFs(rv)
        f = fi(os.O_WRONLY | os.O_APPEND)
        fs.open("/enabled_monitors", f)
        assert fs.write(None, b"wwnr\n", 0, f) == 5
        assert fs.write(None, b"wip\n", 5, f) == 4  # at offset > 0: accepted, no effect
        assert rv.read("enabled_monitors") == b"wwnr\n"
        with pytest.raises(OSError) as exc:
            fs.write(None, b"nosuch\n", 0, f)
        assert exc.value.errno == errno.EINVAL
        g = fi()
        fs.open("/monitoring_on", g)
        assert fs.read(None, 2, 0, g) == b"1\n"
        assert fs.read(None, 4096, 2, g) == b"\0"
        fs.release(None, f)
        fs.release(None, g)

    def test_refusals_are_the_vfs_errnos(self) -> None:
        fs = RVFs(small_rv())
        cases = [
            (lambda: fs.create("/newfile", 0o644), errno.EACCES),
            (lambda: fs.create("/monitors/x", 0o644), errno.EACCES),
            (lambda: fs.create("/nosuchdir/x", 0o644), errno.ENOENT),
            (lambda: fs.unlink("/enabled_monitors"), errno.EPERM),
            (lambda: fs.unlink("/" + VERDICTS_FILE), errno.EPERM),
            (lambda: fs.mkdir("/monitors/foo", 0o755), errno.EPERM),
            (lambda: fs.mkdir("/monitors/wip", 0o755), errno.EEXIST),
            (lambda: fs.rmdir("/monitors/wip"), errno.EPERM),
            (lambda: fs.rmdir("/enabled_monitors"), errno.ENOTDIR),
            (lambda: fs.rename("/monitoring_on", "/x"), errno.EPERM),
            (lambda: fs.symlink("/x", "y"), errno.EPERM),
            (lambda: fs.link("/x", "/monitoring_on"), errno.EPERM),
            (lambda: fs.chmod("/monitoring_on", 0o666), errno.EPERM),
            (lambda: fs.chown("/monitoring_on", 1, 1), errno.EPERM),
            (lambda: fs.opendir("/monitoring_on"), errno.ENOTDIR),
        ]
        for call, code in cases:
            with pytest.raises(OSError) as exc:
                call()
            assert exc.value.errno == code, call
        assert fs.utimens("/monitoring_on") == 0

    def test_verdicts_file(self) -> None:
        fs = RVFs(small_rv())
        f = fi()
        fs.open("/" + VERDICTS_FILE, f)
        assert fs.read(None, 4096, 0, f) == b""
        fs.add_verdict_line("wwnr: 12: event wakeup not expected in the state running")
        fs.add_verdict_line("line two\n")
        data = fs.read(None, 4096, 0, f)
        assert data == b"wwnr: 12: event wakeup not expected in the state running\nline two\n"
        assert fs.read(None, 4, 5, f) == data[5:9]
        with pytest.raises(OSError) as exc:
            fs.write(None, b"x", 0, f)
        assert exc.value.errno == errno.EINVAL
        RVFs(small_rv(), verdicts=False).add_verdict_line("ignored")

    def test_verdict_log_is_bounded_and_followable(self) -> None:
        log = VerdictLog(limit=10)
        log.add("aaaa")  # 5 bytes each with the newline
        log.add("bbbb")
        start = log.base
        assert log.read(start, 100, 0) == b"aaaa\nbbbb\n"
        log.add("cccc")  # over the limit: "aaaa" goes
        assert log.base == 5
        assert log.read(log.base, 100, 0) == b"bbbb\ncccc\n"
        # a reader opened before the drop continues where it was (tail -f)
        assert log.read(start, 100, 10) == b"cccc\n"
        # and skips what was dropped under it
        assert log.read(start, 3, 0) == b"bbb"
        assert log.total_lines == 3
        big = VerdictLog(limit=1)
        big.add("x" * 50)  # one line longer than the limit is still kept
        assert big.read(0, 100, 0) == b"x" * 50 + b"\n"

    def test_init_asks_for_atomic_o_trunc_and_no_caching(self) -> None:
        fs = RVFs(small_rv())
        called = []
        fs.on_init = lambda: called.append(1)
        conn = SimpleNamespace(capable=0xFFFF, want=0)
        config = SimpleNamespace()
        fs.init_with_config(conn, config)
        assert conn.want & (1 << 3)
        assert config.direct_io == 1
        assert config.attr_timeout == config.entry_timeout == config.negative_timeout == 0
        assert called == [1]


class TestBuildRV:
    def test_6_12_set(self) -> None:
        rv = small_rv()
        assert rv.read("available_monitors") == b"wip\nwwnr\n"
        assert rv.per_task_slots == 1
        assert rv.read("monitors/wip/desc").startswith(b"wakeup in preemptive per-cpu")

    def test_containers_bring_children_and_children_their_container(self) -> None:
        rv = build_rv(["sched"])
        names = rv.read("available_monitors").decode().split()
        assert names[0] == "sched" and len(names) > 1
        assert all(n.startswith("sched:") for n in names[1:])
        assert build_rv(["sco"]).read("available_monitors") == b"sched\nsched:sco\n"

    def test_everything_by_default_and_unknown_names_refused(self) -> None:
        from pyrv.monitors.catalogue import build_rv as catalogue_rv

        assert build_rv().read("available_monitors") == catalogue_rv().read("available_monitors")
        with pytest.raises(ValueError, match="nosuch"):
            build_rv(["wip", "nosuch"])

    def test_normalize_does_not_touch_the_mountpoint(self, tmp_path: Path) -> None:
        link = tmp_path / "link"
        link.symlink_to(tmp_path)
        assert normalize(link / "x") == str(tmp_path.resolve() / "x")
        assert normalize("/") == "/"


# -- real mounts -------------------------------------------------------------------------------

_FUSE_REASON = fuse_unavailable_reason()
needs_fuse = pytest.mark.skipif(_FUSE_REASON is not None, reason=f"no FUSE: {_FUSE_REASON}")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="root's tree (uid 0) and chown")


def _env() -> dict[str, str]:
    env = dict(os.environ, LC_ALL="C", LANG="C")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=_env()
    )


def force_unmount(mnt: Path) -> None:
    if mount_state(mnt) != "none":
        cli("umount", str(mnt))
    for _ in range(4):
        if mount_state(mnt) == "none":
            break
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def wait_for(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies (PR_SET_PDEATHSIG), so that a killed
    test run leaves no serving process and, through its clean-up, no mount."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)


#: foreground servers started by the tests, stopped by the ``mnt`` fixture
_SERVERS: list[subprocess.Popen[bytes]] = []


def mount_foreground(mnt: Path, *extra: str, cli_args: list[str] | None = None) -> int:
    """``pyrv mount DIR --foreground ...`` as a child of the test process; returns its pid."""
    log = mnt.parent / f"serve-{len(_SERVERS)}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cli_args or [*CLI, "mount", str(mnt), "--foreground", *extra],
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            preexec_fn=_die_with_parent,
        )
    _SERVERS.append(proc)
    ok = wait_for(lambda: proc.poll() is not None or mount_state(mnt) == "live", 30)
    assert ok and proc.poll() is None, log.read_text()
    return proc.pid


def stop_servers() -> None:
    while _SERVERS:
        proc = _SERVERS.pop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def mnt() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="pyrv-fs-"))
    where = tmp / "rv"
    where.mkdir()
    try:
        yield where
    finally:
        stop_servers()
        force_unmount(where)
        shutil.rmtree(tmp, ignore_errors=True)


def lock_file(mnt: Path) -> Path:
    from pyrv.fs import mount as mount_module

    return mount_module._lock_path(normalize(mnt))


def mount(mnt: Path, *extra: str) -> None:
    """Mount for a test: served in the foreground by a child of the test process."""
    mount_foreground(mnt, *extra)
    assert mount_state(mnt) == "live"


def mount_daemon(mnt: Path, *extra: str) -> None:
    """``pyrv mount DIR`` as a user runs it: a daemon (the fixture unmounts it)."""
    res = cli("mount", str(mnt), *extra)
    assert res.returncode == 0, res.stderr
    assert mount_state(mnt) == "live"


def sh(mnt: Path, script: str, shell: str = "bash") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shell, "-c", script], cwd=mnt, capture_output=True, text=True, timeout=60, env=_env()
    )


@needs_fuse
@needs_root
class TestMount:
    def test_tree_bytes_and_shell_messages(self, mnt: Path) -> None:
        mount_daemon(mnt, "--monitors", "wip,wwnr", "--compat", "6.12")
        assert any(m.mountpoint == str(mnt) and m.fstype == FSTYPE for m in pyrv_mounts())
        assert (mnt / "monitors/wip/enable").read_bytes() == b"0\n\0"
        assert (mnt / "available_reactors").read_bytes() == b"nop\nprintk\npanic\n"
        res = sh(mnt, "echo garbage > monitors/wwnr/enable")
        assert res.returncode == 1
        assert res.stderr.strip().endswith("write error: Invalid argument")
        res = sh(
            mnt, "echo wip > enabled_monitors; echo wwnr >> enabled_monitors; cat enabled_monitors"
        )
        assert res.stdout == "wip\nwwnr\n"
        res = sh(mnt, "echo > enabled_monitors; cat enabled_monitors; echo x > newfile")
        assert res.stdout == "" and "Permission denied" in res.stderr
        res = sh(mnt, "ls -ln monitors/wwnr")
        assert "-rw-r----- 1 0 0 0" in res.stdout and "-r--r----- 1 0 0 0" in res.stdout
        # one live mount per directory
        res = cli("mount", str(mnt))
        assert res.returncode == 2 and "already served by a running pyrv" in res.stderr
        res = cli("umount", str(mnt))
        assert res.returncode == 0, res.stderr
        assert mount_state(mnt) == "none"
        assert read_owner(normalize(mnt)) is None
        assert not lock_file(mnt).exists()
        res = cli("umount", str(mnt))
        assert res.returncode == 2 and "no pyrv mount there" in res.stderr

    def test_reads_always_see_the_current_state(self, mnt: Path) -> None:
        mount(mnt, "--monitors", "wip,wwnr")
        fd = os.open(mnt / "enabled_monitors", os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 0) == b""
            (mnt / "monitors/wwnr/enable").write_bytes(b"1")
            assert os.pread(fd, 4096, 0) == b"wwnr\n"  # no page cache
            assert os.stat(mnt / "enabled_monitors").st_size == 0
        finally:
            os.close(fd)
        # O_APPEND opens start at offset 0, every time (no stale cached size)
        for name in ("wip", "!wip", "wip"):
            fd = os.open(mnt / "enabled_monitors", os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, name.encode() + b"\n")
            finally:
                os.close(fd)
        assert (mnt / "enabled_monitors").read_bytes() == b"wip\nwwnr\n"

    def test_two_directories_are_independent(self, mnt: Path) -> None:
        other = mnt.parent / "other"
        other.mkdir()
        try:
            mount(mnt, "--monitors", "wip,wwnr")
            res = subprocess.run(  # a relative DIR works although the daemon changes to /
                [*CLI, "mount", "other", "--monitors", "wip,wwnr"],
                cwd=mnt.parent,
                capture_output=True,
                text=True,
                timeout=60,
                env=_env(),
            )
            assert res.returncode == 0, res.stderr
            (mnt / "monitors/wip/enable").write_bytes(b"1")
            assert (mnt / "enabled_monitors").read_bytes() == b"wip\n"
            assert (other / "enabled_monitors").read_bytes() == b""
        finally:
            force_unmount(other)

    def test_concurrent_mounts_of_one_directory(self, mnt: Path) -> None:
        procs = [
            subprocess.Popen(
                [*CLI, "mount", str(mnt), "--monitors", "wip"],
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        results = [(p.wait(timeout=60), p.communicate()[1]) for p in procs]
        assert sorted(rc for rc, _ in results) == [0, 2, 2], results
        assert all("already served" in err for rc, err in results if rc)
        assert sum(m.mountpoint == str(mnt) for m in pyrv_mounts()) == 1

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
    def test_signal_disables_everything_and_unmounts(self, mnt: Path, sig: int) -> None:
        proc = subprocess.Popen(
            [*CLI, "mount", str(mnt), "--foreground", "--monitors", "wip,wwnr"],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        try:
            assert wait_for(lambda: mount_state(mnt) == "live"), proc.stderr
            owner = read_owner(normalize(mnt))
            assert owner is not None and owner.pid == proc.pid and owner.alive
            (mnt / "monitors/wip/enable").write_bytes(b"1")
            proc.send_signal(sig)
            assert proc.wait(timeout=20) == 0
            assert mount_state(mnt) == "none"
            assert read_owner(normalize(mnt)) is None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_stale_mount_of_a_killed_daemon_is_cleaned(self, mnt: Path) -> None:
        mount(mnt, "--monitors", "wip,wwnr")
        owner = read_owner(normalize(mnt))
        assert owner is not None
        (mnt / "monitors/wwnr/enable").write_bytes(b"1")
        os.kill(owner.pid, signal.SIGKILL)
        assert wait_for(lambda: not owner.alive)
        assert mount_state(mnt) == "stale"
        with pytest.raises(OSError) as exc:
            os.stat(mnt / "enabled_monitors")
        # ENOTCONN once the connection is down (ECONNABORTED while it is being torn down)
        assert exc.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
        mount_daemon(mnt, "--monitors", "wip,wwnr")  # the next mount cleans, starts afresh
        assert sum(m.mountpoint == str(mnt) for m in pyrv_mounts()) == 1
        assert (mnt / "enabled_monitors").read_bytes() == b""
        assert (mnt / "monitors/wwnr/enable").read_bytes() == b"0\n\0"
        # and pyrv umount removes a stale mount too
        owner = read_owner(normalize(mnt))
        assert owner is not None
        os.kill(owner.pid, signal.SIGKILL)
        assert wait_for(lambda: not owner.alive)
        res = cli("umount", str(mnt))
        assert res.returncode == 0, res.stderr
        assert mount_state(mnt) == "none"
        assert read_owner(normalize(mnt)) is None
        assert not lock_file(mnt).exists()  # nothing of the killed daemons is left

    def test_refusals_through_the_kernel(self, mnt: Path) -> None:
        mount(mnt, "--monitors", "wip,wwnr")
        checks = [
            (lambda: os.open(mnt / "newfile", os.O_WRONLY | os.O_CREAT), errno.EACCES),
            (lambda: os.open(mnt / "monitors", os.O_WRONLY), errno.EISDIR),
            (lambda: os.unlink(mnt / "enabled_monitors"), errno.EPERM),
            (lambda: os.mkdir(mnt / "monitors/foo"), errno.EPERM),
            (lambda: os.rmdir(mnt / "monitors/wip"), errno.EPERM),
            (lambda: os.rename(mnt / "monitoring_on", mnt / "x"), errno.EPERM),
            (lambda: os.symlink("x", mnt / "y"), errno.EPERM),
            (lambda: os.chmod(mnt / "monitoring_on", 0o666), errno.EPERM),
        ]
        for call, code in checks:
            with pytest.raises(OSError) as exc:
                call()
            assert exc.value.errno == code
        os.utime(mnt / "monitoring_on")  # touch works, as on tracefs
        os.truncate(mnt / "monitoring_on", 0)  # and truncate is a no-op
        assert (mnt / "monitoring_on").read_bytes() == b"1\n\0"
        fd = os.open(mnt / "monitoring_on", os.O_WRONLY)
        try:
            assert os.write(fd, b"") == 0  # FUSE's limit: no request, no EINVAL
        finally:
            os.close(fd)

    def test_other_users(self, mnt: Path) -> None:
        """Root only unless asked; --allow-other --gid lets a group read but not write."""

        def as_nobody(path: Path, write: bool = False) -> int:
            code = textwrap.dedent(
                f"""
                import os, sys
                os.setgroups([]); os.setgid(65534); os.setuid(65534)
                try:
                    fd = os.open({str(path)!r}, os.O_WRONLY if {write} else os.O_RDONLY)
                    os.close(fd)
                except OSError as e:
                    sys.exit(e.errno)
                """
            )
            return subprocess.run([sys.executable, "-c", code], timeout=30).returncode

        mnt.parent.chmod(0o755)  # mkdtemp's 0700 would stop nobody before the mount
        mount(mnt, "--monitors", "wip,wwnr")
        assert as_nobody(mnt / "available_monitors") == errno.EACCES
        assert cli("umount", str(mnt)).returncode == 0
        mount(mnt, "--monitors", "wip,wwnr", "--allow-other", "--gid", "65534")
        assert os.stat(mnt / "enabled_monitors").st_gid == 65534
        assert as_nobody(mnt / "available_monitors") == 0
        assert as_nobody(mnt / "monitors/wip/enable") == 0
        assert as_nobody(mnt / "monitors/wip/enable", write=True) == errno.EACCES

    def test_mount_errors_are_clear(self, tmp_path: Path) -> None:
        res = cli("mount", str(tmp_path / "nosuch"))
        assert res.returncode == 2 and "not a directory" in res.stderr
        res = cli("mount", str(tmp_path), "--monitors", "wip,bogus")
        assert res.returncode == 2 and "unknown monitor(s) bogus" in res.stderr
        assert mount_state(tmp_path) == "none"


SERVE_SCRIPT = """
import json, sys
from pyrv.fs.mount import build_rv, serve
log = sys.argv[2]

def note(what, fs):
    with open(log, "a") as f:
        f.write(json.dumps([what, [m.name for m in fs.rv.enabled_monitors()]]) + "\\n")

def on_start(fs):
    note("start", fs)
    if sys.argv[3] == "fail":
        raise RuntimeError("live source unavailable")
    fs.add_verdict_line("wwnr: 7: event wakeup not expected in the state running")

serve(build_rv(["wip", "wwnr"]), sys.argv[1], on_start=on_start,
      on_stop=lambda fs: note("stop", fs))
"""


@needs_fuse
@needs_root
class TestServeHooks:
    def run_serve(self, mnt: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
        log = mnt.parent / "hooks.log"
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_SCRIPT, str(mnt), str(log), mode],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        return proc, log

    def test_on_start_on_stop_and_verdicts(self, mnt: Path) -> None:
        import json

        proc, log = self.run_serve(mnt, "ok")
        try:
            assert wait_for(lambda: mount_state(mnt) == "live")
            assert wait_for(lambda: log.exists())
            assert (mnt / VERDICTS_FILE).read_bytes() == (
                b"wwnr: 7: event wakeup not expected in the state running\n"
            )
            (mnt / "monitors/wwnr/enable").write_bytes(b"1")
            res = cli("umount", str(mnt))
            assert res.returncode == 0, res.stderr
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        notes = [json.loads(x) for x in log.read_text().splitlines()]
        assert notes == [["start", []], ["stop", []]]  # everything disabled before on_stop

    def test_failing_on_start_leaves_no_mount(self, mnt: Path) -> None:
        proc, log = self.run_serve(mnt, "fail")
        try:
            assert proc.wait(timeout=30) != 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "live source unavailable" in (proc.stderr.read() if proc.stderr else "")
        assert mount_state(mnt) == "none"
        assert log.read_text().count("start") == 1 and "stop" not in log.read_text()


# -- the shell selftest ------------------------------------------------------------------------


def restricted_bin(where: Path, shell: str) -> Path:
    """A PATH holding nothing but sh, grep, find and dmesg."""
    bin_dir = where / "bin"
    bin_dir.mkdir()
    for name, target in (
        ("sh", shell),
        ("grep", shutil.which("grep")),
        ("find", shutil.which("find")),
        ("dmesg", shutil.which("dmesg")),
    ):
        if target is not None:
            (bin_dir / name).symlink_to(target)
    return bin_dir


def selftest_shells() -> list[str]:
    shells = ["/bin/sh"]
    if shutil.which("busybox"):
        shells.append("busybox")
    return shells


@needs_fuse
@needs_root
@pytest.mark.parametrize("shell", selftest_shells())
def test_fs_selftest(mnt: Path, shell: str) -> None:
    """tests/fs_selftest.sh passes in the mount point with only sh, grep, find and dmesg."""
    mount(mnt, "--per-task-slots", "8")
    if shell == "busybox":
        wrapper = mnt.parent / "busybox-sh"
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("busybox")} sh "$@"\n')
        wrapper.chmod(0o755)
        shell = str(wrapper)
    bin_dir = restricted_bin(mnt.parent, shell)
    env = {"PATH": str(bin_dir), "LC_ALL": "C"}
    if os.environ.get("PYRV_LIVE"):
        env["PYRV_LIVE"] = os.environ["PYRV_LIVE"]
    res = subprocess.run(
        [str(bin_dir / "sh"), str(SELFTEST)],
        cwd=mnt,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not ok" not in res.stdout
    assert res.stderr == ""
    assert "# totals: pass:" in res.stdout
    # it left the boot defaults behind
    assert (mnt / "enabled_monitors").read_bytes() == b""
    assert (mnt / "monitoring_on").read_bytes() == b"1\n\0"


def test_fs_selftest_skips_outside_rv(tmp_path: Path) -> None:
    res = subprocess.run(
        ["/bin/sh", str(SELFTEST)], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 4
    assert "1..0 # SKIP" in res.stdout


def test_printk_writes_the_kernel_log_by_default() -> None:
    """As the kernel's printk reactor: dmesg shows the reaction unless --no-kmsg; --kmsg
    stays accepted (it was the opt-in)."""
    from pyrv.cli.main import _parser

    def kmsg(*extra: str) -> bool:
        return bool(_parser().parse_args(["mount", "/tmp/x", *extra]).kmsg)

    assert (kmsg(), kmsg("--kmsg"), kmsg("--no-kmsg")) == (True, True, False)
    # an offline check keeps stderr only unless asked
    assert not _parser().parse_args(["check", "-r", "printk", "t.txt"]).kmsg


def test_pyrv_has_mount_and_umount() -> None:
    from pyrv.cli.main import _parser

    args = _parser().parse_args(["mount", "/tmp/x", "--monitors", "wip,wwnr", "--compat", "6.12"])
    assert (args.dir, args.monitors, args.compat, args.foreground) == (
        "/tmp/x",
        "wip,wwnr",
        "6.12",
        False,
    )
    assert _parser().parse_args(["umount", "/tmp/x"]).dir == "/tmp/x"


@needs_fuse
@needs_root
def test_fs_selftest_live(mnt: Path, tracefs: object) -> None:
    """The same suite on a live mount with the default options: wwnr with printk under load
    writes the kernel's reaction message to dmesg, and none with monitoring_on or reacting_on
    at 0. (``tracefs``: mounted for the module when nobody has, as the daemon would.)"""
    pid = mount_foreground(mnt, "--per-task-slots", "8")  # printk: /dev/kmsg by default
    bin_dir = restricted_bin(mnt.parent, "/bin/sh")
    res = subprocess.run(
        [str(bin_dir / "sh"), str(SELFTEST)],
        cwd=mnt,
        env={"PATH": str(bin_dir), "LC_ALL": "C", "PYRV_LIVE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok" in res.stdout and "not ok" not in res.stdout
    live = [ln for ln in res.stdout.splitlines() if "writes its reactions to dmesg" in ln]
    assert live and live[0].startswith("ok "), live
    assert "error_wwnr" in (mnt / "pyrv_verdicts").read_text()
    assert _writes_kmsg(pid)  # the reactions in dmesg are this daemon's


def _writes_kmsg(pid: int) -> bool:
    """Does process ``pid`` hold /dev/kmsg open (the printk reactor keeps it once used)?"""
    fds = Path(f"/proc/{pid}/fd")
    return any(os.path.realpath(fd) == "/dev/kmsg" for fd in fds.iterdir())


def _live_instance(pid: int) -> Path:
    """The tracefs instance of the live engine of the mount daemon ``pid``."""
    from pyrv.sources.tracefs import PREFIX, find_tracefs

    tracing = find_tracefs()
    assert tracing is not None
    return tracing / "instances" / f"{PREFIX}{pid}-fs"


def _needs_tracefs(tracefs: object) -> None:
    """``tracefs`` (the conftest fixture) holds it mounted; the kernel must have sched_switch."""
    where = tracefs.path  # type: ignore[attr-defined]
    if not (where / "events/sched/sched_switch/format").is_file():
        pytest.skip("this kernel's tracefs has no sched_switch event: wwnr is not driven")


def _kill_tracing_daemon(mnt: Path) -> Path:
    """Mount, enable wwnr, SIGKILL the daemon once its instance traces; return the instance
    (which the kernel keeps recording: what the issue saw)."""
    mount_daemon(mnt, "--monitors", "wip,wwnr")
    owner = read_owner(normalize(mnt))
    assert owner is not None
    inst = _live_instance(owner.pid)

    def tracing() -> bool:
        try:
            return (inst / "tracing_on").read_text().strip() == "1"
        except OSError:
            return False

    (mnt / "monitors/wwnr/enable").write_bytes(b"1")
    assert wait_for(tracing, 30), f"{inst} never traced"
    os.kill(owner.pid, signal.SIGKILL)
    assert wait_for(lambda: not owner.alive)
    return inst


@needs_fuse
@needs_root
def test_instance_of_a_killed_daemon_is_removed_by_the_next_mount(
    mnt: Path, tracefs: object
) -> None:
    """kill -9 of a daemon tracing wwnr leaves its instance recording (nothing can clean up);
    the next `pyrv mount` on the directory removes it when it starts, before any monitor is
    enabled (no live session of its own would ever do it then).

    Any pyrv starting a trace on this machine also removes it: when one does so between the
    kill and the new mount, the new mount has nothing to remove and says nothing, so the
    scenario is run again (the instance must be gone every time)."""
    _needs_tracefs(tracefs)
    for _ in range(3):
        inst = _kill_tracing_daemon(mnt)
        res = cli("mount", str(mnt), "--monitors", "wip,wwnr")
        assert res.returncode == 0, res.stderr
        assert not inst.exists()
        assert (mnt / "enabled_monitors").read_bytes() == b""  # nothing enabled did it
        new = read_owner(normalize(mnt))
        assert new is not None and not _live_instance(new.pid).exists()
        if f"removed {inst.name}, the tracefs instance of a killed pyrv" in res.stderr:
            return
        assert cli("umount", str(mnt)).returncode == 0
    pytest.skip("another pyrv on this machine removed the instance first, three times")


#: fs_selftest.sh's load: busy CPUs, and a reader woken by one-line writes while it runs
_LOAD = """
spin() { j=0; while [ $j -lt 100000 ]; do j=$((j + 1)); done; }
spin & s1=$!
spin & s2=$!
i=0
while [ $i -lt 5000 ]; do echo x; i=$((i + 1)); done | grep -c x > /dev/null
kill $s1 $s2 2> /dev/null
wait
"""


@needs_fuse
@needs_root
def test_no_kmsg_reacts_on_the_daemons_stderr(mnt: Path, tracefs: object) -> None:
    """--no-kmsg: the printk reactor's message goes to the daemon's stderr (here a foreground
    daemon's log), as the offline check's does."""
    _needs_tracefs(tracefs)
    mount(mnt, "--monitors", "wip,wwnr", "--no-kmsg")
    log = mnt.parent / "serve-0.log"
    (mnt / "monitors/wwnr/reactors").write_bytes(b"printk")
    (mnt / "monitors/wwnr/enable").write_bytes(b"1")
    message = "rv: monitor wwnr does not allow event "

    def reacted() -> bool:
        subprocess.run(["sh", "-c", _LOAD], timeout=60)
        return message in log.read_text()

    assert wait_for(reacted, 60), log.read_text()
    line = next(x for x in log.read_text().splitlines() if message in x)
    assert line.startswith(message) and " on state " in line
    owner = read_owner(normalize(mnt))
    assert owner is not None and not _writes_kmsg(owner.pid)
