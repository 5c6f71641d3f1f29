"""Ferry's OCI image without a container engine (scripts/build-image.sh): built with umoci from
the `ferry` under test, pushed with `ferry copy oci:...` to a real docker-registry, pulled back
with skopeo, unpacked with umoci, and run from the unpacked root filesystem (chroot) as the
image's non-root user: `ferry --version` and `ferry validate` work with nothing else inside."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from harness import FERRY, E2ETest, run  # noqa: E402

GOOD = """apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: home}
spec: {registryId: "111111111111", region: us-east-1, endpoint: "https://registry.example.com"}
"""
BAD = GOOD.replace('"111111111111"', '"12"')


class ImageBuildTest(E2ETest):
    def chroot(self, rootfs, *args):
        cmd = [shutil.which("chroot"), "--userspec=65532:65532", str(rootfs), *args]
        if os.geteuid() != 0:
            cmd = [shutil.which("unshare"), "--map-root-user", *cmd]  # a user namespace: chroot without root
        return subprocess.run(cmd, capture_output=True, text=True, env={"PATH": "/usr/local/bin"})

    def test_image_is_pushed_by_ferry_copy_and_runs_from_its_unpacked_rootfs(self):
        reg = self.registry("images", "111111111111", "us-east-1", notify=False)
        layout = os.path.join(self.workdir, "oci")
        out = run(["bash", str(ROOT / "scripts" / "build-image.sh"), "--ferry", FERRY, "--layout", layout,
                   "--tag", "test", "--push", f"{reg.host}/ferry:test"]).stdout
        self.assertIn(f"build-image: {layout}:test", out)
        index = json.loads(pathlib.Path(layout, "index.json").read_text())
        (top,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "test"]
        manifest = pathlib.Path(layout, "blobs", "sha256", top["digest"].split(":")[1]).read_bytes()
        # The registry holds the layout's manifest byte for byte (ferry copy printed its digest).
        self.assertIn(f"{reg.host}/ferry@{top['digest']}", out)
        self.assertEqual(reg.manifest("ferry", "test"), manifest)
        config = json.loads(run(["skopeo", "inspect", "--tls-verify=false", "--config",
                                 f"docker://{reg.host}/ferry:test"]).stdout)
        self.assertEqual(config["config"]["User"], "65532:65532")
        self.assertEqual(config["config"]["Entrypoint"], ["/usr/local/bin/ferry"])
        self.assertEqual(config["config"]["Cmd"], ["operator"])
        self.assertEqual((config["os"], config["architecture"]), ("linux", "amd64"))

        pulled = os.path.join(self.workdir, "pulled")
        run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reg.host}/ferry:test", f"oci:{pulled}:test"])
        bundle = pathlib.Path(self.workdir, "bundle")
        unpack = ["umoci", "unpack", "--image", f"{pulled}:test", str(bundle)]
        if os.geteuid() != 0:
            unpack.insert(2, "--rootless")
        run(unpack)
        rootfs = bundle / "rootfs"
        self.assertFalse((rootfs / "bin" / "sh").exists(), "no shell: only ferry and what it loads")
        self.assertTrue((rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt").is_file())
        v = self.chroot(rootfs, "/usr/local/bin/ferry", "--version")
        self.assertEqual((v.returncode, v.stdout.strip()), (0, "ferry 0.1.0"), v.stderr)
        (rootfs / "tmp" / "good.yaml").write_text(GOOD)
        (rootfs / "tmp" / "bad.yaml").write_text(BAD)
        ok = self.chroot(rootfs, "/usr/local/bin/ferry", "validate", "/tmp/good.yaml")
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        bad = self.chroot(rootfs, "/usr/local/bin/ferry", "validate", "/tmp/bad.yaml")
        self.assertEqual(bad.returncode, 1, bad.stdout + bad.stderr)
        self.assertIn("registryId", bad.stdout + bad.stderr)


if __name__ == "__main__":
    unittest.main()
