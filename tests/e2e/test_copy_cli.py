"""`ferry copy` the way skopeo and crane users write it (SPEC §4): docker:// references, plain
HTTP by default for loopback registries, a hint when TLS meets a plain-HTTP server, and
--all-tags for a whole repository; real docker-registry processes and skopeo."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FERRY, E2ETest, run  # noqa: E402

A_ID = "111111111111"


class CopyCli(E2ETest):
    def setUp(self):
        super().setUp()
        self.a = self.registry("a", A_ID, "us-east-1", notify=False)
        self.b = self.registry("b", A_ID, "us-west-2", notify=False)

    def copy(self, *args):
        return run([FERRY, "copy", "--quiet", *args], check=False)

    def test_docker_references_to_a_loopback_registry_need_no_insecure_flag(self):
        img = self.image(seed="copy-docker")
        img.push(self.a, "prod/app")
        p = self.copy(f"docker://{self.a.host}/prod/app:v1", f"docker://{self.b.host}/mirror/app:v1")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), f"{self.b.host}/mirror/app@{img.digest}")
        self.assertEqual(self.b.manifest("mirror/app", "v1"), self.a.manifest("prod/app", "v1"))

    def test_oci_layout_sources_image_and_index_bytes_preserved(self):
        """`ferry copy oci:DIR:TAG REF` pushes from an OCI image layout (skopeo's oci: form): every
        blob and child manifest, the bytes as they are in the layout, the tag last."""
        img = self.image(seed="layout-image", layer_bytes=300 * 1024)
        idx = self.image(kind="index", seed="layout-index", tag="multi")
        p = self.copy(f"oci:{img.dir}:v1", f"{self.b.host}/from/layout:v1", f"oci:{idx.dir}", f"{self.b.host}/from/index:multi")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), [f"{self.b.host}/from/layout@{img.digest}", f"{self.b.host}/from/index@{idx.digest}"])

        def blob(layout, digest):
            with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
                return f.read()
        self.assertEqual(self.b.manifest("from/layout", "v1"), blob(img.dir, img.digest))
        self.assertEqual(self.b.manifest("from/index", "multi"), blob(idx.dir, idx.digest))
        for child in json.loads(blob(idx.dir, idx.digest))["manifests"]:
            self.assertEqual(self.b.manifest("from/index", child["digest"]), blob(idx.dir, child["digest"]))
        # Pushing it again writes no blob: every one is there already.
        p = run([FERRY, "copy", f"oci:{img.dir}:v1", f"{self.b.host}/from/layout:v1"], check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("blobs copied=0 skipped=2", p.stderr)

    def test_oci_layout_errors_name_the_layout_and_leave_nothing_tagged(self):
        img = self.image(seed="layout-bad", layer_bytes=64 * 1024)
        p = self.copy(f"oci:{img.dir}:nope", f"{self.b.host}/bad/app:v1")
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"oci:{img.dir}", p.stderr)
        self.assertIn("no image tagged nope in index.json (it has: v1)", p.stderr)
        p = self.copy(f"oci:{self.workdir}/absent:v1", f"{self.b.host}/bad/app:v1")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no index.json", p.stderr)
        # A layer file altered after the layout was written: refused, and the tag never appears.
        with open(os.path.join(img.dir, "blobs", "sha256", img.digest.split(":")[1])) as f:
            layer = json.load(f)["layers"][0]
        path = os.path.join(img.dir, "blobs", "sha256", layer["digest"].split(":")[1])
        with open(path, "r+b") as f:
            f.seek(layer["size"] // 2)
            f.write(b"X")
        p = self.copy(f"oci:{img.dir}:v1", f"{self.b.host}/bad/app:v1")
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"blobs/ file of {layer['digest']} does not match its digest", p.stderr)
        self.assertEqual(self.b.tags("bad/app"), [])
        # --all-tags is for registry repositories.
        p = self.copy("--all-tags", f"oci:{img.dir}", f"{self.b.host}/bad/app")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--all-tags copies registry repositories", p.stderr)

    def test_tls_against_a_plain_http_registry_says_so(self):
        self.image(seed="copy-tls").push(self.a, "prod/app")
        for args, flag in (([f"https://{self.a.host}/prod/app:v1", f"{self.b.host}/x:v1"], "--src-insecure"),
                           (["--dest-tls", f"{self.a.host}/prod/app:v1", f"{self.b.host}/x:v1"], "--dest-insecure")):
            with self.subTest(args=args):
                p = self.copy(*args)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn("the server answered plain HTTP, not TLS", p.stderr)
                self.assertIn(f"use {flag} or an http:// reference", p.stderr)
        self.assertEqual(self.b.tags("x"), [])

    def test_all_tags_copies_every_tag_of_the_repository(self):
        tags = ["1.0", "1.1", "latest", "v2"]
        for i, tag in enumerate(tags):
            self.image(seed=f"copy-all-{i}", tag=tag).push(self.a, "prod/app")
        self.image(seed="copy-other").push(self.a, "prod/other")  # another repository: not copied
        p = self.copy("--all-tags", f"docker://{self.a.host}/prod/app", f"{self.b.host}/mirror/app")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(p.stdout.splitlines()), len(tags), p.stdout)
        self.assertEqual(self.b.tags("mirror/app"), sorted(tags))
        for tag in tags:
            self.assertEqual(self.b.manifest("mirror/app", tag), self.a.manifest("prod/app", tag), tag)
        self.assertEqual(self.b.catalog(), ["mirror/app"])
        # A tag or digest with --all-tags is a usage error, and so is an empty repository.
        p = self.copy("--all-tags", f"{self.a.host}/prod/app:v2", f"{self.b.host}/mirror/app")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--all-tags copies whole repositories", p.stderr)
        p = self.copy("--all-tags", f"{self.a.host}/prod/none", f"{self.b.host}/mirror/none")
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"{self.a.host}/prod/none", p.stderr)


if __name__ == "__main__":
    unittest.main()
