"""A throwaway docker-registry on 127.0.0.1 and a minimal push client, for the benches."""
import gzip, hashlib, json, os, socket, subprocess, time, urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Registry:
    def __init__(self, workdir):
        self.port = free_port()
        cfg = os.path.join(workdir, "registry.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {workdir}/registry\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def push(self, repo, tag, layer_tar, compresslevel=6):
        """Push a one-layer image (gzip) whose rootfs is `layer_tar`; returns the reference."""
        base = f"http://127.0.0.1:{self.port}/v2/{repo}"

        def blob(data):
            d = "sha256:" + hashlib.sha256(data).hexdigest()
            r = urllib.request.urlopen(urllib.request.Request(base + "/blobs/uploads/", method="POST"))
            loc = r.headers["Location"]
            loc = loc if loc.startswith("http") else f"http://127.0.0.1:{self.port}{loc}"
            sep = "&" if "?" in loc else "?"
            urllib.request.urlopen(urllib.request.Request(f"{loc}{sep}digest={d}", data=data, method="PUT",
                                                          headers={"Content-Type": "application/octet-stream"}))
            return d, len(data)

        gz = gzip.compress(layer_tar, compresslevel=compresslevel)
        ld, ls = blob(gz)
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
        cfg = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
                          # buildah refuses to build on an image whose history does not
                          # account for its layers.
                          "history": [{"created_by": "the bench's rootfs"}]}).encode()
        cd, cs = blob(cfg)
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{base}/manifests/{tag}", data=m, method="PUT",
                                                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))
        return f"127.0.0.1:{self.port}/{repo}:{tag}", len(gz)


def unmount_under(path):
    """Detach every mount at or below `path` (husk keeps EROFS layer mounts up), deepest first."""
    path = os.path.realpath(path)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            p = line.split(" ")[4]
            if p == path or p.startswith(path + "/"):
                points.append(p)
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
