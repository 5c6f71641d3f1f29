#!/usr/bin/env python3
"""Writes OCI image layouts for Ferry's registry tests and benchmarks (no container engine).

  oci_image.py image DIR TAG [--layers K] [--layer-bytes N] [--seed S] [--base-bytes N --base-seed S] [--count C]
  oci_image.py index DIR TAG [--platforms linux/amd64,linux/arm64,...] [--layer-bytes N] [--seed S]
  oci_image.py artifact DIR TAG --subject DIGEST --subject-size N --subject-type MEDIATYPE

Layers are uncompressed tars holding one file of deterministic pseudo-random bytes, so two
layouts made with the same seed share blobs. Prints the top manifest digest.
"""
import argparse
import hashlib
import json
import os
import random
import tarfile

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


class Layout:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')

    def put(self, data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.root, "blobs", "sha256", d), "wb") as f:
            f.write(data)
        return "sha256:" + d, len(data)

    def layer(self, size, seed, name="data"):
        """A tar holding `size` pseudo-random bytes, streamed to disk in 1 MiB pieces."""
        rng = random.Random(seed)
        tmp = os.path.join(self.root, "blobs", "tmp-layer")
        h = hashlib.sha256()
        total = 0
        with open(tmp, "wb") as f:
            info = tarfile.TarInfo(name)
            info.size = size
            info.mtime = 0
            for chunk in (info.tobuf(format=tarfile.USTAR_FORMAT),):
                f.write(chunk); h.update(chunk); total += len(chunk)
            left = size
            while left > 0:
                n = min(left, 1 << 20)
                chunk = rng.randbytes(n)
                f.write(chunk); h.update(chunk); total += n
                left -= n
            pad = b"\0" * ((512 - size % 512) % 512 + 1024)
            f.write(pad); h.update(pad); total += len(pad)
        d = h.hexdigest()
        os.replace(tmp, os.path.join(self.root, "blobs", "sha256", d))
        return {"mediaType": LAYER, "digest": "sha256:" + d, "size": total}

    def image(self, layers, os_name="linux", arch="amd64", variant=None):
        cfg = {"architecture": arch, "os": os_name,
               "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
               "config": {}}
        if variant:
            cfg["variant"] = variant
        cd, cs = self.put(json.dumps(cfg, sort_keys=True).encode())
        m = {"schemaVersion": 2, "mediaType": MANIFEST,
             "config": {"mediaType": CONFIG, "digest": cd, "size": cs}, "layers": layers}
        data = json.dumps(m, indent=3).encode()  # not canonical on purpose: bytes must be preserved
        d, s = self.put(data)
        return {"mediaType": MANIFEST, "digest": d, "size": s}

    def finish(self, desc, tag):
        self.finish_many([(desc, tag)])

    def finish_many(self, tagged):
        out = []
        for desc, tag in tagged:
            desc = dict(desc)
            desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
            out.append(desc)
            print(desc["digest"])
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": out}, f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["image", "index", "artifact"])
    p.add_argument("dir")
    p.add_argument("tag")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--count", type=int, default=1, help="images sharing the base layer, tagged TAG0..TAG<count-1>")
    p.add_argument("--layer-bytes", type=int, default=4096)
    p.add_argument("--seed", default="ferry")
    p.add_argument("--base-bytes", type=int, default=0)
    p.add_argument("--base-seed", default="base")
    p.add_argument("--platforms", default="linux/amd64,linux/arm64/v8,linux/ppc64le,linux/s390x")
    p.add_argument("--subject")
    p.add_argument("--subject-size", type=int)
    p.add_argument("--subject-type", default=MANIFEST)
    a = p.parse_args()
    lay = Layout(a.dir)
    if a.kind == "image":
        base = lay.layer(a.base_bytes, a.base_seed, "base") if a.base_bytes else None
        tagged = []
        for n in range(a.count):
            seed = a.seed if a.count == 1 else f"{a.seed}-{n}"
            layers = [base] if base else []
            layers += [lay.layer(a.layer_bytes, f"{seed}-{i}", f"layer{i}") for i in range(a.layers)]
            tagged.append((lay.image(layers), a.tag if a.count == 1 else f"{a.tag}{n}"))
        lay.finish_many(tagged)
    elif a.kind == "index":
        children = []
        for plat in a.platforms.split(","):
            parts = plat.split("/")
            layer = lay.layer(a.layer_bytes, f"{a.seed}-{plat}", "platform")
            d = lay.image([layer], parts[0], parts[1], parts[2] if len(parts) > 2 else None)
            d["platform"] = {"os": parts[0], "architecture": parts[1]}
            if len(parts) > 2:
                d["platform"]["variant"] = parts[2]
            children.append(d)
        idx = {"schemaVersion": 2, "mediaType": INDEX, "manifests": children}
        d, s = lay.put(json.dumps(idx, indent=2).encode())
        lay.finish({"mediaType": INDEX, "digest": d, "size": s}, a.tag)
    else:
        ed, es = lay.put(b"{}")
        body = lay.put(b'{"sbom":"ferry test"}')
        m = {"schemaVersion": 2, "mediaType": MANIFEST,
             "artifactType": "application/vnd.ferry.test.sbom+json",
             "config": {"mediaType": EMPTY, "digest": ed, "size": es},
             "layers": [{"mediaType": "application/vnd.ferry.test.sbom+json", "digest": body[0], "size": body[1]}],
             "subject": {"mediaType": a.subject_type, "digest": a.subject, "size": a.subject_size}}
        d, s = lay.put(json.dumps(m).encode())
        lay.finish({"mediaType": MANIFEST, "digest": d, "size": s}, a.tag)


if __name__ == "__main__":
    main()
