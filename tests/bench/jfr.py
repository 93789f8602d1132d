"""The brokers' profile for the benchmark: the JDK's Flight Recorder (started by `jcmd`)
samples the JVM's threads while py-spy samples the Python processes, and its execution
samples become a speedscope file like theirs, so every process of a run is seen in one
viewer. Only threads running Java code are sampled (JFR's `jdk.ExecutionSample`, every
SAMPLE_MS): a thread waiting in the kernel costs no CPU and is not in it, as in py-spy's
profiles without `--idle`; the JIT's compiler threads are not Java threads and are not in
it either. JFR samples a few threads per period, not all that run, so a profile's total is
below the CPU the broker used: read its shares, and the broker's CPU from the benchmark's
figures. Each stack's root is its thread (pool numbers dropped:
`data-plane-kafka-request-handler`), so the time shows by kind of thread first: request
handlers, network threads, the group coordinator."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

SAMPLE_MS = 2  # how often a running thread is sampled (the JDK's `profile` settings: 10)
# the recording's settings: execution samples only (nothing else is read from it)
SETTINGS = f"""<?xml version="1.0" encoding="UTF-8"?>
<configuration version="2.0" label="mptf-bench" description="execution samples only">
  <event name="jdk.ExecutionSample">
    <setting name="enabled">true</setting>
    <setting name="period">{SAMPLE_MS} ms</setting>
  </event>
</configuration>
"""


def start(pid: int, seconds: int, out: Path) -> bool:
    """Record `pid`'s JVM for `seconds` (whole, at least 1) into `out` (a .jfr file, written
    when it ends); False where the JDK's jcmd is missing or the JVM refuses."""
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        return False
    settings = out.with_suffix(".jfc")
    settings.write_text(SETTINGS)
    try:
        r = subprocess.run([jcmd, str(pid), "JFR.start", "name=mptf-bench",
                            f"settings={settings}", f"duration={seconds}s",
                            f"filename={out}"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):  # (a profile is not worth a failed run)
        return False
    return r.returncode == 0 and "Started recording" in r.stdout


def written(rec: Path, timeout: float) -> bool:
    """Wait until the recording is in `rec`: JFR creates the file empty when it starts and
    writes it whole when the duration ends."""
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        now = rec.stat().st_size if rec.exists() else 0
        if now and now == size:
            return True
        size = now
        time.sleep(0.25)
    return False


def samples(jfr: Path) -> list[dict[str, Any]]:
    """The recording's execution samples, as `jfr print --json` gives them."""
    tool = shutil.which("jfr")
    if tool is None:
        return []
    r = subprocess.run([tool, "print", "--json", "--stack-depth", "128", "--events",
                        "jdk.ExecutionSample", str(jfr)],
                       capture_output=True, text=True, timeout=300, check=True)
    events: list[dict[str, Any]] = json.loads(r.stdout)["recording"]["events"]
    return events


def _thread(values: dict[str, Any]) -> str:
    t = values.get("sampledThread") or {}
    name = t.get("javaName") or t.get("osName") or "?"
    return re.sub(r"-\d+(?=-|$)", "", name)  # one frame per pool, not per thread


def _frame(f: dict[str, Any]) -> tuple[str, str, int | None]:
    method = f.get("method") or {}
    cls = ((method.get("type") or {}).get("name") or "?").replace("/", ".")
    line = f.get("lineNumber")
    return f"{cls}.{method.get('name', '?')}", cls.rsplit("$", 1)[0], (
        line if isinstance(line, int) and line >= 0 else None)


def speedscope(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """A speedscope document (its `sampled` profile type) of JFR execution samples, each
    weighing SAMPLE_MS, its stack root first: the thread, then the frames outermost first."""
    frames: list[dict[str, Any]] = []
    index: dict[tuple[str, str, int | None], int] = {}

    def at(key: tuple[str, str, int | None]) -> int:
        if key not in index:
            index[key] = len(frames)
            frames.append({"name": key[0], "file": key[1],
                           **({"line": key[2]} if key[2] is not None else {})})
        return index[key]

    stacks: list[list[int]] = []
    for e in events:
        values = e.get("values") or {}
        trace = (values.get("stackTrace") or {}).get("frames") or []
        # JFR lists the frames innermost first
        stacks.append([at((f"[thread] {_thread(values)}", "", None))]
                      + [at(_frame(f)) for f in reversed(trace)])
    total = SAMPLE_MS * len(stacks)
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": name,
        "activeProfileIndex": 0,
        "exporter": "tests.bench.jfr",
        "shared": {"frames": frames},
        "profiles": [{"type": "sampled", "name": name, "unit": "milliseconds",
                      "startValue": 0, "endValue": total, "samples": stacks,
                      "weights": [SAMPLE_MS] * len(stacks)}],
    }


def convert(jfr: Path, out: Path, name: str) -> bool:
    """`jfr` as a speedscope file at `out`; False if it holds no samples (or is missing or
    empty: not written yet)."""
    if not jfr.exists() or not jfr.stat().st_size:
        return False
    events = samples(jfr)
    if not events:
        return False
    out.write_text(json.dumps(speedscope(events, name)))
    return True
