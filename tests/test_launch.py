"""Every way a two-rank job is launched, end to end, as real processes on this CPU machine (gloo).

The same short training (MNIST-1D, the recipes' workload: 1-D CNN, AdamW, one-cycle; 1000
samples, 3 epochs, 2 ranks, no test stage) is launched four ways, one after the other:

- ``ddp``: ``lrsched train trainer=ddp`` (Lightning starts rank 1 by running the command again),
  tracked in the default SQLite store of its directory;
- ``ddp_spawn``: ``lrsched train -m trainer=ddp_spawn`` (a one-job sweep; the ranks are spawned);
- ``torchrun``: ``recipes/torchrun_two_nodes/train.sh`` started twice, as two "nodes" of one
  process each (c10d rendezvous on 127.0.0.1), tracked on a real ``mlflow server`` that is down
  when the job starts and comes up while it trains;
- ``slurm``: ``recipes/slurm/train.sbatch`` run by bash with a stand-in ``srun`` (it starts the
  tasks here with SLURM's variables, two "nodes" of one task) and a stand-in ``scontrol``
  (records the requeue). Rank 1 gets SIGUSR1 or SIGTERM at a random point and step (the seed is
  in the test's output; ``LRSCHED_TEST_SEED`` repeats one): every rank stops, the job is
  requeued on SIGUSR1 (never on SIGTERM, which ``scancel`` sends too), the MLflow run waits as
  KILLED (tagged ``lrsched.preempted``), and the same script run again resumes.

Checked for each: both ranks took the same rates at every step; the steps are the horizon for
the global batch; one MLflow run, FINISHED, holds every step's rate once (written by rank 0);
one Hydra output directory. And across them: the four curves are one curve, every rank trained
on the same batches at every step, and the preempted and resumed job ends with the final
metrics of the uninterrupted torchrun job, bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lightning_support import subprocess_env
from mlflow import MlflowClient
from test_tracking import MlflowServer, free_port

from lightning_lrsched.lightning.preemption import PREEMPTED_EXIT_CODE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("launch"),
    pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two ranks need two cores"),
]

TESTS = Path(__file__).resolve().parent
RECIPES = TESTS.parent / "recipes"
WORKLOAD = ["data.num_samples=1000", "trainer.max_epochs=3", "test=false"]
EPOCHS = 3
POINTS = ("mid-epoch", "last-batch", "before-validation", "during-validation", "during-checkpoint")
LR_KEY = "lr/AdamW/pg0"
TIMEOUT = 300  # a hang fails the test, it does not stall CI


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["XDG_CACHE_HOME"] = str(cache)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # lrsched, torchrun
    for name in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR"):
        env.pop(name, None)
    env.update(extra)
    return env


def _wait(processes: list[subprocess.Popen], log: Path) -> list[int]:
    deadline = time.monotonic() + TIMEOUT
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail(f"hung for {TIMEOUT} s:\n{log.read_text()[-3000:]}")
    return codes


def _start(command: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _rates(out: Path, rank: int) -> list[tuple[int, tuple[float, ...]]]:
    rows = [json.loads(line) for line in (out / f"rank{rank}.jsonl").read_text().splitlines()]
    return [(row["step"], tuple(row["lrs"])) for row in rows]


def _batches(out: Path, rank: int) -> list[tuple[int, tuple]]:
    """Each step's batch on ``rank``, as a fingerprint (sums of the inputs and labels, size)."""
    rows = [json.loads(line) for line in (out / f"rank{rank}.jsonl").read_text().splitlines()]
    return [(row["step"], tuple(row["batch"])) for row in rows]


SRUN = """#!/bin/bash
# stand-in srun: $SLURM_NTASKS tasks here, one per "node", with the variables srun sets
pids=()
for ((task = 0; task < SLURM_NTASKS; task++)); do
  SLURM_PROCID=$task SLURM_LOCALID=0 SLURM_NODEID=$task "$@" &
  pids+=($!)
done
code=0
for pid in "${pids[@]}"; do wait "$pid" || code=$?; done
exit $code
"""


