"""A warm Python for the command-line tests: one server per test process imports TensorFlow, Keras
and reid_tf's libraries once and forks a child per command, so a command costs no 6 s import.

A child is a new process in everything a command can change (argv, flags, devices, policies,
cwd, environment, signals, exit status); what it shares is what was set before the fork: the
console as `console.quiet()` leaves it (every entry point calls it first anyway) and what
TensorFlow read at import (TF_CPP_MIN_LOG_LEVEL, the native log lines of a first load), so tests
of a fresh interpreter's console run a real one. `run` and `Popen` take the arguments of
subprocess's own, and fall back to it for any program but this Python.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import json, os, runpy, signal, sys, tempfile, traceback
from reid_tf import console
console.quiet()  # as every entry point starts: TensorFlow reads its log level once, at import
import numpy, tensorflow, keras  # noqa: F401  # what every command imports: paid once, here
from reid_tf import evaluate, export_lib, exported, flags, train_lib  # noqa: F401

status_dir = sys.argv[1]

def reap(*_):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with open(f"{status_dir}/{pid}.tmp", "w") as f:
            f.write(str(os.waitstatus_to_exitcode(status)))
        os.replace(f"{status_dir}/{pid}.tmp", f"{status_dir}/{pid}")

def child(request):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # read again from this environment's TMPDIR, as a new process would
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                           (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
        os.dup2(os.open(path, mode), fd)
    argv, code = request["argv"], 0
    try:
        if argv[0] == "-m":  # as `python -m`: the working folder first on the path
            sys.argv, sys.path[0] = [argv[1], *argv[2:]], os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:  # a script: its own folder first on the path
            sys.argv, sys.path[0] = list(argv), os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.exit(code)  # out through the server's loop: the interpreter's own exit, TensorFlow's shutdown included

signal.signal(signal.SIGCHLD, reap)
for line in sys.stdin:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        child(json.loads(line))
    print(pid, flush=True)
"""

_server: subprocess.Popen | None = None
_folder = tempfile.mkdtemp(prefix="warm_python_")


def _start() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        log = open(os.path.join(_folder, "server.log"), "w")
        _server = subprocess.Popen([sys.executable, "-c", SERVER, _folder], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        atexit.register(shutil.rmtree, _folder, ignore_errors=True)
        atexit.register(_server.kill)
    return _server


class Popen:
    """A forked command, with the parts of subprocess.Popen the tests use (stdout/stderr are read
    when it ends: communicate, or the `stdout`/`stderr` text after wait)."""

    def __init__(self, args, cwd=None, env=None, text=True, **_ignored):
        self.args, self.text, self.returncode = list(args), text, None
        n = len(os.listdir(_folder))
        self._out, self._err = (os.path.join(_folder, f"{os.getpid()}-{n}-{time.monotonic_ns()}.{k}")
                                for k in ("out", "err"))
        server = _start()
        request = {"argv": self.args[1:], "cwd": os.path.abspath(cwd or os.getcwd()),
                   "env": dict(os.environ if env is None else env), "stdout": self._out, "stderr": self._err}
        server.stdin.write(json.dumps(request) + "\n")
        answer = server.stdout.readline()
        if not answer.strip().isdigit():
            with open(os.path.join(_folder, "server.log")) as f:
                raise RuntimeError(f"the warm Python server ended: {f.read()[-3000:]}")
        self.pid = int(answer)

    def poll(self) -> int | None:
        status = os.path.join(_folder, str(self.pid))
        if self.returncode is None and os.path.exists(status):
            with open(status) as f:
                self.returncode = int(f.read())
            os.remove(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, timeout: float | None = None) -> tuple:
        self.wait(timeout)
        return self.output()

    def output(self) -> tuple:
        outputs = []
        for path in (self._out, self._err):
            with open(path, "rb") as f:
                data = f.read()
            outputs.append(data.decode() if self.text else data)
        return tuple(outputs)


def run(args, cwd=None, env=None, timeout=None, text=True, capture_output=True, **_ignored):
    """subprocess.run(args, capture_output=True, ...) for this Python's commands, forked warm."""
    if args[0] != sys.executable:
        return subprocess.run(args, cwd=cwd, env=env, timeout=timeout, text=text, capture_output=capture_output)
    child = Popen(args, cwd=cwd, env=env, text=text)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise
    return subprocess.CompletedProcess(args, child.returncode, *child.output())
