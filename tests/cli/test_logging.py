"""Logs as SREs expect (SPEC §4 flags, §9 Logs): the real `ferry` binary, every stderr line parsed.

`--log-format json` writes one JSON object per line with an RFC 3339 UTC `ts` (milliseconds),
`level`, `msg` and every key=value field as its own key; `--log-level` filters; an unknown level or
format (flag or FERRY_LOG_LEVEL / FERRY_LOG_FORMAT) is exit 2 with a message, never silence.
"""
import datetime
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

FERRY = os.environ.get("FERRY_BINARY", "ferry")
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LEVELS = "trace, debug, info, warn, error"
# A file name with a quote and a backslash: it appears verbatim in the `problem` field.
ODD_NAME = 'we"ird\\name.yaml'

REGISTRY = """\
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: home}
spec:
  registryId: "111111111111"
  region: us-east-1
  endpoint: http://127.0.0.1:1
"""


def env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_LOG_")}
    # A zone far from UTC: local time labelled Z would be hours off.
    e["TZ"] = "IST-5:30"  # POSIX form: needs no tzdata
    e.update(extra)
    return e


def ferry(*args, **extra):
    return subprocess.run([FERRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env(**extra), timeout=60)


class FerryRun:
    """`ferry run` on a manifests directory with one unreadable, oddly named file, stopped by SIGTERM."""

    def __init__(self, test, *flags, post_notification=False, **extra):
        self.dir = tempfile.TemporaryDirectory()
        test.addCleanup(self.dir.cleanup)
        manifests = os.path.join(self.dir.name, "manifests")
        os.mkdir(manifests)
        self.odd_path = os.path.join(manifests, ODD_NAME)
        with open(self.odd_path, "w") as f:
            f.write("not: [valid")
        with open(os.path.join(manifests, "registry.yaml"), "w") as f:
            f.write(REGISTRY)
        self.stderr_path = os.path.join(self.dir.name, "stderr")
        with open(self.stderr_path, "w") as err:
            proc = subprocess.Popen([FERRY, "run", "--manifests", manifests, "--state-dir",
                                     os.path.join(self.dir.name, "state"), "--listen", "127.0.0.1:0", *flags],
                                    stdout=subprocess.PIPE, stderr=err, text=True, env=env(**extra))
        try:
            port = self._port(proc)
            if post_notification:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/registry-events/nosuchregistry",
                                             data=b"{}", method="POST",
                                             headers={"Content-Type": "application/vnd.docker.distribution.events.v2+json"})
                with self._ignore_http_error():
                    urllib.request.urlopen(req, timeout=5).read()
            time.sleep(0.5)
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            self.returncode = proc.wait(timeout=30)
            proc.stdout.close()
        with open(self.stderr_path) as f:
            self.stderr = f.read()
        self.lines = self.stderr.splitlines()

    @staticmethod
    def _port(proc):
        line = proc.stdout.readline()  # "ferry run: listening on port N"
        m = re.search(r"port (\d+)", line)
        if not m:
            raise AssertionError(f"ferry run did not start: {line!r}")
        return int(m.group(1))

    class _ignore_http_error:
        def __enter__(self):
            return self

        def __exit__(self, kind, value, tb):
            return kind is not None and issubclass(kind, urllib.error.HTTPError)


class JsonLines(unittest.TestCase):
    def setUp(self):
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.run_ = FerryRun(self, "--log-format", "json", post_notification=True)
        self.ended = datetime.datetime.now(datetime.timezone.utc)
        self.assertEqual(self.run_.returncode, 0, self.run_.stderr)
        self.events = []
        for line in self.run_.lines:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.fail(f"stderr line is not JSON: {line!r}")

    def event(self, msg):
        found = [e for e in self.events if e["msg"] == msg]
        self.assertTrue(found, f"no {msg!r} event in {self.run_.stderr}")
        return found[0]

    def test_every_line_is_one_json_object_with_ts_level_msg(self):
        self.assertGreaterEqual(len(self.events), 4, self.run_.stderr)
        for e in self.events:
            self.assertIsInstance(e, dict)
            self.assertEqual(list(e)[:3], ["ts", "level", "msg"], e)
            self.assertIn(e["level"], {"trace", "debug", "info", "warn", "error"}, e)
            for k, v in e.items():
                self.assertIsInstance(v, str, (k, e))

    def test_ts_is_rfc3339_utc_with_milliseconds_and_really_utc(self):
        slack = datetime.timedelta(seconds=5)
        for e in self.events:
            self.assertRegex(e["ts"], TS)
            ts = datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
            self.assertEqual(ts.utcoffset(), datetime.timedelta(0))
            self.assertLessEqual(self.started - slack, ts, e)
            self.assertLessEqual(ts, self.ended + slack, e)

    def test_fields_are_separate_keys(self):
        loaded = self.event("manifests loaded")
        self.assertEqual(loaded["level"], "info")
        self.assertEqual(loaded["valid"], "1")
        self.assertEqual(loaded["unreadable"], "1")
        self.assertTrue(loaded["dir"].endswith("/manifests"), loaded)
        listening = self.event("listening")
        self.assertRegex(listening["port"], r"^\d+$")
        stopping = self.event("shutting down")
        self.assertEqual(stopping["signal"], str(int(signal.SIGTERM)))
        refused = self.event("notification refused")
        self.assertEqual(refused["level"], "warn")
        self.assertEqual(refused["path"], "/registry-events/nosuchregistry")
        self.assertRegex(refused["status"], r"^4\d\d$")
        self.assertTrue(refused["reason"], refused)

    def test_quotes_and_backslashes_round_trip(self):
        problem = self.event("manifest unreadable")
        self.assertEqual(problem["level"], "error")
        self.assertTrue(problem["problem"].startswith(self.run_.odd_path + ":"), problem)
        self.assertIn('we"ird\\name.yaml', problem["problem"])


