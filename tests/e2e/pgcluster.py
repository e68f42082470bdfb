"""A throwaway PostgreSQL cluster for the end-to-end tests of several relay nodes:
`initdb` into a temporary directory, `postgres` on 127.0.0.1 and a free port as a child
process, stopped by its PID. The binaries are Debian's (`pg_config --bindir`, else
`/usr/lib/postgresql/*/bin`, else PATH); as root the cluster runs as `nobody`, since
PostgreSQL refuses root. The same rules as chatmail-core/tests/support/postgres.rs."""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def bindir():
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        d = Path(out.stdout.strip())
        if out.returncode == 0 and (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    except FileNotFoundError:
        pass
    versions = sorted(Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")
                      if (Path(p) / "initdb").is_file())
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A running cluster; user `postgres` (trust authentication) owns database `chatmail`."""

    def __init__(self, settings=()):
        self.bin = bindir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL binaries not found (Debian's postgresql package)")
        self.tmp = Path(tempfile.mkdtemp(prefix="chatmail-pg-"))
        self.dir = self.tmp / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.user = (nobody.pw_uid, nobody.pw_gid)
            os.chown(self.tmp, *self.user)
        self.log = open(self.tmp / "postgres.log", "a+")
        self._run([str(self.bin / "initdb"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--no-instructions", "-D", str(self.dir)])
        args = [str(self.bin / "postgres"), "-D", str(self.dir), "-h", "127.0.0.1",
                "-p", str(self.port), "-k", str(self.tmp), "-c", "max_connections=200"]
        for setting in settings:
            args += ["-c", setting]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=self._drop)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited:\n" + (self.tmp / "postgres.log").read_text())
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1",
                                    "-p", str(self.port)], capture_output=True)
            if ready.returncode == 0:
                break
            if time.time() > deadline:
                raise RuntimeError("postgres did not come up within 30 s")
            time.sleep(0.1)
        self.psql("CREATE DATABASE chatmail")

    def _drop(self):
        if self.user:
            os.setgid(self.user[1])
            os.setuid(self.user[0])

    def _run(self, args):
        out = subprocess.run(args, capture_output=True, text=True, preexec_fn=self._drop,
                             cwd=self.tmp)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]}: {out.stderr}")
        return out.stdout

    def psql(self, sql, db="postgres"):
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
             "-tAX", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, check=True, timeout=60).stdout

    def url(self, db="chatmail"):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self):
        if self.proc.poll() is None:
            # SIGINT: PostgreSQL's fast shutdown.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
