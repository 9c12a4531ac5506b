"""tf.distribute: two mirrored replicas equal one device (batch norm included); clipping bounds the
applied update whatever the replica count; two workers on localhost end equal."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(commands, envs, timeout=300):
    procs = [subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c, e in zip(commands, envs)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]


def load(path):
    with np.load(path) as f:
        return f["losses"], int(f["replicas"]), [f[k] for k in f.files if k.startswith("arr_")]


def indices(path):
    with np.load(path) as f:
        return list(f["indices"])


def test_mirrored_over_two_replicas_matches_one_device(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run_workers([[sys.executable, WORKER, "default", str(tmp_path / "one"), str(tmp_path / "one.npz")],
                 [sys.executable, WORKER, "mirrored", str(tmp_path / "two"), str(tmp_path / "two.npz"), "2"]],
                [env, env])
    one_losses, one_replicas, one_weights = load(tmp_path / "one.npz")
    two_losses, two_replicas, two_weights = load(tmp_path / "two.npz")
    assert (one_replicas, two_replicas) == (1, 2)
    # Per-example losses scaled by the global batch: the same numbers however the batch is split.
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-4, atol=1e-6)
    # Adam moves a weight by about lr per step whatever the gradient's size, so near-zero gradients
    # summed in another order can differ by up to ~lr per step; bound by 4 steps x lr 2e-4.
    for a, b in zip(one_weights, two_weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=8e-4)


def test_clip_norm_bounds_the_applied_update_across_two_replicas(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run_workers([[sys.executable, WORKER, "clip", "-", str(tmp_path / "norms.npz"), "2"]], [env])
    with np.load(tmp_path / "norms.npz") as f:
        norms, replicas = f["norms"], int(f["replicas"])
    assert replicas == 2
    # The raw gradient is huge (L1 weighted 1e4), so each update is clipped to the limit, not under it.
    np.testing.assert_allclose(norms, 1.0, rtol=1e-3)


def test_float16_replicas_agree_to_skip_a_step_that_is_not_finite_on_one_of_them(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run_workers([[sys.executable, WORKER, "float16", "-", str(tmp_path / "f16.npz"), "2"]], [env])
    with np.load(tmp_path / "f16.npz") as f:
        moved, scales, scale_before, replicas = f["moved"], f["scales"], float(f["scale_before"]), int(f["replicas"])
        trained = f["trained"]
    assert replicas == 2
    assert np.all(moved == 0.0), "a replica applied the update that the other skipped"
    assert set(scales) == {scale_before / 2}  # the loss scale was halved (on every copy it has)
    # The next, finite step trains every weight, by the same amount on both replicas.
    assert np.all(trained > 0) and np.all(trained[:, 0] == trained[:, 1])


def test_multi_worker_mirrored_two_processes_on_localhost_end_equal(tmp_path):
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    envs = [dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                 TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
            for i in range(2)]
    logdir = str(tmp_path / "run")
    run_workers([[sys.executable, WORKER, "multi_worker", logdir, str(tmp_path / f"w{i}.npz")] for i in range(2)],
                envs)
    losses0, replicas, weights0 = load(tmp_path / "w0.npz")
    losses1, _, weights1 = load(tmp_path / "w1.npz")
    assert replicas == 2 and len(losses0) == 4
    np.testing.assert_array_equal(losses0, losses1)
    for a, b in zip(weights0, weights1):
        np.testing.assert_array_equal(a, b)
    # The chief writes the run; the other worker keeps its copy apart.
    assert os.path.isdir(os.path.join(logdir, "checkpoints"))
    assert os.path.isdir(os.path.join(logdir, "workers", "worker_1", "checkpoints"))


def test_multi_worker_resume_reads_each_workers_own_stream(tmp_path):
    """Two workers interrupted at step 3 and resumed read, between them, exactly the indices of an
    uninterrupted run, none twice (each worker resumes on its own strided stream)."""
    def run(name, **env):
        cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
        envs = [dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PRETRAIN_STEPS="6", TRAIN_STEPS="0", **env,
                     TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
                for i in range(2)]
        out = [tmp_path / f"{name}{i}.npz" for i in range(2)]
        run_workers([[sys.executable, WORKER, "multi_worker", str(tmp_path / name.removesuffix("-resumed")), str(o)]
                     for o in out], envs)
        return [indices(o) for o in out]

    straight = run("straight")
    first = run("split", STOP_AT_STEP="3")
    second = run("split-resumed")
    for worker in range(2):
        read = first[worker] + second[worker]
        assert len(read) == len(set(read)), (worker, read)
        assert sorted(read) == sorted(straight[worker]), (worker, read, straight[worker])
    assert not set(straight[0]) & set(straight[1])  # the workers' streams are disjoint
