"""The shipped nginx configuration run for real (issue 35 item 4): Debian's nginx, started from deploy/nginx.conf
and the files it includes, in front of two `lorechat serve` replicas on PostgreSQL and Redis that trust only
127.0.0.1 (nginx) as a proxy. Through it, over plain HTTP and over TLS that nginx terminates: a visitor's answer
streams as it is made and resumes, a curator signs in, uses the dashboard's forms and signs out with the Origin
a browser sends for the address it used (port included), a cross-site form is refused, forwarding headers the
visitor wrote itself choose nothing, and the session cookie is `Secure` exactly when the browser spoke HTTPS.

Only what ties the shipped files to a deployment is changed: the upstream servers (`lorechat-a:8000`,
`lorechat-b:8000`) and the listen ports (8080, 8443). The test fails, rather than guessing, when one of them is
no longer in the file. What nginx needs to run in the foreground from a temporary directory (pid, logs, temp paths,
`events {}`) is a wrapper of the test's own around the shipped server blocks, as the image's nginx.conf is.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from backend.curation import admin_session
from tests.backend.api.harness import new_peer
from tests.backend.api.streams import Reply, parse_sse, read_tokens
from tests.backend.api.test_crash import QUESTION, Served, serve
from tests.conftest import REPO
from tests.data_dirs import copy_data_dir
from tests.fakes import Script, ScriptedOpenAI

pytestmark = pytest.mark.services

DEPLOY = REPO / "deploy"
ADMIN_TOKEN = f"nginx-test-{uuid.uuid4().hex}"
WORDS = [f" word{i}" for i in range(60)]  # three seconds of answer at 0.05 s a token
CROSS_SITE = "https://attacker.example"
# What the shipped file names that a deployment changes, and nothing else: {shipped text: test's text}.
UPSTREAMS = ("server lorechat-a:8000", "server lorechat-b:8000")
HTTP_LISTEN, HTTPS_LISTEN = "listen 8080;", "listen 8443 ssl;"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nginx_binary() -> str:
    binary = os.environ.get("LORECHAT_TEST_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if Path(binary).is_file() and os.access(binary, os.X_OK):
        return binary
    message = f"nginx not found at {binary}: install Debian's nginx (scripts/test does) or set LORECHAT_TEST_NGINX"
    if os.environ.get("LORECHAT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"LORECHAT_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


def _substitute(text: str, replacements: dict[str, str]) -> str:
    for shipped, ours in replacements.items():
        found = text.count(shipped)
        if found != 1:
            pytest.fail(
                f"deploy/nginx.conf should contain `{shipped}` once, found it {found} times: the shipped file "
                "changed, so tests/deploy/test_nginx.py must follow it"
            )
        text = text.replace(shipped, ours)
    return text


def _self_signed(crt: Path, key: Path) -> None:
    """A certificate for 127.0.0.1 (in subjectAltName, so clients verify it) and its key."""
    crt.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


@dataclass(frozen=True)
class Nginx:
    http_port: int
    https_port: int
    ca: ssl.SSLContext  # trusts the test's self-signed certificate

    def origin(self, scheme: str) -> str:
        """What a browser on this nginx sends as Origin: scheme, host and the port it connected to."""
        return f"{scheme}://127.0.0.1:{self.http_port if scheme == 'http' else self.https_port}"

    def client(self, scheme: str, *, peer: str | None = None) -> httpx.AsyncClient:
        """A client of nginx from its own loopback address (the visitor address nginx forwards)."""
        transport = httpx.AsyncHTTPTransport(local_address=peer or new_peer(), verify=self.ca)
        return httpx.AsyncClient(base_url=self.origin(scheme), transport=transport, timeout=30)


@contextmanager
def run_nginx(binary: str, workdir: Path, upstream_ports: tuple[int, int]) -> Iterator[Nginx]:
    """Debian's nginx in the foreground on the shipped server blocks, listening on two free loopback ports."""
    conf = workdir / "conf"
    conf.mkdir(parents=True)
    http_port, https_port = _free_port(), _free_port()
    site = _substitute(
        (DEPLOY / "nginx.conf").read_text(encoding="utf-8"),
        {
            UPSTREAMS[0]: f"server 127.0.0.1:{upstream_ports[0]}",
            UPSTREAMS[1]: f"server 127.0.0.1:{upstream_ports[1]}",
            HTTP_LISTEN: f"listen 127.0.0.1:{http_port};",
            HTTPS_LISTEN: f"listen 127.0.0.1:{https_port} ssl;",
        },
    )
    (conf / "lorechat.conf").write_text(site, encoding="utf-8")
    # Relative paths in the shipped files are nginx's configuration directory (/etc/nginx in the image, `conf`
    # here): the included files go there unchanged, and the test's certificate where the shipped file looks.
    for name in re.findall(r"^\s*include\s+(\S+);", site, re.MULTILINE):
        if Path(name).is_absolute() or not (DEPLOY / name).is_file():
            pytest.fail(f"deploy/nginx.conf includes {name}, which is not a file beside it in deploy/")
        shutil.copyfile(DEPLOY / name, conf / name)
    certificate = dict(re.findall(r"^\s*(ssl_certificate(?:_key)?)\s+(\S+);", site, re.MULTILINE))
    if set(certificate) != {"ssl_certificate", "ssl_certificate_key"} or any(
        Path(path).is_absolute() for path in certificate.values()
    ):
        pytest.fail(f"deploy/nginx.conf should name its certificate and key by relative paths, found {certificate}")
    _self_signed(conf / certificate["ssl_certificate"], conf / certificate["ssl_certificate_key"])
    temp = workdir / "temp"
    temp.mkdir()
    # The image's own nginx.conf does this part: one `http {}` including the site. Workers of a root master
    # run as `nobody`, who cannot enter pytest's private temporary directories.
    wrapper = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include lorechat.conf;
}}
"""
    (conf / "nginx.conf").write_text(wrapper, encoding="utf-8")
    error_log = workdir / "error.log"
    command = [binary, "-p", f"{workdir}/", "-c", str(conf / "nginx.conf"), "-e", str(error_log), "-g", "daemon off;"]
    with (workdir / "nginx.out").open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        for port in (http_port, https_port):
            while not _accepts(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (workdir / "nginx.out").read_text(errors="replace")
                    log += error_log.read_text(errors="replace") if error_log.exists() else ""
                    pytest.fail(f"nginx did not start from the shipped configuration:\n{log}")
                time.sleep(0.05)
        ca = ssl.create_default_context(cafile=str(conf / certificate["ssl_certificate"]))
        yield Nginx(http_port=http_port, https_port=https_port, ca=ca)
    finally:
        process.terminate()  # SIGTERM: the master stops its workers, then itself
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _port(served: Served) -> int:
    return int(served.base_url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def replicas(
    fake: ScriptedOpenAI, api_index: Path, api_pg_url: str, api_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Served]]:
    """Two `lorechat serve` processes, each on its own copy of the index, trusting forwarded headers from nginx."""
    workdir = tmp_path_factory.mktemp("nginx-replicas")
    env = {
        "LORECHAT_REDIS__URL": api_redis_url,
        "LORECHAT_LIMITS__TRUSTED_PROXIES": '["127.0.0.1"]',  # nginx's address towards the replicas
        "LORECHAT_AUTH__ADMIN_TOKEN": ADMIN_TOKEN,
    }
    with ExitStack() as processes:
        a, b = (
            processes.enter_context(
                serve(
                    data_dir=copy_data_dir(api_index, workdir / name),
                    database_url=api_pg_url,
                    fake=fake,
                    log=workdir / "serve.log",
                    env_extra=env,
                )
            )
            for name in ("a", "b")
        )

        async def ready() -> None:
            await asyncio.gather(a.wait_ready(), b.wait_ready())

        asyncio.run(ready())
        yield a, b


@pytest.fixture(scope="module")
def front(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx from the shipped files in front of both replicas."""
    binary = _nginx_binary()  # before starting anything
    a, b = request.getfixturevalue("replicas")
    with run_nginx(binary, tmp_path_factory.mktemp("nginx"), (_port(a), _port(b))) as nginx:
        yield nginx


