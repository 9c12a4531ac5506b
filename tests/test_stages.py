"""A run in stages whose state lives in the repository: any clone continues it exactly, the newer of the
state and the machine's own checkpoints wins, and state of another model is refused."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest

from colorgan.errors import ColorganError
from colorgan.training import TrainConfig, stages

STAGES = "l1:32:8,gan:32:24"  # 2 L1 steps, then 6 GAN steps, of 4 photos


def tiny_config(logdir, state_dir, **overrides):
    cfg = dict(data="samples", batch_size=4, generator="unet", generator_options="base_filters=8,depth=5",
               critic="patchgan", critic_options="base_filters=8", stages=STAGES, state_dir=str(state_dir),
               log_every=1, eval_every=100, checkpoint_every=2, val_images=4, cache=True, deterministic=True,
               logdir=str(logdir), progress=False, export=False, ema=0.9, curve_every=0)
    cfg.update(overrides)
    return TrainConfig(**cfg)


def weights_of(keras_file):
    with zipfile.ZipFile(keras_file) as archive, h5py.File(archive.open("model.weights.h5")) as f:
        found = []
        f.visit(lambda name: found.append(f[name][()]) if isinstance(f[name], h5py.Dataset) else None)
        return found


CONTINUE = textwrap.dedent("""
    import json, sys
    from colorgan.training import TrainConfig, train_stages
    cfg = TrainConfig(**json.loads(sys.argv[1]))
    result = train_stages(cfg)
    print("STEP", result["stage"], result["step"])
""")


def test_a_fresh_clone_continues_from_the_repository_state_as_the_original_machine_does(tmp_path):
    original = tmp_path / "original"
    cfg = tiny_config(original / "runs", original / "models" / "run")
    # Stop in the GAN stage at its step 3: the loop checkpoints, and the state is written beside it.
    from colorgan.training import train_stages

    calls = []

    def on_step(step, logs):
        calls.append(step)
        if len(calls) == 2 + 3:  # the L1 stage's 2 steps, then the GAN stage's first 3
            os.kill(os.getpid(), signal.SIGTERM)
    result = train_stages(cfg, on_step=on_step)
    assert result["stopped_by"] and result["stage"] == 2 and result["step"] == 3
    state = json.loads((original / "models" / "run" / "state.json").read_text())
    assert (state["stage"], state["step"], state["photos"]) == (1, 3, 8 + 12)
    assert state["data_index"] > 0

    def continue_in(folder):
        """`colorgan train` again, as a user would: a fresh process in the repository's folder."""
        cfg = dict(vars(tiny_config(folder / "runs", "models/run")))
        out = subprocess.run([sys.executable, "-c", CONTINUE, json.dumps(cfg)], cwd=folder, capture_output=True,
                             text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert out.returncode == 0, out.stderr[-2000:]
        assert "STEP 2 6" in out.stdout

    # A fresh clone: the repository's files only, at another path.
    clone = tmp_path / "clone"
    shutil.copytree(original / "models", clone / "models")
    continue_in(clone)
    # The same continuation on the original machine, from the same state with restarted optimisers (its
    # own checkpoints set aside: they would continue the optimisers too).
    shutil.rmtree(original / "runs")
    continue_in(original)
    ours = weights_of(original / "runs" / "stage2-gan-32px" / "generator.keras")
    theirs = weights_of(clone / "runs" / "stage2-gan-32px" / "generator.keras")
    assert len(ours) == len(theirs) > 10
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    # Both wrote the finished run's state: stage 3 of 2, and the same models.
    for name in ("generator.keras", "critic.keras"):
        for a, b in zip(weights_of(original / "models" / "run" / name), weights_of(clone / "models" / "run" / name)):
            np.testing.assert_array_equal(a, b)


def _fake_checkpoint(folder, step):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"ckpt-{step}.index").write_bytes(b"")
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{step}"\n')


