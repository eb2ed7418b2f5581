"""Point-query throughput of the forecast API against two peers, under the same load from a second process.

Builds (once) a synthetic full-resolution run: 0.25 degree (721 x 1440), 8 variables (t2m, u10, v10, msl;
z, t, u, v at 500 and 850 hPa = 12 fields), 41 lead times, Blosc-zstd Zarr v2 chunked as the products
writer chunks it (all lead times x 90 x 90 cells), streamed band by band, in the products layout.
Then serves it three ways, one at a time, with uvicorn on 127.0.0.1:

* **fuxiops** ``/v1/forecast`` (point index, orjson);
* **plain**: a FastAPI endpoint that opens the Zarr with ``xarray.open_zarr`` once and answers with
  ``.sel(..., method="nearest")`` per request (the obvious implementation);
* **pygeoapi** ``xarray-edr`` provider, if a pygeoapi environment is given (``--pygeoapi-python``),
  for one parameter (it reads a surface-only copy with a ``time`` dimension, the layout it expects).

The load generator is a separate process: an async httpx loop, concurrency 8, random points, a fixed number
of requests or a time limit. Reports requests/s, p50, p99, errors; writes bench/results/api_point.json.

    python bench/api_point.py                     # default: 3000 requests per case
    python bench/api_point.py --requests 5000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, write_result  # noqa: E402

RUN_ID = "2023010100"
SURFACE = ("t2m", "u10", "v10", "msl")
UPPER = ("z", "t", "u", "v")
LEVELS = (500, 850)
ALL_OM = ("temperature_2m,wind_u_component_10m,wind_v_component_10m,pressure_msl,"
          "geopotential_height_500hPa,geopotential_height_850hPa,temperature_500hPa,temperature_850hPa,"
          "wind_u_component_500hPa,wind_u_component_850hPa,wind_v_component_500hPa,wind_v_component_850hPa")


# -- the data ----------------------------------------------------------------------------------------------------
def build_run(work: Path, grid: str, layout: str) -> tuple[Path, float]:
    from fuxiops.services.api.synthetic import write_run

    products = work / "products"
    if (products / RUN_ID / "manifest.json").exists():
        return products, 0.0
    t0 = time.perf_counter()
    write_run(products, RUN_ID, grid=grid, surface=SURFACE, upper_air=UPPER, levels=LEVELS, steps=41,
              product_files=False, layout=layout, progress=True)
    return products, time.perf_counter() - t0


def build_pygeoapi_copy(work: Path, zarr_path: Path) -> Path:
    """Surface variables with a ``time`` dimension: the layout pygeoapi's xarray providers expect."""
    import xarray as xr

    out = work / "pygeoapi_surface.zarr"
    if out.exists():
        return out
    ds = xr.open_zarr(zarr_path)[list(SURFACE)].drop_vars("time", errors="ignore")
    ds = ds.swap_dims({"step": "valid_time"}).rename({"valid_time": "time"}).drop_vars(["step"], errors="ignore")
    for v in ds.variables.values():
        v.encoding.pop("compressors", None)
        v.encoding.pop("filters", None)
    ds.to_zarr(out, mode="w", consolidated=True, zarr_format=2)
    return out


# -- servers -------------------------------------------------------------------------------------------------
PLAIN_APP = '''
import os, xarray as xr
from fastapi import FastAPI, Query
ds = xr.open_zarr(os.environ["BENCH_ZARR"])
app = FastAPI()

@app.get("/point")
def point(latitude: float, longitude: float, variables: str = Query("t2m")):
    p = ds.sel(latitude=latitude, longitude=longitude % 360, method="nearest")
    out = {"latitude": float(p.latitude), "longitude": float(p.longitude),
           "time": [str(t) for t in p.valid_time.values]}
    for name in variables.split(","):
        da = p[name]
        if "level" in da.dims:
            for lev in da.level.values:
                out[f"{name}{int(lev)}"] = da.sel(level=lev).values.tolist()
        else:
            out[name] = da.values.tolist()
    return out
'''


