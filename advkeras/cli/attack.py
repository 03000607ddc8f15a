"""`advkeras attack`: attack a saved model on a dataset; save adversarials (.npz), a PNG grid and a summary."""
from __future__ import annotations

import click

from advkeras.cli.options import COUNT, common_options, confirm_overwrite


def parse_eps(value: str | None) -> float | None:
    """'8/255', '0.031' or 'none' -> a float (or None for unbounded minimisation attacks)."""
    from advkeras.errors import InputError

    if value is None or value.lower() in ("none", "inf", ""):
        return None
    try:
        num, _, den = value.partition("/")
        return float(num) / (float(den) if den else 1.0)
    except (ValueError, ZeroDivisionError) as exc:
        raise InputError(f"--eps {value!r} is not a number; write e.g. 8/255, 0.031 or none.") from exc


def parse_params(items: tuple[str, ...]) -> dict:
    """('steps=20', 'random_start=false') -> {'steps': 20, 'random_start': False} (YAML scalars)."""
    import yaml

    from advkeras.errors import InputError

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param {item!r} must look like name=value, e.g. --param steps=20.")
        params[key.strip()] = yaml.safe_load(value)
    return params


@click.command("attack")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="The .keras classifier to attack (logits out), e.g. from `advkeras train`.")
@click.option("--data", default="idc", show_default=True,
              help="Embedded sample name (idc, mnist) or a dataset folder; its held-out split is attacked.")
@click.option("--attack", "attack_name", default="pgd", show_default=True,
              help="Attack name: fgsm, bim, pgd, fgm, deepfool, cw, boundary, hopskipjump, jsma, onepixel, square.")
@click.option("--eps", default=None, help="Budget in the attack's norm, e.g. 8/255 (Linf) or 1.0 (L2); "
              "omit for minimisation attacks (deepfool, cw, boundary, hopskipjump, jsma, onepixel).")
@click.option("--backend", type=click.Choice(["foolbox", "native", "art"]), default=None,
              help="Where the attack runs [default: the first backend that has it: foolbox, native, art].")
@click.option("--targeted", is_flag=True, help="Aim at class (label + 1) mod C instead of any wrong class.")
@click.option("-n", "--n-images", type=COUNT, default=64, show_default=True, help="Held-out images attacked.")
@click.option("--batch-size", type=COUNT, default=128, show_default=True,
              help="Images per batch (per replica under --strategy).")
@click.option("--all-images", is_flag=True, help="Attack every held-out image (ignores -n).")
@click.option("--param", "params", multiple=True, help="Attack parameter name=value (repeatable), e.g. steps=20.")
@click.option("--shard-size", type=COUNT, default=None,
              help="Attack in shards of this many images, each written to OUT/shards as it completes; rerunning "
                   "the same command resumes (finished shards are kept) and merges once all are done.")
@click.option("--worker", type=int, default=None, help="This worker's index (0-based) when several share the shards "
              "[default: from TF_CONFIG, else 0].")
@click.option("--workers", type=COUNT, default=None, help="How many workers share the shards [default: from "
              "TF_CONFIG, else 1].")
@click.option("--strategy", "strategy_name", type=click.Choice(["mirrored", "multiworker"]), default=None,
              help="Run a native attack (fgsm, bim, pgd) under tf.distribute: mirrored (every GPU of this machine) "
                   "or multiworker (the machines of TF_CONFIG; run the same command on each). Implies shards "
                   "(--shard-size, default 1024); worker 0 writes them.")
@common_options("runs/attack")
def attack(model_path: str, data: str, attack_name: str, eps: str | None, backend: str | None, targeted: bool,
           n_images: int, batch_size: int, all_images: bool, params: tuple[str, ...], shard_size: int | None,
           worker: int | None, workers: int | None, strategy_name: str | None, seed: int, out: str,
           force: bool) -> None:
    """Attack MODEL on held-out images of DATA; writes OUT/adversarials.npz, OUT/grid.png, OUT/summary.json.

    With --shard-size, workers (on one machine or several sharing OUT) split the shards; the run writes
    OUT/per_image.npz (labels, predictions, success, norms: no images) and OUT/summary.json once every shard is
    done."""
    import contextlib

    from advkeras.attacks import generate
    from advkeras.attacks.plot import plot_adversarial_grid
    from advkeras.data import load_dataset
    from advkeras.models import load_model, split_dataset
    from advkeras.data import stratified_subset
    from advkeras.runs import prepare_out_dir, write_json

    eps_value, attack_params = parse_eps(eps), parse_params(params)
    strategy = _strategy(strategy_name, worker, workers)  # before any other TF work, as MultiWorkerMirrored needs
    if strategy is not None and shard_size is None:
        shard_size = 1024
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = load_model(model_path)  # under a strategy: its variables mirrored on every device
    ds = load_dataset(data, lazy=True)  # a folder stays on disk: only the attacked images are decoded
    held_out = split_dataset(ds, seed)[2]
    test = held_out if all_images else stratified_subset(held_out, n_images, seed=seed)  # by class, across patients
    y = test.y
    target = (y + 1) % int(model.output_shape[-1]) if targeted else None
    if shard_size is not None:
        plan = {"model": str(model_path), "data": str(data), "eps": eps_value, "backend": backend,
                "params": attack_params, "targeted": targeted, "all_images": all_images, "n_images": n_images}
        shards = {"attack": attack_name, "shard_size": shard_size, "worker": worker, "workers": workers, "seed": seed,
                  "strategy": strategy}
        _sharded(model, test, out, force, plan, shards, dict(eps=eps_value, backend=backend, target=target,
                                                             batch_size=batch_size, **attack_params))
        return
    x = test.in_memory().x
    out_dir = prepare_out_dir(out, force=force, confirm=confirm_overwrite, inputs=[model_path, data])
    res = generate(model, x, y, attack_name, eps=eps_value, backend=backend, target=target, batch_size=batch_size,
                   seed=seed, **attack_params)
    res.save(out_dir / "adversarials.npz")
    plot_adversarial_grid(res, out_dir / "grid.png", class_names=tuple(ds.class_names))
    write_json(out_dir / "summary.json", {**res.summary(), "model": str(model_path), "data": str(data),
                                          "seed": seed})
    click.echo(f"{res.attack} ({res.backend}) on {len(x)} images: success {res.success_rate:.3f} "
               f"(on correctly classified: {res.success_rate_on_correct:.3f}) -> {out_dir}")


