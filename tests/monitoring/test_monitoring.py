"""The chart's Grafana dashboard and Prometheus alerts (SPEC §9), proven with Debian's real
Prometheus: `promtool check rules` and `promtool test rules` on the shipped rules file, the chart
rendering both with real Helm, and a real Prometheus scraping a real `ferry operator` (on a real
kube-apiserver, copying between real docker-registry processes) where every dashboard query
returns data and the replication-failing alert fires for the destination that was denied."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import yaml  # noqa: E402

from harness import (Cluster, E2ETest, Process, Registry, replication_config, run,  # noqa: E402
                     wait_until)
from kube_control_plane import peer  # noqa: E402
from testproc import free_port  # noqa: E402

CHART = ROOT / "charts" / "ferry"
RULES = CHART / "files" / "ferry-rules.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
RULE_TESTS = HERE / "ferry-rules-test.yaml"
A_ID, B_ID = "111111111111", "222222222222"


def promtool(*args):
    return subprocess.run(["promtool", *args], capture_output=True, text=True)


def alert_names():
    return [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def dashboard_queries():
    """(panel title, PromQL) for every target of every panel, the dashboard's $job variable at All."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"].replace("$job", ".*")) for p in dash["panels"] for t in p["targets"]]


class RulesTest(unittest.TestCase):
    def test_promtool_accepts_the_shipped_rules(self):
        p = promtool("check", "rules", str(RULES))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(f"SUCCESS: {len(alert_names())} rules found", p.stdout)

    def test_promtool_refuses_a_broken_rule(self):
        """The check above can fail: the same file with one expression broken is refused."""
        with tempfile.TemporaryDirectory() as d:
            broken = pathlib.Path(d) / "broken.yaml"
            broken.write_text(RULES.read_text().replace("max(ferry_oldest_copy_seconds) > 900",
                                                        "max(ferry_oldest_copy_seconds > 900", 1))
            p = promtool("check", "rules", str(broken))
            self.assertNotEqual(p.returncode, 0, p.stdout)
            self.assertIn("FerryReplicationLagHigh", p.stdout + p.stderr)

    def test_every_alert_fires_in_a_promtool_test_and_the_tests_pass(self):
        tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
        fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
        quiet = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if not a.get("exp_alerts")}
        self.assertEqual(sorted(fired), sorted(alert_names()), "every alert has a case where it fires")
        self.assertEqual(sorted(quiet), sorted(alert_names()), "and one where it stays quiet")
        p = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], cwd=HERE, capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)


