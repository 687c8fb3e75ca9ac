"""The harness that runs `shootout` commands for the tests (tests/zygote.py): a command forked from
the zygote behaves as the same command started with ``python -m shootout.cli``: exit code, output,
environment and working folder are its own, nothing carries over to the next command, and a
command past its time limit is killed without taking the zygote with it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import shootout, write_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or os.environ.get("SHOOTOUT_TEST_FORK") == "0",
                                reason="the zygote forks on Linux only")


@pytest.mark.slow
def test_a_forked_command_answers_as_a_plain_process_and_leaves_nothing_behind(tmp_path, embedded_gguf):
    write_config(tmp_path, embedded_gguf, iterations=1, articles=1)
    args = ("run", "-c", "config.yaml", "--no-progress")  # a relative path: found from the working folder
    bad = {"SHOOTOUT_THREADS": "two"}
    forked = shootout(*args, cwd=tmp_path, env_extra=bad)
    plain = subprocess.run([sys.executable, "-m", "shootout.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200", **bad}, timeout=120)
    assert forked.returncode == plain.returncode == 2
    assert forked.stderr == plain.stderr and "SHOOTOUT_THREADS='two'" in forked.stderr
    assert forked.stdout == plain.stdout
    # the next command has its own environment: without the bad setting it starts the run (and is
    # killed at its time limit, long before a model load and a call are done)
    with pytest.raises(subprocess.TimeoutExpired):
        shootout(*args, cwd=tmp_path, timeout=0.5)
    again = shootout("--help")
    assert again.returncode == 0 and "export" in again.stdout


@pytest.mark.slow
def test_a_started_command_is_signalled_and_read_as_a_popen_is(tmp_path, embedded_gguf):
    import signal

    from tests.conftest import start_shootout

    write_config(tmp_path, embedded_gguf, iterations=1, articles=1)
    args = ("run", "-c", "config.yaml", "--no-progress")
    bad = {"SHOOTOUT_THREADS": "two"}
    plain = subprocess.run([sys.executable, "-m", "shootout.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200", **bad}, timeout=120)
    started = start_shootout(*args, cwd=tmp_path, env_extra=bad)
    lines = iter(started.stderr.readline, "")  # line by line while it runs, then '' at its end
    assert "".join(lines) == plain.stderr and started.wait(timeout=60) == plain.returncode == 2
    # a signal reaches the command, not the zygote: killed, it ends as a killed Popen does (-9)
    started = start_shootout(*args, cwd=tmp_path)
    assert started.poll() is None
    started.send_signal(signal.SIGKILL)
    assert started.wait(timeout=60) == -signal.SIGKILL
    out, err = started.communicate()
    assert out == "" and "Traceback" not in err
    assert shootout("--help").returncode == 0  # the zygote serves the next command