def _strategy(name: str | None, worker: int | None, workers: int | None):
    if name is None:
        return None
    from advkeras.attacks.distributed import make_strategy
    from advkeras.errors import InputError

    if worker is not None or workers is not None:
        raise InputError("--strategy shares every shard among its workers; drop --worker/--workers (under "
                         "--strategy multiworker, TF_CONFIG says who the workers are).")
    return make_strategy(name)


def _sharded(model, test, out: str, force: bool, plan: dict, shards: dict, attack_kwargs: dict) -> None:
    """This worker's shards, then the merge when none is missing (see `advkeras.attacks.sharded`).

    `plan`: what the run is (stored with the shards); `shards`: attack, shard_size, worker, workers, seed and
    strategy as `run_shards` takes them; `attack_kwargs`: what goes on to the attack (eps, backend, params...)."""
    import os
    from pathlib import Path

    import numpy as np

    from advkeras.attacks.distributed import is_chief
    from advkeras.attacks.sharded import merge_per_image, missing_shards, run_shards, shard_sequence, worker_from_tf_config
    from advkeras.errors import InputError
    from advkeras.runs import prepare_out_dir, write_json

    strategy, seed, shard_size = shards["strategy"], shards["seed"], shards["shard_size"]
    tf_index, tf_count = worker_from_tf_config() if strategy is None else (0, 1)
    worker = tf_index if shards["worker"] is None else shards["worker"]
    workers = tf_count if shards["workers"] is None else shards["workers"]
    out_dir = Path(out)
    chief = strategy is None or is_chief(strategy)

    def prepare() -> None:  # on the chief only under a strategy: the other workers never touch --out
        if force:
            prepare_out_dir(out, force=True, inputs=[plan["model"], plan["data"]])
        elif out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "shards").is_dir():
            raise InputError(f"{out_dir} already holds results that are not a sharded run; pass --force to replace "
                             "them, or choose another --out.")

    written = run_shards(model, test.x, test.y, shards["attack"], out_dir, shard_size=shard_size, worker=worker,
                         workers=workers, seed=seed, plan=plan, strategy=strategy, prepare=prepare, **attack_kwargs)
    if not chief:
        click.echo(f"worker {strategy.cluster_resolver.task_id}: done; worker 0 writes the shards and the merged "
                   "results")
        return
    missing = missing_shards(out_dir)
    who = "chief" if strategy is not None else f"worker {worker}/{workers}"
    click.echo(f"{who}: wrote {len(written)} shard(s)"
               + (f"; waiting for shard(s) {shard_sequence(missing)} (rerun to resume)" if missing else ""))
    if missing:
        return
    per_image, summary = merge_per_image(out_dir)  # shard by shard: the images of a large run never all in memory
    tmp = out_dir / f".per_image.{os.getpid()}.tmp.npz"  # two workers may finish together: whole files only
    np.savez_compressed(tmp, **per_image, **({"groups": test.groups} if test.groups is not None else {}))
    os.replace(tmp, out_dir / "per_image.npz")
    write_json(out_dir / "summary.json", {**summary, "model": plan["model"], "data": plan["data"], "seed": seed,
                                          "shards": int(len(list((out_dir / "shards").glob("shard_*.npz")))),
                                          "shard_size": shard_size})
    click.echo(f"{summary['attack']} ({summary['backend']}) on {summary['n']} images: success "
               f"{summary['success_rate']:.3f} (on correctly classified: {summary['success_rate_on_correct']:.3f}) "
               f"-> {out_dir}")
