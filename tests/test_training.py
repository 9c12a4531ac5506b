"""The training loop on tiny models: objectives, stages, exact resume, signals, TensorBoard, faults."""
import glob
import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from colorgan import data, models, saving, sources, training
from colorgan.errors import ColorganError
from colorgan.training import TrainConfig, loop


def tiny_config(logdir, **overrides):
    cfg = dict(data="samples", image_size=64, batch_size=4, generator="unet",
               generator_options="base_filters=8,depth=6", critic="patchgan", critic_options="base_filters=8",
               pretrain_steps=2, train_steps=3, log_every=1, eval_every=2, checkpoint_every=100,
               val_images=4, cache=True, deterministic=True, logdir=str(logdir), progress=False, export=False)
    cfg.update(overrides)
    return TrainConfig(**cfg)


def run_logging_losses(cfg, stop_at=None):
    """train(cfg), recording each step's losses; SIGTERM ourselves at step ``stop_at``."""
    losses = {}

    def on_step(step, logs):
        losses[step] = logs
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
    return training.train(cfg, on_step=on_step), losses


@pytest.mark.parametrize("objective,critic_options", [
    ("vanilla", "base_filters=8"), ("lsgan", "base_filters=8"), ("wgan-gp", "base_filters=8,norm=instance")])
def test_each_objective_trains_without_nan_and_reports_its_losses(tmp_path, objective, critic_options):
    cfg = tiny_config(tmp_path, objective=objective, critic_options=critic_options, pretrain_steps=0,
                      train_steps=3, critic_steps=2 if objective == "wgan-gp" else 1)
    result, losses = run_logging_losses(cfg)
    assert result["step"] == 3 and sorted(losses) == [1, 2, 3]
    for logs in losses.values():
        assert all(np.isfinite(v) for v in logs.values())
        assert {"generator/loss", "generator/gan", "generator/l1", "critic/loss"} <= set(logs)
        if objective == "wgan-gp":
            assert {"critic/gradient_penalty", "critic/wasserstein"} <= set(logs)
        else:
            assert {"critic/accuracy_real", "critic/accuracy_fake"} <= set(logs)
        np.testing.assert_allclose(logs["generator/loss"],
                                   logs["generator/gan"] + 100 * logs["generator/l1"], rtol=1e-4)


def test_l1_falls_on_a_fixed_batch(tmp_path):
    t = training.Trainer(tiny_config(tmp_path, lr_generator=2e-3))
    _, val_batch, _ = t.datasets(0)
    l, ab = val_batch
    first = float(t.pretrain_step(l, ab)["generator/l1"])
    for _ in range(20):
        last = float(t.pretrain_step(l, ab)["generator/l1"])
    assert last < 0.6 * first
    adversarial = [float(t.adversarial_step(l, ab)["generator/l1"]) for _ in range(5)]
    assert np.isfinite(adversarial).all()


def test_stages_switch_at_pretrain_steps_and_tensorboard_has_everything(tmp_path):
    result, losses = run_logging_losses(tiny_config(tmp_path, pretrain_steps=2, train_steps=2))
    assert set(losses[1]) == set(losses[2]) == {"generator/l1"}  # stage 1: L1 only, generator only
    assert "critic/loss" in losses[3] and "generator/gan" in losses[4]
    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    expected = {"generator/loss", "generator/gan", "generator/l1", "critic/loss", "critic/accuracy_real",
                "critic/accuracy_fake", "lr/generator", "lr/critic", "speed/images_per_second", "stage",
                "val/l1", "val/psnr", "val/colourfulness", "val/gray_predicted_real"}
    assert expected <= tags, expected - tags
    stage = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("stage")]
    assert stage == [1, 1, 2, 2]
    grid = tf.image.decode_png(events.Tensors("val/gray_predicted_real")[-1].tensor_proto.string_val[2])
    n_val = min(4, len(sources.source_files("samples", "val")))
    assert grid.shape == (3 * 64, n_val * 64, 3)  # rows gray / predicted / real, one column per photo
    assert os.path.isfile(tmp_path / "flags.cfg") and os.path.isfile(tmp_path / "samples.png")
    assert "--pretrain_steps=2" in (tmp_path / "flags.cfg").read_text()


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    # wgan-gp exercises the seeded penalty draws, depth 6 a dropout layer, lr decay the schedule.
    kw = dict(objective="wgan-gp", critic_options="base_filters=8,norm=instance", critic_steps=2,
              pretrain_steps=2, train_steps=4, lr_decay="linear")
    _, straight = run_logging_losses(tiny_config(tmp_path / "straight", **kw))
    first, interrupted = run_logging_losses(tiny_config(tmp_path / "resumed", **kw), stop_at=3)
    assert first["stopped_by"] == "SIGTERM" and first["step"] == 3
    assert os.path.basename(first["checkpoint"]) == "ckpt-3"
    second, resumed = run_logging_losses(tiny_config(tmp_path / "resumed", **kw))
    assert second["step"] == 6 and sorted(resumed) == [4, 5, 6]
    for step in range(1, 7):
        got = (interrupted if step <= 3 else resumed)[step]
        for k, v in straight[step].items():
            assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-6), (step, k)