def _set_cookie(response: httpx.Response) -> SimpleCookie:
    cookies = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        cookies.load(header)
    assert admin_session.COOKIE in cookies, response.headers
    return cookies


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_an_answer_streams_through_nginx_as_it_is_made(
    front: Nginx, upstream: ScriptedOpenAI, scheme: str
) -> None:
    answer = WORDS[:40]
    upstream.enqueue(Script(tokens=answer, token_interval=0.05))
    async with (
        front.client(scheme) as client,
        client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response,
    ):
        chunks = response.aiter_raw()
        raw = await read_tokens(chunks, 2)
        # Two tokens of forty are here while the upstream is still making the rest: nothing held them back.
        assert upstream.open_streams == 1
        async for chunk in chunks:
            raw += chunk
    stream = Reply(response.status_code, response.headers, raw).stream  # sources, tokens, done; SSE framing
    assert stream.text == "".join(answer) and stream.done["finish_reason"] == "stop"
    assert stream.done["conversation_id"] == response.headers["x-conversation-id"]


async def test_a_visitor_cut_off_resumes_through_nginx(front: Nginx, upstream: ScriptedOpenAI) -> None:
    upstream.enqueue(Script(tokens=WORDS, token_interval=0.05))
    async with front.client("http") as client:
        async with client.stream("POST", "/api/v1/chat", json={"query": QUESTION}) as response:
            assert response.status_code == 200
            conversation_id = response.headers["x-conversation-id"]
            raw = await read_tokens(response.aiter_raw(), 3)
        # Gone: nginx hangs up on the replica, which goes on generating for a resume (Redis).
        seen = parse_sse(raw[: raw.rindex(b"\n\n") + 2])
        last = seen.events[-1].id
        path = f"/api/v1/conversations/{conversation_id}/stream"
        async with client.stream("GET", path, headers={"Last-Event-ID": str(last)}) as resumed:
            assert resumed.status_code == 200 and resumed.headers["content-type"].startswith("text/event-stream")
            rest_raw = b"".join([chunk async for chunk in resumed.aiter_raw()])
        async with client.stream("GET", path) as replay:  # after the end: the whole stream, from the start
            whole = Reply(replay.status_code, replay.headers, b"".join([chunk async for chunk in replay.aiter_raw()]))
    rest = parse_sse(rest_raw, first_id=last + 1)  # ids go on from the last one read, none lost or repeated
    assert rest.done["finish_reason"] == "stop" and seen.text + rest.text == "".join(WORDS)
    assert whole.stream.text == "".join(WORDS) and whole.stream.done == rest.done


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_curator_signs_in_uses_the_forms_and_signs_out_through_nginx(front: Nginx, scheme: str) -> None:
    origin = front.origin(scheme)  # e.g. http://127.0.0.1:8000 for compose's published port
    other_scheme = "https" if scheme == "http" else "http"
    foreign = (
        CROSS_SITE,
        "http://127.0.0.1",  # the host without the port the browser used
        origin.replace(f"{scheme}://", f"{other_scheme}://"),  # the same host and port, the other scheme
    )
    credentials = {"token": ADMIN_TOKEN}
    # Forwarding headers a visitor writes itself: nginx replaces or drops them, so they choose nothing.
    spoofed = {"X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": other_scheme}
    async with front.client(scheme) as client:
        for other in (*foreign, f"{other_scheme}://attacker.example"):
            refused = await client.post("/admin/login", data=credentials, headers={**spoofed, "Origin": other})
            assert refused.status_code == 403, (other, refused.status_code, refused.text[:300])

        login = await client.post("/admin/login", data=credentials, headers={**spoofed, "Origin": origin})
        assert login.status_code == 303, (login.status_code, login.text[:300])
        assert login.headers["location"] == "/admin"
        session = _set_cookie(login)[admin_session.COOKIE]
        # Secure exactly when the browser spoke HTTPS, which only nginx knows (X-Forwarded-Proto).
        assert bool(session["secure"]) is (scheme == "https"), login.headers.get_list("set-cookie")
        assert session["httponly"] and session["path"] == "/admin" and session["samesite"].lower() == "strict"
        signed_in = {"Cookie": f"{admin_session.COOKIE}={session.value}"}

        page = await client.get("/admin", headers=signed_in)
        assert page.status_code == 200 and 'action="/admin/logout"' in page.text, page.text[:300]
        form = {"csrf": _csrf(page)}

        resolve = f"/admin/gaps/{uuid.uuid4().hex}/resolve"
        for other in foreign:
            refused = await client.post(resolve, data=form, headers={**signed_in, "Origin": other})
            assert refused.status_code == 403, (other, refused.status_code, refused.text[:300])
        unknown = await client.post(resolve, data=form, headers={**signed_in, "Origin": origin})
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found", unknown.text[:300]

        logout = await client.post("/admin/logout", data=form, headers={**signed_in, "Origin": origin})
        assert logout.status_code == 303 and logout.headers["location"] == "/admin/login", logout.text[:300]
        assert _set_cookie(logout)[admin_session.COOKIE]["max-age"] == "0"  # the browser drops the session


async def test_forwarded_scheme_and_host_count_only_from_nginx(front: Nginx, replicas: tuple[Served, Served]) -> None:
    """A visitor who reaches a replica directly cannot claim HTTPS or nginx's host with the headers nginx sets."""
    a, _ = replicas
    credentials = {"token": ADMIN_TOKEN}
    transport = httpx.AsyncHTTPTransport(local_address=new_peer())  # not 127.0.0.1: not a trusted proxy
    async with httpx.AsyncClient(base_url=a.base_url, transport=transport, timeout=30) as client:
        forged = {"X-Forwarded-Proto": "https", "Host": f"127.0.0.1:{front.https_port}"}
        refused = await client.post(
            "/admin/login", data=credentials, headers={**forged, "Origin": front.origin("https")}
        )
        assert refused.status_code == 403, (refused.status_code, refused.text[:300])
        direct = await client.post(
            "/admin/login", data=credentials, headers={"X-Forwarded-Proto": "https", "Origin": a.base_url}
        )
        assert direct.status_code == 303, (direct.status_code, direct.text[:300])
        assert not _set_cookie(direct)[admin_session.COOKIE]["secure"]  # plain HTTP, whatever the header says