def warm_page_cache(files: list[Path]) -> float:
    """Read the served files once so the load measures the steady state, not the first disk reads.

    A serving host has the latest run in its page cache (it was just written, and it is read
    continuously); a benchmark that starts cold measures the disk instead. Done for every server.
    """
    t0 = time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.read(1 << 24):
                pass
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float) -> float:
    import httpx

    t0 = time.perf_counter()
    last = None
    while time.perf_counter() - t0 < timeout:
        try:
            r = httpx.get(url, timeout=timeout)
            if r.status_code == 200:
                return time.perf_counter() - t0
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = str(e)
        time.sleep(0.5)
    raise RuntimeError(f"server at {url} not ready after {timeout:.0f} s: {last}")


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a server process and its worker children."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measured(pid: int, base: str, template: str, n: int, concurrency: int, time_limit: float) -> dict[str, Any]:
    """Load results plus the server's CPU milliseconds per request (robust to other load on the machine)."""
    c0 = server_cpu(pid)
    res = run_load(base, template, n, concurrency, time_limit)
    c1 = server_cpu(pid)
    res["server_cpu_ms_per_request"] = (c1 - c0) * 1000.0 / max(1, res["requests"])
    return res


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- load generator (runs in its own process) -----------------------------------------------------------------
async def _load(base: str, template: str, n: int, concurrency: int, seed: int, time_limit: float) -> dict[str, Any]:
    import httpx

    rng = random.Random(seed)
    points = [(round(rng.uniform(-89.9, 89.9), 3), round(rng.uniform(-179.9, 179.9), 3)) for _ in range(n)]
    latencies: list[float] = []
    errors = 0
    codes: dict[int, int] = {}
    queue: asyncio.Queue[tuple[float, float]] = asyncio.Queue()
    for p in points:
        queue.put_nowait(p)
    deadline = time.perf_counter() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:
        async def worker() -> None:
            nonlocal errors
            while not queue.empty() and time.perf_counter() < deadline:
                lat, lon = queue.get_nowait()
                url = template.format(lat=lat, lon=lon)
                t0 = time.perf_counter()
                try:
                    r = await client.get(url)
                    await r.aread()
                    ok = r.status_code == 200
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                if ok:
                    latencies.append(dt)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat_ms = sorted(x * 1000 for x in latencies)
    q = (lambda p: lat_ms[min(len(lat_ms) - 1, int(p * len(lat_ms)))] if lat_ms else float("nan"))
    return {"requests": len(latencies) + errors, "ok": len(latencies), "errors": errors, "status_codes": codes,
            "wall_s": wall, "req_per_s": (len(latencies) + errors) / wall if wall else 0.0,
            "p50_ms": statistics.median(lat_ms) if lat_ms else float("nan"), "p90_ms": q(0.90), "p99_ms": q(0.99),
            "min_ms": lat_ms[0] if lat_ms else float("nan"), "max_ms": lat_ms[-1] if lat_ms else float("nan")}