def _fake_state(state_dir, cfg, stage, at_step, **changes):
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in ("generator.keras", "critic.keras"):
        (state_dir / name).write_bytes(b"")
    state = {"stages": cfg.stages, "stage": stage, "step": at_step, "data_index": 7, "photos": 0, "hours": 0,
             "architecture": stages.architecture(cfg)}
    state.update(changes)
    (state_dir / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("local,state,expected", [
    (None, None, ("fresh", 0, 0)),
    ((1, 2), None, ("local", 1, 2)),
    (None, (1, 4), ("state", 1, 4)),
    ((1, 2), (1, 4), ("state", 1, 4)),   # the repository is newer: another machine trained on
    ((1, 5), (1, 4), ("local", 1, 5)),   # this machine is newer
    ((1, 4), (1, 4), ("local", 1, 4)),   # a tie: this machine's checkpoint also has the optimisers
    ((0, 2), None, ("local", 1, 0)),     # a finished stage: the next starts from its exports
])
def test_the_newer_of_the_machines_checkpoints_and_the_repository_state_wins(tmp_path, local, state, expected):
    cfg = tiny_config(tmp_path / "runs", tmp_path / "state")
    plan = stages.parse_stages(cfg.stages)
    if local:
        index, step = local
        step = plan[index].steps(cfg.batch_size) if expected[1] > index else step
        _fake_checkpoint(tmp_path / "runs" / plan[index].folder(index) / "checkpoints", step)
    if state:
        _fake_state(tmp_path / "state", cfg, *state)
    where, found = stages.starting_point(cfg, plan)
    assert (where, found["stage"], found["step"]) == expected


@pytest.mark.parametrize("change,message", [
    ({"architecture": {"generator": "resunet", "generator_options": {}, "critic": "patchgan",
                       "critic_options": {"base_filters": 8}}}, "another architecture \\(generator, generator_options differ"),
    ({"stages": "gan:64:100"}, "follows --stages=gan:64:100"),
    ({"step": "three"}, "cannot be read"),
])
def test_state_of_another_run_is_refused_with_one_line(tmp_path, change, message):
    cfg = tiny_config(tmp_path / "runs", tmp_path / "state")
    _fake_state(tmp_path / "state", cfg, 1, 2, **change)
    with pytest.raises(ColorganError, match=message) as caught:
        stages.starting_point(cfg, stages.parse_stages(cfg.stages))
    assert "\n" not in str(caught.value)


def test_the_command_refuses_state_of_another_architecture_in_one_line(tmp_path):
    cfg = tiny_config(tmp_path / "runs", tmp_path / "state")
    _fake_state(tmp_path / "state", cfg, 1, 2, architecture=dict(stages.architecture(cfg), generator="resunet"))
    out = subprocess.run([sys.executable, "-m", "colorgan", "train", "--data=samples", "--generator=unet",
                          f"--generator_options={cfg.generator_options}", "--critic_options=base_filters=8",
                          f"--stages={STAGES}", f"--state_dir={tmp_path / 'state'}", f"--logdir={tmp_path / 'runs'}"],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "another architecture" in out.stderr


def test_state_files_are_float16_and_load_in_keras_safe_mode(tmp_path):
    from colorgan.training import train_stages

    cfg = tiny_config(tmp_path / "runs", tmp_path / "state", stages="gan:32:8", checkpoint_every=1, curve_every=6)
    train_stages(cfg)
    # The learning curve's point: the averaged generator when the run passed 6 photos (at 8).
    assert sorted(os.listdir(tmp_path / "runs" / "curve")) == ["photos-0000006.keras"]
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert (state["stage"], state["step"], state["photos"]) == (1, 0, 8)
    for name in ("generator.keras", "critic.keras"):
        path = tmp_path / "state" / name
        stored = weights_of(path)
        assert {w.dtype for w in stored if w.dtype.kind == "f"} == {np.dtype("float16")}
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
        assert model.count_params() > 0
    # The generator is the run's weight average: what the finished stage exported, to float16 precision.
    exported = weights_of(tmp_path / "runs" / "stage1-gan-32px" / "generator.keras")
    for a, b in zip(weights_of(tmp_path / "state" / "generator.keras"), exported):
        np.testing.assert_array_equal(a, b.astype(np.float16) if b.dtype == np.float32 else b)


@pytest.mark.parametrize("text", ["l1:64", "gan:64:0", "conv:64:100", "gan:x:100", ""])
def test_bad_stages_fail_with_one_clear_line(text):
    with pytest.raises(ColorganError, match="stage"):
        stages.parse_stages(text)