@pytest.mark.parametrize("lr_decay", ["none", "linear"])  # a schedule leaves the optimizer one variable short
def test_an_ema_run_exports_the_averages_and_its_checkpoints_load_them_too(tmp_path, lr_decay):
    result = training.train(tiny_config(tmp_path, ema=0.5, lr_generator=2e-3, lr_decay=lr_decay))
    exported = result["trainer"].generator  # what finish() exports, without writing the SavedModel
    from_checkpoint, _ = saving.load_generator(result["checkpoint"])
    raw = models.build_generator("unet", 64, base_filters=8, depth=6)
    tf.train.Checkpoint(generator=raw).restore(result["checkpoint"]).expect_partial()
    gap_to_raw = max(np.abs(e - r).max() for e, r in zip(exported.get_weights(), raw.get_weights()))
    assert gap_to_raw > 1e-4  # the export is the average, not the last weights
    for e, c in zip(exported.get_weights(), from_checkpoint.get_weights()):
        np.testing.assert_allclose(c, e, atol=1e-7)


def averages_by_position(trainer):
    return [average.numpy() for average, _ in trainer.average.pairs()]


def backbone_config(logdir, **overrides):  # its decoder's layers are named by Keras (conv2d_N), as the long run's
    cfg = dict(image_size=32, generator="backbone:mobilenet_v2", generator_options="encoder_weights=none", ema=0.5)
    return tiny_config(logdir, **{**cfg, **overrides})


def test_a_resumed_run_finds_its_weight_averages_whatever_numbers_keras_gave_its_layers(tmp_path):
    """Layer names carry a per-process count (conv2d_12 where another model was built first, as the long
    run's stage 2 is built after stage 1's models): checkpoints key the averages by position, and a resumed
    run, whose layers are numbered otherwise, gets them back. Checkpoints written before that (the long
    run's, up to step 18,081 of its stage 2) keyed them by path: those are matched by each layer's rank among
    the layers of its kind. A checkpoint of another model is still refused."""
    writer = training.Trainer(backbone_config(tmp_path / "new"))
    rng = np.random.default_rng(0)
    for average, _ in writer.average.pairs():
        average.assign(rng.normal(size=average.shape).astype(average.dtype.as_numpy_dtype))
    saved = averages_by_position(writer)
    writer.save()
    by_path = {w.path.replace("/", "."): average for average, w in writer.average.pairs()}
    old_style = tf.train.Checkpoint(**{**writer._checkpointed, "generator_ema": by_path})
    tf.train.CheckpointManager(old_style, str(tmp_path / "old" / "checkpoints"), max_to_keep=1).save(checkpoint_number=7)
    for run, checkpoint in (("new", "ckpt-0"), ("old", "ckpt-7")):
        reader = training.Trainer(backbone_config(tmp_path / run))
        assert [w.path for w in reader.generator.weights] != [w.path for w in writer.generator.weights]
        assert os.path.basename(reader.restore()) == checkpoint
        for got, want in zip(averages_by_position(reader), saved):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ColorganError, match="does not fit"):
        training.Trainer(backbone_config(tmp_path / "old", generator="backbone:efficientnet_lite0")).restore()


