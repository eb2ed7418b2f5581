"""Raw and simulated observations of the testbed world, one BUFR file per type per hour.

Raw observations sample the **truth**; simulated ones sample the
**reanalysis** with the same operators and geometry. The state is interpolated
linearly in time between the 6-hourly outputs to each observation's time.

Error model of the raw observations (instrument noise is Gaussian, per value):

========  =====================================================  ==========================
type      noise (1 sigma)                                        bias / gaps
========  =====================================================  ==========================
synop     T2m 0.5 K, MSL 60 Pa, 10 m wind 1.0 m/s per component  10 % of reports missing
temp      T 0.5 K, Z 10 gpm, wind 1.5 m/s per component          15 % of soundings missing,
                                                                  levels below ground missing
amdar     T 0.6 K, wind 1.5 m/s per component                    +0.3 K warm bias, 5 % missing
gnssro    N 0.5 % (rel.) below 10 km, 0.3 % above                none (anchor)
mwts      TB 0.3 K                                               per-satellite per-channel
                                                                  biases (SAT_BIAS_K), 2 % of
                                                                  pixels and a 30-minute outage
                                                                  per satellite per day missing
========  =====================================================  ==========================

About 1 % of raw values are gross errors: shifted by 5 to 15 sigma with a
random sign. Simulated observations have the same Gaussian noise but no bias,
gross errors or gaps. Random numbers come from
``default_rng([seed, type, raw/sim, hour])``: an hour's files do not depend on
how the build was chunked. Geometry: SYNOP stations and radiosonde sites of the
real network (radiosondes at 00 and 12 UTC), aircraft on 300 seeded routes
between SYNOP stations (one flight per route per day at 230 m/s, climbing and
descending for 20 minutes, reports every 7 minutes), 100 GNSS occultations per
hour at uniformly random places and times (1-20 km every 500 m), and one real
HIRS orbit repeated along a sun-synchronous orbit (101.4 min; the ground track
moves 25.35 degrees west per orbit) for two microwave sounders.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fuxiops.grids import Grid
from fuxiops.pipeline.world.network import NetworkGeometry, load_geometry
from fuxiops.pipeline.world.obs import bufr
from fuxiops.pipeline.world.obs.operators import (MWTS_CHANNELS, Bilinear, brightness_temperature, interp_log_p,
                                                  pressure_at_height, refractivity, wind_dir_speed)

if TYPE_CHECKING:
    from fuxiops.pipeline.world.build import WorldSpec

GROSS_FRACTION = 0.01
TYPE_TAG = {"synop": 1, "temp": 2, "amdar": 3, "gnssro": 4, "mwts": 5}
#: Satellite identifiers (WMO Common Code Table C-5): FY-3C, FY-3D; and their channel biases (K).
MWTS_SATELLITES = (522, 523)
SAT_BIAS_K = {522: (0.8, 0.5, 0.3, -0.2, 0.4, 0.6), 523: (-0.5, -0.3, 0.2, 0.5, -0.4, 0.9)}
#: GNSS-RO receiving satellites (COSMIC-2 FM1..FM6).
RO_SATELLITES = np.arange(750, 756)
RO_HEIGHTS_M = np.arange(1000.0, 20001.0, 500.0)
AMDAR_ROUTES = 300
AMDAR_SPEED = 230.0
AMDAR_REPORT_S = 420.0
EARTH_RADIUS = 6.371e6
SIDEREAL_SHIFT_DEG_PER_S = 360.0 / 86400.0


def _gross(rng: np.random.Generator, values: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    hit = rng.random(values.shape) < GROSS_FRACTION
    shift = rng.uniform(5.0, 15.0, values.shape) * np.where(rng.random(values.shape) < 0.5, -1.0, 1.0)
    return np.where(hit, values + shift * sigma, values)


def _lon180(lon: np.ndarray) -> np.ndarray:
    return np.mod(np.asarray(lon) + 180.0, 360.0) - 180.0


def _std_atmosphere_height(p_hpa: np.ndarray) -> np.ndarray:
    """ICAO pressure altitude (m) - what aircraft report as flight level."""
    return 44330.8 * (1.0 - (np.asarray(p_hpa) / 1013.25) ** 0.190263)


class ObservationMaker:
    """Writes obs/raw and obs/sim BUFR files for one world."""

    def __init__(self, root: Path, spec: "WorldSpec", geometry: NetworkGeometry | None = None) -> None:
        self.root = Path(root)
        self.spec = spec
        self.grid: Grid = spec.grid_spec
        self.geo = geometry or load_geometry()
        self.levels = np.asarray(spec.variables.levels, dtype=np.float64)
        self._routes = self._make_routes()
        self._outage = {}

    # ------------------------------------------------------------ geometry
    def _make_routes(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.spec.seed, 40])
        g = self.geo
        n = g.synop_lat.size
        a, b = [], []
        while len(a) < AMDAR_ROUTES:
            i, j = rng.integers(n, size=2)
            d = _gc_distance(g.synop_lat[i], g.synop_lon[i], g.synop_lat[j], g.synop_lon[j])
            if 800e3 < d < 9000e3:
                a.append(i)
                b.append(j)
        a_, b_ = np.asarray(a), np.asarray(b)
        return {"lat0": g.synop_lat[a_].astype(np.float64), "lon0": g.synop_lon[a_].astype(np.float64),
                "lat1": g.synop_lat[b_].astype(np.float64), "lon1": g.synop_lon[b_].astype(np.float64),
                "dep_s": rng.uniform(0, 86400, AMDAR_ROUTES), "cruise_hpa": rng.uniform(200, 300, AMDAR_ROUTES),
                "reg": np.asarray([f"FX{k:05d}" for k in range(AMDAR_ROUTES)])}

    # ------------------------------------------------------------- helpers
    def _sampler(self, arrays: list[dict[str, np.ndarray]], hour_of_day: int, lat: np.ndarray, lon: np.ndarray,
                 t_s: np.ndarray):
        """Function name -> values at the points, linear in time between the bracketing 6-h states."""
        bil = Bilinear.build(self.grid.latitudes, self.grid.longitudes, lat, lon)
        t = (hour_of_day * 3600.0 + np.asarray(t_s, dtype=np.float64)) / 21600.0
        i = np.clip(np.floor(t).astype(np.int64), 0, len(arrays) - 2)
        w = t - i
        # only the states that bracket some point are interpolated (an hour's points need two of the five)
        used = np.unique(np.concatenate([i, i + 1]))
        slot = np.zeros(len(arrays), dtype=np.int64)
        slot[used] = np.arange(used.size)
        lo_i, hi_i = slot[i], slot[i + 1]
        cache: dict[str, np.ndarray] = {}

        def get(name: str) -> np.ndarray:
            if name not in cache:
                vals = np.stack([bil(arrays[k][name]) for k in used])  # (used times, [level,] n)
                n = vals.shape[-1]
                cols = np.arange(n)
                lo, hi = vals[lo_i, ..., cols], vals[hi_i, ..., cols]  # (n, [level])
                out = lo * (1 - w[:, None] if lo.ndim == 2 else 1 - w) + hi * (w[:, None] if lo.ndim == 2 else w)
                cache[name] = out.T if out.ndim == 2 else out
            return cache[name]
        return get

    def _rng(self, obs_type: str, simulated: bool, hour_index: int) -> np.random.Generator:
        return np.random.default_rng([self.spec.seed, TYPE_TAG[obs_type], int(simulated), hour_index])

    def _path(self, when: datetime, obs_type: str, simulated: bool) -> Path:
        stamp = when.strftime("%Y%m%d%H")
        return self.root / ("sim" if simulated else "raw") / stamp / f"{obs_type}_{stamp}.bufr"

    @staticmethod
    def _time_keys(when: datetime, t_s: np.ndarray, seconds: bool = False) -> dict[str, np.ndarray | float]:
        """Calendar keys of ``when`` + ``t_s`` seconds, per point (microsecond rounding as timedelta's)."""
        offset = np.round(np.asarray(t_s, dtype=np.float64) * 1e6).astype("timedelta64[us]")
        tt = np.datetime64(when.replace(tzinfo=None), "us") + offset
        units = ("Y", "M", "D", "h", "m", "s")
        floor = {u: tt.astype(f"datetime64[{u}]") for u in units}
        keys: dict[str, np.ndarray | float] = {
            "year": floor["Y"].astype(np.int64).astype(float) + 1970.0,
            "month": (floor["M"] - floor["Y"]).astype(np.int64).astype(float) + 1.0,
            "day": (floor["D"] - floor["M"].astype("datetime64[D]")).astype(np.int64).astype(float) + 1.0,
            "hour": (floor["h"] - floor["D"]).astype(np.int64).astype(float),
            "minute": (floor["m"] - floor["h"]).astype(np.int64).astype(float)}
        if seconds:
            keys["second"] = (floor["s"] - floor["m"]).astype(np.int64).astype(float)
        return keys

    # ----------------------------------------------------------- per type
    def _synop(self, get, rng, raw: bool, n: int) -> dict[str, np.ndarray]:
        t = get("t2m") + rng.normal(0, 0.5, n)
        p = get("msl") + rng.normal(0, 60.0, n)
        u = get("u10") + rng.normal(0, 1.0, n)
        v = get("v10") + rng.normal(0, 1.0, n)
        if raw:
            t, p, u, v = _gross(rng, t, 0.5), _gross(rng, p, 60.0), _gross(rng, u, 1.0), _gross(rng, v, 1.0)
        d, s = wind_dir_speed(u, v)
        return {"airTemperature": t, "pressureReducedToMeanSeaLevel": p, "windDirection": d, "windSpeed": s}

    def make_hour(self, day_start: datetime, hour: int, arrays: list[dict[str, np.ndarray]], simulated: bool) -> list[Path]:
        """Write the files of hour ``hour`` (0..23) of the day starting ``day_start``."""
        spec, g = self.spec, self.geo
        when = day_start + timedelta(hours=hour)
        hour_index = int((when - spec.start).total_seconds() // 3600)
        raw = not simulated
        written: list[Path] = []
        types = spec.obs_types
        if "synop" in types:
            rng = self._rng("synop", simulated, hour_index)
            keep = rng.random(g.synop_lat.size) >= (0.10 if raw else 0.0)
            lat, lon, sid = g.synop_lat[keep], g.synop_lon[keep], g.synop_id[keep]
            n = lat.size
            if n:
                get = self._sampler(arrays, hour, lat, lon, np.zeros(n))
                vals = self._synop(get, rng, raw, n)
                written.append(bufr.write_bufr(self._path(when, "synop", simulated), bufr.synop_layout(), when,
                                               simulated, {
                    "blockNumber": sid // 1000, "stationNumber": sid % 1000, **self._time_keys(when, np.zeros(n)),
                    "latitude": lat, "longitude": _lon180(lon), "heightOfStationGroundAboveMeanSeaLevel": 0.0,
                    "pressureReducedToMeanSeaLevel": vals["pressureReducedToMeanSeaLevel"],
                    "#1#heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform": 2.0,
                    "airTemperature": vals["airTemperature"],
                    "#2#heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform": 10.0,
                    "windDirection": vals["windDirection"], "windSpeed": vals["windSpeed"]}, n))
        if "temp" in types and when.hour in (0, 12):
            rng = self._rng("temp", simulated, hour_index)
            keep = rng.random(g.temp_lat.size) >= (0.15 if raw else 0.0)
            lat, lon, sid = g.temp_lat[keep], g.temp_lon[keep], g.temp_id[keep]
            n = lat.size
            if n:
                get = self._sampler(arrays, hour, lat, lon, np.zeros(n))
                ps = get("msl")
                L = self.levels.size
                vals: dict[str, np.ndarray | float] = {"blockNumber": sid // 1000, "stationNumber": sid % 1000,
                                                       **self._time_keys(when, np.zeros(n)),
                                                       "latitude": lat, "longitude": _lon180(lon)}
                t = get("t") + rng.normal(0, 0.5, (L, n))
                z = get("z") / 9.80665 + rng.normal(0, 10.0, (L, n))
                u = get("u") + rng.normal(0, 1.5, (L, n))
                v = get("v") + rng.normal(0, 1.5, (L, n))
                if raw:
                    t, z, u, v = _gross(rng, t, 0.5), _gross(rng, z, 10.0), _gross(rng, u, 1.5), _gross(rng, v, 1.5)
                d, s = wind_dir_speed(u, v)
                below = self.levels[:, None] * 100.0 > ps[None, :]
                for k, lev in enumerate(self.levels):
                    m = below[k]
                    vals[f"#{k + 1}#pressure"] = np.where(m, np.nan, lev * 100.0)
                    vals[f"#{k + 1}#nonCoordinateGeopotentialHeight"] = np.where(m, np.nan, z[k])
                    vals[f"#{k + 1}#airTemperature"] = np.where(m, np.nan, t[k])
                    vals[f"#{k + 1}#windDirection"] = np.where(m, np.nan, d[k])
                    vals[f"#{k + 1}#windSpeed"] = np.where(m, np.nan, s[k])
                written.append(bufr.write_bufr(self._path(when, "temp", simulated), bufr.temp_layout(L), when,
                                               simulated, vals, n))
        if "amdar" in types:
            written += self._amdar(when, hour, hour_index, arrays, simulated)
        if "gnssro" in types:
            written += self._gnssro(when, hour, hour_index, arrays, simulated)
        if "mwts" in types:
            written += self._mwts(when, hour, hour_index, arrays, simulated)
        return written

    def _amdar(self, when, hour, hour_index, arrays, simulated) -> list[Path]:
        r = self._routes
        raw = not simulated
        rng = self._rng("amdar", simulated, hour_index)
        t_world = (when - self.spec.start).total_seconds()
        dist = _gc_distance(r["lat0"], r["lon0"], r["lat1"], r["lon1"])
        dur = dist / AMDAR_SPEED
        lats, lons, ts, ps, regs = [], [], [], [], []
        for day_off in (-1, 0):  # flights that departed yesterday may still be airborne
            day0 = np.floor(t_world / 86400.0) * 86400.0 + day_off * 86400.0
            dep = day0 + r["dep_s"]
            # report times on a 7-minute clock since departure, inside this hour
            k0 = np.ceil((t_world - dep) / AMDAR_REPORT_S)
            for j in range(int(3600 // AMDAR_REPORT_S) + 1):
                tr = dep + (k0 + j) * AMDAR_REPORT_S
                ok = (tr >= t_world) & (tr < t_world + 3600) & (tr >= dep) & (tr <= dep + dur)
                if not ok.any():
                    continue
                frac = ((tr - dep) / dur)[ok]
                la, lo = _gc_point(r["lat0"][ok], r["lon0"][ok], r["lat1"][ok], r["lon1"][ok], frac)
                el = (tr - dep)[ok]
                rem = (dep + dur - tr)[ok]
                ramp = np.clip(np.minimum(el, rem) / 1200.0, 0.0, 1.0)
                p = np.exp(np.log(1000.0) + ramp * (np.log(r["cruise_hpa"][ok]) - np.log(1000.0)))
                lats.append(la)
                lons.append(lo)
                ts.append(tr[ok] - t_world)
                ps.append(p)
                regs.append(r["reg"][ok])
        if not lats:
            return []
        lat, lon, t_s, p, reg = (np.concatenate(x) for x in (lats, lons, ts, ps, regs))
        if raw:
            keep = rng.random(lat.size) >= 0.05
            lat, lon, t_s, p, reg = lat[keep], lon[keep], t_s[keep], p[keep], reg[keep]
        n = lat.size
        if n == 0:
            return []
        get = self._sampler(arrays, hour, lat, lon, t_s)
        t = interp_log_p(self.levels, get("t"), p) + rng.normal(0, 0.6, n) + (0.3 if raw else 0.0)
        u = interp_log_p(self.levels, get("u"), p) + rng.normal(0, 1.5, n)
        v = interp_log_p(self.levels, get("v"), p) + rng.normal(0, 1.5, n)
        if raw:
            t, u, v = _gross(rng, t, 0.6), _gross(rng, u, 1.5), _gross(rng, v, 1.5)
        d, s = wind_dir_speed(u, v)
        return [bufr.write_bufr(self._path(when, "amdar", simulated), bufr.amdar_layout(), when, simulated, {
            "aircraftRegistrationNumberOrOtherIdentification": [str(x) for x in reg],
            "aircraftFlightNumber": [str(x).replace("FX", "FXO") for x in reg], **self._time_keys(when, t_s),
            "latitude": lat, "longitude": _lon180(lon), "flightLevel": _std_atmosphere_height(p),
            "pressure": p * 100.0, "airTemperature": t, "windDirection": d, "windSpeed": s}, n)]

    def _gnssro(self, when, hour, hour_index, arrays, simulated) -> list[Path]:
        raw = not simulated
        # geometry from the raw stream's generator, so raw and simulated share occultations
        geo_rng = self._rng("gnssro", False, hour_index + 10_000_000)
        rng = self._rng("gnssro", simulated, hour_index)
        n = 100
        lat = np.degrees(np.arcsin(geo_rng.uniform(-1, 1, n)))
        lon = geo_rng.uniform(0, 360, n)
        t_s = np.floor(geo_rng.uniform(0, 3600, n))
        sat = geo_rng.choice(RO_SATELLITES, n)
        get = self._sampler(arrays, hour, lat, lon, t_s)
        p = pressure_at_height(self.levels, get("z"), RO_HEIGHTS_M)  # (h, n)
        temp = np.stack([interp_log_p(self.levels, get("t"), np.nan_to_num(p[i], nan=self.levels.min()))
                         for i in range(RO_HEIGHTS_M.size)])
        nref = refractivity(p, temp, 0.0)
        rel = np.where(RO_HEIGHTS_M[:, None] < 10000.0, 0.005, 0.003)
        nref = nref * (1.0 + rng.normal(0, 1.0, nref.shape) * rel)
        if raw:
            nref = _gross(rng, nref, rel * nref)
        vals: dict[str, np.ndarray | float] = {"satelliteIdentifier": sat.astype(float),
                                               **self._time_keys(when, t_s, seconds=True),
                                               "latitude": lat, "longitude": _lon180(lon)}
        for k, h in enumerate(RO_HEIGHTS_M):
            vals[f"#{k + 1}#height"] = h
            vals[f"#{k + 1}#atmosphericRefractivity"] = nref[k]
        return [bufr.write_bufr(self._path(when, "gnssro", simulated), bufr.gnssro_layout(RO_HEIGHTS_M.size), when,
                                simulated, vals, n)]

    def _mwts(self, when, hour, hour_index, arrays, simulated) -> list[Path]:
        raw = not simulated
        g = self.geo
        P = g.orbit_period_s
        t0 = (when - self.spec.start).total_seconds()
        rng = self._rng("mwts", simulated, hour_index)
        cols = {k: [] for k in ("lat", "lon", "t", "sat", "zen")}
        for si, sat in enumerate(MWTS_SATELLITES):
            phase = si * P / 2.0
            lon_off = si * 90.0
            k_lo = int(np.floor((t0 - phase - P) / P))
            k_hi = int(np.floor((t0 + 3600 - phase) / P))
            day = int(t0 // 86400)
            out_start = np.random.default_rng([self.spec.seed, 55, sat, day]).uniform(0, 86400 - 1800) + day * 86400
            for k in range(k_lo, k_hi + 1):
                tabs = phase + k * P + g.swath_t.astype(np.float64)
                ok = (tabs >= t0) & (tabs < t0 + 3600)
                if raw:
                    ok &= ~((tabs >= out_start) & (tabs < out_start + 1800))
                if not ok.any():
                    continue
                cols["lat"].append(g.swath_lat[ok].astype(np.float64))
                cols["lon"].append(np.mod(g.swath_lon[ok] + lon_off - SIDEREAL_SHIFT_DEG_PER_S * (phase + k * P), 360.0))
                cols["t"].append(tabs[ok] - t0)
                cols["sat"].append(np.full(ok.sum(), sat))
                cols["zen"].append(np.abs(g.swath_scanpos[ok].astype(np.float64) - 28.0) * 1.8)
        if not cols["lat"]:
            return []
        lat, lon, t_s, sat_id, zen = (np.concatenate(cols[k]) for k in ("lat", "lon", "t", "sat", "zen"))
        if raw:
            keep = rng.random(lat.size) >= 0.02
            lat, lon, t_s, sat_id, zen = lat[keep], lon[keep], t_s[keep], sat_id[keep], zen[keep]
        n = lat.size
        if n == 0:
            return []
        get = self._sampler(arrays, hour, lat, lon, np.floor(t_s))
        tb = brightness_temperature(self.levels, get("t"))  # (C, n)
        tb = tb + rng.normal(0, 0.3, tb.shape)
        if raw:
            table = np.asarray([SAT_BIAS_K[s] for s in MWTS_SATELLITES])  # (satellites, C)
            bias = table[np.searchsorted(MWTS_SATELLITES, sat_id)].T
            tb = _gross(rng, tb + bias, 0.3)
        vals: dict[str, np.ndarray | float] = {"satelliteIdentifier": sat_id.astype(float),
                                               **self._time_keys(when, np.floor(t_s), seconds=True),
                                               "latitude": lat, "longitude": _lon180(lon), "satelliteZenithAngle": zen}
        for c, (num, _, _) in enumerate(MWTS_CHANNELS):
            vals[f"#{c + 1}#channelNumber"] = float(num)
            vals[f"#{c + 1}#brightnessTemperature"] = tb[c]
        return [bufr.write_bufr(self._path(when, "mwts", simulated), bufr.mwts_layout(len(MWTS_CHANNELS)), when,
                                simulated, vals, n)]

    def make_day(self, day_start: datetime, truth: list[dict[str, np.ndarray]],
                 reanalysis: list[dict[str, np.ndarray]]) -> list[Path]:
        """All hours of one day: ``truth``/``reanalysis`` are the 5 states at 0, 6, 12, 18, 24 h."""
        out: list[Path] = []
        for hour in range(24):
            out += self.make_hour(day_start, hour, truth, simulated=False)
            out += self.make_hour(day_start, hour, reanalysis, simulated=True)
        return out


def _gc_distance(lat0, lon0, lat1, lon1) -> np.ndarray:
    p0, p1 = np.radians(lat0), np.radians(lat1)
    dl = np.radians(np.asarray(lon1) - np.asarray(lon0))
    c = np.sin(p0) * np.sin(p1) + np.cos(p0) * np.cos(p1) * np.cos(dl)
    return EARTH_RADIUS * np.arccos(np.clip(c, -1.0, 1.0))


def _gc_point(lat0, lon0, lat1, lon1, f) -> tuple[np.ndarray, np.ndarray]:
    """Point at fraction f along the great circle (slerp of unit vectors)."""
    def xyz(lat, lon):
        la, lo = np.radians(lat), np.radians(lon)
        return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
    a, b = xyz(lat0, lon0), xyz(lat1, lon1)
    om = np.arccos(np.clip((a * b).sum(0), -1.0, 1.0))
    so = np.where(np.sin(om) < 1e-12, 1.0, np.sin(om))
    w0 = np.where(np.sin(om) < 1e-12, 1 - f, np.sin((1 - f) * om) / so)
    w1 = np.where(np.sin(om) < 1e-12, f, np.sin(f * om) / so)
    x = a * w0 + b * w1
    return np.degrees(np.arcsin(np.clip(x[2], -1, 1))), np.mod(np.degrees(np.arctan2(x[1], x[0])), 360.0)
