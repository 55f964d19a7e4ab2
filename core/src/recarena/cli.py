"""The ``recarena`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import warnings

DELEGATED = ("serve", "db", "sweep", "report", "viz")


def _delegated_help(cmd: str) -> str:
    """Help for a command another distribution provides: what it does and who provides it."""
    from importlib.metadata import entry_points

    what = {"serve": "export, deploy and serve models from the inference database", "db": "the inference database",
            "sweep": "run a sweep of trainings", "report": "the HTML leaderboard report",
            "viz": "UMAP maps and plots"}.get(cmd, cmd)
    ep = next((e for e in entry_points(group="recarena.commands") if e.name == cmd), None)
    if ep is None:
        pkg = {"serve": "recarena-serve", "db": "recarena-serve", "report": "recarena-viz", "viz": "recarena-viz"}.get(cmd, "an extension")
        return f"{what} (needs {pkg}, not installed)"
    return f"{what} ({ep.dist.name if ep.dist else 'installed'})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recarena", description="Recommendation models as plugins on one shared data/eval pipeline.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train one model under a protocol and record the run")
    t.add_argument("model")
    t.add_argument("--dataset", "-d")
    t.add_argument("--protocol", "-p", required=True)
    t.add_argument("--data-dir", default=None, help="folder holding <dataset>/<files> (default $RECARENA_DATA_DIR)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a parameter (lr=0.01, trainer.patience=3)")
    t.add_argument("--config", help="experiment YAML (params/trainer/...); a saved run's config.yaml re-runs it")
    t.add_argument("--json", action="store_true", help="print the run summary as one JSON line at the end")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--sweep", help="record the run as part of this sweep (set by `recarena sweep`)")

    lb = sub.add_parser("leaderboard", help="best configuration per model, mean ± std over seeds")
    lb.add_argument("--protocol", "-p", action="append", help="protocol(s); default: all with runs")
    lb.add_argument("--format", "-f", choices=["table", "md", "csv", "json"], default="table")

    pl = sub.add_parser("plugins", help="installed model plugins")
    pl.add_argument("--json", action="store_true")

    c = sub.add_parser("config", help="every resolved parameter of a model under a protocol, and its layer")
    c.add_argument("model")
    c.add_argument("--protocol", "-p", required=True)
    c.add_argument("--dataset", "-d")
    c.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--config", help="experiment YAML")
    c.add_argument("--json", action="store_true")

    n = sub.add_parser("new", help="scaffold a new plugin distribution")
    nsub = n.add_subparsers(dest="what", required=True, metavar="WHAT")
    npl = nsub.add_parser("plugin", help="write plugins/NAME/: pyproject with the entry point, a working model, kit tests")
    npl.add_argument("name")
    from recarena.scaffold import KINDS

    npl.add_argument("--kind", required=True, choices=KINDS)
    npl.add_argument("--dir", default="plugins", help="where to create it (default: ./plugins)")

    dt = sub.add_parser("data", help="look at your own data file before training on it")
    dsub = dt.add_subparsers(dest="what", required=True, metavar="WHAT")
    di = dsub.add_parser("inspect", help="what a file (or dataset YAML) would load: rows, users, items, ratings, duplicates, time span")
    di.add_argument("file", help="a .csv/.tsv/.parquet file, a dataset YAML, or the name of one under configs/datasets")
    di.add_argument("--set", dest="sets", action="append", default=[], metavar="data.KEY=VALUE",
                    help="how to read it, as for train (data.user=userId, data.sep=';', data.header=false)")
    di.add_argument("--json", action="store_true")

    g = sub.add_parser("gc", help="remove run folders no record points to whose process is gone (after a SIGKILL)")
    g.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    g.add_argument("--min-age", type=float, default=60.0, metavar="SECONDS",
                   help="leave folders younger than this alone (default 60)")

    sub.add_parser("datasets", help="known datasets")
    sub.add_parser("protocols", help="known protocols")

    for name in DELEGATED:
        sp = sub.add_parser(name, help=_delegated_help(name))
        sp.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _cmd_train(a) -> int:
    import signal

    from recarena import runner

    def stop(signum, frame):
        raise runner.Interrupted(signum)

    # SIGTERM (a scheduler, `kill`) and SIGINT end the run the same way: exit 143 / 130, nothing
    # recorded, no run folder left. A SIGINT ignored by the parent (background job) stays ignored.
    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, stop)
    quiet_log = (lambda *x, **k: print(*x, file=sys.stderr, **k)) if a.json else print
    summary = runner.train(
        a.model, a.protocol, dataset=a.dataset, data_dir=a.data_dir, seed=a.seed, sets=a.sets,
        experiment=a.config, progress=not a.no_progress and sys.stderr.isatty(), log=quiet_log, sweep=a.sweep,
    )
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    m = summary["metrics"]
    shown = ", ".join(f"{k}={v:.4f}" for k, v in list(m.items())[:4])
    quiet_log(
        f"{summary['model']} on {summary['protocol']} (seed {summary['seed']}): {shown}; "
        f"fit {summary['fit_seconds']:.1f}s, peak +{summary['peak_memory_mb']:.0f} MiB; run {summary['run_id']}"
    )
    if a.json:
        print(json.dumps(summary, default=str))
    return 0


def _cmd_leaderboard(a) -> int:
    from recarena import leaderboard
    from recarena.store import ResultsStore

    store = ResultsStore()
    protos = a.protocol or sorted({r["protocol"] for r in store.runs()})
    if not protos:
        print("No runs recorded yet. Train one: recarena train pop --protocol ml100k-u1")
        return 0
    from recarena.errors import UnknownNameError

    boards, unknown = [], []
    for p in protos:
        try:
            boards += leaderboard.boards(store, p) or [leaderboard.build(store, p)]
        except UnknownNameError:
            if a.protocol:  # asked for by name: a real error
                raise
            unknown.append(p)  # runs of a protocol this checkout no longer defines
    if unknown:
        print(f"(runs of protocols not defined here, not shown: {', '.join(unknown)})", file=sys.stderr)
    if not boards:
        return 0
    if a.format == "json":
        # one board per (protocol, its content hash, dataset)
        print(json.dumps(boards, indent=2))
    else:
        print("\n\n".join(leaderboard.render(b, a.format) for b in boards))
    return 0


def _cmd_plugins(a) -> int:
    from recarena import plugins

    rows = []
    for name in plugins.available():
        try:
            rows.append(plugins.info(name).describe())
        except Exception as e:  # show broken plugins instead of hiding them
            i = plugins.info(name)
            rows.append({"name": name, "distribution": i.distribution, "version": i.version, "error": str(e)})
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No model plugins installed (entry-point group recarena.models).")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<18} {r['distribution']} {r['version']}  BROKEN: {r['error']}")
            continue
        c = r["capabilities"]
        extras = [k for k in ("onnx", "side_features", "embeddings", "fold_in", "uncertainty", "timestamps") if c.get(k)]
        if c.get("context") and not c.get("fold_in"):  # fold_in includes context
            extras.append("context")
        print(f"{r['name']:<18} {r['distribution'] + ' ' + r['version']:<28} tasks={','.join(c['tasks']):<22} {' '.join(extras)}")
    return 0


def _cmd_config(a) -> int:
    from pathlib import Path

    from recarena import plugins
    from recarena.config import resolve_with_sources
    from recarena.protocols import load_protocol

    proto = load_protocol(a.protocol)
    cls = plugins.get(a.model)
    cfg, sources = resolve_with_sources(cls, a.model, proto, a.dataset or proto["dataset"], 0,
                                        Path(a.config) if a.config else None, a.sets)
    from recarena.trainer_settings import TRAINER_KEYS

    trainer = {**TRAINER_KEYS, **cfg["trainer"]}
    rows = [(k, v, sources[f"params.{k}"]) for k, v in cfg["params"].items()]
    rows += [(f"trainer.{k}", v, sources.get(f"trainer.{k}", "recarena's trainer default")) for k, v in trainer.items()]
    rows += [(f"data.{k}", v, sources.get(f"data.{k}", "")) for k, v in (cfg.get("data") or {}).items()]
    if a.json:
        print(json.dumps([{"key": k, "value": v, "from": w} for k, v, w in rows], default=str, indent=2))
        return 0
    print(f"{a.model} under {proto['name']} (v{cfg['protocol_version']}, dataset {cfg['dataset']}):")
    width = max((len(k) for k, _, _ in rows), default=0)
    for k, v, w in rows:
        print(f"  {k:<{width}}  {v!r:<24} {w}")
    return 0


def _cmd_new(a) -> int:
    from pathlib import Path

    from recarena.scaffold import new_plugin, next_steps

    folder = new_plugin(a.name, a.kind, Path(a.dir))
    print(next_steps(folder, a.name, a.kind))
    return 0


def _cmd_data(a) -> int:
    from recarena.config import parse_sets
    from recarena.data import files
    from recarena.errors import RecArenaError

    sets = [x if x.startswith("data.") else f"data.{x}" for x in a.sets]
    layer = parse_sets(sets)
    extra = set(layer) - {"data"}
    if extra:
        raise RecArenaError(f"data inspect takes data.KEY=VALUE settings only, got {sorted(extra)}.")
    if not files.is_file_dataset(a.file):
        raise RecArenaError(f"{a.file!r} is not a .csv/.tsv/.parquet file or a dataset YAML "
                            "(registered datasets: `recarena datasets`).")
    info = files.inspect(a.file, layer.get("data"))
    print(json.dumps(info, indent=2) if a.json else files.format_inspect(info))
    return 0


def _cmd_gc(a) -> int:
    from recarena.store import ResultsStore, orphan_run_dirs

    found = orphan_run_dirs(ResultsStore(), min_age=a.min_age)
    import shutil

    for d in found:
        if not a.dry_run:
            shutil.rmtree(d, ignore_errors=True)
        print(f"{'would remove' if a.dry_run else 'removed'} {d}")
    print(f"{len(found)} orphaned run folder(s) {'found' if a.dry_run else 'removed'}.")
    return 0


def _cmd_datasets(a) -> int:
    from recarena.data import datasets

    for name, spec in sorted(datasets.REGISTRY.items()):
        print(f"{name:<32} {spec.description}")
    print(f"{'synthetic[-N]':<32} generated latent-factor ratings with power-law popularity (N rows)")
    return 0


def _cmd_protocols(a) -> int:
    from recarena.config import list_configs
    from recarena.protocols import load_protocol

    for name in list_configs("protocols"):
        p = load_protocol(name)
        print(f"{name:<20} v{p.get('version', 1)}  {p['dataset']:<10} {p['task']:<10} select {p['select']:<10} {p.get('description', '')}")
    return 0


def _delegate(cmd: str, args: list[str]) -> int:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="recarena.commands")}
    if cmd not in eps:
        from recarena.errors import RecArenaError

        pkg = {"serve": "recarena-serve", "db": "recarena-serve", "viz": "recarena-viz"}.get(cmd, "a RecArena extension")
        raise RecArenaError(f"'recarena {cmd}' is provided by {pkg}, which is not installed here (or does not implement it yet).")
    return int(eps[cmd].load()(args) or 0)


def main(argv: list[str] | None = None) -> int:
    from recarena.errors import RecArenaError

    os.environ.setdefault("WANDB_MODE", "offline")
    # whole lines on stdout even into a pipe or file shared with stderr: a block-buffered stdout
    # flushes mid-line, and a stderr line written in between glues two lines together
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    # our own warnings (sampled evaluation, ...) read as one line, without source excerpts
    warnings.formatwarning = lambda msg, cat, *a, **k: f"recarena: {cat.__name__}: {msg}\n"
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    argv = sys.argv[1:] if argv is None else list(argv)
    # `recarena --store URL_OR_PATH <command> ...`: the results store for this command (as
    # RECARENA_STORE), for every command, delegated ones included
    if argv and (argv[0] == "--store" or argv[0].startswith("--store=")):
        store = argv[0].split("=", 1)[1] if "=" in argv[0] else (argv[1] if len(argv) > 1 else "")
        if not store:
            raise SystemExit("recarena: --store needs a path or a postgresql:// URL")
        os.environ["RECARENA_STORE"] = store
        argv = argv[1:] if "=" in argv[0] else argv[2:]
    if argv and argv[0] in DELEGATED:
        # handed over whole: argparse's REMAINDER drops a leading --option ("report --sweep x")
        a = argparse.Namespace(cmd=argv[0], args=argv[1:])
    else:
        a = _parser().parse_args(argv)
    try:
        if a.cmd in DELEGATED:
            return _delegate(a.cmd, a.args)
        return {"train": _cmd_train, "leaderboard": _cmd_leaderboard, "plugins": _cmd_plugins, "config": _cmd_config,
                "new": _cmd_new, "data": _cmd_data, "gc": _cmd_gc, "datasets": _cmd_datasets,
                "protocols": _cmd_protocols}[a.cmd](a)
    except RecArenaError as e:
        msg = textwrap.fill(str(e), width=100, break_long_words=False, break_on_hyphens=False)
        print(f"recarena {a.cmd}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recarena {a.cmd}: interrupted (SIGINT); nothing recorded", file=sys.stderr)
        return 130
    except BaseException as e:
        from recarena.runner import Interrupted

        if isinstance(e, Interrupted):
            import signal

            print(f"recarena {a.cmd}: stopped by {signal.Signals(e.signum).name}; nothing recorded, "
                  "no run folder left", file=sys.stderr)
            return e.exit_code
        import errno
        import sqlite3

        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            print(f"recarena {a.cmd}: error: no space left on the device ({e.filename or e}); the results "
                  "store holds only whole runs (this one, if at all, as failed). Free some space and run it again.",
                  file=sys.stderr)
            return 2
        if isinstance(e, sqlite3.OperationalError) and any(w in str(e) for w in ("disk", "full", "readonly")):
            print(f"recarena {a.cmd}: error: the results store could not be written ({e}); it is unchanged: "
                  "a run is written in one transaction. Free some space and run it again.", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
