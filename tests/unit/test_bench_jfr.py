"""The broker's profile in the benchmark (tests.bench.jfr): a JVM recorded by the JDK's
Flight Recorder becomes a speedscope file like py-spy's, each stack rooted at its thread."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.bench import jfr

BUSY = """
public class Busy {
    static long spin(long n) { long x = 0; for (long i = 0; i < n; i++) { x += i % 7; } return x; }
    public static void main(String[] a) throws Exception {
        System.out.println("ready"); System.out.flush();
        long end = System.currentTimeMillis() + 8000; long s = 0;
        while (System.currentTimeMillis() < end) { s += spin(1000000); }
        System.out.println(s);
    }
}
"""


def frame(cls: str, method: str, line: int) -> dict[str, object]:
    return {"method": {"type": {"name": cls.replace(".", "/")}, "name": method},
            "lineNumber": line}


def test_samples_become_stacks_rooted_at_their_thread_pool() -> None:
    # as `jfr print --json` gives them: innermost frame first
    events = [{"type": "jdk.ExecutionSample", "values": {
        "sampledThread": {"javaName": "data-plane-kafka-request-handler-3"},
        "stackTrace": {"frames": [frame("kafka.server.KafkaApis", "handleFetchRequest", 900),
                                  frame("kafka.server.KafkaApis", "handle", 200),
                                  frame("java.lang.Thread", "run", -1)]}}},
        {"type": "jdk.ExecutionSample", "values": {
            "sampledThread": {"javaName": "data-plane-kafka-request-handler-5"},
            "stackTrace": {"frames": [frame("kafka.server.KafkaApis", "handle", 200),
                                      frame("java.lang.Thread", "run", -1)]}}}]
    doc = jfr.speedscope(events, "kafka")
    frames = doc["shared"]["frames"]
    profile = doc["profiles"][0]
    names = [[frames[i]["name"] for i in s] for s in profile["samples"]]
    assert names == [
        ["[thread] data-plane-kafka-request-handler", "java.lang.Thread.run",
         "kafka.server.KafkaApis.handle", "kafka.server.KafkaApis.handleFetchRequest"],
        ["[thread] data-plane-kafka-request-handler", "java.lang.Thread.run",
         "kafka.server.KafkaApis.handle"]]
    # one frame per method and line, shared by the samples; a line JFR does not know is left out
    assert len(frames) == 4 and "line" not in frames[1] and frames[2]["line"] == 200
    assert profile["weights"] == [jfr.SAMPLE_MS] * 2
    assert profile["endValue"] == 2 * jfr.SAMPLE_MS and profile["type"] == "sampled"


def test_a_running_jvm_is_recorded_and_converted(tmp_path: Path) -> None:
    src = tmp_path / "Busy.java"
    src.write_text(BUSY)
    jvm = subprocess.Popen(["java", str(src)], stdout=subprocess.PIPE, text=True)
    try:
        assert jvm.stdout is not None and jvm.stdout.readline().strip() == "ready"
        rec, out = tmp_path / "busy.jfr", tmp_path / "busy.speedscope.json"
        assert jfr.start(jvm.pid, 2, rec)
        assert rec.exists() and not jfr.convert(rec, out, "busy")  # (empty until it ends)
        assert jfr.written(rec, 30)
        assert jfr.convert(rec, out, "busy")
    finally:
        jvm.kill()
        jvm.wait()
    doc = json.loads(out.read_text())
    frames = doc["shared"]["frames"]
    stacks = [[frames[i]["name"] for i in s] for s in doc["profiles"][0]["samples"]]
    spinning = [s for s in stacks if "Busy.spin" in s]
    assert spinning and all(s[0] == "[thread] main" for s in spinning)
    assert len(spinning) >= len(stacks) / 2  # the busy thread is where the samples are


def test_no_recording_no_profile(tmp_path: Path) -> None:
    assert not jfr.convert(tmp_path / "absent.jfr", tmp_path / "out.json", "kafka")
    assert not (tmp_path / "out.json").exists()