def test_sigterm_in_a_real_process_saves_and_exits_zero(tmp_path):
    import subprocess
    import sys
    import time
    logdir = tmp_path / "run"
    cmd = [sys.executable, "train.py", "--data=samples", "--image_size=32", "--batch_size=2",
           "--generator_options=base_filters=8,depth=5", "--critic_options=base_filters=8",
           "--pretrain_steps=100000", "--train_steps=0", "--checkpoint_every=100000", "--cache",
           f"--logdir={logdir}", "--noprogress", "--noexport"]
    proc = subprocess.Popen(cmd, cwd=os.path.dirname(os.path.dirname(__file__)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not glob.glob(str(logdir / "events.*")):
            time.sleep(0.5)
        time.sleep(3)  # let it take a few steps
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-2000:]
    assert "stopped by SIGTERM" in out
    assert tf.train.latest_checkpoint(str(logdir / "checkpoints")) is not None


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, pretrain_steps=4, train_steps=0, checkpoint_every=2)
    real_step = training.Trainer.pretrain_step

    def poisoned(self, l, ab, index=None):  # a NaN photo at step 3: the step's own graph must notice
        return real_step(self, l * np.nan if int(self.step.numpy()) == 2 else l, ab, index)
    monkeypatch.setattr(training.Trainer, "pretrain_step", poisoned)
    with pytest.raises(ColorganError, match="not finite at step 3.*ckpt-2"):
        training.train(cfg)
    assert os.path.basename(tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))) == "ckpt-2"


def test_weights_that_are_not_finite_stop_the_run_before_a_save_even_when_the_losses_are(tmp_path, monkeypatch):
    """The critic sits out the L1 stage, so a NaN in its weights leaves every loss finite: the save refuses it
    (a hint branch's NaN weights once stayed out of the compiled step's losses too)."""
    cfg = tiny_config(tmp_path, pretrain_steps=4, train_steps=0, checkpoint_every=2, ema=0.5)
    real_step = training.Trainer.pretrain_step

    def poisoned(self, l, ab, index=None):
        logs = real_step(self, l, ab, index)
        if int(self.step.numpy()) == 3:
            kernel = self.critic.weights[0]
            kernel.assign(tf.fill(kernel.shape, float("nan")))
        return logs
    monkeypatch.setattr(training.Trainer, "pretrain_step", poisoned)
    with pytest.raises(ColorganError, match=r"critic weights are not finite at step 4 \(1: .*kernel\); stopped "
                                            r"without saving. The last good checkpoint is .*ckpt-2"):
        training.train(cfg)
    assert os.path.basename(tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))) == "ckpt-2"


def test_resume_refuses_a_checkpoint_of_another_architecture(tmp_path):
    training.train(tiny_config(tmp_path, pretrain_steps=1, train_steps=0))
    with pytest.raises(ColorganError, match="does not fit"):
        training.train(tiny_config(tmp_path, generator_options="base_filters=16,depth=6", pretrain_steps=2))


@pytest.mark.parametrize("overrides,message", [
    (dict(objective="hinge"), "unknown --objective"),
    (dict(batch_size=0), "--batch_size must be positive"),
    (dict(pretrain_steps=-1), "must not be negative"),
    (dict(pretrain_steps=0, train_steps=0), "nothing to train"),
    (dict(objective="wgan-gp", critic_options=""), "batch-norm critic"),
    (dict(strategy="horovod"), "unknown --strategy"),
    (dict(mixed_precision="int8"), "unknown --mixed_precision"),
    (dict(data="s3://bucket"), "unknown data source"),
    (dict(generator_options="depth"), "key=value"),
    (dict(l1_rebalance=1.5), r"--l1_rebalance must be in \[0, 1\]"),
])
def test_bad_configuration_fails_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ColorganError, match=message):
        training.validate(tiny_config(tmp_path, **overrides))


def test_flagfile_round_trips_through_absl(tmp_path):
    """A run's flags.cfg, parsed by absl as `colorgan train --flagfile` would, gives back the very config."""
    from absl import flags

    from colorgan.cli import train as train_command
    cfg = tiny_config(tmp_path, objective="lsgan", cache=False, lr_generator=3.5e-5, ema=0.999,
                      generator_options="base_filters=8,depth=6", init_from="", min_colourfulness=7.5)
    training.write_flagfile(cfg, str(tmp_path / "flags.cfg"))
    fv = flags.FlagValues()
    train_command.define_flags(fv)
    fv(["train", f"--flagfile={tmp_path / 'flags.cfg'}"])
    assert train_command.config_from(fv) == cfg


def test_parse_options_types():
    assert training.parse_options("a=1, b=0.5,c=true,d=instance") == {"a": 1, "b": 0.5, "c": True, "d": "instance"}


def test_batch_that_does_not_divide_across_replicas_is_refused(tmp_path, monkeypatch):
    class ThreeReplicas:
        num_replicas_in_sync = 3
    monkeypatch.setattr(training.loop, "make_strategy", lambda name: ThreeReplicas())
    with pytest.raises(ColorganError, match="--batch_size=4 does not divide across 3 replicas: use a multiple of 3"):
        training.Trainer(tiny_config(tmp_path, batch_size=4))


