"""``recarena serve simulate``: a whole A/B test offline, through the HTTP API.

Users are drawn (seeded) from the protocol's test split of the deployed runs; each asks the
service for k items, and every recommended item that is among that user's held-out test items
is sent back as a click. The experiment's counters, intervals and test then say which variant
wins, exactly as they would for live traffic.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np

from recarena.errors import RecArenaError


def held_out(protocol: str, dataset: str, seed: int, data_dir=None) -> dict[str, set[str]]:
    """raw user id (str) -> its raw test items (str) under ``protocol`` with split ``seed``."""
    from recarena.protocols import load_protocol, prepare

    prep = prepare(load_protocol(protocol), dataset, data_dir, seed=seed)
    test = prep.split.test
    users, items = test.users.raw, test.items.raw
    out: dict[str, set[str]] = {}
    for u, i in zip(test.user.tolist(), test.item.tolist()):
        out.setdefault(str(users[u]), set()).add(str(items[i]))
    return out


def simulate(url: str, name: str = "default", n_users: int = 2000, seed: int = 0, k: int = 10, data_dir=None,
             token: str | None = None, concurrency: int = 8, progress: bool = True) -> dict:
    """Runs the simulation; returns ``{"users", "clicks", "experiment"}`` and prints a summary."""
    return asyncio.run(_simulate(url.rstrip("/"), name, n_users, seed, k, data_dir, token, concurrency, progress))


async def _simulate(url, name, n_users, seed, k, data_dir, token, concurrency, progress) -> dict:
    import httpx
    from tqdm import tqdm

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as http:
        r = await http.get(f"/v1/endpoints/{name}")
        if r.status_code != 200:
            raise RecArenaError(f"{url}/v1/endpoints/{name}: {r.status_code} {r.json().get('error', r.text)}")
        variants = r.json()["variants"]
        runs = {(v["protocol"], v["dataset"], v.get("seed")) for v in variants}
        if len(runs) != 1 or None in next(iter(runs))[:2]:
            raise RecArenaError(f"Endpoint {name!r} serves runs of different protocols or datasets ({sorted(map(str, runs))}): "
                                "a simulation replays one protocol's test split.")
        protocol, dataset, run_seed = next(iter(runs))
        truth = await asyncio.to_thread(held_out, protocol, dataset, int(run_seed or 0), data_dir)
        pool = sorted(truth)
        rng = np.random.default_rng(seed)
        chosen = [pool[i] for i in rng.choice(len(pool), size=min(n_users, len(pool)), replace=False)]
        bar = tqdm(total=len(chosen), desc=f"simulate {name}", unit="user", disable=not progress)
        clicks = 0
        queue: asyncio.Queue = asyncio.Queue()
        for u in chosen:
            queue.put_nowait(u)

        async def worker():
            nonlocal clicks
            while not queue.empty():
                u = queue.get_nowait()
                rec = await http.get(f"/v1/endpoints/{name}/recommend", params={"user": u, "k": k})
                if rec.status_code != 200:
                    raise RecArenaError(f"recommend for user {u}: {rec.status_code} {rec.text[:200]}")
                body = rec.json()
                for it in body["items"]:
                    if str(it["item"]) in truth[u]:
                        fb = await http.post(f"/v1/endpoints/{name}/feedback",
                                             json={"request_id": body["request_id"], "item": str(it["item"]), "event": "click"})
                        if fb.status_code != 200:
                            raise RecArenaError(f"feedback for user {u}: {fb.status_code} {fb.text[:200]}")
                        clicks += 1
                bar.update()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        bar.close()
        ex = (await http.get(f"/v1/endpoints/{name}/experiment")).json()
    if progress:
        print(summary_line(name, protocol, len(chosen), clicks, ex))
    return {"users": len(chosen), "clicks": clicks, "protocol": protocol, "dataset": dataset, "experiment": ex}


def summary_line(name: str, protocol: str, users: int, clicks: int, ex: dict) -> str:
    parts = [f"{v['label']} hit rate {v['hit_rate']:.3f} (n={v['requests']})" for v in ex["variants"] if v["requests"]]
    for t in ex["tests"]:
        p = t["p_value"]
        parts.append(f"{t['control']} vs {t['variant']}: p={p:.2g}" + (f", {t['winner']} wins" if t["winner"] else ", no winner yet")
                     if p is not None else f"{t['control']} vs {t['variant']}: no test yet")
    return f"simulate {name} ({protocol}): {users} users, {clicks} clicks; " + "; ".join(parts)


if __name__ == "__main__":  # pragma: no cover
    print(simulate(os.environ.get("URL", "http://127.0.0.1:8000")))
