"""Starts the four interop servers (commands come from environment variables set by run.sh)."""
import os
import socket
import subprocess
import time

import pytest
import requests

LANGUAGES = os.environ.get("INTEROP_LANGUAGES", "typescript,python,go,rust").split(",")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def servers():
    started = {}
    procs = []
    try:
        for lang in LANGUAGES:
            command = os.environ[f"INTEROP_{lang.upper()}_CMD"]
            cwd = os.environ.get(f"INTEROP_{lang.upper()}_CWD")
            port = free_port()
            service = f"interop-{lang}"
            instance = f"{lang}-1"
            env = dict(os.environ, PORT=str(port), RACEWAY_SERVICE=service, RACEWAY_INSTANCE_ID=instance)
            env.pop("RACEWAY_ENDPOINT", None)
            log = open(os.path.join(os.environ.get("INTEROP_LOG_DIR", "/tmp"), f"interop-{lang}.log"), "w")
            procs.append(subprocess.Popen(command, shell=True, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
            started[lang] = {"lang": lang, "url": f"http://127.0.0.1:{port}", "service": service,
                             "key": f"{service}#{instance}"}
        deadline = time.monotonic() + 120
        for lang, server in started.items():
            while True:
                try:
                    if requests.get(server["url"] + "/health", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{lang} interop server did not become healthy")
                time.sleep(0.2)
        yield started
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