@pytest.fixture(scope="module")
def launches(tmp_path_factory, data_cache, migrated_store):
    root = tmp_path_factory.mktemp("launch")
    seed = int(os.environ.get("LRSCHED_TEST_SEED", time.time_ns() % 100_000))
    chance = random.Random(seed)
    results: dict[str, dict] = {"seed": seed}
    server = MlflowServer(root / "server")  # not started yet: the torchrun job starts first

    def job(name: str) -> tuple[Path, Path, Path]:
        cwd = root / name
        cwd.mkdir()
        return cwd, cwd / "rates", cwd / "log"

    def recorded(out: Path) -> list[str]:
        return [
            "+callbacks.rates._target_=preemption_support.RankRates",
            f"+callbacks.rates.out={out}",
        ]

    try:
        # -- Lightning's own launchers, tracked in the default store of the directory
        for name, argv in (("ddp", ["trainer=ddp"]), ("ddp_spawn", ["-m", "trainer=ddp_spawn"])):
            cwd, out, log = job(name)
            (cwd / "mlflow.db").write_bytes(migrated_store.read_bytes())
            lrsched = Path(sys.executable).with_name("lrsched")  # the installed command
            command = [str(lrsched), "train", *argv, "experiment=mnist1d_cnn", *WORKLOAD,
                       *recorded(out)]  # fmt: skip
            codes = _wait([_start(command, cwd, _env(data_cache), log)], log)
            results[name] = {"codes": codes, "cwd": cwd, "out": out, "log": log,
                             "store": f"sqlite:///{cwd / 'mlflow.db'}"}  # fmt: skip

        # -- torchrun, two "nodes"; the tracking server comes up while they train
        cwd, out, log = job("torchrun")
        port = free_port()
        env = _env(data_cache, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   NPROC_PER_NODE="1", ACCELERATOR="cpu", RUN_ID=f"two-nodes-{seed}",
                   MLFLOW_TRACKING_URI=server.uri)  # fmt: skip
        # rank 0 holds the training after step 3 until the server is up: it is started while
        # the job trains, and the job goes on training with it
        up = cwd / "server-up"
        script = [str(RECIPES / "torchrun_two_nodes" / "train.sh"), *WORKLOAD, *recorded(out),
                  "logger.experiment_name=torchrun",
                  "+callbacks.gate._target_=preemption_support.WaitFor",
                  f"+callbacks.gate.marker={up}", "+callbacks.gate.step=3"]  # fmt: skip
        nodes = [_start(["bash", *script], cwd, env, log) for _ in range(2)]
        deadline = time.monotonic() + TIMEOUT
        while len(_lines(out / "rank0.jsonl")) < 3 and time.monotonic() < deadline:
            if any(node.poll() is not None for node in nodes):
                break
            time.sleep(0.2)
        results["torchrun"] = {"trained_before_server": len(_lines(out / "rank0.jsonl")) >= 3}
        (server.root / "server.db").write_bytes(migrated_store.read_bytes())
        server.start()
        server.wait_healthy()
        up.touch()
        results["torchrun"]["server_up_while_training"] = all(n.poll() is None for n in nodes)
        codes = _wait(nodes, log)
        results["torchrun"].update(
            codes=codes, cwd=cwd, out=out, log=log, store=server.uri, experiment="torchrun"
        )

        # -- SLURM: preempted at a random point on rank 1, requeued, resumed by the same script
        cwd, out, log = job("slurm")
        bin_dir = cwd / "bin"
        bin_dir.mkdir()
        (bin_dir / "srun").write_text(SRUN)
        (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {cwd / "scontrol.log"}\n')
        for tool in ("srun", "scontrol"):
            (bin_dir / tool).chmod(0o755)
        point, signal_name = chance.choice(POINTS), chance.choice(("SIGUSR1", "SIGTERM"))
        step = chance.randrange(1, 9)  # of 12 steps: the points after it come before the end
        env = _env(data_cache, PATH=f"{bin_dir}{os.pathsep}{_env(data_cache)['PATH']}",
                   SLURM_JOB_ID=str(50_000 + seed % 10_000), SLURM_JOB_NAME="lrsched",
                   SLURM_SUBMIT_DIR=str(cwd), SLURM_NNODES="2", SLURM_NTASKS="2",
                   SLURM_NTASKS_PER_NODE="1", SLURM_GPUS_ON_NODE="1", SLURM_CPUS_PER_TASK="1",
                   SLURM_NODELIST="127.0.0.1", MASTER_PORT=str(free_port()),
                   MLFLOW_TRACKING_URI=server.uri)  # fmt: skip
        signal_at = [
            "+callbacks.signal._target_=preemption_support.SignalOnce",
            f"+callbacks.signal.marker={cwd / 'signalled'}", f"+callbacks.signal.point={point}",
            f"+callbacks.signal.step={step}", f"+callbacks.signal.signal={signal_name}",
            "+callbacks.signal.rank=1",
        ]  # fmt: skip
        sbatch = ["bash", str(RECIPES / "slurm" / "train.sbatch"), *WORKLOAD, *recorded(out),
                  *signal_at, "logger.experiment_name=slurm",
                  "logger.system_metrics_interval=1"]  # fmt: skip
        starts = []
        for restart in range(3):  # at most one requeue is expected
            env["SLURM_RESTART_COUNT"] = str(restart)
            code = _wait([_start(sbatch, cwd, env, log)], log)[0]
            run_statuses = [r.info.status for r in _runs(server.uri, "slurm")]
            starts.append({"code": code, "statuses": run_statuses})
            if code != PREEMPTED_EXIT_CODE:
                break
        results["slurm"] = {"starts": starts, "cwd": cwd, "out": out, "log": log,
                            "store": server.uri, "experiment": "slurm", "job": env["SLURM_JOB_ID"],
                            "signal": (point, signal_name, step)}  # fmt: skip
        yield results
    finally:
        server.stop()


def _runs(uri: str, experiment: str = "lightning-lrsched") -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def _horizon() -> int:
    from lightning_lrsched.tasks import MNIST1DDataModule

    data = MNIST1DDataModule(num_samples=1000)
    data.setup("fit")
    return EPOCHS * math.ceil(math.ceil(len(data.train_set) / 2) / data.batch_size)


def _checked(result: dict, name: str) -> list[tuple[int, tuple[float, ...]]]:
    """The per-job checks; returns the job's curve."""
    log = result["log"].read_text()[-4000:]
    rank0, rank1 = _rates(result["out"], 0), _rates(result["out"], 1)
    assert rank0 == rank1, f"{name}: the ranks took different rates"
    total = _horizon()
    assert [step for step, _ in rank0] == list(range(total)), f"{name}:\n{log}"
    rows = (result["out"] / "rank0.jsonl").read_text().splitlines()
    assert {json.loads(r)["estimated"] for r in rows} == {total}
    assert {json.loads(r)["world_size"] for r in rows} == {2}
    (run,) = _runs(result["store"], result.get("experiment", "lightning-lrsched"))
    assert run.info.status == "FINISHED", name
    history = MlflowClient(result["store"]).get_metric_history(run.info.run_id, LR_KEY)
    assert sorted(m.step for m in history) == list(range(total)), f"{name}: steps in MLflow"
    assert {m.step: m.value for m in history} == {step: lrs[0] for step, lrs in rank0}
    assert run.data.tags["lrsched.world_size"] == "2"
    SUMMARY[name] = (
        f"{total} steps x 2 ranks, rates equal on both ranks at every step; "
        f"MLflow: 1 run {run.info.status}, {len(history)} points of {LR_KEY}"
    )
    return rank0


SUMMARY: dict[str, str] = {}  # path -> what was measured, printed with the report


class LaunchSummary:
    def pytest_terminal_summary(self, terminalreporter):
        if SUMMARY:
            terminalreporter.write_sep("=", "launch paths: two ranks each, measured")
            for name, line in SUMMARY.items():
                terminalreporter.write_line(f"{name:<10} {line}")


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    manager = request.config.pluginmanager
    if not manager.has_plugin("launch-summary"):
        manager.register(LaunchSummary(), "launch-summary")


def _output_dirs(cwd: Path) -> list[Path]:
    return sorted(p.parent for p in cwd.rglob(".hydra"))


def test_ddp_lightning_starts_the_ranks(launches):
    result = launches["ddp"]
    assert result["codes"] == [0], result["log"].read_text()[-4000:]
    _checked(result, "ddp")
    (job,) = _output_dirs(result["cwd"])
    assert (job / "train_ddp_process_1.log").is_file()  # rank 1's log, same directory
    # the experiment learns: above chance (0.1) in 3 short epochs; one-cycle from max_lr / 25
    (run,) = _runs(result["store"])
    assert run.data.metrics["val_acc"] > 0.15
    rates = [lrs[0] for _, lrs in _rates(result["out"], 0)]
    assert rates[0] == pytest.approx(max(rates) / 25, rel=1e-6) and rates[-1] < rates[0]
    # how to look at it: the UI command for the default store in the cwd and a link to the run
    out = result["log"].read_text()
    match = re.search(r"mlflow ui --backend-store-uri (\S+)", out)
    assert match and match.group(1) == result["store"], out[-2000:]
    experiment = run.info.experiment_id
    assert f"#/experiments/{experiment}/runs/{run.info.run_id}?workflowType=machine_learning" in out
    tags = MlflowClient(result["store"]).get_experiment(experiment).tags
    assert tags.get("mlflow.experimentKind") == "custom_model_development"
    assert run.data.params["scheduler/name"] == "onecycle"


def test_ddp_spawn_sweep_job_is_the_same_training(launches):
    result = launches["ddp_spawn"]
    assert result["codes"] == [0], result["log"].read_text()[-4000:]
    assert _checked(result, "ddp_spawn") == _rates(launches["ddp"]["out"], 0)
    assert len(_output_dirs(result["cwd"])) == 1
    for rank in (0, 1):
        assert _batches(result["out"], rank) == _batches(launches["ddp"]["out"], rank)


def test_torchrun_two_nodes_tracks_on_a_server_that_came_up_late(launches):
    result = launches["torchrun"]
    assert result["codes"] == [0, 0], result["log"].read_text()[-4000:]
    assert result["trained_before_server"], "the job trained before the server answered"
    assert result["server_up_while_training"], "the server came up after the job ended"
    assert "does not answer; training goes on" in result["log"].read_text()
    curve = _checked(result, "torchrun")
    assert curve == _rates(launches["ddp"]["out"], 0)
    for rank in (0, 1):  # each rank's share of every epoch, whoever started the ranks
        assert _batches(result["out"], rank) == _batches(launches["ddp"]["out"], rank)
    (job,) = _output_dirs(result["cwd"])
    assert (job / "train_rank1.log").is_file() or any(job.glob("*rank1*.log")), sorted(
        os.listdir(job)
    )


def test_slurm_job_preempted_requeued_and_resumed_is_one_run_and_one_curve(launches):
    result = launches["slurm"]
    point, signal_name, step = result["signal"]
    said = f"seed {launches['seed']}: {signal_name} at {point} from step {step}"
    starts = result["starts"]
    log = result["log"].read_text()
    assert [s["code"] for s in starts] == [PREEMPTED_EXIT_CODE, 0], f"{said}\n{log[-4000:]}"
    assert starts[0]["statuses"] == ["KILLED"], said  # waiting in the queue, never FINISHED
    assert starts[1]["statuses"] == ["FINISHED"], said
    requeues = result["cwd"] / "scontrol.log"
    job_id = result["job"]
    if signal_name == "SIGUSR1":  # SLURM's warning: requeued once, by rank 0
        assert requeues.read_text().split() == ["requeue", job_id], said
    else:  # SIGTERM (scancel sends it too): checkpoint and exit, never requeue
        assert not requeues.exists(), said
    assert "resuming from" in log and "preempted.ckpt" in log
    curve = _checked(result, "slurm")
    assert curve == _rates(launches["torchrun"]["out"], 0), said
    # after the resume every rank trained on the very batches of the uninterrupted job, so the
    # job ends with its weights: the same validation, bit for bit. (Not train_loss_epoch:
    # Lightning's epoch mean of a per-step metric restarts at a resume inside the epoch.)
    for rank in (0, 1):
        assert _batches(result["out"], rank) == _batches(launches["torchrun"]["out"], rank), said
    (slurm_run,) = _runs(result["store"], "slurm")
    (reference,) = _runs(result["store"], "torchrun")
    for key in ("val_loss", "val_acc"):
        assert slurm_run.data.metrics[key] == reference.data.metrics[key], f"{said}: {key}"
    stopped = result["out"] / "rank0.jsonl"
    SUMMARY["slurm"] += (
        f"; {said}: exit {[s['code'] for s in starts]}, run {starts[0]['statuses']} then "
        f"{starts[1]['statuses']}, requeued: {requeues.exists()}, batches and final metrics "
        f"= torchrun's "
        f"(val_loss {slurm_run.data.metrics['val_loss']:.6f}); {len(_lines(stopped))} rows"
    )
    (job,) = _output_dirs(result["cwd"])
    assert job == result["cwd"] / "runs" / job_id / "hydra"
    # the recipe's system metrics: one sampler per node, each under its node's name
    (run,) = _runs(result["store"], "slurm")
    for node in (0, 1):
        assert f"system/node{node}/cpu_utilization_percentage" in run.data.metrics, sorted(
            run.data.metrics
        )
        assert run.data.tags[f"lrsched.node{node}.host"]
    what = "requeued" if signal_name == "SIGUSR1" else "stopped"
    assert run.data.tags["lrsched.preempted"].startswith(f"{what}: {signal_name} after step ")