def test_the_weight_average_covers_batch_norm_statistics(tmp_path):
    """EMA of every weight: a BN moving mean's average is m * start + (1 - m) * new after one step."""
    t = training.Trainer(tiny_config(tmp_path, ema=0.75, lr_generator=2e-3))
    _, (l, ab), _ = t.datasets(0)
    stats = [w for w in t.generator.weights if w.path.endswith("moving_mean")]
    assert stats and all(not w.trainable for w in stats)
    before = {w.path: w.numpy() for w in t.generator.weights}
    t.pretrain_step(l, ab)
    pairs = {weight.path: average for average, weight in t.average.pairs()}
    assert set(pairs) == set(before)  # every weight, trainable or not
    for w in stats + list(t.generator.trainable_weights[:3]):
        assert np.abs(w.numpy() - before[w.path]).max() > 0  # the step moved it
        np.testing.assert_allclose(pairs[w.path].numpy(), 0.75 * before[w.path] + 0.25 * w.numpy(), rtol=1e-5, atol=1e-7)


def test_init_from_restores_the_saved_generator_and_critic_exactly(tmp_path):
    g = models.build_generator("unet", 64, base_filters=8, depth=6)
    c = models.build_critic("patchgan", 64, in_channels=3, base_filters=8)
    for model in (g, c):
        model.set_weights([np.random.default_rng(1).normal(size=w.shape).astype(np.float32) for w in model.weights])
    saving.save_generator(g, tmp_path / "g.keras")
    saving.save_generator(c, tmp_path / "c.keras")
    t = training.Trainer(tiny_config(tmp_path / "run", init_from=str(tmp_path / "g.keras"),
                                     init_critic_from=str(tmp_path / "c.keras")))
    for ours, saved in ((t.generator, g), (t.critic, c)):
        for a, b in zip(ours.get_weights(), saved.get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ColorganError, match="does not fit this run's"):
        training.Trainer(tiny_config(tmp_path / "other", init_from=str(tmp_path / "g.keras"),
                                     generator_options="base_filters=16,depth=6"))
    with pytest.raises(ColorganError, match="no such .keras file"):
        training.Trainer(tiny_config(tmp_path / "missing", init_from=str(tmp_path / "missing.keras")))


def test_a_tiny_run_with_every_colour_objective_on(tmp_path):
    """Perceptual, colourfulness, class-rebalanced terms and rebalanced L1 in both stages, per-stage weights, a slower
    pretrained encoder, the dull-photo filter, source weights and EMA, on the offline EfficientNet-Lite0
    U-Net with the class head."""
    cfg = tiny_config(tmp_path, image_size=32, generator="backbone:efficientnet_lite0",
                      generator_options="encoder_weights=imagenet,head=classes", objective="lsgan",
                      class_weight=0.5, class_prior_photos=4, source_weights="chelsea=2",
                      freeze_encoder_in_pretrain=False, lr_encoder=1e-5, pretrain_l1_weight=10.0, l1_weight=50.0,
                      gan_weight=0.5, colourfulness_weight=2.0, perceptual_weight=1.0, min_colourfulness=5.0,
                      l1_rebalance=0.5, ema=0.9, pretrain_steps=2, train_steps=2, export=True)
    result, logs = run_logging_losses(cfg)
    assert result["step"] == 4
    for step, values in logs.items():
        assert {"generator/l1", "generator/l1_rebalanced", "generator/colourfulness", "generator/perceptual",
                "generator/classes"} <= set(values)
        assert all(np.isfinite(v) for v in values.values())
    np.testing.assert_allclose(logs[4]["generator/loss"], 0.5 * logs[4]["generator/gan"] + 50 * logs[4]["generator/l1_rebalanced"]
                               + 2 * logs[4]["generator/colourfulness"] + logs[4]["generator/perceptual"]
                               + 0.5 * logs[4]["generator/classes"], rtol=1e-4)
    assert os.path.isfile(result["generator"]) and os.path.isfile(result["critic"])
    t = result["trainer"]
    # The encoder trained in both stages, with its own optimiser at its own rate.
    assert int(t.gan.e_opt.iterations) == 4 and int(t.g_opt.iterations) == 4
    assert float(t.gan.e_opt.learning_rate) == pytest.approx(1e-5)


@pytest.mark.parametrize("flags,expected", [({"avx512_bf16", "avx2"}, "bfloat16"), ({"amx_bf16"}, "bfloat16"),
                                            ({"avx2", "fma"}, "float32")])
