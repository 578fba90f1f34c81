"""Run the real ``labelvault`` command in subprocesses (several at once, to keep the suite fast).

``run_many`` starts the installed console script for each command. ``run_forked`` pays for the
imports once: a driver process imports ``labelvault.cli`` and forks one child per command, each
running the real entry point with its own environment, argv, stdout and stderr (a real process
each; only the interpreter start-up is shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABELVAULT = str(Path(sys.executable).with_name("labelvault"))
# settings the outer environment may carry that would change what a command does
_SETTINGS_TO_DROP = (
    "LABELVAULT_DATA_DIR",
    "LABELVAULT_PORT",
    "LABELVAULT_HOST",
    "LABELVAULT_LOG_LEVEL",
    "LABELVAULT_DATABASE_URL_FILE",
    "LABELVAULT_LOCAL_KEK_FILE",
    "LABELVAULT_APP_DB_PASSWORD_FILE",
)


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_line(self) -> str:
        """The single line a failed command must print on stderr."""
        lines = self.stderr.splitlines()
        assert self.returncode != 0, f"{self.args} succeeded:\n{self.output}"
        assert len(lines) == 1, f"{self.args}: expected one line on stderr, got:\n{self.stderr}"
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]


def cli_env(*, keep_database_url: bool = True, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS_TO_DROP}
    if not keep_database_url:
        env.pop("LABELVAULT_DATABASE_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"  # rich tables: keep ids on one line
    env.update(extra)
    return env


def run_many(
    commands: Mapping[str, tuple[Sequence[str], Mapping[str, str]]], *, timeout: float = 90
) -> dict[str, Result]:
    """Start every command at once, wait for all; ``{name: (args, env)}`` -> ``{name: Result}``."""
    procs: dict[str, tuple[tuple[str, ...], subprocess.Popen[str]]] = {}
    try:
        for name, (args, env) in commands.items():
            argv = (LABELVAULT, *args)
            procs[name] = (
                argv,
                subprocess.Popen(
                    argv,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        results = {}
        for name, (argv, proc) in procs.items():
            out, err = proc.communicate(timeout=timeout)
            results[name] = Result(argv, proc.returncode, out, err)
        return results
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run(args: Sequence[str], env: Mapping[str, str], *, timeout: float = 90) -> Result:
    return run_many({"one": (args, env)}, timeout=timeout)["one"]


_DRIVER = r"""
import atexit, json, os, sys, traceback
from labelvault.cli import main
jobs = json.load(sys.stdin)
children = {}
for job in jobs:
    pid = os.fork()
    if pid:
        children[pid] = job["name"]
        continue
    code = 1
    try:
        os.environ.clear()
        os.environ.update(job["env"])
        for fd, path in ((1, job["out"]), (2, job["err"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.argv = ["labelvault", *job["args"]]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
codes = {}
while children:
    pid, status = os.wait()
    codes[children.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps(codes))
"""


def run_forked(
    commands: Mapping[str, tuple[Sequence[str], Mapping[str, str]]], *, timeout: float = 90
) -> dict[str, Result]:
    """Like ``run_many``, through one driver that forks a child per command (see above).

    The commands must share ``XDG_RUNTIME_DIR`` (pgserver reads it at import time).
    """
    runtimes = {env.get("XDG_RUNTIME_DIR") for _, env in commands.values()}
    assert len(runtimes) == 1, "one XDG_RUNTIME_DIR per driver"
    with tempfile.TemporaryDirectory(prefix="lv-cli-") as tmp:
        jobs: list[dict[str, Any]] = [
            {
                "name": name,
                "args": list(args),
                "env": dict(env),
                "out": os.path.join(tmp, f"{i}.out"),
                "err": os.path.join(tmp, f"{i}.err"),
            }
            for i, (name, (args, env)) in enumerate(commands.items())
        ]
        driver_env = dict(next(iter(commands.values()))[1])
        done = subprocess.run(
            [sys.executable, "-c", _DRIVER],
            input=json.dumps(jobs),
            env=driver_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        codes = json.loads(done.stdout.strip().splitlines()[-1])
        results = {}
        for job in jobs:
            with open(job["out"]) as out, open(job["err"]) as err:
                results[job["name"]] = Result(
                    ("labelvault", *job["args"]), codes[job["name"]], out.read(), err.read()
                )
        return results
