"""benchmarks/run.py keeps working: its smallest mode runs every section and reports sane numbers.

No timing is asserted: the numbers only have to exist and be positive. The PyTorch parts run only
where torch is installed (the `bench` extra); `make test` never needs it.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TORCH = importlib.util.find_spec("torch") is not None


def positive(x):
    return isinstance(x, (int, float)) and x > 0


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report.json"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "run.py"), "--smoke", f"--json={out}"]
    if HAS_TORCH:
        # The PyTorch twins: the seeds' pix2pix, and torch_lite0.py beside lite0_patchgan (its full-width
        # networks, at 32 px).
        command += ["--compare", "--train_models=baseline,lite0_patchgan"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


@pytest.mark.timeout(600)
def test_smoke_prints_a_table_and_the_json(smoke_report):
    report, stdout = smoke_report
    assert "| train step |" in stdout and "| inference |" in stdout and "Input pipeline:" in stdout
    assert json.loads(stdout[stdout.index("\n{") + 1:]) == json.loads(json.dumps(report))
    for key in ("command", "device", "load_average_before", "train", "infer", "pipeline", "flops", "targets"):
        assert key in report, key
    assert report["device"]["cores"] >= 1 and positive(report["device"]["ram_gib"])


def test_smoke_training_figures(smoke_report):
    report, _ = smoke_report
    keras_rows = [r for r in report["train"] if r["framework"] == "keras"]
    assert keras_rows and not any("error" in r for r in report["train"])
    for r in report["train"]:
        assert positive(r["images_per_second"]) and positive(r["median_s"]) and positive(r["peak_rss_mib"])
        assert len(r["times_s"]) == 2 and all(positive(t) for t in r["times_s"])
    flops = report["flops"]["baseline"]
    assert positive(flops["generator"]) and positive(flops["critic"])
    assert positive(keras_rows[0]["flop_utilisation"])


def test_smoke_pipeline_and_inference_figures(smoke_report):
    report, _ = smoke_report
    assert positive(report["pipeline"]["images_per_second"]) and positive(report["pipeline"]["peak_rss_mib"])
    formats = {r["format"] for r in report["infer"]}
    assert {"keras", "saved_model", "tflite float16"} <= formats
    for r in report["infer"]:
        assert "error" not in r, r
        assert positive(r["latency_b1_ms"]) and positive(r["throughput_b16_img_s"])
        if not r["format"].startswith("torch"):
            assert positive(r["fullres_ms"])
    assert positive(report["targets"]["pipeline_vs_train_step"]["value"])


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install -e '.[bench]')")
def test_smoke_compares_with_pytorch(smoke_report):
    report, _ = smoke_report
    torch_rows = {r["model"]: r for r in report["train"] if r["framework"] == "torch"}
    assert set(torch_rows) == {"baseline (PyTorch original)", "lite0_patchgan (PyTorch)"}
    assert all(positive(r["images_per_second"]) for r in torch_rows.values())
    assert positive(report["comparisons"]["train_keras_over_torch"])
    assert positive(report["comparisons"]["train_keras_over_torch_lite0_patchgan"])
    # Each twin's modes were timed against each other, and the fastest joined its set-up's turns.
    for key, name in (("train", "baseline (PyTorch original)"), ("train lite0_patchgan", "lite0_patchgan (PyTorch)")):
        assert report["torch_modes"][key]["chosen"] == torch_rows[name]["torch_mode"]
    twin, counts = torch_rows["lite0_patchgan (PyTorch)"]["torch_info"], report["flops"]["lite0_patchgan"]
    assert (twin["generator_params"], twin["critic_params"]) == (counts["generator_params"], counts["critic_params"])
    for name in ("train_step_vs_torch", "fullres_tflite_fp16_1t_vs_torch_forward"):
        assert positive(report["targets"][name]["value"]) and isinstance(report["targets"][name]["met"], bool)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install -e '.[bench]')")
def test_torch_reference_is_the_seeds_model():
    """Same parameter counts as colorgan's unet and patchgan, and a train step that learns."""
    import torch
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from torch_reference import NLayerDiscriminator, Pix2Pix, UnetGenerator, count_parameters
    from colorgan import models

    assert count_parameters(UnetGenerator()) == 54_409_858
    assert count_parameters(NLayerDiscriminator()) == 2_765_633
    keras_g = models.build_generator("unet", 64, base_filters=8, depth=6)
    keras_d = models.build_critic("patchgan", 64, in_channels=3, base_filters=8)
    count = lambda m: sum(int(w.numpy().size) for w in m.trainable_weights)
    tiny = Pix2Pix(64, ngf=8, ndf=8, num_downs=6)
    assert count_parameters(tiny.generator) == count(keras_g)
    assert count_parameters(tiny.critic) == count(keras_d)

    torch.manual_seed(0)
    l, ab = torch.rand(2, 1, 64, 64) * 2 - 1, torch.rand(2, 2, 64, 64) - 0.5
    first = tiny.train_step(l, ab)
    assert all(torch.isfinite(torch.tensor(v)) for v in first.values())
    for _ in range(5):
        last = tiny.train_step(l, ab)
    assert last["generator/l1"] < first["generator/l1"]
    assert tiny.predict_ab(l).shape == (2, 2, 64, 64)
    assert tiny.critic(torch.cat([l, ab], 1)).shape == (2, 1, 6, 6)  # 70x70 PatchGAN grid at 64 px