def test_auto_precision_follows_the_cpu_and_is_recorded(tmp_path, monkeypatch, flags, expected):
    from colorgan.training import precision
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    monkeypatch.setattr(precision.tf.config, "list_physical_devices", lambda kind=None: [])
    # A run this short takes the rule (no probe): bfloat16 with float32 depthwise convolutions where
    # the CPU has bfloat16 units.
    result = training.train(tiny_config(tmp_path, mixed_precision="auto", pretrain_steps=1, train_steps=0))
    assert str(result["trainer"].arithmetic) == (expected if expected == "float32" else "bfloat16+depthwise_float32")
    with open(tmp_path / "model.json") as f:
        assert json.load(f)["precision"] == expected
    compute = {layer.dtype_policy.compute_dtype for layer in result["trainer"].generator.layers if layer.weights}
    assert compute == {expected}
    import keras
    assert keras.mixed_precision.global_policy().name == "float32"  # the run does not leak its policy


def test_ema_after_a_frozen_encoder_stage_averages_every_weight_by_variable(tmp_path):
    """Stage 1 trains the decoder only, stage 2 everything: the averages still pair with their own
    variables (by path, not by position among the trainable ones) and cover the frozen encoder too."""
    cfg = tiny_config(tmp_path, image_size=32, generator="backbone:mobilenet_v2",
                      generator_options="encoder_weights=none", freeze_encoder_in_pretrain=True, ema=0.5,
                      pretrain_steps=1, train_steps=1, eval_every=100)
    result = training.train(cfg)
    t = result["trainer"]
    averaged = {weight.path: average.numpy() for average, weight in t.average.pairs()}
    assert set(averaged) == {w.path for w in t.generator.weights}
    for w in t.generator.weights:  # finish() put each average into its own variable
        np.testing.assert_array_equal(w.numpy(), averaged[w.path])


def test_fused_adam_takes_the_same_steps_as_keras_adam():
    """training.loop.Adam (one ResourceApplyAdam per variable) against Keras's element-wise Adam."""
    def five_steps(optimizer_class):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
        schedule = keras.optimizers.schedules.PolynomialDecay(1e-2, 10, end_learning_rate=0.0)
        optimizer = optimizer_class(schedule, beta_1=0.5, beta_2=0.999)
        x = tf.random.stateless_normal([16, 4], seed=[0, 1])

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x) - 1.0))
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        for _ in range(5):
            step()
        graph = step.get_concrete_function().graph.as_graph_def()
        op_types = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
        return [w.numpy() for w in model.weights], [v.numpy() for v in optimizer.variables], op_types

    (keras_weights, keras_slots, _), (fused_weights, fused_slots, fused_ops) = (
        five_steps(keras.optimizers.Adam), five_steps(loop.Adam))
    assert "ResourceApplyAdam" in fused_ops
    start = five_steps(lambda *a, **k: keras.optimizers.SGD(0.0))[0]
    assert any(np.abs(k - s).max() > 1e-3 for k, s in zip(keras_weights, start))  # the weights did move
    for k, f in zip(keras_weights + keras_slots, fused_weights + fused_slots):
        np.testing.assert_allclose(f, k, rtol=1e-5, atol=1e-6)


def test_a_run_with_the_projected_critic_trains_its_heads_and_hands_them_on(tmp_path):
    """The GAN stage with the projected critic, under WGAN-GP (whose penalty differentiates through the
    frozen network twice): finite losses, the ImageNet features untouched, and the critic.keras it writes
    starts the next run's critic exactly (--init_critic_from)."""
    projected = dict(image_size=32, generator_options="base_filters=8,depth=5", critic="projected",
                     critic_options="filters=8")
    cfg = tiny_config(tmp_path / "a", **projected, objective="wgan-gp", critic_steps=2, pretrain_steps=0,
                      train_steps=3, export=True)
    fresh = models.build_critic("projected", 32, in_channels=3, filters=8).get_layer("features")
    result, logs = run_logging_losses(cfg)
    assert result["step"] == 3
    assert all(np.isfinite(v) for values in logs.values() for v in values.values())
    assert all(values["critic/gradient_penalty"] > 0 for values in logs.values())
    t = result["trainer"]
    for a, b in zip(t.critic.get_layer("features").get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(t.d_opt.iterations) == 6
    nxt = training.Trainer(tiny_config(tmp_path / "b", **projected, init_critic_from=result["critic"]))
    for a, b in zip(nxt.critic.get_weights(), t.critic.get_weights()):
        np.testing.assert_array_equal(a, b)