class TextLines(unittest.TestCase):
    def test_text_is_key_value_one_line_per_event(self):
        run = FerryRun(self)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertGreaterEqual(len(run.lines), 4, run.stderr)
        for line in run.lines:
            self.assertRegex(line, r"^ts=\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z level=(trace|debug|info|warn|error) msg=")
        self.assertTrue(any('msg="manifests loaded"' in l and " valid=1 " in l for l in run.lines), run.stderr)

    def test_format_from_the_environment(self):
        run = FerryRun(self, FERRY_LOG_FORMAT="json")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertTrue(run.lines)
        for line in run.lines:
            self.assertIn("ts", json.loads(line))


class Levels(unittest.TestCase):
    def test_error_level_suppresses_info(self):
        run = FerryRun(self, "--log-level", "error", "--log-format=json")
        self.assertEqual(run.returncode, 0, run.stderr)
        levels = [json.loads(l)["level"] for l in run.lines]
        self.assertEqual(levels, ["error"], run.stderr)

    def test_warning_is_warn_and_env_level_applies(self):
        run = FerryRun(self, "--log-level=warning", "--log-format", "json", post_notification=True)
        self.assertEqual({json.loads(l)["level"] for l in run.lines}, {"error", "warn"}, run.stderr)
        run = FerryRun(self, "--log-format", "json", FERRY_LOG_LEVEL="error")
        self.assertEqual({json.loads(l)["level"] for l in run.lines}, {"error"}, run.stderr)

    def test_debug_level_shows_debug_lines_of_copy(self):
        p = ferry("copy", "--log-level", "debug", "--log-format", "json",
                  "127.0.0.1:1/a:b", "127.0.0.1:1/c:d")
        self.assertNotEqual(p.returncode, 0)
        events = [json.loads(l) for l in p.stderr.splitlines() if l.startswith("{")]
        self.assertTrue(any(e["level"] == "debug" for e in events), p.stderr)
        for e in events:
            self.assertRegex(e["ts"], TS)
        # The copy's own error report stays a plain line, and no log line is left unparsed.
        for line in p.stderr.splitlines():
            self.assertTrue(line.startswith("{") or line.startswith("ferry copy: "), line)

    def test_unknown_level_is_exit_2_with_the_flag_value_and_choices(self):
        commands = [["run", "--manifests", "/nonexistent"], ["operator"], ["copy", "a", "b"],
                    ["status", "--repository", "r", "--image", "t"], ["validate", "-f", "/nonexistent"]]
        for cmd in commands:
            for flag in (["--log-level", "bogus"], ["--log-level=bogus"]):
                with self.subTest(cmd=cmd[0], flag=flag):
                    p = ferry(cmd[0], *flag, *cmd[1:])
                    self.assertEqual(p.returncode, 2, p.stderr)
                    self.assertIn(f"ferry {cmd[0]}: --log-level bogus: unknown level; use one of {LEVELS}", p.stderr)

    def test_flags_before_the_command_work_too(self):
        """`ferry --log-level debug copy ...` as `ferry copy --log-level debug ...` (kubectl's habit)."""
        p = ferry("--log-level", "debug", "--log-format=json", "copy", "127.0.0.1:1/a:b", "127.0.0.1:1/c:d")
        self.assertNotEqual(p.returncode, 0)
        events = [json.loads(l) for l in p.stderr.splitlines() if l.startswith("{")]
        self.assertTrue(any(e["level"] == "debug" for e in events), p.stderr)
        p = ferry("--log-level", "bogus", "validate", "-f", "/nonexistent")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(f"--log-level bogus: unknown level; use one of {LEVELS}", p.stderr)

    def test_unknown_format_is_exit_2(self):
        p = ferry("validate", "--log-format", "xml", "-f", "/nonexistent")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--log-format xml: unknown format; use one of text, json", p.stderr)

    def test_missing_value_is_exit_2(self):
        p = ferry("validate", "-f", "/nonexistent", "--log-level")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--log-level needs a value", p.stderr)

    def test_unknown_environment_level_is_an_error_not_silence(self):
        for cmd in (["run", "--manifests", "/nonexistent"], ["validate", "-f", "/nonexistent"]):
            with self.subTest(cmd=cmd[0]):
                p = ferry(*cmd, FERRY_LOG_LEVEL="verbose")
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(f"FERRY_LOG_LEVEL=verbose: unknown level; use one of {LEVELS}", p.stderr)
        p = ferry("validate", "-f", "/nonexistent", FERRY_LOG_FORMAT="yaml")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("FERRY_LOG_FORMAT=yaml: unknown format; use one of text, json", p.stderr)

    def test_flag_wins_over_environment_and_validate_still_works(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "registry.yaml")
            with open(path, "w") as f:
                f.write(REGISTRY)
            p = ferry("validate", "--log-level", "warn", "-f", path, FERRY_LOG_LEVEL="verbose")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("1 resources valid", p.stderr)


if __name__ == "__main__":
    unittest.main()