def run_load(base: str, template: str, n: int, concurrency: int, time_limit: float) -> dict[str, Any]:
    """Run the load generator in a separate process and return its statistics."""
    out = subprocess.run([sys.executable, __file__, "--load", base, "--template", template, "--requests", str(n),
                          "--concurrency", str(concurrency), "--time-limit", str(time_limit)],
                         capture_output=True, text=True, timeout=time_limit + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- main -------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fuxiops-bench-api")
    ap.add_argument("--grid", default="0.25deg")
    ap.add_argument("--layout", default="timeseries", choices=["timeseries", "fields"],
                    help="Zarr chunking: all lead times per 90x90 tile (the products writer's) or one field per chunk")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--peer-requests", type=int, default=600, help="requests for the (slow) peers")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per load case at most")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn workers of the fuxiops server")
    ap.add_argument("--pygeoapi-python", default="/tmp/venv-pygeoapi/bin/python",
                    help="python of an environment with pygeoapi (skipped if missing)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["plain", "pygeoapi"])
    ap.add_argument("--load", help=argparse.SUPPRESS)
    ap.add_argument("--template", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:
        res = asyncio.run(_load(args.load, args.template, args.requests, args.concurrency, 1, args.time_limit))
        print(json.dumps(res))
        return

    load_at_start = os.getloadavg()
    args.work.mkdir(parents=True, exist_ok=True)
    args.work = args.work / args.layout
    products, build_s = build_run(args.work, args.grid, args.layout)
    zarr_path = products / RUN_ID / "forecast.zarr"
    print(f"run ready in {products} (written in {build_s:.1f} s)", flush=True)
    cases: list[dict[str, Any]] = []
    logs = args.work / "logs"
    logs.mkdir(exist_ok=True)

    # fuxiops
    port = free_port()
    cache = args.work / "cache"
    env = {"FUXIOPS_HOME": str(args.work / "home"), "FUXIOPS_DATA__PRODUCTS": str(products),
           "FUXIOPS_API__RATE_LIMIT_PER_MINUTE": "100000000", "FUXIOPS_SERVICE_CACHE_DIR": str(cache),
           "FUXIOPS_SERVICE_PREBUILD_LATEST": "true"}
    proc = start([sys.executable, "-m", "uvicorn", "fuxiops.services.api:app_factory", "--factory", "--host",
                  "127.0.0.1", "--port", str(port), "--workers", str(args.workers), "--no-access-log",
                  "--log-level", "warning"], env, logs / "fuxiops.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/health", 60)
        t_index = wait_ready(f"{base}/v1/forecast?latitude=0&longitude=0&hourly=temperature_2m", 1800)
        print(f"fuxiops ready; first point query (point index build/open) took {t_index:.1f} s", flush=True)
        warm_s = warm_page_cache(sorted(cache.glob("*.points.npy")))
        print(f"point index read into the page cache in {warm_s:.1f} s (as right after its build)", flush=True)
        for label, hourly in (("all 8 variables (12 fields)", ALL_OM), ("1 variable", "temperature_2m")):
            tpl = "/v1/forecast?latitude={lat}&longitude={lon}&hourly=" + hourly + "&forecast_days=16"
            run_load(base, tpl, 200, args.concurrency, 30)  # warm-up
            res = measured(proc.pid, base, tpl, args.requests, args.concurrency, args.time_limit)
            cases.append({"server": "fuxiops", "query": label, "workers": args.workers, **res})
            print(cases[-1], flush=True)
    finally:
        stop(proc)

    if "plain" not in args.skip:
        port = free_port()
        app_dir = args.work / "plain_app"
        app_dir.mkdir(exist_ok=True)
        (app_dir / "plain_xarray_app.py").write_text(PLAIN_APP)
        proc = start([sys.executable, "-m", "uvicorn", "plain_xarray_app:app", "--app-dir", str(app_dir),
                      "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
                     {"BENCH_ZARR": str(zarr_path)}, logs / "plain.log")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{base}/point?latitude=0&longitude=0", 300)
            warm_page_cache([f for f in sorted(zarr_path.rglob("*")) if f.is_file()])
            for label, variables in (("all 8 variables (12 fields)", ",".join(SURFACE + UPPER)),
                                     ("1 variable", "t2m")):
                tpl = "/point?latitude={lat}&longitude={lon}&variables=" + variables
                run_load(base, tpl, 50, args.concurrency, 30)
                res = measured(proc.pid, base, tpl, args.peer_requests, args.concurrency, args.time_limit)
                cases.append({"server": "plain FastAPI + xarray .sel", "query": label, "workers": 1, **res})
                print(cases[-1], flush=True)
        finally:
            stop(proc)

    pyg = Path(args.pygeoapi_python)
    pyg_version = None
    if "pygeoapi" not in args.skip and pyg.exists():
        try:
            pyg_version = subprocess.run([str(pyg), "-c", "import pygeoapi; print(pygeoapi.__version__)"],
                                         capture_output=True, text=True, check=True).stdout.strip()
            cases += run_pygeoapi(args, pyg, build_pygeoapi_copy(args.work, zarr_path), logs)
        except Exception as e:  # the peer is optional: report why it is missing
            cases.append({"server": "pygeoapi xarray-edr", "query": "1 variable", "skipped": str(e)[:500]})
            print(cases[-1], flush=True)

    result = {"benchmark": "api_point", "machine": machine_facts(),
              "packages": {**package_versions(["fastapi", "uvicorn", "orjson", "xarray", "zarr", "numpy", "httpx"]),
                           "pygeoapi": pyg_version},
              "data": {"grid": args.grid, "variables": list(SURFACE + UPPER), "levels": list(LEVELS), "steps": 41,
                       "fields": len(SURFACE) + len(UPPER) * len(LEVELS), "compression": "Blosc zstd level 3 + shuffle, Zarr v2",
                       "chunks": ("all 41 lead times x 90 x 90 cells per chunk (the products writer's layout)"
                                  if args.layout == "timeseries" else "one field per chunk"),
                       "build_s": build_s},
              "load": {"concurrency": args.concurrency, "client": "httpx.AsyncClient in a separate process",
                       "points": "uniform random lat/lon", "host": "127.0.0.1"},
              "cases": cases}
    rows = []
    for c in cases:
        if "skipped" in c:
            rows.append([c["server"], c["query"], "skipped", "", "", "", "", c["skipped"][:60]])
        else:
            rows.append([c["server"], c["query"], c["requests"], f"{c['req_per_s']:.0f}", f"{c['p50_ms']:.1f}",
                         f"{c['p99_ms']:.1f}", f"{c.get('server_cpu_ms_per_request', float('nan')):.2f}",
                         c["errors"]])
    result["load_average_at_start"] = load_at_start
    result["load_average_at_end"] = os.getloadavg()
    path = write_result("api_point", result)
    table = markdown_table(["server", "query", "requests", "req/s", "p50 ms", "p99 ms", "server CPU ms/req",
                            "errors"], rows)
    la0, la1 = load_at_start[0], os.getloadavg()[0]
    md_text = (f"# api_point\n\n{args.grid} run, {result['data']['fields']} fields x 41 steps, "
               f"{result['data']['chunks']}; load from a separate process, concurrency {args.concurrency}; "
               f"{result['machine']['cores']} cores, 1-minute load average {la0:.1f} at start, {la1:.1f} at end "
               f"(the machine is shared); each server's files are read into the page cache before its load and "
               f"a few hundred requests warm each case up.\n\n{table}\n")
    (path.parent / "api_point.md").write_text(md_text)
    print(table)
    print(f"written {path} and api_point.md")


def run_pygeoapi(args: argparse.Namespace, python: Path, zarr_path: Path, logs: Path) -> list[dict[str, Any]]:
    import yaml

    port = free_port()
    cfg = {
        "server": {"bind": {"host": "127.0.0.1", "port": port}, "url": f"http://127.0.0.1:{port}",
                   "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8", "language": "en-US",
                   "limits": {"default_items": 10, "max_items": 10}, "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                                                                            "attribution": "OSM"}},
        "logging": {"level": "ERROR"},
        "metadata": {"identification": {"title": "bench", "description": "bench", "keywords": ["bench"],
                                        "keywords_type": "theme", "terms_of_service": "none",
                                        "url": "http://example.org"},
                     "license": {"name": "CC-BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
                     "provider": {"name": "bench", "url": "http://example.org"},
                     "contact": {"name": "bench", "position": "bench", "address": "x", "city": "x",
                                 "stateorprovince": "x", "postalcode": "x", "country": "x", "phone": "x",
                                 "fax": "x", "email": "x@example.org", "url": "http://example.org",
                                 "hours": "x", "instructions": "x", "role": "pointOfContact"}},
        "resources": {"fc": {"type": "collection", "title": "fc", "description": "forecast", "keywords": ["fc"],
                             "extents": {"spatial": {"bbox": [-180, -90, 180, 90],
                                                     "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
                             "links": [],
                             "providers": [{"type": "edr", "name": "xarray-edr", "data": str(zarr_path),
                                            "format": {"name": "zarr", "mimetype": "application/zip"},
                                            "x_field": "longitude", "y_field": "latitude", "time_field": "time"}]}},
    }
    cfg_path = args.work / "pygeoapi.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    oapi = args.work / "pygeoapi-openapi.yml"
    env = {"PYGEOAPI_CONFIG": str(cfg_path), "PYGEOAPI_OPENAPI": str(oapi)}
    bindir = python.parent
    subprocess.run([str(bindir / "pygeoapi"), "openapi", "generate", str(cfg_path), "--output-file", str(oapi)],
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=300)
    proc = start([str(python), "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--host", "127.0.0.1", "--port",
                  str(port), "--no-access-log", "--log-level", "warning"], env, logs / "pygeoapi.log")
    base = f"http://127.0.0.1:{port}"
    out = []
    try:
        tpl = "/collections/fc/position?coords=POINT({lon}%20{lat})&parameter-name=t2m&f=json"
        wait_ready(base + tpl.format(lat=0, lon=0), 300)
        warm_page_cache([f for f in sorted(zarr_path.rglob("*")) if f.is_file()])
        run_load(base, tpl, 20, args.concurrency, 60)
        res = measured(proc.pid, base, tpl, args.peer_requests, args.concurrency, args.time_limit)
        out.append({"server": "pygeoapi xarray-edr", "query": "1 variable", "workers": 1, **res})
        print(out[-1], flush=True)
    finally:
        stop(proc)
    return out


if __name__ == "__main__":
    main()
