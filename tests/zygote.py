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

BASE = ("shootout.cli", "shootout.reporting", "shootout.demo", "benchmark.runner", "benchmark.config",
        "benchmark.report", "benchmark.heatmaps", "benchmark.backends", "benchmark.backends.llamacpp",
        "benchmark.backends.openai_compat", "benchmark.backends.ollama_backend", "export.pipeline",
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

    def run(self, args, cwd: str, env: dict, timeout: float, preload: str | None = None):
        import subprocess
        import tempfile
        import time

        if self.proc is None or self.proc.poll() is not None:
            self._start()
        with tempfile.TemporaryDirectory(prefix="shootout-cmd-") as tmp:
            out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
            req = {"args": list(args), "cwd": str(cwd), "env": env, "stdout": out, "stderr": err, "preload": preload}
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
            pid = self._read(None if preload else 300)["pid"]
            deadline = time.monotonic() + timeout
            try:
                status = self._read(deadline - time.monotonic())["status"]
            except TimeoutError:
                os.kill(pid, 9)
                self._read(None)
                raise subprocess.TimeoutExpired(["shootout", *args], timeout) from None

            def text(path: str) -> str:
                with open(path, encoding="utf-8", errors="replace") as f:
                    return f.read()

            return subprocess.CompletedProcess(["shootout", *args], status, text(out), text(err))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()


if __name__ == "__main__":
    serve()