class ChartTest(unittest.TestCase):
    def template(self, *args):
        p = subprocess.run([peer("helm"), "template", "ferry", str(CHART), "--namespace", "ferry-system", *args],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return [d for d in yaml.safe_load_all(p.stdout) if d]

    def kinds(self, docs):
        return sorted(d["kind"] for d in docs)

    def test_neither_is_rendered_by_default(self):
        kinds = self.kinds(self.template("--api-versions", "monitoring.coreos.com/v1"))
        self.assertNotIn("PrometheusRule", kinds)
        self.assertFalse([d for d in self.template() if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]])

    def test_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard(self):
        docs = self.template("--set", "dashboards.enabled=true", "--set", "dashboards.namespace=monitoring",
                             "--set-string", "dashboards.annotations.grafana_folder=Platform")
        cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ferry-dashboard")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(cm["metadata"]["namespace"], "monitoring")
        self.assertEqual(cm["metadata"]["annotations"], {"grafana_folder": "Platform"})
        self.assertEqual(json.loads(cm["data"]["ferry.json"]), json.loads(DASHBOARD.read_text()))

    def test_prometheus_rule_holds_the_tested_rules_where_the_api_is_served(self):
        docs = self.template("--set", "prometheusRule.enabled=true", "--set-string", "prometheusRule.labels.release=kps",
                             "--api-versions", "monitoring.coreos.com/v1")
        rule = next(d for d in docs if d["kind"] == "PrometheusRule")
        self.assertEqual(rule["spec"], yaml.safe_load(RULES.read_text()))
        self.assertEqual(rule["metadata"]["labels"]["release"], "kps")
        # Without prometheus-operator's API the object is left out (it would fail the install).
        self.assertNotIn("PrometheusRule", self.kinds(self.template("--set", "prometheusRule.enabled=true")))

    def test_schema_refuses_a_misspelt_value(self):
        p = subprocess.run([peer("helm"), "template", "ferry", str(CHART), "--set", "prometheusRule.enable=true"],
                           capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("enable", p.stderr)


class LivePrometheusTest(E2ETest):
    """Prometheus scrapes `ferry operator` once a second while it replicates an image to one
    destination and is denied at another; then every dashboard query is asked of it."""

    def setUp(self):
        super().setUp()
        self.cluster = Cluster(self.workdir, self._procs)

    def _cleanup(self):
        op = self.cluster.operator if hasattr(self, "cluster") else None
        if op and op.alive():
            op.stop()
        if op and self._outcome_failed():
            sys.stderr.write("\n--- operator log ---\n" + op.output()[-6000:])
        super()._cleanup()

    def registry(self, name, registry_id, region):
        r = Registry(self.workdir, name, registry_id, region, self.cluster.url)
        self._procs.append(r.process)
        return r

    def start_prometheus(self, target):
        port = free_port()
        config = os.path.join(self.workdir, "prometheus.yml")
        rules = os.path.join(self.workdir, "ferry-rules.yaml")
        shutil.copy(RULES, rules)
        with open(config, "w") as f:
            yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                            "rule_files": [rules],
                            "scrape_configs": [{"job_name": "ferry", "static_configs": [{"targets": [target]}]}]}, f)
        proc = Process(["prometheus", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                        f"--storage.tsdb.path={os.path.join(self.workdir, 'tsdb')}"],
                       os.path.join(self.workdir, "prometheus.log"))
        self._procs.append(proc)
        self.prom = f"http://127.0.0.1:{port}"
        wait_until(lambda: self._get("/-/ready", raw=True), 30, what="Prometheus ready")

    def _get(self, path, raw=False, **params):
        url = self.prom + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read().decode()
        except OSError:
            return None
        return body if raw else json.loads(body)["data"]

    def query(self, expr):
        return self._get("/api/v1/query", query=expr)["result"]

    def test_dashboard_queries_return_data_and_the_failing_alert_fires(self):
        a = self.registry("src", A_ID, "us-east-1")
        b = self.registry("dst", A_ID, "us-west-2")
        c = self.registry("denied", B_ID, "eu-west-1")  # another account, no policy
        self.cluster.apply("---\n".join([a.resource(poll="1s"), b.resource(), c.resource()]))
        metrics_port = free_port()
        self.start_prometheus(f"127.0.0.1:{metrics_port}")
        self.cluster.start_operator(metrics_port=metrics_port)
        wait_until(lambda: self.query('up{job="ferry"} == 1'), 30, what="Prometheus scraping Ferry")
        time.sleep(2)  # a few scrapes before anything happens: rates over it have a start
        # Applied now, the configuration is reconciled while Prometheus watches (work-queue wait).
        self.cluster.apply(replication_config("a", a, [b, c]))
        # In effect once the engine recorded each destination's time; the top-level effectiveSince
        # is the controller's first-reconcile time until then, before the engine has the config.
        def in_effect():
            dests = self.cluster.get("replicationconfig", "a").get("status", {}).get("destinations", [])
            return len(dests) == 2 and all(d.get("effectiveSince") for d in dests)
        wait_until(in_effect, 20, what="the configuration in effect at both destinations")
        self.image(seed="scraped", layer_bytes=256 * 1024).push(a, "prod/app")

        def finished():
            for r in self.cluster.records():
                st = r.get("status", {}).get("replicationStatuses", [])
                if len(st) == 2 and all(s["status"] != "IN_PROGRESS" for s in st):
                    return st
            return None
        st = wait_until(finished, 30, what="the ImageReplication to finish")
        self.assertEqual(sorted(s["status"] for s in st), ["COMPLETE", "FAILED"])
        # A refused notification for the notifications panel's 4xx series.
        req = urllib.request.Request(self.cluster.url + "/registry-events/src", data=b'{"events": [',
                                     headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json"})
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(refused.exception.code, 400)
        time.sleep(3)  # scraped after the workload

        def has_data(expr):
            return [s for s in self.query(expr) if s["value"][1] not in ("NaN", "+Inf", "-Inf")]
        empty = [(title, expr) for title, expr in dashboard_queries() if not has_data(expr)]
        self.assertEqual(empty, [], "dashboard queries without data")
        # The series a user looks at first say what happened.
        failed = self.query('sum by (destination, failure_code) (ferry_replications_total{result="FAILED"}) > 0')
        self.assertEqual([(s["metric"]["destination"], s["metric"]["failure_code"], s["value"][1]) for s in failed],
                         [("denied", "DESTINATION_REGISTRY_ACCESS_DENIED", "1")])
        self.assertEqual(self.query('ferry_replications_total{destination="dst",result="COMPLETE"}')[0]["value"][1], "1")
        # The alert rules loaded, evaluated without error, and the failing one fires for "denied".
        rules = [r for g in self._get("/api/v1/rules")["groups"] for r in g["rules"]]
        self.assertEqual(sorted(r["name"] for r in rules), sorted(alert_names()))
        self.assertEqual({r["health"] for r in rules}, {"ok"}, [r.get("lastError") for r in rules])

        def firing():
            return [al for al in self._get("/api/v1/alerts")["alerts"]
                    if al["labels"]["alertname"] == "FerryReplicationFailing" and al["state"] == "firing"]
        alerts = wait_until(firing, 15, what="FerryReplicationFailing firing")
        self.assertEqual([(al["labels"]["destination"], al["labels"]["failure_code"]) for al in alerts],
                         [("denied", "DESTINATION_REGISTRY_ACCESS_DENIED")])
        # Healthy parts raise nothing: the leader is there and polls succeed.
        names = {al["labels"]["alertname"] for al in self._get("/api/v1/alerts")["alerts"]}
        self.assertNotIn("FerryNoLeader", names)
        self.assertNotIn("FerryPollingStale", names)


if __name__ == "__main__":
    unittest.main()
