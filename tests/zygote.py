"""Run the `shootout` command line in fresh processes without paying its imports each time.

A test that runs ``python -m shootout.cli ...`` spends 1-4 s of a core importing pandas, scipy,
statsmodels, matplotlib and llama_cpp before the command starts; the suite runs the command
about a hundred times. The zygote is one process per test worker that imports those modules
once and then forks a child per command: the child is a new process (its own pid, file
descriptors, environment, working folder, signal state and exit code) that enters the same
``shootout.cli.main()`` the console script does, from the state right after the imports. The
zygote itself never runs a command, so no child inherits anything a previous command did.

Linux only (forking after macOS frameworks load is unsafe); elsewhere, or with
``SHOOTOUT_TEST_FORK=0``, tests run plain subprocesses. Commands that train or read Hugging Face
folders also get torch and transformers preloaded, on first use.

Protocol: one JSON request per line on the zygote's stdin ({args, cwd, env, stdout, stderr,
preload}); it answers with {"pid": ...} when the child starts and {"status": ...} when it ends.
"""

from __future__ import annotations

import json
import os
import sys

BASE = ("shootout.cli", "shootout.running", "shootout.reporting", "shootout.demo", "benchmark.run.launch",
        "benchmark.run.runner", "benchmark.config", "benchmark.report", "benchmark.report.charts", "benchmark.backends",
        "engine.llamacpp",
        "benchmark.backends.openai_compat", "benchmark.backends.ollama_backend", "export.pipeline", "core.cxx_runtime",
        "benchmark.report.html",
        "openpyxl", "pandas", "scipy.stats", "statsmodels.api", "seaborn", "matplotlib.pyplot", "httpx")
ML = ("torch", "transformers", "peft", "trl", "finetune.train")


def _import(names) -> None:
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module missing here is imported (and fails) in the child
            pass


def _child(req: dict) -> None:
    """In the forked child: become the command, run it, exit with its code."""
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        sys.argv = ["shootout", *req["args"]]
        from shootout import cli

        try:
            cli.main()
            code = 0
        except SystemExit as exc:  # as the interpreter ends a process on SystemExit
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # noqa: BLE001 - an uncaught error: a traceback and exit 1, as python does
            import traceback

            traceback.print_exc()
            code = 1
        import atexit
        import threading

        threading._shutdown()  # what the interpreter does at exit: join non-daemon threads, then atexit
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    ctl_out = os.fdopen(os.dup(1), "w", buffering=1)
    ctl_in = sys.stdin
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # what the imports print does not mix with the answers
    _import(BASE)
    loaded_ml = False
    for line in ctl_in:
        req = json.loads(line)
        if req.get("preload") == "ml" and not loaded_ml:
            _import(ML)
            loaded_ml = True
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            ctl_out.close()
            _child(req)
        ctl_out.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        ctl_out.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")


class Zygote:
    """The test side: starts the zygote lazily, runs one command at a time through it."""

    def __init__(self, root: str):
        self.root = root
        self.proc = None
        self.buf = b""
        self.running: Started | None = None

    def _start(self) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "tests.zygote"], cwd=self.root, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.buf = b""

    def _read(self, timeout: float | None) -> dict:
        """The next answer line; read from the pipe's descriptor (a buffered reader could hold a
        second line that select() would then not see)."""
        import select
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the test zygote ended unexpectedly")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def start(self, args, cwd: str, env: dict, preload: str | None = None) -> Started:
        """Start a command and return at once, with a handle that answers as ``subprocess.Popen``
        does for what the tests use. One command at a time: the zygote waits for it to end."""
        import tempfile

        if self.running is not None and self.running.poll() is None:
            raise RuntimeError("the zygote still runs a started command: wait for it first")
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        tmp = tempfile.mkdtemp(prefix="shootout-cmd-")
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        req = {"args": list(args), "cwd": str(cwd), "env": env, "stdout": out, "stderr": err, "preload": preload}
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        pid = self._read(None if preload else 300)["pid"]
        self.running = Started(self, pid, tmp, ["shootout", *args])
        return self.running

    def run(self, args, cwd: str, env: dict, timeout: float, preload: str | None = None):
        import subprocess

        proc = self.start(args, cwd, env, preload)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(9)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()


class Started:
    """A command the zygote started: ``pid``, ``args``, ``returncode`` (None while it runs, minus the
    signal's number when one ended it), ``poll()``, ``wait()``, ``send_signal()``, ``communicate()``
    and ``stderr.readline()`` as on ``subprocess.Popen`` (its output goes to files read back here)."""

    def __init__(self, zygote: Zygote, pid: int, tmp: str, args: list[str]):
        self.zygote, self.pid, self.tmp, self.args = zygote, pid, tmp, args
        self.returncode: int | None = None
        self.stderr = _Follow(os.path.join(tmp, "stderr"), self)

    def _status(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            try:
                self.returncode = self.zygote._read(timeout)["status"]
            except TimeoutError:
                return None
        return self.returncode

    def poll(self) -> int | None:
        return self._status(0)

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        code = self._status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the end; (stdout, the part of stderr not yet read by ``stderr.readline()``)."""
        import shutil

        self.wait(timeout)
        try:
            with open(os.path.join(self.tmp, "stdout"), encoding="utf-8", errors="replace") as f:
                out = f.read()
        except FileNotFoundError:  # ended before it opened its output
            out = ""
        err = self.stderr.rest()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return out, err


class _Follow:
    """Lines of a file a running command writes, as from its pipe: ``readline`` waits for a whole
    line, or gives what is left once the command has ended ('' at the end)."""

    def __init__(self, path: str, proc: Started):
        self.path, self.proc, self.pos = path, proc, 0

    def _take(self, whole_line: bool) -> bytes | None:
        """The next line; without a newline yet, None, or what there is when ``whole_line`` is False."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            data = b""
        if b"\n" in data:
            data = data[:data.index(b"\n") + 1]
        elif whole_line:
            return None
        self.pos += len(data)
        return data

    def readline(self) -> str:
        import time

        while True:
            ended = self.proc.poll() is not None  # before reading: what it wrote before ending is there
            line = self._take(whole_line=not ended)
            if line is not None:
                return line.decode("utf-8", errors="replace")
            time.sleep(0.05)

    def rest(self) -> str:
        lines = iter(lambda: self._take(whole_line=False), b"")
        return b"".join(lines).decode("utf-8", errors="replace")


if __name__ == "__main__":
    serve()
