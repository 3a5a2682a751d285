"""Upload and download of one large file through the local media backend's routes.

Beside a plain file copy of the same file on the same disk, in the same run; the server runs
in its own process (uvicorn), so its memory is measured alone: if the routes stream, its
resident memory stays flat whatever the file size.

    python benchmarks/media_throughput.py [--mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from coachgraph.api.auth import issue_token
from coachgraph.ids import to_global_id
from coachgraph.resolvers.policy import Role
from coachgraph.stores import coaches
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate

SECRET = "benchmark-secret-for-coachgraph-media-0123456789"
CHUNK = 1 << 20
CREATE = """mutation($input: CreateUploadInput!) { createUpload(input: $input) {
  ... on UploadTicket { url headers media { id } } ... on UserError { message } } }"""
COMPLETE = """mutation($id: ID!) { completeUpload(mediaId: $id) {
  ... on Media { status url } ... on UserError { message } } }"""


def serve(port: int, dsn: str, data_dir: str) -> None:
    import uvicorn

    from coachgraph.app import create_app
    from coachgraph.config import Settings

    settings = Settings(data_dir=Path(data_dir), jwt_secret=SECRET, database_url=dsn)
    app = create_app(settings, start_projector=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class RssSampler:
    """Samples a process's resident memory every 10 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def curl(*args: str) -> float:
    """Run curl (a native client, as apps use) and return the seconds the transfer took."""
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-w", "%{time_total}", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout)


async def one_round(
    base: str, token: str, owner: str, src: Path, dst: Path, pid: int
) -> dict[str, float]:
    size = src.stat().st_size
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=600) as http:
        variables = {
            "input": {
                "ownerId": owner,
                "kind": "VIDEO",
                "contentType": "video/mp4",
                "sizeBytes": size,
            }
        }
        body = (
            await http.post(
                f"{base}/graphql", json={"query": CREATE, "variables": variables}, headers=auth
            )
        ).json()
        ticket = body["data"]["createUpload"]
        os.sync()  # each timed step starts with no dirty pages left by the one before
        with RssSampler(pid) as up_mem:
            up = await asyncio.to_thread(
                curl,
                "-o",
                "/dev/null",
                "-X",
                "PUT",
                "-H",
                "Content-Type: video/mp4",
                "--data-binary",
                f"@{src}",
                ticket["url"],
            )
        body = (
            await http.post(
                f"{base}/graphql",
                json={"query": COMPLETE, "variables": {"id": ticket["media"]["id"]}},
                headers=auth,
            )
        ).json()
        assert body["data"]["completeUpload"]["status"] == "READY", body
        url = body["data"]["completeUpload"]["url"]
        os.sync()
        with RssSampler(pid) as down_mem:
            down = await asyncio.to_thread(curl, "-o", str(dst), url)
        assert dst.stat().st_size == size and dst.read_bytes() == src.read_bytes()
    return {
        "up": size / up / 1e6,
        "down": size / down / 1e6,
        "up_peak": up_mem.peak,
        "down_peak": down_mem.peak,
    }


def plain_copy(src: Path, dst: Path) -> float:
    os.sync()
    started = time.perf_counter()
    shutil.copyfile(src, dst)
    elapsed = time.perf_counter() - started
    return src.stat().st_size / elapsed / 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=28761)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="coachgraph-bench-media-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        pg = EmbeddedPostgres(root / "pg", delete_on_stop=True)
        dsn = await pg.start()
        db = await Database.connect(dsn, min_size=1, max_size=2)
        try:
            async with db.pool.acquire() as conn:
                await migrate(conn)
            async with db.transaction() as conn:
                coach = await coaches.create(
                    conn,
                    name="Bench",
                    sports=["running"],
                    timezone="UTC",
                    capacity=1,
                )
            src = root / "source.mp4"
            with src.open("wb") as f:
                f.write(b"\x00\x00\x00\x18ftypmp42")
                for _ in range(args.mb):
                    f.write(os.urandom(CHUNK))
            src.write_bytes(src.read_bytes()[: args.mb * 1_000_000])  # exactly N MB (decimal)
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(args.port), dsn, str(root / "data")]
            )
            try:
                base = f"http://127.0.0.1:{args.port}"
                for _ in range(200):
                    try:
                        httpx.get(f"{base}/healthz", timeout=1)
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.1)
                idle = RssSampler(proc.pid).rss()
                token = issue_token(
                    SECRET,
                    role=Role.COACH,
                    subject=to_global_id("Coach", coach.id),
                    ttl_seconds=3600,
                )
                owner = to_global_id("Coach", coach.id)
                copies, rounds = [], []
                for i in range(args.rounds):
                    copies.append(plain_copy(src, root / f"copy-{i}.mp4"))
                    (root / f"copy-{i}.mp4").unlink()
                    rounds.append(
                        await one_round(base, token, owner, src, root / f"down-{i}.mp4", proc.pid)
                    )
                    (root / f"down-{i}.mp4").unlink()
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        finally:
            await db.close()
            await pg.stop()

    copy = statistics.median(copies)
    up = statistics.median(r["up"] for r in rounds)
    down = statistics.median(r["down"] for r in rounds)
    peak = max(max(r["up_peak"], r["down_peak"]) for r in rounds)
    print(f"file: {args.mb} MB, {args.rounds} rounds, medians")
    print("| path | MB/s | ratio to plain copy |")
    print("|---|---|---|")
    print(f"| plain file copy (shutil.copyfile) | {copy:.0f} | 1.00 |")
    print(f"| upload: PUT through /media/upload | {up:.0f} | {up / copy:.2f} |")
    print(f"| download: GET through /media/files | {down:.0f} | {down / copy:.2f} |")
    print(
        f"server RSS: idle {idle / 2**20:.0f} MiB, peak during transfers {peak / 2**20:.0f} MiB (+{(peak - idle) / 2**20:.0f} MiB for a {args.mb} MB file)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        asyncio.run(main())
